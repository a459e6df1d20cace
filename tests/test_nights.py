"""Nights in sequence, as a data engineer meets them in the first week: a good night, a failed
night, a good night; a rerun of an old date after newer ones; a run killed in the middle of
the transform; a night whose dbt test fails inside its group's one dbt build, then the night
that corrects the data; history from years ago. All through `tierflow run` (the real DAG under
``dag.test()``, real dbt via Cosmos, real GX) on the ten-customer fixture.

The fixture's orders arrive in two date folders, 2025-12-31 and 2026-03-31 (tiny_fixture.py),
so a night before 2026-03-31 knows only the 2025 orders: a run that read later deliveries
would show it at once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from test_pipeline_e2e import EXPECTED_RFM, EXPECTED_TIERS, ROOT, TIERFLOW, query, tierflow
from tiny_fixture import AS_OF, _write, write_tiny_landing

pytestmark = pytest.mark.e2e

D_MINUS_1, D, D_PLUS_1 = date(2026, 3, 29), date(2026, 3, 30), AS_OF  # AS_OF = 2026-03-31
OVERRIDES_HEADER = ["customer_id", "value_tier", "reason", "set_by", "valid_from", "valid_to"]


def bi_tables(url: str) -> dict[str, list[tuple]]:
    """Every table of the published schema, every row, in a stable order."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'bi' order by 1"
        )]
        # sorted by the values alone: some tables have no unique leading columns to order by
        return {t: sorted(conn.execute(f"select * from bi.{t}").fetchall(), key=repr) for t in tables}


def date_rows(url: str, as_of: date) -> dict[str, list[tuple]]:
    """The rows of ``as_of`` in every published table that has an as_of_date column."""
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "select table_name from information_schema.columns where table_schema = 'bi'"
            " and column_name = 'as_of_date' and table_name <> 'data_quality_results' order by 1"
        )]
        return {
            t: sorted(conn.execute(f"select * from bi.{t} where as_of_date = %s", (as_of,)).fetchall(),
                      key=repr)
            for t in tables
        }


def failing_suites(tmp_path: Path) -> Path:
    """The shipped suites plus one critical check that any night fails (ten customers are
    tiered; a promise of at most five cannot hold)."""
    suites = tmp_path / "failing-expectations"
    shutil.copytree(ROOT / "expectations", suites)
    path = suites / "marts" / "customer_tiers.json"
    suite = json.loads(path.read_text(encoding="utf-8"))
    suite["expectations"].append({"type": "expect_table_row_count_to_be_between",
                                  "kwargs": {"max_value": 5}, "severity": "critical"})
    path.write_text(json.dumps(suite), encoding="utf-8")
    return suites


