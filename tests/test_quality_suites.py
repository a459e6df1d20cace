"""The raw suites on a real ingest of the tiny fixture: the load audit reconciles with what
landed in raw and in rejects, and the checks fail when it does not (or when an override
ends before it starts)."""

from __future__ import annotations

from pathlib import Path

import psycopg
from tiny_fixture import AS_OF, write_tiny_landing


def _failed(results) -> set[tuple[str, str]]:
    return {(r.suite, r.column or r.expectation) for r in results if not r.success}


def test_raw_suites_reconcile_the_load_audit(warehouse_url: str, config, tmp_path: Path) -> None:
    from tierflow.ingest.loader import run_ingest
    from tierflow.quality.gates import validate

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    assert _failed(validate(warehouse_url, "raw", AS_OF, config)) == set()

    with psycopg.connect(warehouse_url) as conn:
        # one file claims a row more than raw holds (rows_in moves too: the audit's own
        # CHECK keeps rows_in = loaded + rejected), another a reject fewer than recorded
        conn.execute(
            "update tierflow_meta.load_audit set rows_in = rows_in + 1, rows_loaded = rows_loaded + 1"
            " where file_path = 'crm/customers/2024-11-30/customers.csv'"
        )
        conn.execute(
            "update tierflow_meta.load_audit set rows_in = rows_in - 1, rows_rejected = rows_rejected - 1"
            " where file_path = 'erp/order_lines/2026-03-31/order_lines.csv'"
        )
        # an override that ends before it starts (its file, and so its count, made up for it)
        (load_id,) = conn.execute(
            "insert into tierflow_meta.load_audit (file_path, system, entity, business_date, checksum,"
            " size_bytes, rows_in, rows_loaded, rows_rejected, status)"
            " values ('crm/tier_overrides/2026-03-31/o.csv', 'crm', 'tier_overrides', %s, 'x', 1, 1, 1, 0,"
            " 'loaded') returning load_id",
            (AS_OF,),
        ).fetchone()
        conn.execute(
            "insert into raw.crm__tier_overrides (customer_id, value_tier, reason, set_by, valid_from,"
            " valid_to, _load_id, _line_number, _business_date)"
            " values ('C01', 'high', 'key account', 'Li Lei', '2026-03-01', '2026-02-01', %s, 2, %s)",
            (load_id, AS_OF),
        )
    assert _failed(validate(warehouse_url, "raw", AS_OF, config)) == {
        ("raw_load_audit_reconciliation", "files_loaded_mismatch"),
        ("raw_load_audit_reconciliation", "files_rejected_mismatch"),
        ("raw_crm_tier_overrides", "expect_column_pair_values_a_to_be_greater_than_b"),
    }


def test_raw_gate_checks_the_loads_no_gate_has_passed(warehouse_url: str, config, tmp_path: Path) -> None:
    """The raw gate reads the night's new loads, not all history: a load it passed is not
    read again; a load it refused stays unchecked and is checked again the next night."""
    import pytest
    from tierflow.ingest.loader import run_ingest
    from tierflow.quality.gates import QualityGateFailed, run_gate

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    first = run_gate(warehouse_url, "raw", AS_OF, config, "night-1")
    assert first["failed_critical"] == 0
    assert first["loads_checked"] == 6  # customers, products, 2 x orders, 2 x order lines

    def bad_override(conn: psycopg.Connection, file_name: str) -> int:
        """A load whose one override ends before it starts (a critical raw check refuses it)."""
        (load_id,) = conn.execute(
            "insert into tierflow_meta.load_audit (file_path, system, entity, business_date, checksum,"
            " size_bytes, rows_in, rows_loaded, rows_rejected, status)"
            " values (%s, 'crm', 'tier_overrides', %s, 'x', 1, 1, 1, 0, 'loaded') returning load_id",
            (f"crm/tier_overrides/2026-03-31/{file_name}", AS_OF),
        ).fetchone()
        conn.execute(
            "insert into raw.crm__tier_overrides (customer_id, value_tier, reason, set_by, valid_from,"
            " valid_to, _load_id, _line_number, _business_date)"
            " values ('C01', 'high', 'key account', 'Li Lei', '2026-03-01', '2026-02-01', %s, 2, %s)",
            (load_id, AS_OF),
        )
        return load_id

    with psycopg.connect(warehouse_url) as conn:
        # tamper with a load the gate already passed: it is not read again
        conn.execute(
            "update raw.erp__orders set currency = 'yuan' where _load_id = (select min(load_id)"
            " from tierflow_meta.load_audit where entity = 'orders')"
        )
    second = run_gate(warehouse_url, "raw", AS_OF, config, "night-2")
    assert (second["failed_critical"], second["loads_checked"]) == (0, 0)

    with psycopg.connect(warehouse_url) as conn:
        load_id = bad_override(conn, "bad.csv")
    for night in ("night-3", "night-4"):  # refused, and refused again: it was never passed
        with pytest.raises(QualityGateFailed, match="raw_crm_tier_overrides"):
            run_gate(warehouse_url, "raw", AS_OF, config, night)
        with psycopg.connect(warehouse_url) as conn:
            assert conn.execute(
                "select raw_validated_at from tierflow_meta.load_audit where load_id = %s", (load_id,)
            ).fetchone() == (None,)


