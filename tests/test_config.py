"""Tests of the business config loader (tierflow.config.load_config).

Why: every score, tier cut and budget comes from config/tierflow.yml. A bad value must stop
the run before any data is touched, with a ConfigError that names the offending key path
and says what would have been accepted, so an operator can fix the file without reading code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from tierflow.config import ConfigError, TierflowConfig, load_config

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "tierflow.yml"


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def _load_modified(tmp_path: Path, change: Callable[[dict], None]) -> TierflowConfig:
    data = copy.deepcopy(_shipped())
    change(data)
    path = tmp_path / "tierflow.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(path)


def test_shipped_config_loads() -> None:
    cfg = load_config(SHIPPED)
    assert cfg.base_currency == "CNY"
    assert [lv.name for lv in cfg.tiers.levels] == ["high", "medium", "low"]
    assert [lv.cumulative_share for lv in cfg.tiers.levels] == [0.2, 0.5, 1.0]
    assert cfg.rfm.window_days == 365
    assert len(cfg.rfm.segments) == 10
    assert cfg.allocation.tiers["high"].budget_share == 0.6
    assert cfg.allocation.budget == 1_000_000 and cfg.allocation.mode == "policy"
    assert cfg.notifications.recipients == {} and cfg.notifications.fallback_recipient is None
    assert cfg.ingest.encodings == {"crm": "utf-8", "erp": "utf-8", "service": "utf-8"}
    assert cfg.ingest.max_future_days == 1
    assert cfg.tiers.hysteresis_margin == 0.02
    assert (cfg.tiers.potential.top_share, cfg.tiers.potential.min_growth) == (0.2, 0.2)
    assert cfg.alerts.tiers == ["high", "medium"]
    assert cfg.alerts.churn_risk.gap_factor == 2.0
    assert cfg.tiers.weights.predicted_value == 0.2 and cfg.tiers.potential.use_predicted_value
    assert (cfg.clv.refit_days, cfg.clv.holdout_days, cfg.clv.max_holdout_error) == (7, 90, 0.35)
    assert cfg.allocation.response.value_base == "revenue"


def test_a_round_tripped_copy_of_the_shipped_config_loads(tmp_path: Path) -> None:
    """The helper below writes what it is given faithfully: no change, no error."""
    assert _load_modified(tmp_path, lambda d: None) == load_config(SHIPPED)


def _set_levels(shares: list[float]) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        for level, share in zip(d["tiers"]["levels"], shares, strict=True):
            level["cumulative_share"] = share

    return change


def _rfm_drop_champions(d: dict) -> None:
    # Champions covers r5 f4 and r5 f5: without it those two cells have no segment
    d["rfm"]["segments"] = [s for s in d["rfm"]["segments"] if s["name"] != "Champions"]


def _rfm_overlap(d: dict) -> None:
    # Champions already covers r5 f5
    d["rfm"]["segments"].append({"name": "Superstars", "r": [5, 5], "f": [5, 5]})


def _rename_low_policy(d: dict) -> None:
    d["allocation"]["tiers"]["basic"] = d["allocation"]["tiers"].pop("low")


def _shares(high: float, medium: float, low: float) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        for name, share in (("high", high), ("medium", medium), ("low", low)):
            d["allocation"]["tiers"][name]["budget_share"] = share

    return change


BAD_CONFIGS = [
    pytest.param(
        lambda d: d.update(colour="blue"), ["colour", "not permitted"], id="unknown-top-level-key"
    ),
    pytest.param(
        _set_levels([0.5, 0.2, 1.0]),
        ["tiers", "levels", "cumulative_share must increase", "[0.5, 0.2, 1.0]"],
        id="levels-not-increasing",
    ),
    pytest.param(
        _set_levels([0.2, 0.5, 0.5]),
        ["tiers", "levels", "cumulative_share must increase"],
        id="levels-equal",
    ),
    pytest.param(
        _set_levels([0.2, 0.5, 0.9]),
        ["tiers", "levels", "cumulative_share 1.0", "got 0.9"],
        id="last-level-not-one",
    ),
    pytest.param(
        _shares(0.6, 0.3, 0.2),
        ["allocation", "tiers", "budget_share", "add up to 1.0", "1.1"],
        id="budget-shares-sum-1.1",
    ),
    pytest.param(
        _rename_low_policy,
        ["allocation.tiers", "one policy per tier", "'low'", "basic"],
        id="allocation-tiers-do-not-match-levels",
    ),
    pytest.param(
        _rfm_drop_champions,
        ["rfm", "segments", "not covered", "r5 f4", "r5 f5"],
        id="rfm-cell-missing",
    ),
    pytest.param(
        _rfm_overlap,
        ["rfm", "segments", "r5 f5", "'Champions'", "'Superstars'"],
        id="rfm-cell-overlap",
    ),
    pytest.param(
        lambda d: d["rfm"]["segments"][0].update(r=[0, 2]),
        ["rfm", "segments[Hibernating].r", "1 <= low <= high <= 5", "[0, 2]"],
        id="rfm-range-out-of-bounds",
    ),
    pytest.param(
        lambda d: d.update(base_currency="cny"),
        ["base_currency", "[A-Z]{3}", "'cny'"],
        id="base-currency-lowercase",
    ),
    pytest.param(
        lambda d: d.update(base_currency="RMBX"),
        ["base_currency", "[A-Z]{3}", "'RMBX'"],
        id="base-currency-four-letters",
    ),
    pytest.param(
        lambda d: d["ingest"]["encodings"].update(crm="klingon-8"),
        ["ingest", "encodings.crm", "unknown encoding", "klingon-8"],
        id="unknown-encoding",
    ),
    pytest.param(
        lambda d: d["rfm"].update(window_days=-30),
        ["rfm.window_days", "greater than 0", "-30"],
        id="negative-window-days",
    ),
    pytest.param(
        lambda d: d["ingest"].update(missing_required_entity="ignore"),
        ["ingest.missing_required_entity", "'fail'", "'warn'", "'wait'", "'ignore'"],
        id="bad-literal",
    ),
    pytest.param(
        lambda d: d["tiers"].update(hysteresis_margin=-0.01),
        ["tiers.hysteresis_margin", "greater than or equal to 0", "-0.01"],
        id="negative-hysteresis-margin",
    ),
    pytest.param(
        lambda d: d["tiers"]["potential"].update(top_share=0),
        ["tiers.potential.top_share", "greater than 0"],
        id="potential-top-share-zero",
    ),
    pytest.param(
        lambda d: d["tiers"]["potential"].update(lookahead=3),
        ["tiers.potential.lookahead", "not permitted"],
        id="potential-unknown-key",
    ),
    pytest.param(
        lambda d: d["alerts"].update(tiers=["high", "gold"]),
        ["alerts.tiers", "unknown tier(s) ['gold']", "['high', 'medium', 'low']"],
        id="alert-tier-not-a-level",
    ),
    pytest.param(
        lambda d: d["alerts"]["churn_risk"].update(gap_factor=0.5),
        ["alerts.churn_risk.gap_factor", "greater than or equal to 1", "0.5"],
        id="churn-gap-factor-below-one",
    ),
    pytest.param(
        lambda d: d["alerts"]["revenue_drop"].update(min_drop=1.5),
        ["alerts.revenue_drop.min_drop", "less than or equal to 1", "1.5"],
        id="revenue-drop-above-100pct",
    ),
    pytest.param(
        lambda d: d["ingest"].update(expected_daily=["erp/order"]),
        ["ingest", "expected_daily", "erp/order", "erp/orders"],
        id="unknown-expected-entity",
    ),    pytest.param(
        lambda d: d["allocation"].update(mode="greedy"),
        ["allocation.mode", "'policy'", "'optimized'", "'greedy'"],
        id="allocation-mode-unknown",
    ),
    pytest.param(
        lambda d: d["allocation"].update(budget=1000.005),
        ["allocation", "budget: at most 2 decimals", "1000.005"],
        id="allocation-budget-below-cents",
    ),
    pytest.param(
        lambda d: d["allocation"]["tiers"]["high"].update(customer_cap=0.5),
        ["allocation.tiers.high.customer_cap", "greater than or equal to 1", "0.5"],
        id="allocation-cap-below-average",
    ),
    pytest.param(
        lambda d: d["allocation"]["tiers"]["low"].update(customer_floor=1.5),
        ["allocation.tiers.low.customer_floor", "less than or equal to 1", "1.5"],
        id="allocation-floor-above-average",
    ),
    pytest.param(
        lambda d: d["allocation"].update(account_manager_capacity_hours=-8),
        ["allocation.account_manager_capacity_hours", "greater than or equal to 0", "-8"],
        id="allocation-negative-am-capacity",
    ),
    pytest.param(
        lambda d: d["allocation"].update(credit_risk_cap=-0.1),
        ["allocation.credit_risk_cap", "greater than or equal to 0"],
        id="allocation-negative-credit-risk-cap",
    ),
    pytest.param(
        lambda d: d["allocation"].update(win_back_stages=["dormant"]),
        ["allocation", "win_back_stages: unknown stages ['dormant']", "churned"],
        id="allocation-unknown-win-back-stage",
    ),
    pytest.param(
        lambda d: d["allocation"]["response"]["segments"][1].update(return_per_unit=5),
        ["allocation.response", "return_per_unit must not increase", "[3.0, 5.0, 0.5]"],
        id="allocation-response-curve-not-concave",
    ),
    pytest.param(
        lambda d: d["allocation"]["response"]["segments"][2].update(up_to_share_of_value=0.01),
        ["allocation.response", "up_to_share_of_value must increase", "[0.02, 0.05, 0.01]"],
        id="allocation-response-breakpoints-not-increasing",
    ),
    pytest.param(
        lambda d: d["allocation"]["response"]["action_multipliers"].pop("retain"),
        ["allocation.response", "action_multipliers", "missing ['retain']"],
        id="allocation-action-multiplier-missing",
    ),
    pytest.param(
        lambda d: d["notifications"].update(fallback_recipient="sales ops"),
        ["notifications", "fallback_recipient: not an e-mail address", "'sales ops'"],
        id="notifications-bad-fallback",
    ),
    pytest.param(
        lambda d: d["notifications"].update(recipients={"王芳": "wang.fang"}),
        ["notifications", "recipients.王芳: not an e-mail address", "'wang.fang'"],
        id="notifications-bad-recipient",
    ),
    pytest.param(
        lambda d: d["tiers"]["weights"].update(purchasing_power=0, frequency=0, profit=0, recency=0),
        ["tiers.weights", "at least one of purchasing_power, frequency, profit, recency must be > 0"],
        id="only-the-predicted-value-weighs",
    ),
    pytest.param(
        lambda d: d["tiers"]["weights"].update(predicted_value=-0.1),
        ["tiers.weights.predicted_value", "greater than or equal to 0", "-0.1"],
        id="negative-predicted-value-weight",
    ),
    pytest.param(
        lambda d: d["clv"].update(holdout_days=3),
        ["clv.holdout_days", "greater than or equal to 7", "3"],
        id="clv-holdout-too-short",
    ),
    pytest.param(
        lambda d: d["clv"].update(max_holdout_error=0),
        ["clv.max_holdout_error", "greater than 0"],
        id="clv-holdout-bound-zero",
    ),
    pytest.param(
        lambda d: d["clv"].update(monthly_discount_rate=1.5),
        ["clv.monthly_discount_rate", "less than 1", "1.5"],
        id="clv-discount-rate",
    ),
    pytest.param(
        lambda d: d["clv"].update(refit_every=3),
        ["clv.refit_every", "Extra inputs are not permitted"],
        id="clv-unknown-key",
    ),
    pytest.param(
        lambda d: d["allocation"]["response"].update(value_base="margin"),
        ["allocation.response.value_base", "'revenue'", "'clv'", "'margin'"],
        id="response-value-base-unknown",
    ),
    pytest.param(
        lambda d: d["ingest"].update(wait_timeout_minutes=0),
        ["ingest.wait_timeout_minutes", "greater than 0", "0"],
        id="zero-wait-timeout",
    ),
    pytest.param(
        lambda d: d["ingest"].update(wait_poll_seconds="often"),
        ["ingest.wait_poll_seconds", "number", "often"],
        id="wait-poll-not-a-number",
    ),
    pytest.param(
        lambda d: d["allocation"].update(control_share=0.7),
        ["allocation.control_share", "less than or equal to 0.5", "0.7"],
        id="control-share-above-half",
    ),
    pytest.param(
        lambda d: d["outcomes"]["health"].update(bands=[{"name": "ok", "min_score": 50},
                                                        {"name": "bad", "min_score": 60}]),
        ["outcomes.health", "bands: min_score must fall strictly", "[50.0, 60.0]"],
        id="health-bands-not-falling",
    ),
    pytest.param(
        lambda d: d["outcomes"]["health"].update(bands=[{"name": "ok", "min_score": 50}]),
        ["outcomes.health", "the last band must start at min_score 0", "50"],
        id="health-bands-not-down-to-zero",
    ),
    pytest.param(
        lambda d: d["outcomes"]["health"]["weights"].pop("payment"),
        ["outcomes.health", "weights: need support, payment and engagement"],
        id="health-weight-missing",
    ),
    pytest.param(
        lambda d: d["outcomes"].update(confidence=1.5),
        ["outcomes.confidence", "less than 1", "1.5"],
        id="confidence-above-one",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD_CONFIGS)
def test_bad_config_names_key_and_what_is_allowed(
    tmp_path: Path, change: Callable[[dict], None], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_modified(tmp_path, change)
    message = str(excinfo.value)
    assert str(tmp_path / "tierflow.yml") in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "tierflow.yml"
    with pytest.raises(ConfigError, match="config file not found") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "tierflow.yml"
    path.write_text("base_currency: CNY\ntiers: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML") as excinfo:
        load_config(path)
    assert str(path) in str(excinfo.value)


def test_top_level_not_a_mapping(tmp_path: Path) -> None:
    path = tmp_path / "tierflow.yml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_missing_required_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_modified(tmp_path, lambda d: d.pop("allocation"))
    assert "allocation: Field required" in str(excinfo.value)