def ok(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    return res.stdout


@pytest.fixture
def run_env(tmp_path: Path, warehouse_url: str) -> dict[str, str]:
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW"))}
    env.update(
        TIERFLOW_HOME=str(ROOT / ".tierflow" / f"test-home-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"),
        TIERFLOW_WAREHOUSE_URL=warehouse_url,
        TIERFLOW_LANDING=str(landing),
        TIERFLOW_EXPORTS=str(tmp_path / "exports"),
    )
    return env


def test_failed_nights_reruns_and_a_killed_run(run_env: dict[str, str], tmp_path: Path) -> None:
    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    landing = Path(run_env["TIERFLOW_LANDING"])
    home = Path(run_env["TIERFLOW_HOME"])

    # ---- D-1: a good night ------------------------------------------------------------
    out = ok(tierflow(["run", "--date", D_MINUS_1.isoformat()], run_env))
    # the fixture has no invoices, tickets or activities: the summary says what that costs
    assert f"degraded: no erp/invoices delivered up to {D_MINUS_1}: credit risk is 'unknown'" in out
    assert f"degraded: no service/tickets delivered up to {D_MINUS_1}" in out
    assert f"degraded: no crm/activities delivered up to {D_MINUS_1}" in out
    report = (tmp_path / "exports" / D_MINUS_1.isoformat() / "report.html").read_text(encoding="utf-8")
    assert f"Degraded: no erp/invoices delivered up to {D_MINUS_1}: credit risk is &#x27;unknown" in report
    after_d_minus_1 = bi_tables(url)
    first_d_minus_1 = date_rows(url, D_MINUS_1)
    # D-1 knows only the 2025 orders (folder 2025-12-31): C01's last is 2025-12-01
    (c01,) = query(url, "select recency_days, frequency from bi.customer_rfm"
                        " where customer_id = 'C01' and as_of_date = %s", D_MINUS_1)
    assert c01 == ((D_MINUS_1 - date(2025, 12, 1)).days, 1)
    assert query(url, "select max(order_date) from bi.fct_orders") == [(date(2025, 12, 31),)]

    # ---- D: a critical check fails; nothing of D reaches BI ---------------------------
    failing = {**run_env, "TIERFLOW_EXPECTATIONS": str(failing_suites(tmp_path))}
    res = tierflow(["run", "--date", D.isoformat()], failing)
    assert res.returncode != 0
    assert "failed tasks: validate_marts" in res.stderr and "nothing was published" in res.stderr
    assert bi_tables(url) == after_d_minus_1

    # ---- D+1: a good night; D is nowhere, D+1's previous tiers are D-1's ----------------
    ok(tierflow(["run", "--date", D_PLUS_1.isoformat()], run_env))
    for table, rows in date_rows(url, D).items():
        assert rows == [], f"bi.{table} holds rows of the failed night {D}"
    previous = dict(query(url, "select customer_id, previous_value_tier from bi.customer_tiers"
                               " where as_of_date = %s", D_PLUS_1))
    d_minus_1_tiers = dict(query(url, "select customer_id, value_tier from bi.customer_tiers"
                                      " where as_of_date = %s", D_MINUS_1))
    assert previous == d_minus_1_tiers and len(previous) == 10
    # D+1 sees every order (the 2026-03-31 folder too): its RFM is the hand-computed one
    rfm = {r[0]: r[1:] for r in query(
        url, "select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, rfm_segment"
             " from bi.customer_rfm where as_of_date = %s", D_PLUS_1)}
    assert rfm == EXPECTED_RFM
    (total,) = query(url, "select sum(counted_revenue) from bi.fct_orders")[0]
    assert total == Decimal("10500")
    # dbt's tests are quality results too, beside GX's: every one of the night passed
    dbt_tests = query(url, "select count(*), count(*) filter (where not success),"
                           " count(*) filter (where data_asset = 'customer_tiers'"
                           " and expectation = 'not_null')"
                           " from bi.data_quality_results where suite = 'dbt' and as_of_date = %s", D_PLUS_1)
    assert dbt_tests[0][0] > 100 and dbt_tests[0][1] == 0 and dbt_tests[0][2] > 5, dbt_tests
    after_d_plus_1 = bi_tables(url)

    # ---- D-1 again, after D+1: exactly what D-1 published, and the order facts stay D+1's
    out = ok(tierflow(["run", "--date", D_MINUS_1.isoformat()], run_env))
    assert date_rows(url, D_MINUS_1) == first_d_minus_1
    for table in ("fct_orders", "fct_order_lines", "dim_customers"):
        assert bi_tables(url)[table] == after_d_plus_1[table], table
    # D-1's tiers are as before and nothing was loaded late: no later date differs
    assert "later published date(s) now differ" not in out

    # ---- a run killed (SIGKILL) in the middle of the transform leaves BI as it was -------
    before_kill = bi_tables(url)
    killed_at = kill_during_transform(run_env, date(2026, 4, 1))
    assert killed_at.startswith("transform."), killed_at
    assert bi_tables(url) == before_kill
    # ---- the killed date again, with the next one in the same process (as `make run` runs its
    # dates); the next date's CRM override names a tier that is not configured: customer_tiers
    # does not apply it and its dbt test tier_is_configured fails, inside its group's one dbt
    # build (tierflow.dbt_group_build)
    killed_date, bad, fixed = date(2026, 4, 1), date(2026, 4, 2), date(2026, 4, 3)
    _write(landing / f"crm/tier_overrides/{bad}/overrides.csv", OVERRIDES_HEADER,
           [["C06", "gold", "VIP programme", "Zhao Min", bad.isoformat(), ""]])
    res = tierflow(["run", "--from", killed_date.isoformat(), "--to", bad.isoformat()], run_env)
    assert res.returncode != 0
    assert "failed tasks: tiers.customer_tiers_model_build" in res.stderr, res.stderr[-3000:]
    # the killed date succeeded and published
    assert set(_states(home, killed_date).values()) == {"success"}
    assert query(url, "select count(*) from bi.customer_tiers where as_of_date = %s", killed_date) == [(10,)]
    # the failing mart's task fails as its own build would, exactly the marts below it in the
    # dbt graph are not built, every other mart of both groups is built and tested
    states = _states(home, bad)
    marts = {t: s for t, s in states.items() if t.startswith(("transform.", "tiers."))}
    below = _below("customer_tiers")
    assert below >= {"tier_migrations", "customer_tier_history", "account_alerts"}
    for task, state in marts.items():
        model = task.split(".")[1].removesuffix("_model_build")
        expected = ("failed" if model == "customer_tiers"
                    else "upstream_failed" if model in below else "success")
        assert state == expected, (task, state)
    assert sum(s == "success" for t, s in marts.items() if t.startswith("tiers.")) >= 3
    assert states["publish"] == "upstream_failed"
    for table, rows in date_rows(url, bad).items():
        assert rows == [], f"bi.{table} holds rows of the failed night {bad}"
    # the failed test is a quality result of the night, beside the passed ones
    failed = query(url, "select expectation, data_asset from tierflow_meta.data_quality_results"
                        " where suite = 'dbt' and as_of_date = %s and not success", bad)
    assert failed == [("tier_is_configured", "customer_tiers")]
    passed = query(url, "select count(*) from tierflow_meta.data_quality_results"
                        " where suite = 'dbt' and as_of_date = %s and success", bad)
    assert passed[0][0] > 100

    # ---- the CRM corrects the override; the next night publishes it -------------------------
    _write(landing / f"crm/tier_overrides/{fixed}/overrides.csv", OVERRIDES_HEADER,
           [["C06", "medium", "VIP programme", "Zhao Min", bad.isoformat(), ""]])
    ok(tierflow(["run", "--date", fixed.isoformat()], run_env))
    assert query(url, "select value_tier, is_override from bi.customer_tiers"
                      " where customer_id = 'C06' and as_of_date = %s", fixed) == [("medium", True)]
    states = _states(home, fixed)
    assert set(states.values()) == {"success"}
    # each mart's task says what its mart cost: its share of its group's build
    with sqlite3.connect(f"file:{home / 'airflow' / 'airflow.db'}?mode=ro", uri=True) as conn:
        seconds = dict(conn.execute(
            "select task_id, value from xcom where key = 'dbt_node_seconds' and dag_run_id ="
            " (select max(id) from dag_run where dag_id = 'customer_tiering' and date(logical_date) = ?)",
            (fixed.isoformat(),)))
    assert set(seconds) == {t for t in states if t.startswith(("transform.", "tiers."))}
    assert all(float(v) > 0 for v in seconds.values()), seconds

    # the publish writes only the order facts built since its last one (build_number): after a
    # failed night, a rerun of an older date (which took orders out of the build), a killed run
    # and a failed dbt test, bi's order facts are still the build's, row for row
    for table in ("fct_orders", "fct_order_lines"):
        published = query(url, f"select * from bi.{table} order by 1, 2")
        assert published == query(url, f"select * from build_marts.{table} order by 1, 2"), table
        assert published and all(row[-1] is not None for row in published), table  # build_number
    assert date_rows(url, D_MINUS_1) == first_d_minus_1


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


def kill_during_transform(env: dict[str, str], as_of: date, timeout: float = 600) -> str:
    """Start `tierflow run` for ``as_of``, SIGKILL its whole process group as soon as the
    Airflow metadata shows a transform task running; return that task's id."""
    proc = subprocess.Popen(
        [*TIERFLOW, "run", "--date", as_of.isoformat()], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    db = Path(env["TIERFLOW_HOME"]) / "airflow" / "airflow.db"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"tierflow run ended (exit {proc.returncode}) before a transform task"
            running = _running_transform_task(db, as_of)
            if running:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return running
            time.sleep(0.2)
        raise AssertionError(f"no transform task ran within {timeout}s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def _running_transform_task(db: Path, as_of: date) -> str | None:
    if not db.exists():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            row = conn.execute(
                "select ti.task_id from task_instance ti join dag_run dr on dr.run_id = ti.run_id"
                " and dr.dag_id = ti.dag_id where ti.dag_id = 'customer_tiering'"
                " and ti.task_id like 'transform.%' and ti.state = 'running'"
                " and date(dr.logical_date) = ? limit 1",
                (as_of.isoformat(),),
            ).fetchone()
    except sqlite3.OperationalError:  # locked or not migrated yet: look again
        return None
    return row[0] if row else None


def test_history_from_years_ago_runs_for_real(run_env: dict[str, str], tmp_path: Path) -> None:
    """The fixture moved 28 years back (every date, folders included; 1996 and 2024 are both
    leap years, so every day difference is the same): 1998-03-31 gives exactly the
    hand-computed RFM and tiers of 2026-03-31. A date before the DAG's start date is refused."""
    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    landing = Path(run_env["TIERFLOW_LANDING"])
    old = tmp_path / "landing-1998"
    for path in sorted(landing.rglob("*.csv")):
        relative = str(path.relative_to(landing))
        target = old / _back_28_years(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_back_28_years(path.read_text(encoding="utf-8")), encoding="utf-8")
    env = {**run_env, "TIERFLOW_LANDING": str(old)}
    as_of = date(1998, 3, 31)

    ok(tierflow(["run", "--date", as_of.isoformat()], env))
    rfm = {r[0]: r[1:] for r in query(
        url, "select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score, rfm_segment"
             " from bi.customer_rfm where as_of_date = %s", as_of)}
    assert rfm == EXPECTED_RFM
    tiers = dict(query(url, "select customer_id, value_tier from bi.customer_tiers"
                            " where as_of_date = %s", as_of))
    assert tiers == {cid: value_tier for cid, (_, value_tier, *_) in EXPECTED_TIERS.items()}

    res = tierflow(["run", "--date", "1899-12-31"], env)
    assert res.returncode != 0
    assert "before the customer_tiering DAG's start date 1900-01-01" in res.stderr
    # and were such a run started anyway, Airflow's empty "successful" run is a failure
    script = (
        "from datetime import date\n"
        "from tierflow import cli\n"
        "from tierflow.settings import load_settings\n"
        "settings = load_settings(); url = settings.warehouse_url()\n"
        "cli.prepare_airflow(settings, url); dag = cli.load_dag()\n"
        "try:\n"
        "    cli.run_one(dag, date(1899, 12, 31), url)\n"
        "except cli.RunIncomplete as exc:\n"
        "    print('refused:', exc)\n"
    )
    res = subprocess.run([TIERFLOW[0], "-c", script], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert "refused: the DAG run for 1899-12-31 ended without running" in res.stdout, res.stderr[-3000:]


def _back_28_years(text: str) -> str:
    for year in range(2024, 2028):
        text = text.replace(f"{year}-", f"{year - 28}-")
    return text
