"""The incremental tables' keys and not-null columns are enforced by the database.

Staging, the converted intermediates and the order facts only grow; a night writes its delta.
Their uniqueness and not-null checks are a unique index and NOT NULL constraints (the post-hook
``enforce_key``, macros/incremental.sql), checked on every write, where data tests scanned the
whole table every night; the ``key_enforced`` data test checks the catalog. Built here on the
tiny fixture: the guarantees are in place after a build, the database refuses a duplicate key
and a null, a table made before them (a warehouse from an earlier release) gets them on its next
build, and one whose rows break them fails that build naming the key, its rows untouched,
until the build schemas are dropped and built again.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from tiny_fixture import AS_OF, write_tiny_landing

pytestmark = pytest.mark.slow

# table -> (key, the other columns that may never be null), as the models' YAML lists them
ENFORCED = {
    "staging.stg_erp__orders": (["order_id"], ["customer_id", "status", "currency", "order_date"]),
    "staging.stg_erp__order_lines": (["order_id", "line_number"], ["product_id"]),
    "staging.stg_erp__products": (["product_id"], ["standard_cost"]),
    "staging.stg_erp__fx_rates": (["rate_date", "currency"], ["rate_to_base"]),
    "staging.stg_erp__invoices": (
        ["invoice_id"], ["customer_id", "currency", "amount", "invoice_date", "due_date"]),
    "intermediate.int_order_lines_converted": (
        ["order_id", "line_number"], ["fx_rate", "source_load_id", "source_business_date"]),
    "intermediate.int_orders_converted": (
        ["order_id"], ["fx_rate", "shipping_cost", "source_load_id", "source_business_date"]),
    "intermediate.int_invoices_converted": (
        ["invoice_id"],
        ["customer_id", "fx_rate", "amount", "paid_amount", "source_load_id", "source_business_date"]),
    "marts.fct_order_lines": (
        ["order_id", "line_number"],
        ["customer_id", "product_id", "order_date", "fx_rate", "source_load_id", "source_business_date"]),
    "marts.fct_orders": (
        ["order_id"],
        ["customer_id", "order_date", "status", "net_revenue", "counted_revenue", "shipping_cost",
         "source_load_id", "source_business_date"]),
}


def _table(name: str) -> str:
    from tierflow.settings import BUILD_SCHEMA

    layer, table = name.split(".")
    return f"{BUILD_SCHEMA}_{layer}.{table}"


def _log_position(log_file: Path) -> tuple[int, int]:
    """(inode, size) of dbt's log file now ((0, 0) when there is none yet)."""
    if not log_file.exists():
        return 0, 0
    st = log_file.stat()
    return st.st_ino, st.st_size


def _logged_since(log_file: Path, start: tuple[int, int]) -> str:
    """What dbt wrote to its log since ``start``. The log is per process and appends; dbt
    rotates it at 10 MB (the old file becomes dbt.log.1), which a worker that ran many dbt
    invocations before this test reaches: then the rest of the old file and all of the new."""
    inode, size = start
    if inode and log_file.stat().st_ino != inode:
        rotated = log_file.with_name(log_file.name + ".1")
        return (rotated.read_bytes()[size:] + log_file.read_bytes()).decode("utf-8")
    return log_file.read_bytes()[size:].decode("utf-8")


def _build(url: str, cfg, *args: str) -> None:
    from tierflow.transform import run_dbt, run_vars

    selected = ["+fct_order_lines", "+fct_orders", "+int_invoices_converted"]
    run_dbt([*args, "--select", *selected, "--indirect-selection", "cautious",
             "--vars", json.dumps(run_vars(cfg, AS_OF))], url)


def _failing_tests(url: str, cfg, log_file: Path) -> tuple[set[str], str]:
    """Run the tests of `_build`'s selection, which must fail: the failed tests' names and what
    dbt logged meanwhile."""
    from tierflow.transform import DbtError

    start = _log_position(log_file)
    with pytest.raises(DbtError):
        _build(url, cfg, "test")
    log = _logged_since(log_file, start)
    failed = {line.split("Failure in test ")[1].split()[0] for line in log.splitlines()
              if "Failure in test " in line}
    return failed, log


def _unique_keys(conn: psycopg.Connection, table: str) -> list[list[str]]:
    """The column lists of the table's unique indexes, read from pg_indexes' definitions."""
    keys = []
    for (definition,) in conn.execute(
        "select indexdef from pg_indexes where schemaname || '.' || tablename = %s", (table,)
    ):
        if definition.startswith("CREATE UNIQUE INDEX"):
            keys.append([c.strip() for c in definition[definition.rindex("(") + 1:-1].split(",")])
    return keys


