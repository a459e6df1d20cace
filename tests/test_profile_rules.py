"""The profile config (profile:, region_potential:, allocation.profile_rules) and the primary
action taken from a customer's profile. Pure: no warehouse, hand-made customers.

Why: sales teams serve a periodic buyer who is late by its own rhythm differently from a
customer who simply buys little; the rule that says so lives in config, so a wrong key must
fail with its name, and the rule must win exactly where its conditions hold (after the credit
review, before the built-in rules) with a reason a sales rep can read out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from tierflow.allocation import CustomerInput, build_plan
from tierflow.config import ConfigError, TierflowConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 3, 31)
OVERDUE_RULE = {
    "name": "periodic buyer overdue by its own rhythm",
    "purchase_rhythm": ["periodic"],
    "overdue_by_rhythm": True,
    "tiers": ["high", "medium"],
    "action": "win back",
}


def _shipped() -> dict:
    return yaml.safe_load((ROOT / "config" / "tierflow.yml").read_text(encoding="utf-8"))


def _load_modified(tmp_path: Path, change: Callable[[dict], None]) -> TierflowConfig:
    data = _shipped()
    change(data)
    path = tmp_path / "tierflow.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return load_config(path)


BAD = [
    pytest.param(lambda d: d["allocation"].update(profile_rules=[{**OVERDUE_RULE, "action": "call daily"}]),
                 ["allocation.profile_rules.0", "unknown action 'call daily'", "known: ['credit review'"],
                 id="rule-unknown-action"),
    pytest.param(lambda d: d["allocation"].update(
                     profile_rules=[{**OVERDUE_RULE, "purchase_rhythm": ["weekly"]}]),
                 ["allocation.profile_rules.0", "purchase_rhythm: unknown value(s) ['weekly']", "'periodic'"],
                 id="rule-unknown-rhythm"),
    pytest.param(lambda d: d["allocation"].update(profile_rules=[{**OVERDUE_RULE, "tiers": ["gold"]}]),
                 ["allocation.profile_rules.0.tiers: unknown tier(s) ['gold']", "['high', 'medium', 'low']"],
                 id="rule-unknown-tier"),
    pytest.param(lambda d: d["allocation"].update(profile_rules=[{"name": "everyone", "action": "retain"}]),
                 ["allocation.profile_rules.0", "rule 'everyone': needs at least one profile condition"],
                 id="rule-without-condition"),
    pytest.param(lambda d: d["allocation"].update(profile_rules=[{**OVERDUE_RULE, "when": "late"}]),
                 ["allocation.profile_rules.0.when", "Extra inputs are not permitted"],
                 id="rule-unknown-key"),
    pytest.param(lambda d: d["profile"]["rhythm"].update(min_purchase_days=2),
                 ["profile.rhythm.min_purchase_days", "greater than or equal to 3"], id="rhythm-two-days"),
    pytest.param(lambda d: d["profile"]["channel"].update(offline_channels=["Offline", "online"]),
                 ["profile.channel", "compared lower-case and trimmed, got ['Offline']"], id="channel-case"),
    pytest.param(lambda d: d["profile"]["channel"].update(offline_channels=["online"]),
                 ["profile.channel", "overlap: ['online']"], id="channel-overlap"),
    pytest.param(lambda d: d["profile"]["channel"].update(dominant_share=0.5),
                 ["profile.channel.dominant_share", "greater than 0.5"], id="channel-dominant-half"),
    pytest.param(lambda d: d["region_potential"]["weights"].update(growth=0.3),
                 ["region_potential.weights", "must add up to 1.0, they add up to 1.1"],
                 id="potential-weights"),
]


@pytest.mark.parametrize(("change", "expected"), BAD)
def test_bad_profile_config_names_key(
    tmp_path: Path, change: Callable[[dict], None], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_modified(tmp_path, change)
    message = str(excinfo.value)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def _customer(cid: str, tier: str, score: str, **kw) -> CustomerInput:
    return CustomerInput(cid, tier, Decimal(score), Decimal("1000"), **kw)


def test_profile_rule_gives_the_primary_action_where_it_holds(tmp_path: Path) -> None:
    cfg = _load_modified(tmp_path, lambda d: d["allocation"].update(profile_rules=[OVERDUE_RULE]))
    overdue = {"purchase_rhythm": "periodic", "usual_gap_days": Decimal("30.6"), "is_overdue_by_rhythm": True,
               "recency_days": 46, "lifecycle_stage": "mature", "channel_preference": "online",
               "breadth_trend": "stable", "loyalty_band": "loyal"}
    customers = [
        _customer("a", "high", "0.95", **overdue),  # top tier, rule -> win back (not retain)
        _customer("b", "medium", "0.60", **overdue),  # middle tier, rule -> win back (not develop)
        _customer("c", "medium", "0.55", **{**overdue, "is_overdue_by_rhythm": False}),  # on time: develop
        _customer("d", "medium", "0.50", **{**overdue, "purchase_rhythm": "irregular"}),  # not periodic
        _customer("e", "low", "0.10", **overdue),  # low tier is not in the rule's tiers
        _customer("f", "medium", "0.58", credit_risk_band="high", **overdue),  # credit review first
        _customer("g", "low", "0.05"),  # no profile read (older customer_tiers): built-in rules
    ]
    plan = build_plan(customers, cfg, AS_OF)
    actions = {p.customer.customer_id: p.primary_action for p in plan.customers}
    assert actions == {"a": "win back", "b": "win back", "c": "develop", "d": "develop",
                       "e": "serve at low cost", "f": "credit review", "g": "serve at low cost"}
    reasons = {p.customer.customer_id: p.action_reason for p in plan.customers}
    assert reasons["b"] == (
        "Profile rule 'periodic buyer overdue by its own rhythm' (periodic buyer, usual gap 30.6 days,"
        " last order 46 days ago (overdue by its own rhythm); channel online; category breadth stable;"
        " loyalty loyal), medium tier: win back (pooled sales team)."
    )
    assert reasons["c"].startswith("Medium tier (value score 0.55")

    # without rules the same customers get the built-in actions
    plain = build_plan(customers, load_config(ROOT / "config" / "tierflow.yml"), AS_OF)
    assert {p.customer.customer_id: p.primary_action for p in plain.customers}["a"] == "retain"
