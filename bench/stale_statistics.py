"""Plans of two statements that read tables written in bulk, before and after ANALYZE (issue 11).

On a warehouse kept by ``bench/bench_pipeline.py --keep DIR`` (after at least night 1), in a
scratch schema ``bench_stats`` of that server, dropped at the end:

- ``account_alerts``: its compiled SELECT (``dbt compile``, the night's vars) over copies of the
  build-schema marts it reads, written as dbt writes them (``create table as``, never analyzed;
  autovacuum off on the copies so it cannot analyze them behind our back), then the same after
  ``analyze``. The rows of both runs are compared with each other and with the kept
  ``build_marts.account_alerts``.
- the report's CRM export (``report/exports.py``: ``customer_tiers`` left join
  ``allocation_plan_customer`` on customer and date, for one date), on copies of the two ``bi``
  tables (or, ``--crm-from build_marts``, of the night's rows before a publish) as a second
  night's publish leaves them: the night-1 date analyzed (autovacuum did that), the
  next date's rows inserted by ``publish`` (here: the same rows one day later), then the same
  after ``analyze`` (what ``publish`` now does).

Each statement is printed with ``EXPLAIN (ANALYZE)``'s plan and its seconds; a statement that
runs longer than ``--timeout`` is cancelled and reported as such, with its plain EXPLAIN.

    .venv/bin/python bench/stale_statistics.py --keep /tmp/bench --date 2026-11-19
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = "bench_stats"
ALERT_INPUTS = ("customer_tiers", "customer_rfm", "customer_lifecycle", "customer_credit_risk",
                "dim_customers", "customer_health")
# the statement of tierflow.report.exports's CRM import file, as it runs
CRM_EXPORT = """
select t.customer_id, t.value_tier, t.rfm_segment, c.service_level, c.primary_action
from {schema}.customer_tiers as t
left join {schema}.allocation_plan_customer as c
    on c.customer_id = t.customer_id and c.as_of_date = t.as_of_date
where t.as_of_date = %s
order by t.customer_id collate "C"
"""


def explain(conn: psycopg.Connection, label: str, query: str, params: tuple, timeout: int) -> float | None:
    """Print EXPLAIN ANALYZE's plan and the seconds; None (and the plain plan) on a timeout."""
    conn.execute(f"set statement_timeout = '{timeout}s'")
    started = time.monotonic()
    try:
        plan = conn.execute("explain (analyze, costs, timing off) " + query, params or None).fetchall()
    except psycopg.errors.QueryCanceled:
        plan, took = conn.execute("explain " + query, params or None).fetchall(), None
        print(f"\n== {label}: cancelled after {timeout} s; its plan (EXPLAIN, not run):")
    else:
        took = time.monotonic() - started
        print(f"\n== {label}: {took:.2f} s")
    finally:
        conn.execute("reset statement_timeout")
    for (line,) in plan:
        print("   ", line)
    return took


def digest(conn: psycopg.Connection, query: str, params: tuple = ()) -> tuple[int, str]:
    """(rows, md5 of every row's text in row order) of a query."""
    md5, n = hashlib.md5(), 0
    for row in conn.execute(query, params or None):
        md5.update(repr(row).encode())
        n += 1
    return n, md5.hexdigest()


def compiled_account_alerts(url: str, as_of: date) -> str:
    from tierflow.config import load_config
    from tierflow.settings import load_settings
    from tierflow.transform import run_dbt, run_vars

    target = Path(tempfile.mkdtemp(prefix="tierflow-stats-"))
    night_vars = run_vars(load_config(load_settings().config_path), as_of)
    run_dbt(["compile", "--select", "account_alerts", "--vars", json.dumps(night_vars)], url, target)
    return next(target.glob("compiled/**/account_alerts.sql")).read_text()


