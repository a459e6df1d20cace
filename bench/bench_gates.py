"""Where the marts gate's seconds go, with the build schema as dbt leaves it and analyzed (issue 11).

On a warehouse kept by ``bench/bench_pipeline.py --keep DIR``: the build schema's marts are
written anew first (``create table as``, as dbt writes them; autovacuum off on them meanwhile
so it cannot analyze them behind our back; same rows), then the marts gate's suites run
twice, each timed on its own, with GX's context set-up and the Data Docs build:

1. as dbt left the tables (never analyzed), as the gate ran before it analyzed them;
2. after ``analyze_unanalyzed_tables`` (what ``run_gate`` now does first), timed too.

Each of the gate's statements is cancelled after ``--timeout`` seconds (30 by default; GX
then records the expectation as failed), so a quadratic plan costs the run minutes, not hours;
the failed expectations are counted.

Results are not recorded and nothing is published; the Data Docs go to a temporary folder.
Autovacuum is switched back on for the tables at the end.

    .venv/bin/python bench/bench_gates.py --keep /tmp/bench --date 2026-11-19
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]


class SuiteTimes(logging.Handler):
    """Collects the gate's own timing lines (``suite X: N expectations in S s``)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def rewrite_tables(url: str, schema: str) -> list[str]:
    """Write every table of ``schema`` anew (same rows, indexes and comments), unanalyzed, as
    dbt's table materialization leaves it; a table other objects depend on is left as it is."""
    rewritten = []
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [t for (t,) in conn.execute(
            "select tablename from pg_tables where schemaname = %s order by 1", (schema,))]
        for t in tables:
            old, new = sql.Identifier(schema, t), sql.Identifier(schema, f"{t}__bench")
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("create table {} (like {} including all)"
                                         " with (autovacuum_enabled = off)").format(new, old))
                    conn.execute(sql.SQL("insert into {} select * from {}").format(new, old))
                    conn.execute(sql.SQL("drop table {}").format(old))
                    conn.execute(sql.SQL("alter table {} rename to {}").format(new, sql.Identifier(t)))
            except psycopg.errors.DependentObjectsStillExist:
                print(f"{schema}.{t}: left as it is (other objects depend on it)")
            else:
                rewritten.append(t)
    return rewritten


def run_suites(url: str, as_of: date, label: str, timeout: int) -> float:
    from tierflow.config import load_config
    from tierflow.quality.docs import build_data_docs
    from tierflow.quality.gates import check_results, validate_suites
    from tierflow.settings import load_settings

    handler = SuiteTimes()
    gates_log = logging.getLogger("tierflow.quality.gates")
    gates_log.addHandler(handler)
    gates_log.setLevel(logging.INFO)
    started = time.monotonic()
    # each statement cancelled after ``timeout`` s (GX records it as a failed expectation)
    capped = f"{url}{'&' if '?' in url else '?'}options=-c%20statement_timeout%3D{timeout * 1000}"
    validations = validate_suites(capped, "marts", as_of, load_config(load_settings().config_path))
    checked = time.monotonic() - started
    gates_log.removeHandler(handler)
    failed = [r for r in check_results(validations) if not r.success]
    docs_started = time.monotonic()
    build_data_docs(Path(tempfile.mkdtemp(prefix="tierflow-gate-docs-")), f"bench-{label}", validations)
    docs = time.monotonic() - docs_started
    print(f"\n== marts gate, {label}: suites {checked:.2f}s (incl. GX set-up), Data Docs {docs:.2f}s,"
          f" {len(failed)} failed expectations")
    for line in handler.lines:
        print("   ", line)
    return checked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", required=True, help="the folder bench_pipeline.py --keep wrote")
    ap.add_argument("--date", required=True, type=date.fromisoformat,
                    help="the as-of date the build schema holds")
    ap.add_argument("--timeout", type=int, default=30,
                    help="seconds before one of the gate's statements is cancelled (a failed expectation)")
    args = ap.parse_args()

    os.environ["TIERFLOW_HOME"] = str(Path(args.keep) / "home")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    sys.path.insert(0, str(ROOT / "plugins"))
    from tierflow.quality.gates import analyze_unanalyzed_tables
    from tierflow.settings import MARTS_SCHEMA, load_settings
    from tierflow.warehouse import EmbeddedWarehouse

    warehouse = EmbeddedWarehouse(load_settings().warehouse_dir)
    warehouse.start()
    url = warehouse.url()
    tables = rewrite_tables(url, MARTS_SCHEMA)
    try:
        before = run_suites(url, args.date, "tables as dbt wrote them (never analyzed)", args.timeout)
        started = time.monotonic()
        analyzed = analyze_unanalyzed_tables(url, MARTS_SCHEMA)
        took = time.monotonic() - started
        print(f"\nanalyze_unanalyzed_tables: {len(analyzed)} of {len(tables)} tables in {took:.2f}s")
        after = run_suites(url, args.date, "tables analyzed", args.timeout)
        print(f"\nmarts gate suites: {before:.2f}s never analyzed, {took + after:.2f}s analyzed"
              f" ({took:.2f}s of it ANALYZE)")
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for t in tables:
                conn.execute(sql.SQL("alter table {} reset (autovacuum_enabled)")
                             .format(sql.Identifier(MARTS_SCHEMA, t)))


if __name__ == "__main__":
    main()