def test_raw_gate_refuses_a_night_without_the_minimum_input(warehouse_url: str, config) -> None:
    """No customers, products, orders or order lines known on the as-of date: nothing to tier."""
    from tierflow.ingest.schema import ensure_schema
    from tierflow.quality.gates import validate

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
    assert _failed(validate(warehouse_url, "raw", AS_OF, config)) == {
        ("raw_minimum_input", column)
        for column in ("has_customers", "has_products", "has_orders", "has_order_lines")
    }


def test_the_gate_analyzes_tables_written_since_their_statistics(warehouse_url: str) -> None:
    """A mart dbt has just written (never analyzed) gets statistics before its suites run; one
    whose rows barely changed since its last ANALYZE is left to autovacuum."""
    from tierflow.quality.gates import analyze_unanalyzed_tables

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create schema build_marts")
        for t in ("fresh", "settled"):
            conn.execute(f"create table build_marts.{t} as select i as customer_id,"
                         " date '2026-03-31' as as_of_date from generate_series(1, 1000) as i")
        # this session's write counters reach pg_stat_user_tables at once (as a dbt session's do when
        # it ends), not after the ANALYZE that they precede
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("analyze build_marts.settled")
        conn.execute("insert into build_marts.settled values (1001, date '2026-03-31')")  # 0.1% changed
        conn.execute("select pg_stat_force_next_flush()")
        assert analyze_unanalyzed_tables(warehouse_url, "build_marts") == ["fresh"]
        (plan,) = conn.execute(
            "explain (format json) select * from build_marts.fresh where as_of_date = date '2026-03-31'"
        ).fetchone()
        assert plan[0]["Plan"]["Plan Rows"] == 1000  # not 0.5% of the table: the planner knows the date
    assert analyze_unanalyzed_tables(warehouse_url, "build_marts") == []


def test_suites_run_side_by_side_give_the_results_one_at_a_time_gives(
    warehouse_url: str, config, tmp_path: Path
) -> None:
    """validate_suites runs suites on several threads, each with a GX context of its own: the
    same results, in the suites' order, as one suite after the other, failures included."""
    import json
    import threading

    import sqlalchemy as sa
    from tierflow.quality.gates import check_results, validate_suites
    from tierflow.settings import MARTS_SCHEMA

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute(f"create schema {MARTS_SCHEMA}")
        conn.execute(
            f"create table {MARTS_SCHEMA}.numbers as select i as n, i % 7 as bucket,"
            f" date '{AS_OF}' as as_of_date from generate_series(1, 500) as i"
        )
    (tmp_path / "marts").mkdir()
    for k in range(6):
        query = f"select n, bucket from {{schema}}.numbers where as_of_date = :as_of_date and n > {k * 50}"
        (tmp_path / "marts" / f"s{k}.json").write_text(json.dumps({
            "name": f"marts_s{k}",
            "meta": {"tierflow": {"schema": "marts", "query": query}},
            "expectations": [
                {"type": "expect_column_max_to_be_between",
                 "kwargs": {"column": "n", "max_value": 100 * k + 300}, "severity": "critical"},
                {"type": "expect_column_values_to_be_between",
                 "kwargs": {"column": "bucket", "min_value": 0, "max_value": 5}, "severity": "warning"},
            ],
        }))
    threads: set[str] = set()

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if "numbers" in statement:
            threads.add(threading.current_thread().name)

    sa.event.listen(sa.Engine, "after_cursor_execute", record)
    try:
        serial, side_by_side = (
            check_results(validate_suites(warehouse_url, "marts", AS_OF, config, tmp_path, workers=n))
            for n in (1, 3)
        )
    finally:
        sa.event.remove(sa.Engine, "after_cursor_execute", record)

    def rows(results):
        return [(r.suite, r.expectation, r.column, r.success, r.observed_value) for r in results]

    assert rows(side_by_side) == rows(serial)
    assert [r.suite for r in serial[::2]] == [f"marts_s{k}" for k in range(6)]
    # the largest n is 500 in every suite: at most 100 k + 300 from suite 2 on; bucket 6
    # (n = 6, 13, ...) is in every suite
    assert [r.success for r in serial] == [False, False, False, False] + [True, False] * 4
    assert len({t for t in threads if t.startswith("gx-suite")}) > 1, threads
