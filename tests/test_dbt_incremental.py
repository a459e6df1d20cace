"""Incremental staging and order facts: a late correction to an old order is applied by the
next run.

The tiny fixture is ingested and built for 2026-03-31; then a later date folder
re-delivers two old orders (C05-1 from 2025-09-28 with a new quantity and price, C07-1
from 2025-12-31 now returned). The incremental build must update exactly those orders'
fact rows, leave every other row as it was, and agree with a full-refresh build. The
staging tables (incremental too, macros/staging.sql) must hold, after every build, exactly
what a full refresh of the same date gives.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from tiny_fixture import AS_OF, LINES_HEADER, ORDERS_HEADER, _write, write_tiny_landing

pytestmark = pytest.mark.slow

LATE_AS_OF = date(2026, 4, 2)
ORDER_COLUMNS = (
    "order_id, customer_id, order_date, status, line_count, is_returned, gross_revenue, "
    "discount, net_revenue, cogs, gross_margin, counted_revenue, shipping_cost, source_load_id"
)
LINE_COLUMNS = (
    "order_id, line_number, customer_id, product_id, status, quantity, unit_price, "
    "gross_revenue, discount, net_revenue, cogs, gross_margin, source_load_id"
)


def _rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def _facts(url: str) -> tuple[dict, dict]:
    from tierflow.settings import MARTS_SCHEMA

    orders = _rows(url, f"select {ORDER_COLUMNS} from {MARTS_SCHEMA}.fct_orders")
    lines = _rows(url, f"select {LINE_COLUMNS} from {MARTS_SCHEMA}.fct_order_lines")
    return {r[0]: r for r in orders}, {(r[0], r[1]): r for r in lines}


def _staged(url: str) -> dict[str, list[tuple]]:
    """Every row of every staging and intermediate table, sorted: what the incremental
    staging and converted intermediates hold."""
    from tierflow.settings import BUILD_SCHEMA

    schemas = [f"{BUILD_SCHEMA}_staging", f"{BUILD_SCHEMA}_intermediate"]
    with psycopg.connect(url) as conn:
        tables = [t for (t,) in conn.execute(
            "select table_name from information_schema.tables where table_schema = any(%s)"
            " order by table_name", (schemas,))]
        return {t: sorted(conn.execute(f"select * from {schemas[t.startswith('int_')]}.{t}").fetchall(),
                          key=repr)
                for t in tables}


def _build(url: str, cfg, as_of: date, *extra: str) -> None:
    """dbt build of the order facts, everything they read and their tests: what these tests
    check (a whole night over the same sequences is tests/test_nights.py's)."""
    from tierflow.transform import run_dbt, run_vars

    facts = ["--select", "+fct_order_lines", "+fct_orders", "--indirect-selection", "cautious"]
    run_dbt(["build", *facts, *extra, "--vars", json.dumps(run_vars(cfg, as_of))], url)


def test_late_correction_of_old_orders(warehouse_url: str, config, tmp_path: Path) -> None:
    from tierflow.ingest.loader import run_ingest

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    _build(warehouse_url, config, AS_OF)
    orders_before, lines_before = _facts(warehouse_url)
    staged_before = _staged(warehouse_url)

    # as first delivered: C05-1 is P1 20 x 10 (standard cost 6), C07-1 P1 10 x 10
    assert orders_before["C05-1"][6:12] == (200, 0, 200, 120, 80, 200)
    assert orders_before["C07-1"][3] == "completed"

    # two days later the ERP re-delivers both, corrected
    folder = "2026-04-02"
    _write(
        landing / f"erp/orders/{folder}/orders.csv",
        ORDERS_HEADER,
        [
            ["C05-1", "C05", "2025-09-28", "completed", "CNY", "online", "2026-04-01T09:00:00"],
            ["C07-1", "C07", "2025-12-31", "returned", "CNY", "online", "2026-04-01T09:00:00"],
        ],
    )
    _write(
        landing / f"erp/order_lines/{folder}/order_lines.csv",
        LINES_HEADER,
        [["C05-1", 1, "P1", 25, 12, "5", "", "2026-04-01T09:00:00"]],
    )
    run_ingest(warehouse_url, landing, LATE_AS_OF, config)
    _build(warehouse_url, config, LATE_AS_OF)
    orders_after, lines_after = _facts(warehouse_url)

    # C05-1: 25 x 12 = 300 gross, 5 discount, 295 net; cogs 25 x 6 = 150; margin 145
    c05 = orders_after["C05-1"]
    assert c05[3:13] == (
        "completed", 1, False, Decimal(300), Decimal(5), Decimal(295), Decimal(150),
        Decimal(145), Decimal(295), Decimal(0),
    )
    line = lines_after[("C05-1", 1)]
    assert line[4:12] == (
        "completed", 25, Decimal(12), Decimal(300), Decimal(5), Decimal(295), Decimal(150),
        Decimal(145),
    )
    # C07-1: now returned, same amounts (10 x 10 = 100, cogs 60), counts as zero revenue
    c07 = orders_after["C07-1"]
    assert c07[3:12] == (
        "returned", 1, True, Decimal(100), Decimal(0), Decimal(100), Decimal(60),
        Decimal(40), Decimal(0),
    )
    assert lines_after[("C07-1", 1)][4] == "returned"
    # both carry the newer load; the watermark moved
    assert c05[-1] > orders_before["C05-1"][-1]
    assert c07[-1] > orders_before["C07-1"][-1]
    assert line[-1] == c05[-1]

    # every other row is exactly as before, and no row appeared or vanished
    changed = {"C05-1", "C07-1"}
    assert orders_after.keys() == orders_before.keys()
    assert lines_after.keys() == lines_before.keys()
    assert {k: v for k, v in orders_after.items() if k not in changed} == {
        k: v for k, v in orders_before.items() if k not in changed
    }
    assert {k: v for k, v in lines_after.items() if k[0] not in changed} == {
        k: v for k, v in lines_before.items() if k[0] not in changed
    }

    # staging (the models the facts read) changed exactly the re-delivered keys
    staged = _staged(warehouse_url)
    assert sorted(staged) == [
        "int_fx_rate_days", "int_order_lines_converted", "int_orders_converted",
        "stg_erp__fx_rates", "stg_erp__order_lines", "stg_erp__orders", "stg_erp__products",
    ]

    def changed_keys(table: str, width: int) -> list[tuple]:
        return sorted(r[:width] for r in staged[table] if r not in staged_before[table])

    assert changed_keys("stg_erp__orders", 1) == [("C05-1",), ("C07-1",)]
    assert changed_keys("stg_erp__order_lines", 2) == [("C05-1", 1)]
    assert changed_keys("int_orders_converted", 1) == [("C05-1",), ("C07-1",)]
    # every line of both orders is converted again (C07-1's with its new status)
    assert changed_keys("int_order_lines_converted", 2) == [("C05-1", 1), ("C07-1", 1)]
    assert len(staged["stg_erp__orders"]) == len(staged_before["stg_erp__orders"])
    assert staged["stg_erp__products"] == staged_before["stg_erp__products"]
    # no new rate: the day table (rebuilt whole every night) is the same
    assert staged["int_fx_rate_days"] == staged_before["int_fx_rate_days"]

    # a rerun with nothing new changes nothing; a full refresh gives the same facts and staging
    _build(warehouse_url, config, LATE_AS_OF)
    assert _facts(warehouse_url) == (orders_after, lines_after)
    assert _staged(warehouse_url) == staged
    _build(warehouse_url, config, LATE_AS_OF, "--full-refresh")
    assert _facts(warehouse_url) == (orders_after, lines_after)
    assert _staged(warehouse_url) == staged


def test_a_late_file_in_an_old_date_folder_is_staged(
    warehouse_url: str, config, tmp_path: Path
) -> None:
    """A file that lands in an already loaded date folder (older than the table's newest)
    after that folder's night: the next build stages it (its load is new), re-builds its
    orders, and agrees with a full refresh."""
    from tierflow.ingest.loader import run_ingest

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    _build(warehouse_url, config, AS_OF)
    staged_before = _staged(warehouse_url)

    # a second orders file in the 2025-12-31 folder: C07-1 (2025-12-31) cancelled
    _write(
        landing / "erp/orders/2025-12-31/orders_late.csv",
        ORDERS_HEADER,
        [["C07-1", "C07", "2025-12-31", "cancelled", "CNY", "online", "2026-03-31T09:00:00"]],
    )
    run_ingest(warehouse_url, landing, AS_OF, config)
    _build(warehouse_url, config, AS_OF)
    staged = _staged(warehouse_url)
    orders, _ = _facts(warehouse_url)
    assert orders["C07-1"][3] == "cancelled"
    changed = [r for r in staged["stg_erp__orders"] if r not in staged_before["stg_erp__orders"]]
    assert [(r[0], r[2], str(r[-1])) for r in changed] == [("C07-1", "cancelled", "2025-12-31")]
    changed_lines = [r for r in staged["int_order_lines_converted"]
                     if r not in staged_before["int_order_lines_converted"]]
    assert [(r[0], r[1], r[5]) for r in changed_lines] == [("C07-1", 1, "cancelled")]
    changed_tables = {"stg_erp__orders", "int_orders_converted", "int_order_lines_converted"}
    assert {t: rows for t, rows in staged.items() if t not in changed_tables} == {
        t: rows for t, rows in staged_before.items() if t not in changed_tables
    }
    _build(warehouse_url, config, AS_OF, "--full-refresh")
    assert _staged(warehouse_url) == staged
    assert _facts(warehouse_url)[0] == orders


def test_rerun_of_an_earlier_date_reads_the_orders_as_known_then(
    warehouse_url: str, config, tmp_path: Path
) -> None:
    """Run A, then A + 2 with a correction, a new order and a new line of an old order, then
    A again: A's facts are exactly those of its first run (the correction undone, the new
    order and line gone); then A + 2 again gives A + 2's facts; a full refresh agrees."""
    from tierflow.ingest.loader import run_ingest

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    _build(warehouse_url, config, AS_OF)
    first = _facts(warehouse_url)
    staged_first = _staged(warehouse_url)

    folder = "2026-04-02"
    _write(
        landing / f"erp/orders/{folder}/orders.csv",
        ORDERS_HEADER,
        [
            ["C05-1", "C05", "2025-09-28", "returned", "CNY", "online", "2026-04-01T09:00:00"],
            ["C01-9", "C01", "2026-04-01", "completed", "CNY", "online", "2026-04-01T09:00:00"],
        ],
    )
    _write(
        landing / f"erp/order_lines/{folder}/order_lines.csv",
        LINES_HEADER,
        [
            ["C01-9", 1, "P1", 3, 10, "", "", "2026-04-01T09:00:00"],
            ["C06-1", 2, "P2", 1, 50, "", "", "2026-04-01T09:00:00"],  # a second line, new
        ],
    )
    run_ingest(warehouse_url, landing, LATE_AS_OF, config)
    _build(warehouse_url, config, LATE_AS_OF)
    later = _facts(warehouse_url)
    orders, lines = later
    # what the later date knows: C05-1 returned, C01-9 new (3 x 10), C06-1 with two lines
    # (20 x 10 + 1 x 50 = 250)
    assert orders["C05-1"][3] == "returned"
    assert orders["C01-9"][6] == Decimal(30)
    assert orders["C06-1"][4:7] == (2, False, Decimal(250))
    assert ("C06-1", 2) in lines

    staged_later = _staged(warehouse_url)

    # A again: exactly its first facts and staging, whatever was loaded since
    _build(warehouse_url, config, AS_OF)
    assert _facts(warehouse_url) == first
    assert _staged(warehouse_url) == staged_first
    # and forward again: exactly the later facts and staging
    _build(warehouse_url, config, LATE_AS_OF)
    assert _facts(warehouse_url) == later
    assert _staged(warehouse_url) == staged_later
    # a full refresh of A from scratch agrees with the incremental way back
    _build(warehouse_url, config, AS_OF)
    _build(warehouse_url, config, AS_OF, "--full-refresh")
    assert _facts(warehouse_url) == first
    assert _staged(warehouse_url) == staged_first
