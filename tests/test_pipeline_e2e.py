"""End to end: the real DAG under ``dag.test()`` (through ``tierflow run``), real dbt via
Cosmos, real GX, on the ten-customer fixture whose every expected value is worked out by
hand below (see tiny_fixture.py for the orders).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from tiny_fixture import AS_OF, write_tiny_landing

ROOT = Path(__file__).resolve().parents[1]
TIERFLOW = [sys.executable, "-m", "tierflow.cli"]

pytestmark = pytest.mark.e2e


def tierflow(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TIERFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


@pytest.fixture
def run_env(tmp_path: Path, warehouse_url: str) -> dict[str, str]:
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("AIRFLOW", "TIERFLOW")):
            del env[key]
    env.update(
        # Airflow metadata, migrated once per test worker (workers must not share one SQLite)
        TIERFLOW_HOME=str(ROOT / ".tierflow" / f"test-home-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"),
        TIERFLOW_WAREHOUSE_URL=warehouse_url,
        TIERFLOW_LANDING=str(landing),
        TIERFLOW_EXPORTS=str(tmp_path / "exports"),
    )
    return env


def query(url: str, q: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def published(url: str) -> dict[str, list[tuple]]:
    tables = ["fct_orders", "dim_customers", "customer_rfm", "customer_tiers", "allocation_plan_tier",
              "allocation_plan_customer", "customer_tier_history", "tier_migrations", "account_alerts",
              "account_group_tiers"]
    return {t: query(url, f"select * from bi.{t} order by 1, 2") for t in tables}


# Hand-computed expectations (as-of 2026-03-31, window 365 days, 8 customers with a
# completed order in the window). Scores = ceil(5 * cume_dist), ties share the higher one:
# with 8 distinct values the k-th smallest gets ceil(5k/8) = 1,2,2,3,4,4,5,5.
#   recency_days (desc = worst first): C08 274, C07 90, C06 59, C05 31, C04 21, C03 11, C02 6, C01 1
#   frequency: C03=C07=1 (k=2 -> 2), C06=C08=2 (k=4 -> 3), C04 3 -> 4, C02 4 -> 4, C01 5 -> 5, C05 6 -> 5
#   monetary: C07 100, C06 400, C08 700, C04 900, C05 1200, C02 1600, C01 2500, C03 3000
EXPECTED_RFM = {
    #      recency, frequency, monetary, r, f, m, segment
    "C01": (1, 5, Decimal("2500"), 5, 5, 5, "Champions"),
    "C02": (6, 4, Decimal("1600"), 5, 4, 4, "Champions"),
    "C03": (11, 1, Decimal("3000"), 4, 2, 5, "Potential Loyalists"),
    "C04": (21, 3, Decimal("900"), 4, 4, 3, "Loyal Customers"),
    "C05": (31, 6, Decimal("1200"), 3, 5, 4, "Loyal Customers"),
    "C06": (59, 2, Decimal("400"), 2, 3, 2, "At Risk"),
    "C07": (90, 1, Decimal("100"), 2, 2, 1, "Hibernating"),
    "C08": (274, 2, Decimal("700"), 1, 3, 2, "At Risk"),
    "C09": (485, 0, Decimal("0"), None, None, None, "Lost"),
    "C10": (None, 0, Decimal("0"), None, None, None, "Lost"),
}
# value score = .35 pp + .25 f + .25 profit + .15 r, components = cume_dist k/8. Profit is
# the net contribution after cost-to-serve: the fixture has no tickets, activities or
# invoices, so it is the gross margin less 20 per shipped (completed or returned) order:
#   C07 40-20 = 20, C06 160-40 = 120, C08 280-40 = 240, C03 300-20 = 280 (unit_cost 45),
#   C04 360-80 = 280 (3 completed + 1 returned), C05 480-120 = 360, C02 640-80 = 560,
#   C01 1000-100 = 900 -> cume_dist 1, 2, 3, 5, 5, 6, 7, 8 (C03 and C04 tie)
#   C01: (.35*7 + .25*7 + .25*8 + .15*8)/8 = 7.40/8 = .925
#   C02: (.35*6 + .25*6 + .25*7 + .15*7)/8 = 6.40/8 = .800
#   C05: (.35*5 + .25*8 + .25*6 + .15*4)/8 = 5.85/8 = .73125
#   C03: (.35*8 + .25*2 + .25*5 + .15*6)/8 = 5.45/8 = .68125
#   C04: (.35*4 + .25*5 + .25*5 + .15*5)/8 = 4.65/8 = .58125
#   C08: (.35*3 + .25*4 + .25*3 + .15*1)/8 = 2.95/8 = .36875
#   C06: (.35*2 + .25*4 + .25*2 + .15*3)/8 = 2.65/8 = .33125
#   C07: (.35*1 + .25*2 + .25*1 + .15*2)/8 = 1.40/8 = .175
#   C09, C10: 0
# position = customers with a strictly higher score / 10: top 20% high, to 50% medium.
EXPECTED_TIERS = {
    #      value_score, value_tier, purchasing_power, frequency, profit
    "C01": (0.925, "high", "high", "high", "high"),
    "C02": (0.8, "high", "medium", "medium", "high"),
    "C05": (0.73125, "medium", "medium", "high", "medium"),
    "C03": (0.68125, "medium", "high", "low", "medium"),
    "C04": (0.58125, "medium", "medium", "medium", "medium"),
    "C08": (0.36875, "low", "low", "medium", "low"),
    "C06": (0.33125, "low", "low", "medium", "low"),
    "C07": (0.175, "low", "low", "low", "low"),
    "C09": (0.0, "low", "low", "low", "low"),
    "C10": (0.0, "low", "low", "low", "low"),
}


def test_tiny_fixture_end_to_end_rerun_then_a_failed_night(run_env: dict[str, str], tmp_path: Path) -> None:
    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    res = tierflow(["run", "--date", AS_OF.isoformat()], run_env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    # the summary names tiers, allocation, rejects and exports
    assert "value tiers:" in res.stdout and "allocation plan 2026-03" in res.stdout
    assert "negative quantity" in res.stdout

    rfm = {
        r[0]: r[1:]
        for r in query(
            url,
            "select customer_id, recency_days, frequency, monetary, r_score, f_score, m_score,"
            " rfm_segment from bi.customer_rfm where as_of_date = %s",
            AS_OF,
        )
    }
    assert rfm == EXPECTED_RFM

    # BTYD summary (lifetimes definitions) for three customers, by hand:
    btyd = {
        r[0]: r[1:]
        for r in query(
            url,
            "select customer_id, frequency_repeat, recency_btyd_days, t_days, avg_repeat_value"
            " from bi.customer_rfm where as_of_date = %s and customer_id in ('C01', 'C05', 'C09')",
            AS_OF,
        )
    }
    c01_first, c01_last = date(2025, 12, 1), date(2026, 3, 30)
    assert btyd["C01"] == (4, (c01_last - c01_first).days, (AS_OF - c01_first).days, 500)
    c05_first, c05_last = date(2025, 9, 28), date(2026, 2, 28)
    assert btyd["C05"] == (5, (c05_last - c05_first).days, (AS_OF - c05_first).days, 200)
    assert btyd["C09"] == (0, 0, (AS_OF - date(2024, 12, 1)).days, 0)

    tiers = {
        r[0]: (float(r[1]), *r[2:])
        for r in query(
            url,
            "select customer_id, value_score, value_tier, purchasing_power_tier, frequency_tier,"
            " profit_tier from bi.customer_tiers where as_of_date = %s",
            AS_OF,
        )
    }
    assert tiers.keys() == EXPECTED_TIERS.keys()
    for cid, (score, *labels) in EXPECTED_TIERS.items():
        assert tiers[cid][0] == pytest.approx(score, abs=1e-4), cid
        assert list(tiers[cid][1:]) == labels, cid

    # revenue counts completed orders only: 2500+1600+3000+900+1200+400+100+700 (+100 for C09)
    (total,) = query(url, "select sum(counted_revenue) from bi.fct_orders")[0]
    assert total == Decimal("10500")

    plan = query(
        url,
        "select value_tier, customers, allocated_budget, service_level from bi.allocation_plan_tier"
        " where as_of_date = %s order by tier_rank",
        AS_OF,
    )
    assert plan == [
        ("high", 2, Decimal("600000.00"), "dedicated account manager"),
        ("medium", 3, Decimal("300000.00"), "pooled sales team"),
        ("low", 5, Decimal("100000.00"), "self-service"),
    ]
    # every check recorded, none failed
    (checks, failed) = query(
        url, "select count(*), count(*) filter (where not success) from bi.data_quality_results"
    )[0]
    assert checks > 20 and failed == 0
    # the customer plan adds up to the tier plan, and so to the budget, to the cent
    per_tier = query(
        url,
        "select value_tier, count(*), sum(allocated_budget), count(primary_action)"
        " from bi.allocation_plan_customer where as_of_date = %s group by 1 order by 1",
        AS_OF,
    )
    assert per_tier == [("high", 2, Decimal("600000.00"), 2), ("low", 5, Decimal("100000.00"), 5),
                        ("medium", 3, Decimal("300000.00"), 3)]
    # a first run: every customer is new in the migrations and in the history
    migrations = query(
        url,
        "select from_tier, to_tier, customers from bi.tier_migrations"
        " where as_of_date = %s and customers > 0 order by to_tier",
        AS_OF,
    )
    assert migrations == [("new", "high", 2), ("new", "low", 5), ("new", "medium", 3)]
    assert query(url, "select count(*), count(*) filter (where tier_change = 'new')"
                      " from bi.customer_tier_history where as_of_date = %s", AS_OF) == [(10, 10)]

    exports = tmp_path / "exports" / AS_OF.isoformat()
    for name in ("customer_tiers.csv", "customer_tiers.parquet", "allocation_plan_tier.csv",
                 "allocation_plan_customer.parquet", "data-docs/index.html", "dbt-docs/index.html"):
        assert (exports / name).stat().st_size > 0, name
    crm = (exports / "crm_import.csv").read_text(encoding="utf-8-sig").splitlines()
    assert crm[0] == "customer_id,value_tier,rfm_segment,service_level,primary_action"
    expected_crm = [[cid, labels[1]] for cid, labels in sorted(EXPECTED_TIERS.items())]
    assert [line.split(",")[:2] for line in crm[1:]] == expected_crm
    report = (exports / "report.html").read_text(encoding="utf-8")
    for chart in ("tier-mix", "whale-curve", "allocation", "actions", "quality"):
        assert f'data-chart="{chart}"' in report, chart
    assert 'href="data-docs/index.html"' in report and 'href="dbt-docs/index.html"' in report

    assert_bi_role_is_read_only(url)

    first = published(url)
    res = tierflow(["run", "--date", AS_OF.isoformat()], run_env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    assert published(url) == first
    assert "0 file(s) loaded, 6 already loaded" in res.stdout

    # a file that cannot be read fails the next night, which publishes nothing
    assert_unreadable_file_fails_the_run_and_keeps_published_tables(run_env)
    # so does a failed critical quality check; the next good run publishes normally
    assert_failed_critical_check_blocks_publish(run_env, tmp_path)


def assert_bi_role_is_read_only(url: str) -> None:
    """A BI login granted the read-only role reads `bi` and can do nothing else."""
    import uuid
    from urllib.parse import urlsplit

    from psycopg import errors, sql

    user, password = f"bi_reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("create role {} login password {} in role tierflow_bi").format(
                sql.Identifier(user), sql.Literal(password)
            )
        )
    parts = urlsplit(url)
    bi_url = parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}").geturl()
    with psycopg.connect(bi_url, autocommit=True) as bi:
        assert bi.execute("select count(*) from bi.customer_tiers").fetchone()[0] == 10
        for statement in (
            "insert into bi.customer_tiers (customer_id) values ('X')",
            "update bi.customer_tiers set value_tier = 'high'",
            "create table bi.mine (x int)",
            "select count(*) from raw.erp__orders",
            "select count(*) from tierflow_meta.load_audit",
        ):
            with pytest.raises(errors.InsufficientPrivilege):
                bi.execute(statement)


def assert_failed_critical_check_blocks_publish(run_env: dict[str, str], tmp_path: Path) -> None:
    import json
    import shutil

    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    before = published(url)
    suites = tmp_path / "expectations"
    shutil.copytree(ROOT / "expectations", suites)
    tiers = suites / "marts" / "customer_tiers.json"
    suite = json.loads(tiers.read_text(encoding="utf-8"))
    # ten customers are tiered; a (wrong) promise of at most five must stop the publish
    suite["expectations"].append({"type": "expect_table_row_count_to_be_between",
                                  "kwargs": {"max_value": 5}, "severity": "critical"})
    tiers.write_text(json.dumps(suite), encoding="utf-8")
    # a different as-of date, so publishing it would visibly change bi
    res = tierflow(["run", "--date", "2026-03-30"], {**run_env, "TIERFLOW_EXPECTATIONS": str(suites)})
    assert res.returncode != 0
    assert "failed tasks: validate_marts" in res.stderr
    assert "critical marts check(s) failed" in res.stderr
    assert "marts_customer_tiers: expect_table_row_count_to_be_between" in res.stderr
    assert published(url) == before
    (failed,) = query(url, "select count(*) from tierflow_meta.data_quality_results"
                      " where not success and severity = 'critical' and as_of_date = '2026-03-30'")[0]
    assert failed == 1

    res = tierflow(["run", "--date", "2026-03-30"], run_env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    dates = query(url, "select distinct as_of_date from bi.customer_tiers order by 1")
    assert dates == [(date(2026, 3, 30),), (AS_OF,)]


def assert_unreadable_file_fails_the_run_and_keeps_published_tables(run_env: dict[str, str]) -> None:
    url = run_env["TIERFLOW_WAREHOUSE_URL"]
    before = published(url)
    landing = Path(run_env["TIERFLOW_LANDING"])
    bad = landing / "erp/orders/2026-04-01/orders.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("order_id,order_date,status\nX1,2026-04-01,completed\n", encoding="utf-8")
    res = tierflow(["run", "--date", "2026-04-01"], run_env)
    assert res.returncode != 0
    assert "erp/orders/2026-04-01/orders.csv" in res.stderr
    assert "required column(s) missing: customer_id" in res.stderr
    assert "failed tasks: ingest" in res.stderr
    assert published(url) == before
    (status, error) = query(
        url, "select status, error from tierflow_meta.load_audit where file_path = %s",
        "erp/orders/2026-04-01/orders.csv",
    )[0]
    assert status == "failed" and "customer_id" in error


EXTERNAL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture
def external_db() -> str:
    """A throwaway database on this machine's PostgreSQL (trust auth, no password)."""
    import uuid
    from urllib.parse import urlsplit

    from psycopg import sql

    try:
        admin = psycopg.connect(EXTERNAL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 to test an external warehouse: {exc}")
    db = f"tierflow_ext_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    yield urlsplit(EXTERNAL)._replace(path=f"/{db}").geturl()
    with psycopg.connect(EXTERNAL, autocommit=True) as admin:
        admin.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(db)))


def test_external_warehouse_without_password(run_env: dict[str, str], external_db: str) -> None:
    """TIERFLOW_WAREHOUSE_URL points every step (ingest, dbt via Cosmos, GX, publish) elsewhere."""
    env = {**run_env, "TIERFLOW_WAREHOUSE_URL": external_db}
    res = tierflow(["run", "--date", AS_OF.isoformat()], env)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    rows = query(
        external_db,
        "select customer_id, value_tier from bi.customer_tiers where as_of_date = %s order by 1",
        AS_OF,
    )
    assert rows == [(cid, labels[1]) for cid, labels in sorted(EXPECTED_TIERS.items())]
    assert "embedded" not in res.stdout  # nothing embedded was started
