"""The config sections the dbt marts read (cost_to_serve, credit_risk, lifecycle): validated
on load with a message naming the key, defaulted when absent, and passed to dbt as vars
with the same defaults as dbt_project.yml (so a standalone `dbt build` computes the same).
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from tierflow.config import ConfigError, dbt_vars, load_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "config" / "tierflow.yml"
NEW_SECTIONS = ("cost_to_serve", "credit_risk", "lifecycle", "alerts")


def _load(tmp_path: Path, data: dict):
    path = tmp_path / "tierflow.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_config(path)


def _shipped() -> dict:
    return yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def test_shipped_sections_reach_dbt_as_the_project_defaults() -> None:
    project_vars = yaml.safe_load((ROOT / "dbt_project" / "dbt_project.yml").read_text(encoding="utf-8"))[
        "vars"
    ]
    passed = dbt_vars(load_config(SHIPPED))
    for section in (*NEW_SECTIONS, "tier_hysteresis_margin", "tier_potential"):
        assert passed[section] == project_vars[section], section


def test_sections_are_optional(tmp_path: Path) -> None:
    data = _shipped()
    for section in NEW_SECTIONS:
        del data[section]
    cfg = _load(tmp_path, data)
    assert cfg.lifecycle.churn_days == 180
    assert cfg.credit_risk.high.write_off_count == 1
    assert cfg.cost_to_serve.annual_cost_of_capital == 0.05
    assert cfg.alerts.churn_risk.min_recency_days == 30


def test_alert_tiers_default_to_every_tier_but_the_worst(tmp_path: Path) -> None:
    """Without alerts.tiers, dbt gets every level but the worst, whatever the levels are called."""
    data = _shipped()
    del data["alerts"]
    data["tiers"]["levels"] = [
        {"name": "gold", "cumulative_share": 0.1},
        {"name": "silver", "cumulative_share": 0.3},
        {"name": "bronze", "cumulative_share": 0.6},
        {"name": "basic", "cumulative_share": 1.0},
    ]
    data["allocation"]["tiers"] = {
        name: {"budget_share": share, "service_level": "x"}
        for name, share in (("gold", 0.4), ("silver", 0.3), ("bronze", 0.2), ("basic", 0.1))
    }
    assert dbt_vars(_load(tmp_path, data))["alerts"]["tiers"] == ["gold", "silver", "bronze"]


@pytest.mark.parametrize(
    ("section", "change", "key"),
    [
        ("cost_to_serve", {"support_cost_per_minute": -1}, "cost_to_serve.support_cost_per_minute"),
        ("cost_to_serve", {"annual_cost_of_capital": 2}, "cost_to_serve.annual_cost_of_capital"),
        ("cost_to_serve", {"per_order": 3}, "cost_to_serve.per_order"),
        ("lifecycle", {"churn_days": 0}, "lifecycle.churn_days"),
        ("lifecycle", {"decline_threshold": 1.5}, "lifecycle.decline_threshold"),
        ("credit_risk", {"high": {"overdue_share": 1.2}}, "credit_risk.high.overdue_share"),
        (
            "credit_risk",
            {"medium": {"avg_days_late": 45}},
            "medium.avg_days_late (45) must not exceed high.avg_days_late (30)",
        ),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, section: str, change: dict, key: str) -> None:
    data = copy.deepcopy(_shipped())
    data[section] = {**data[section], **change}
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data)
    assert key in str(err.value)
