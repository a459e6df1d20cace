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
NEW_SECTIONS = ("cost_to_serve", "credit_risk", "lifecycle")


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
    for section in NEW_SECTIONS:
        assert passed[section] == project_vars[section], section


def test_sections_are_optional(tmp_path: Path) -> None:
    data = _shipped()
    for section in NEW_SECTIONS:
        del data[section]
    cfg = _load(tmp_path, data)
    assert cfg.lifecycle.churn_days == 180
    assert cfg.credit_risk.high.write_off_count == 1
    assert cfg.cost_to_serve.annual_cost_of_capital == 0.05


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
