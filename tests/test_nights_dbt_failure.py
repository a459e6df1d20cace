"""A night whose dbt test fails in a mart, through `tierflow run`, where each group of marts is
one dbt build (tierflow.dbt_group_build): the mart's own task fails as its own build would,
the marts below it are not built, the group's other marts are, nothing is published, the
failed test is recorded; the next night, with the data fixed, publishes. On the ten-customer
fixture (tiny_fixture.py)."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from test_nights import D_MINUS_1, D_PLUS_1, D, bi_tables, ok, run_env  # noqa: F401 (fixture)
from test_pipeline_e2e import ROOT, query, tierflow
from tiny_fixture import _write

pytestmark = pytest.mark.e2e

OVERRIDES_HEADER = ["customer_id", "value_tier", "reason", "set_by", "valid_from", "valid_to"]


def _states(home: Path, as_of: date) -> dict[str, str]:
    """Task states of the newest DAG run for ``as_of`` in the Airflow metadata of ``home``."""
    with sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True) as conn:
        (run_id,) = conn.execute(
            "select run_id from dag_run where dag_id = 'customer_tiering' and date(logical_date) = ?"
            " order by id desc limit 1", (as_of.isoformat(),)).fetchone()
        return dict(conn.execute("select task_id, state from task_instance where run_id = ?", (run_id,)))


def _below(model: str) -> set[str]:
    """The models below ``model`` in the dbt graph (the manifest the DAG is rendered from)."""
    manifest = json.loads((ROOT / "dbt_project" / "target" / "manifest.json").read_text(encoding="utf-8"))
    seen, todo = set(), [f"model.tierflow.{model}"]
    while todo:
        for child in manifest["child_map"][todo.pop()]:
            if child.startswith("model.") and child not in seen:
                seen.add(child)
                todo.append(child)
    return {uid.split(".")[-1] for uid in seen}


def test_a_failing_dbt_test_fails_its_mart_and_the_marts_below_it(run_env: dict[str, str]) -> None:  # noqa: F811
    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    landing = Path(run_env["TIERFLOW_LANDING"])
    home = Path(run_env["TIERFLOW_HOME"])
    # two good nights in one process (as `make run` runs its dates): each date its own group builds
    d_minus_2 = D_MINUS_1 - timedelta(days=1)
    ok(tierflow(["run", "--from", d_minus_2.isoformat(), "--to", D_MINUS_1.isoformat()], run_env))
    for night in (d_minus_2, D_MINUS_1):
        assert set(_states(home, night).values()) == {"success"}, night
        assert query(url, "select count(*) from bi.customer_tiers where as_of_date = %s", night) == [(10,)]
    before = bi_tables(url)

    # ---- D: a CRM override names a tier that is not configured ---------------------------
    # customer_tiers does not apply it, and its dbt test tier_is_configured fails
    _write(landing / f"crm/tier_overrides/{D}/overrides.csv", OVERRIDES_HEADER,
           [["C06", "gold", "VIP programme", "Zhao Min", D.isoformat(), ""]])
    res = tierflow(["run", "--date", D.isoformat()], run_env)
    assert res.returncode != 0
    assert "failed tasks: tiers.customer_tiers_model_build" in res.stderr, res.stderr[-3000:]
    assert bi_tables(url) == before  # nothing of D reaches BI

    states = _states(home, D)
    marts = {t: s for t, s in states.items() if t.startswith(("transform.", "tiers."))}
    below = _below("customer_tiers")
    assert below >= {"tier_migrations", "customer_tier_history", "account_alerts"}
    for task, state in marts.items():
        model = task.split(".")[1].removesuffix("_model_build")
        expected = ("failed" if model == "customer_tiers"
                    else "upstream_failed" if model in below else "success")
        assert state == expected, (task, state)
    # every other mart of the tiers group was built and tested in the group's build
    assert sum(s == "success" for t, s in marts.items() if t.startswith("tiers.")) >= 3
    assert states["publish"] == "upstream_failed"
    # the failed test is a quality result of the night, beside the passed ones
    failed = query(url, "select expectation, data_asset from tierflow_meta.data_quality_results"
                        " where suite = 'dbt' and as_of_date = %s and not success", D)
    assert failed == [("tier_is_configured", "customer_tiers")]
    passed = query(url, "select count(*) from tierflow_meta.data_quality_results"
                        " where suite = 'dbt' and as_of_date = %s and success", D)
    assert passed[0][0] > 100

    # ---- D+1: the CRM corrects the override; the night publishes ------------------------
    _write(landing / f"crm/tier_overrides/{D_PLUS_1}/overrides.csv", OVERRIDES_HEADER,
           [["C06", "medium", "VIP programme", "Zhao Min", D.isoformat(), ""]])
    ok(tierflow(["run", "--date", D_PLUS_1.isoformat()], run_env))
    assert query(url, "select value_tier, is_override from bi.customer_tiers"
                      " where customer_id = 'C06' and as_of_date = %s", D_PLUS_1) == [("medium", True)]
    states = _states(home, D_PLUS_1)
    assert set(states.values()) == {"success"}
    # each mart's task says what its mart cost: its share of its group's build
    with sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True) as conn:
        seconds = dict(conn.execute(
            "select task_id, value from xcom where key = 'dbt_node_seconds' and dag_run_id ="
            " (select max(id) from dag_run where dag_id = 'customer_tiering' and date(logical_date) = ?)",
            (D_PLUS_1.isoformat(),)))
    assert set(seconds) == {t for t in states if t.startswith(("transform.", "tiers."))}
    assert all(float(v) > 0 for v in seconds.values()), seconds
