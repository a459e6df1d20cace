"""The plans of every incremental model's statements on a big warehouse (issue 11 item 2).

On a warehouse kept by ``bench/bench_pipeline.py --keep DIR`` (after its nights; the 50,000-
customer demo holds about a million orders and two million order lines), for the as-of date
``--date`` (the night after the kept one: is_incremental() is true, as in a real night):

1. ``dbt compile`` of each incremental model (the nine staging tables, the three converted
   intermediates, ``fct_order_lines``, ``fct_orders``) with the night's vars;
2. in one transaction, rolled back at the end, each model's statements as dbt's
   ``delete+insert`` strategy runs them: ``create temp table ... as`` the compiled SELECT (run,
   timed: the temp table is left unanalyzed, as dbt leaves it), then the ``delete ... where
   (<key>) in (select distinct <key> from <temp>)`` and the ``insert``, and the post-hook's
   ``delete ... where <date folder column> > <date>``; each model then reads the ones before it
   as the night leaves them;
3. each statement's plan (``EXPLAIN (FORMAT JSON)``, estimated rows) checked for the shapes
   that make a statement quadratic in the table sizes: a plain (non-hashed) SubPlan run per
   row of a big outer input, or a Nested Loop whose inner side is rescanned (not an index
   lookup) for a big outer input. Each plan is printed; the last line says ``quadratic plans:
   none`` or lists them, and the exit status is 1 when there is one.

    .venv/bin/python bench/explain_incremental.py --keep /tmp/bench --date 2026-11-21
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
# every incremental model in build order: (schema suffix, unique key, date folder column)
STAGING = {
    "stg_crm__customers": "customer_id", "stg_crm__tier_overrides": "customer_id, valid_from",
    "stg_crm__activities": "activity_id", "stg_service__tickets": "ticket_id",
    "stg_erp__products": "product_id", "stg_erp__fx_rates": "rate_date, currency",
    "stg_erp__orders": "order_id", "stg_erp__order_lines": "order_id, line_number",
    "stg_erp__invoices": "invoice_id",
}
MODELS = {
    **{m: ("staging", key, "business_date") for m, key in STAGING.items()},
    "int_orders_converted": ("intermediate", "order_id", "source_business_date"),
    "int_order_lines_converted": ("intermediate", "order_id", "source_business_date"),
    "int_invoices_converted": ("intermediate", "invoice_id", "source_business_date"),
    "fct_order_lines": ("marts", "order_id", "source_business_date"),
    "fct_orders": ("marts", "order_id", "source_business_date"),
}
# rows x rows above which a per-row rescan is a quadratic statement, not a small lookup
QUADRATIC = 100_000_000
INDEX_LOOKUPS = {"Index Scan", "Index Only Scan", "Bitmap Heap Scan"}


def compiled(url: str, as_of: date) -> dict[str, str]:
    """The compiled SELECT of each incremental model for ``as_of`` (dbt compile, the night's vars)."""
    from tierflow.config import load_config
    from tierflow.settings import load_settings
    from tierflow.transform import run_dbt, run_vars

    target = Path(tempfile.mkdtemp(prefix="tierflow-explain-"))
    night_vars = run_vars(load_config(load_settings().config_path), as_of)
    run_dbt(["compile", "--quiet", "--select", *MODELS, "--vars", json.dumps(night_vars)], url, target)
    return {m: next(target.glob(f"compiled/**/{m}.sql")).read_text() for m in MODELS}


def quadratic_nodes(plan: dict, path: str = "") -> list[str]:
    """The nodes of an EXPLAIN (FORMAT JSON) plan that rescan a big input once per big input row."""
    found = []
    node_type = plan["Node Type"]
    here = f"{path}/{node_type}"
    children = plan.get("Plans", [])
    conditions = " ".join(str(plan.get(k, "")) for k in ("Filter", "Index Cond", "Join Filter", "Hash Cond",
                                                          "Recheck Cond", "One-Time Filter"))
    for child in children:
        if child.get("Parent Relationship") != "SubPlan":
            continue
        name = child.get("Subplan Name", "")
        hashed = f"hashed {name}" in conditions
        executions = plan.get("Plan Rows", 0)
        pairs = executions * child.get("Plan Rows", 0)
        if not hashed and child["Node Type"] not in INDEX_LOOKUPS and pairs > QUADRATIC:
            found.append(f"{here}: plain {name} ({child['Node Type']}, {child.get('Plan Rows')} rows) "
                         f"run for each of ~{executions} rows")
    if node_type == "Nested Loop" and len(children) == 2:
        outer, inner = children
        pairs = outer.get("Plan Rows", 0) * inner.get("Plan Rows", 0)
        if inner["Node Type"] not in INDEX_LOOKUPS and pairs > QUADRATIC:
            found.append(f"{here}: nested loop, {outer['Node Type']} (~{outer.get('Plan Rows')} rows) x "
                         f"rescanned {inner['Node Type']} (~{inner.get('Plan Rows')} rows)")
    for child in children:
        found += quadratic_nodes(child, here)
    return found


def explain(conn: psycopg.Connection, label: str, statement: str) -> list[str]:
    """Print the statement's plan (text) and return its quadratic nodes (from the JSON plan)."""
    (plan,) = conn.execute("explain (format json) " + statement).fetchone()
    text = conn.execute("explain " + statement).fetchall()
    print(f"\n== {label}")
    for (line,) in text:
        print("   ", line)
    return [f"{label}: {q}" for q in quadratic_nodes(plan[0]["Plan"])]


def check(url: str, build_schema: str, as_of: date) -> list[str]:
    selects = compiled(url, as_of)
    problems: list[str] = []
    with psycopg.connect(url) as conn:  # one transaction, rolled back: the kept tables stay as they are
        for model, (layer, key, date_column) in MODELS.items():
            table = f"{build_schema}_{layer}.{model}"
            (rows,) = conn.execute(f"select count(*) from {table}").fetchone()
            print(f"\n#### {model} ({rows:,} rows in {table}), as of {as_of}")
            tmp = f"{model}__explain_tmp"
            problems += explain(conn, f"{model}: the model's SELECT", selects[model])
            started = time.monotonic()
            conn.execute(f"create temp table {tmp} as {selects[model]}")
            (rebuilt,) = conn.execute(f"select count(*) from (select distinct {key} from {tmp}) as k"
                                      ).fetchone()
            took = time.monotonic() - started
            print(f"\n   (ran it into a temp table: {took:.1f} s, {rebuilt:,} keys ({key}) to rebuild)")
            described = conn.execute(f"select * from {tmp} limit 0").description
            columns = ", ".join(f'"{c.name}"' for c in described)
            delete = (f"delete from {table} as DBT_INTERNAL_DEST where ({key}) in "
                      f"(select distinct {key} from {tmp} as DBT_INTERNAL_SOURCE)")
            insert = f"insert into {table} ({columns}) (select {columns} from {tmp})"
            post_hook = f"delete from {table} where {date_column} > '{as_of.isoformat()}'::date"
            problems += explain(conn, f"{model}: delete+insert's delete", delete)
            problems += explain(conn, f"{model}: delete+insert's insert", insert)
            problems += explain(conn, f"{model}: post-hook delete", post_hook)
            # the next model reads this one as the night left it
            conn.execute(delete)
            conn.execute(insert)
        conn.rollback()
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--keep", help="the folder bench_pipeline.py --keep wrote")
    where.add_argument("--url", help="or a warehouse's postgresql:// URL (TIERFLOW_WAREHOUSE_URL)")
    ap.add_argument("--date", required=True, type=date.fromisoformat,
                    help="the as-of date of the night to plan (after the kept one)")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT / "plugins"))
    from tierflow.settings import BUILD_SCHEMA, load_settings
    from tierflow.warehouse import EmbeddedWarehouse

    if args.keep:
        os.environ["TIERFLOW_HOME"] = str(Path(args.keep) / "home")
        warehouse = EmbeddedWarehouse(load_settings().warehouse_dir)
        warehouse.start()
        url = warehouse.url()
    else:
        url = args.url
    problems = check(url, BUILD_SCHEMA, args.date)
    print()
    if problems:
        print("quadratic plans:")
        for p in problems:
            print("  -", p)
        raise SystemExit(1)
    print("quadratic plans: none")


if __name__ == "__main__":
    main()