def account_alerts(conn: psycopg.Connection, url: str, as_of: date, timeout: int) -> None:
    select = compiled_account_alerts(url, as_of)
    for table in ALERT_INPUTS:
        conn.execute(f"create table {SCRATCH}.{table} with (autovacuum_enabled = off)"
                     f" as select * from build_marts.{table}")
    scratch = re.sub(r'"build_marts"\.', f'"{SCRATCH}".', select)
    if scratch.count(f'"{SCRATCH}".') != len(ALERT_INPUTS):
        raise SystemExit(f"the compiled account_alerts reads other tables than {ALERT_INPUTS}:\n{select}")
    ordered = f"select * from ({scratch}) as a order by alert_id"
    before = explain(conn, "account_alerts, inputs never analyzed", scratch, (), timeout)
    rows_before = digest(conn, ordered) if before is not None else None
    conn.execute(f"analyze {', '.join(f'{SCRATCH}.{t}' for t in ALERT_INPUTS)}")
    after = explain(conn, "account_alerts, inputs analyzed", scratch, (), timeout)
    rows_after = digest(conn, ordered)
    kept = digest(conn, "select * from build_marts.account_alerts order by alert_id")
    print(f"\naccount_alerts rows (count, md5): never analyzed {rows_before}, analyzed {rows_after},"
          f" build_marts.account_alerts {kept}")
    print(f"account_alerts seconds: never analyzed {before}, analyzed {after}")
    if rows_after != kept or rows_before not in (None, kept):
        raise SystemExit("account_alerts: the rows differ")


def crm_export(conn: psycopg.Connection, source: str, as_of: date, timeout: int) -> None:
    (published,) = conn.execute(f"select max(as_of_date) from {source}.customer_tiers where as_of_date <= %s",
                                (as_of,)).fetchone()
    nxt = published + timedelta(days=1)
    for table in ("customer_tiers", "allocation_plan_customer"):
        conn.execute(f"create table {SCRATCH}.{table} (like {source}.{table})"
                     " with (autovacuum_enabled = off)")
        conn.execute(f"create index on {SCRATCH}.{table} (as_of_date)")  # as publish creates it
        conn.execute(f"insert into {SCRATCH}.{table} select * from {source}.{table} where as_of_date = %s",
                     (published,))
        conn.execute(f"analyze {SCRATCH}.{table}")
        # the next night's rows, as publish inserts them after the previous night was analyzed
        conn.execute(f"create temporary table next_night as select * from {source}.{table}"
                     " where as_of_date = %s", (published,))
        conn.execute("update next_night set as_of_date = %s", (nxt,))
        conn.execute(f"insert into {SCRATCH}.{table} select * from next_night")
        conn.execute("drop table next_night")
    query = CRM_EXPORT.format(schema=SCRATCH)
    before = explain(conn, f"CRM export for {nxt}, its date not in the statistics", query, (nxt,), timeout)
    rows_before = digest(conn, query, (nxt,)) if before is not None else None
    conn.execute(f"analyze {SCRATCH}.customer_tiers, {SCRATCH}.allocation_plan_customer")
    after = explain(conn, f"CRM export for {nxt}, analyzed", query, (nxt,), timeout)
    rows_after = digest(conn, query, (nxt,))
    print(f"\nCRM export rows (count, md5): not analyzed {rows_before}, analyzed {rows_after}")
    print(f"CRM export seconds: not analyzed {before}, analyzed {after}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", required=True, help="the folder bench_pipeline.py --keep wrote")
    ap.add_argument("--date", required=True, type=date.fromisoformat,
                    help="the as-of date the build schema holds")
    ap.add_argument("--timeout", type=int, default=600, help="seconds before a statement is cancelled")
    ap.add_argument("--only", choices=("account_alerts", "crm_export"))
    ap.add_argument("--crm-from", default="bi", help="the schema whose customer_tiers and allocation_plan"
                    "_customer the CRM export's copies start from (build_marts before a publish)")
    args = ap.parse_args()

    os.environ["TIERFLOW_HOME"] = str(Path(args.keep) / "home")
    sys.path.insert(0, str(ROOT / "plugins"))
    from tierflow.settings import load_settings
    from tierflow.warehouse import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(load_settings().warehouse_dir)
    warehouse.start()
    url = warehouse.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"drop schema if exists {SCRATCH} cascade")
        conn.execute(f"create schema {SCRATCH}")
        try:
            if args.only in (None, "account_alerts"):
                account_alerts(conn, url, args.date, args.timeout)
            if args.only in (None, "crm_export"):
                conn.execute(f"drop schema {SCRATCH} cascade")
                conn.execute(f"create schema {SCRATCH}")
                crm_export(conn, args.crm_from, args.date, args.timeout)
        finally:
            conn.execute(f"drop schema if exists {SCRATCH} cascade")


if __name__ == "__main__":
    main()