def _nullable(conn: psycopg.Connection, table: str) -> set[str]:
    schema, name = table.split(".")
    return {c for (c,) in conn.execute(
        "select column_name from information_schema.columns"
        " where table_schema = %s and table_name = %s and is_nullable = 'YES'", (schema, name))}


def test_the_database_enforces_the_keys_and_not_nulls_of_the_incremental_tables(
    warehouse_url: str, config, tmp_path
) -> None:
    from tierflow.ingest.loader import run_ingest
    from tierflow.settings import BUILD_SCHEMA
    from tierflow.transform import DbtError, _private_target

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    _build(warehouse_url, config, "build")

    lines = _table("marts.fct_order_lines")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name, (key, not_null) in ENFORCED.items():
            table = _table(name)
            assert key in _unique_keys(conn, table), f"{table}: no unique index on {key}"
            assert not _nullable(conn, table) & {*key, *not_null}, table

        # every write is checked: a second version of a line, a line without a customer
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(f"insert into {lines} select * from {lines} limit 1")
        conn.execute(f"create temp table one_line as select * from {lines} limit 1")
        conn.execute("update one_line set line_number = line_number + 1000, customer_id = null")
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute(f"insert into {lines} select * from one_line")

        # a table made before the guarantees (an earlier release's warehouse): no index, nullable
        for index in conn.execute(
            "select schemaname || '.' || indexname from pg_indexes"
            " where schemaname || '.' || tablename = %s and indexdef like 'CREATE UNIQUE INDEX%%'", (lines,)
        ).fetchall():
            conn.execute(f"drop index {index[0]}")
        conn.execute(f"alter table {lines} alter column customer_id drop not null")
        assert _unique_keys(conn, lines) == [] and "customer_id" in _nullable(conn, lines)

    # the catalog test sees it (it can fail) ...
    log_file = _private_target() / "dbt.log"  # this process's dbt log, every invocation's
    failed, log = _failing_tests(warehouse_url, config, log_file)
    assert [name.startswith("key_enforced_fct_order_lines_") for name in failed] == [True]
    assert "Got 2 results" in log  # the index and customer_id's NOT NULL
    # ... and the next build puts both back, checking the rows there once
    _build(warehouse_url, config, "build")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert ["order_id", "line_number"] in _unique_keys(conn, lines)
        assert "customer_id" not in _nullable(conn, lines)
        before = conn.execute(f"select count(*) from {lines}").fetchone()[0]

        # rows that break the key: the build that would enforce it fails and leaves them as they were
        for index in conn.execute(
            "select schemaname || '.' || indexname from pg_indexes"
            " where schemaname || '.' || tablename = %s and indexdef like 'CREATE UNIQUE INDEX%%'", (lines,)
        ).fetchall():
            conn.execute(f"drop index {index[0]}")
        conn.execute(f"insert into {lines} select * from {lines} order by order_id, line_number limit 1")
        duplicated = conn.execute(f"select count(*) from {lines}").fetchone()[0]
        assert duplicated > before
    start = _log_position(log_file)
    with pytest.raises(DbtError):
        _build(warehouse_url, config, "build")
    log = _logged_since(log_file, start)
    assert "could not create unique index" in log and "Key (order_id, line_number)=(" in log
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert conn.execute(f"select count(*) from {lines}").fetchone()[0] == duplicated
        assert _unique_keys(conn, lines) == []

        # the remedy docs/operations.md gives: drop the build schemas, the next build starts over
        for layer in ("staging", "intermediate", "marts"):
            conn.execute(f"drop schema {BUILD_SCHEMA}_{layer} cascade")
    _build(warehouse_url, config, "build")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert conn.execute(f"select count(*) from {lines}").fetchone()[0] == before
        assert ["order_id", "line_number"] in _unique_keys(conn, lines)


def _row_rules(conn: psycopg.Connection, table: str) -> dict[str, bool]:
    """The table's row-rule CHECK constraints (macros/row_rules.sql): name -> validated."""
    return dict(conn.execute(
        "select conname::text, convalidated from pg_constraint"
        " where conrelid = %s::regclass and contype = 'c' and conname::text like 'row\\_rule\\_%%'", (table,)
    ).fetchall())


