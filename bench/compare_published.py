"""Snapshot every table of the published schema, and compare two snapshots.

Issue 15 promises that a re-housing of the code changes no published byte. This script is how
that is checked: run ``make run`` on the old code, ``dump`` a snapshot, run ``make run`` on the
new code from a fresh warehouse, ``dump`` again, ``compare``.

    python bench/compare_published.py dump before.json.gz
    python bench/compare_published.py compare before.json.gz after.json.gz

A snapshot holds, per table, its columns with their types and every row as PostgreSQL's own
text output (``COPY ... TO STDOUT``), rows sorted. Columns that record *when* or *in which run*
something happened differ between any two runs of the same code (``published_at``, a run id);
they are listed in ``RUN_METADATA`` and left out of the rows, and the comparison says so.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import psycopg
from psycopg import sql

# Columns whose value is the wall clock or the Airflow run of the night, not a result: two runs
# of the same code on the same data differ in them and in nothing else. (Every other date or
# timestamp in ``bi`` is business data, e.g. dim_customers.updated_at from the CRM, and is compared.)
RUN_METADATA = {
    "data_quality_results": frozenset({"run_id", "checked_at"}),
    "clv_model_fits": frozenset({"fit_seconds"}),  # how long the fit took (docs/operations.md)
}


def snapshot(url: str, schema: str) -> dict:
    tables: dict[str, dict] = {}
    with psycopg.connect(url) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s "
                "and table_type in ('BASE TABLE', 'VIEW') order by table_name",
                (schema,),
            )
        ]
        for name in names:
            columns = conn.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = %s and table_name = %s order by ordinal_position",
                (schema, name),
            ).fetchall()
            ignored = RUN_METADATA.get(name, frozenset())
            kept = [c for c, _ in columns if c not in ignored]
            rows: list[str] = []
            if kept:
                query = sql.SQL("copy (select {cols} from {tbl}) to stdout").format(
                    cols=sql.SQL(", ").join(map(sql.Identifier, kept)),
                    tbl=sql.Identifier(schema, name),
                )
                with conn.cursor().copy(query) as copy:
                    buffer = b"".join(bytes(chunk) for chunk in copy)
                rows = sorted(buffer.decode().splitlines())
            tables[name] = {
                "columns": [list(c) for c in columns],
                "ignored": [c for c, _ in columns if c in ignored],
                "rows": rows,
            }
    return tables


def compare(before: dict, after: dict) -> list[str]:
    problems = []
    for name in sorted(set(before) | set(after)):
        if name not in after:
            problems.append(f"{name}: only before")
            continue
        if name not in before:
            problems.append(f"{name}: only after")
            continue
        b, a = before[name], after[name]
        if b["columns"] != a["columns"]:
            problems.append(f"{name}: columns differ: {b['columns']} -> {a['columns']}")
            continue
        if b["rows"] != a["rows"]:
            gone = sorted(set(b["rows"]) - set(a["rows"]))[:3]
            new = sorted(set(a["rows"]) - set(b["rows"]))[:3]
            only_before = len(set(b["rows"]) - set(a["rows"]))
            only_after = len(set(a["rows"]) - set(b["rows"]))
            problems.append(
                f"{name}: rows differ ({len(b['rows'])} before, {len(a['rows'])} after; "
                f"{only_before} only before, {only_after} only after); "
                f"e.g. before only {gone}, after only {new}"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dump = sub.add_parser("dump", help="snapshot the published schema into FILE (.json.gz)")
    dump.add_argument("file", type=Path)
    dump.add_argument("--url", help="warehouse URL (default: the configured warehouse)")
    cmp_ = sub.add_parser("compare", help="compare two snapshots; exit 1 when they differ")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)

    if args.command == "dump":
        from tierflow.settings import load_settings

        settings = load_settings()
        url = args.url or settings.warehouse_url()
        tables = snapshot(url, settings.publish_schema)
        with gzip.open(args.file, "wt") as out:
            json.dump(tables, out)
        total = sum(len(t["rows"]) for t in tables.values())
        print(f"{len(tables)} tables, {total:,} rows of {settings.publish_schema} -> {args.file}")
        return 0

    before = json.load(gzip.open(args.before, "rt"))
    after = json.load(gzip.open(args.after, "rt"))
    for name in sorted(before):
        t = before[name]
        ignored = f" (run metadata not compared: {', '.join(t['ignored'])})" if t["ignored"] else ""
        print(f"{name}: {len(t['rows']):,} rows{ignored}")
    problems = compare(before, after)
    for problem in problems:
        print("DIFFERS", problem)
    total = sum(len(t["rows"]) for t in before.values())
    print(f"{'identical' if not problems else 'DIFFERENT'}: {len(before)} tables, {total:,} rows")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
