"""The GX column-lookup fix (tierflow.quality.gx_patches): a gate reads no suite's rows into
the task, and a query's columns are the ones GX's own function finds."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import psycopg
import sqlalchemy as sa
from tierflow.quality import gx_patches
from tierflow.settings import MARTS_SCHEMA, sqlalchemy_url

AS_OF = date(2026, 3, 31)


def _thousand_rows(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"create schema {MARTS_SCHEMA}")
        conn.execute(
            f"create table {MARTS_SCHEMA}.big as select i as customer_id, i * 2.5 as revenue,"
            f" 'row ' || i as label, date '{AS_OF}' as as_of_date from generate_series(1, 1000) as i"
        )


def test_a_gate_fetches_no_more_rows_than_a_result_shows(warehouse_url: str, config, tmp_path: Path) -> None:
    """GX used to run a query asset's query bare (to learn its columns), which fetched every row of
    the suite into the task: 1 GB on the first night at 100,000 customers."""
    from tierflow.quality.gates import validate_suites

    _thousand_rows(warehouse_url)
    (tmp_path / "marts").mkdir()
    (tmp_path / "marts" / "big.json").write_text(json.dumps({
        "name": "marts_big",
        "meta": {"tierflow": {"schema": "marts", "table": "big", "as_of_filter": "as_of_date"}},
        "expectations": [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "revenue", "min_value": 0},
             "severity": "critical"},
            # fails on 3 rows: GX lists them (at most 20), it does not fetch the table for it
            {"type": "expect_column_values_to_be_between",
             "kwargs": {"column": "customer_id", "max_value": 997}, "severity": "warning"},
        ],
    }))
    fetched: list[tuple[int, str]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if cursor.description is not None:  # a statement that returned rows
            fetched.append((cursor.rowcount, " ".join(statement.split())[:120]))

    sa.event.listen(sa.Engine, "after_cursor_execute", record)
    try:
        (validation,) = validate_suites(warehouse_url, "marts", AS_OF, config, tmp_path)
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", record)

    between, capped = validation.result.to_json_dict()["results"]
    assert between["success"] and between["result"]["element_count"] == 1000
    assert not capped["success"] and capped["result"]["unexpected_count"] == 3
    assert sorted(capped["result"]["partial_unexpected_list"]) == [998, 999, 1000]
    assert fetched, "no statement recorded: the listener saw nothing"
    largest = max(fetched)
    assert largest[0] <= 20, f"a statement fetched {largest[0]} rows into the task: {largest[1]}"


def test_a_querys_columns_are_those_gxs_own_function_finds(warehouse_url: str) -> None:
    _thousand_rows(warehouse_url)
    gx_patches.apply_gx_patches()
    shipped_fallback = gx_patches.shipped_column_reflection_fallback
    assert shipped_fallback is not None, "GX changed: the patch no longer applies"
    from great_expectations.expectations.metrics import util

    assert util.column_reflection_fallback is gx_patches._query_columns
    engine = sa.create_engine(sqlalchemy_url(warehouse_url))
    try:
        # a suite's query may end in a comment
        query = sa.text(f"select label, customer_id id, revenue from {MARTS_SCHEMA}.big -- all\n"
                        "where revenue > 9 -- the cents")
        patched = gx_patches._query_columns(query, engine.dialect, engine)
        shipped = shipped_fallback(query, engine.dialect, engine)
        assert patched == shipped == [{"name": "label"}, {"name": "id"}, {"name": "revenue"}]
    finally:
        engine.dispose()


def test_applying_twice_keeps_the_first_shipped_function() -> None:
    gx_patches.apply_gx_patches()
    first = gx_patches.shipped_column_reflection_fallback
    gx_patches.apply_gx_patches()
    assert gx_patches.shipped_column_reflection_fallback is first is not None