def _rules_in_yaml() -> dict[str, set[str]]:
    """model -> the rule names of its row_rule_enforced tests, read from the parsed project."""
    from tierflow.transform import MANIFEST_PATH

    rules: dict[str, set[str]] = {}
    for node in json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))["nodes"].values():
        meta = node.get("test_metadata") or {}
        if meta.get("name") == "row_rule_enforced":
            rules.setdefault(node["attached_node"].split(".")[-1], set()).add(meta["kwargs"]["rule"])
    return rules


def test_the_database_enforces_the_row_rules_of_the_incremental_tables(
    warehouse_url: str, config, tmp_path
) -> None:
    """Row rules (the facts' sums, the known statuses) are CHECK constraints: the database
    refuses a row that breaks one; a missing constraint fails the catalog test and the next
    build adds it, checking the rows there once; a rule no test asks for any more is dropped;
    rows that break a rule fail the build that would add it, naming the rule, rows untouched."""
    from tierflow.ingest.loader import run_ingest
    from tierflow.transform import DbtError, _private_target, ensure_manifest

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    ensure_manifest(warehouse_url)
    _build(warehouse_url, config, "build")
    expected = _rules_in_yaml()
    assert expected == {
        "fct_order_lines": {"net_revenue", "gross_margin", "status"},
        "fct_orders": {"counted_revenue", "net_revenue", "status"},
        "stg_erp__orders": {"status"}, "stg_erp__invoices": {"status"},
    }

    lines = _table("marts.fct_order_lines")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name, rules in expected.items():
            layer = "marts" if name.startswith("fct_") else "staging"
            present = _row_rules(conn, _table(f"{layer}.{name}"))
            assert {n.removeprefix("row_rule_").rsplit("_", 1)[0] for n in present} == rules, name
            assert all(present.values()), name

        # every write is checked: rounded parts that do not add up, an unknown status; a
        # gross margin without cogs is outside its rule (applies_to: cogs is not null)
        for change in ("net_revenue = net_revenue + 0.01", "status = 'lost'",
                       "gross_margin = gross_margin + 1"):
            conn.execute(f"create temp table one_line as select * from {lines}"
                         " where cogs is not null limit 1")
            conn.execute(f"update one_line set line_number = line_number + 1000, {change}")
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute(f"insert into {lines} select * from one_line")
            conn.execute("drop table one_line")
        conn.execute(f"create temp table one_line as select * from {lines} limit 1")
        conn.execute("update one_line set line_number = line_number + 1000, cogs = null,"
                     " gross_margin = gross_margin + 1")
        conn.execute(f"insert into {lines} select * from one_line")
        conn.execute(f"delete from {lines} where line_number >= 1000")

        # the net_revenue rule goes missing; a stale rule (an expression since changed) is there
        (net_rule,) = [n for n in _row_rules(conn, lines) if n.startswith("row_rule_net_revenue_")]
        conn.execute(f"alter table {lines} drop constraint {net_rule}")
        conn.execute(f"alter table {lines} add constraint row_rule_net_revenue_00000000 check (true)")

    # the catalog test sees it (it can fail) ...
    log_file = _private_target() / "dbt.log"
    failed, _ = _failing_tests(warehouse_url, config, log_file)
    assert len(failed) == 1 and next(iter(failed)).startswith("row_rule_enforced_fct_order_lines_"), failed
    # ... and the next build puts it back and drops the stale one
    _build(warehouse_url, config, "build")
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        present = _row_rules(conn, lines)
        assert net_rule in present and all(present.values())
        assert "row_rule_net_revenue_00000000" not in present

        # rows that break a rule: the build that would add it fails, naming it, rows as they were
        conn.execute(f"alter table {lines} drop constraint {net_rule}")
        conn.execute(f"update {lines} set net_revenue = net_revenue + 0.01,"
                     " gross_margin = gross_margin + 0.01"
                     f" where (order_id, line_number) in (select order_id, line_number from {lines} limit 1)")
        rows = conn.execute(f"select * from {lines} order by order_id, line_number").fetchall()
    start = _log_position(log_file)
    with pytest.raises(DbtError):
        _build(warehouse_url, config, "build")
    log = _logged_since(log_file, start)
    assert f'check constraint "{net_rule}"' in log and "is violated by some row" in log, log[-3000:]
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert conn.execute(f"select * from {lines} order by order_id, line_number").fetchall() == rows
        assert net_rule not in _row_rules(conn, lines)
