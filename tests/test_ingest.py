"""Tests of the ingest step (tierflow.ingest.run_ingest) against a real PostgreSQL.

Why: ingest is where the SPEC's "nothing lost" promise is kept or broken. Every row of every
landing file must end up in its raw table or in tierflow_meta.rejects with the file, the line,
the row as received and a reason; loaded + rejected = rows in must hold and be recorded for
every file; a file that cannot be read must fail loudly, name itself and leave nothing behind;
and a rerun must not load anything twice. Expected values are worked out by hand here.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tierflow.config import TierflowConfig
from tierflow.ingest import IngestError, run_ingest
from tiny_fixture import AS_OF as TINY_AS_OF
from tiny_fixture import write_tiny_landing

ROOT = Path(__file__).resolve().parents[1]

DAY = "2026-03-01"
AS_OF = date(2026, 3, 1)

CUSTOMERS_HEADER = ["customer_id", "customer_name", "created_at", "updated_at"]
PRODUCTS_HEADER = ["product_id", "standard_cost", "updated_at"]
ORDERS_HEADER = ["order_id", "customer_id", "order_date", "status", "currency", "updated_at"]
LINES_HEADER = ["order_id", "line_number", "product_id", "quantity", "unit_price", "updated_at"]
TS = "2026-03-01T08:00:00"


# -- helpers ---------------------------------------------------------------------------------
def write_csv(path: Path, header: list[str], rows: list[list], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_base(landing: Path, day: str = DAY, skip: tuple[str, ...] = ()) -> None:
    """The SPEC's minimum input, one tiny file each: customers K1, K2; product P1; order O1."""
    if "crm/customers" not in skip:
        write_csv(landing / f"crm/customers/{day}/customers.csv", CUSTOMERS_HEADER,
                  [["K1", "Alice Trading", "2025-01-15", TS], ["K2", "Bob", "2025-06-01", TS]])
    if "erp/products" not in skip:
        write_csv(landing / f"erp/products/{day}/products.csv", PRODUCTS_HEADER,
                  [["P1", "6", TS]])
    if "erp/orders" not in skip:
        write_csv(landing / f"erp/orders/{day}/orders.csv", ORDERS_HEADER,
                  [["O1", "K1", "2026-02-20", "completed", "CNY", TS]])
    if "erp/order_lines" not in skip:
        write_csv(landing / f"erp/order_lines/{day}/order_lines.csv", LINES_HEADER,
                  [["O1", "1", "P1", "2", "10", TS]])


def query(url: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text, params).fetchall()


def count(url: str, table: str) -> int:
    return query(url, f"select count(*) from {table}")[0][0]


def audit(url: str) -> dict[str, list[tuple]]:
    """file_path -> [(load_id, status, rows_in, rows_loaded, rows_rejected, error)]."""
    out: dict[str, list[tuple]] = {}
    for path, *rest in query(
        url,
        "select file_path, load_id, status, rows_in, rows_loaded, rows_rejected, error"
        " from tierflow_meta.load_audit order by load_id",
    ):
        out.setdefault(path, []).append(tuple(rest))
    return out


def rejects(url: str) -> dict[tuple[str, int], tuple[dict, str]]:
    return {
        (f, line): (raw, reason)
        for f, line, raw, reason in query(
            url, "select file_path, line_number, raw_record, reason from tierflow_meta.rejects"
        )
    }


def with_encoding(cfg: TierflowConfig, system: str, encoding: str) -> TierflowConfig:
    ingest = cfg.ingest.model_copy(
        update={"encodings": {**cfg.ingest.encodings, system: encoding}}
    )
    return cfg.model_copy(update={"ingest": ingest})


# -- the tiny fixture ------------------------------------------------------------------------
ORDERS_NEW = "erp/orders/2026-03-31/orders.csv"
LINES_NEW = "erp/order_lines/2026-03-31/order_lines.csv"


def test_tiny_fixture_every_row_loaded_or_rejected(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    expected_rows = write_tiny_landing(landing)
    # by hand from tiny_fixture: 2025-12-31 folder holds the 13 orders dated <= 2025-12-31
    # (C01 1, C02 2, C04 1, C05 4, C06 1, C07 1, C08 2, C09 1); 2026-03-31 holds the other
    # 12 completed + 3 not counted + X-UNKNOWN = 16 orders, and 15 + 2 bad = 17 lines.
    assert expected_rows == {
        "crm/customers/2024-11-30/customers.csv": 10,
        "erp/products/2024-11-30/products.csv": 2,
        "erp/orders/2025-12-31/orders.csv": 13,
        "erp/order_lines/2025-12-31/order_lines.csv": 13,
        ORDERS_NEW: 16,
        LINES_NEW: 17,
    }
    expected_rejected = {ORDERS_NEW: 1, LINES_NEW: 2}

    report = run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="tiny-1")

    assert report.totals() == {
        "files_loaded": 6, "files_failed": 0, "files_skipped": 0,
        "rows_in": 71, "rows_loaded": 68, "rows_rejected": 3,
    }
    rows = audit(warehouse_url)
    assert set(rows) == set(expected_rows)
    for path, versions in rows.items():
        assert len(versions) == 1, path
        _, status, rows_in, loaded, rejected, error = versions[0]
        data_lines = len((landing / path).read_text(encoding="utf-8").splitlines()) - 1
        assert (status, error) == ("loaded", None), path
        assert rows_in == data_lines == expected_rows[path], path
        assert rejected == expected_rejected.get(path, 0), path
        assert rows_in == loaded + rejected, path
    assert query(warehouse_url, "select distinct run_id from tierflow_meta.load_audit") == [
        ("tiny-1",)
    ]

    assert count(warehouse_url, "raw.crm__customers") == 10
    assert count(warehouse_url, "raw.erp__products") == 2
    assert count(warehouse_url, "raw.erp__orders") == 13 + 15
    assert count(warehouse_url, "raw.erp__order_lines") == 13 + 15
    assert query(warehouse_url, "select count(*) from raw.erp__orders where customer_id = 'C99'") \
        == [(0,)]

    got = rejects(warehouse_url)
    assert set(got) == {(ORDERS_NEW, 17), (LINES_NEW, 17), (LINES_NEW, 18)}
    raw, reason = got[(ORDERS_NEW, 17)]
    assert "unknown customer_id" in reason and "C99" in reason
    assert raw == {"order_id": "X-UNKNOWN", "customer_id": "C99", "order_date": "2026-03-30",
                   "status": "completed", "currency": "CNY", "channel": "online",
                   "updated_at": "2026-03-30T12:00:00"}
    raw, reason = got[(LINES_NEW, 17)]
    assert "negative quantity" in reason
    assert raw == {"order_id": "C03-1", "line_number": "2", "product_id": "P1", "quantity": "-5",
                   "unit_price": "10", "discount_amount": "", "unit_cost": "",
                   "updated_at": "2026-03-20T12:00:00"}
    raw, reason = got[(LINES_NEW, 18)]
    assert "duplicate key" in reason and "line 2" in reason
    # the duplicate of the folder's first line: C01's second order (2026-01-01)
    assert raw == {"order_id": "C01-2", "line_number": "1", "product_id": "P2", "quantity": "10",
                   "unit_price": "50", "discount_amount": "", "unit_cost": "",
                   "updated_at": "2026-01-01T12:00:00"}
    # the first occurrence of the duplicated key was loaded, once
    assert query(
        warehouse_url,
        "select _line_number from raw.erp__order_lines where order_id = 'C01-2'",
    ) == [(2,)]


# -- idempotency and re-delivery -------------------------------------------------------------
RAW_TABLES = ("raw.crm__customers", "raw.erp__products", "raw.erp__orders",
              "raw.erp__order_lines")


def test_second_run_loads_nothing(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="first")
    before = {t: count(warehouse_url, t) for t in RAW_TABLES}

    report = run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="second")

    assert report.files == []
    assert report.skipped_already_loaded == 6
    assert {t: count(warehouse_url, t) for t in RAW_TABLES} == before == {
        "raw.crm__customers": 10, "raw.erp__products": 2,
        "raw.erp__orders": 28, "raw.erp__order_lines": 28,
    }
    assert count(warehouse_url, "tierflow_meta.load_audit") == 6
    assert count(warehouse_url, "tierflow_meta.rejects") == 3


def test_ingest_indexes_each_raw_table_on_its_load_date_folder_and_key(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The raw gate and staging's incremental branch look for a night's rows by load id and
    date folder, and staging reads every version of those rows' keys: indexes, built after the
    first load, so a night does not scan the raw history."""
    from tierflow.extracts import ENTITIES

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="first")
    assert f"indexed the raw tables ({3 * len(ENTITIES)} indexes)" in caplog.text
    got = {name: definition.split(" USING btree ")[1] for name, definition in query(
        warehouse_url, "select indexname, indexdef from pg_indexes where schemaname = 'raw'")}
    assert got["erp__order_lines__load_id"] == "(_load_id)"
    assert got["erp__order_lines__business_date"] == "(_business_date)"
    assert got["erp__order_lines__key"] == "(order_id, line_number)"
    assert got["crm__customers__key"] == "(customer_id)"
    assert len(got) == 3 * len(ENTITIES)  # every raw table, the ones no file reached too

    caplog.clear()
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="second")
    assert "indexed the raw tables" not in caplog.text


def test_ingest_analyzes_the_tables_it_grew_by_a_tenth_or_more(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    """A first night loads the whole history: the raw gate and dbt must not plan against tables
    the planner takes for empty (never analyzed: pg_class.reltuples is -1). These tables are
    far below autovacuum's own threshold (50 rows + 10%), so only the ingest's ANALYZE sets
    their sizes. A night that grows a table by less than a tenth leaves it to autovacuum."""
    def planner_rows() -> dict[str, float]:
        return dict(query(warehouse_url, "select relname, reltuples from pg_class where relnamespace ="
                                         " 'raw'::regnamespace and relkind = 'r'"))

    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    run_ingest(warehouse_url, landing, TINY_AS_OF, config, run_id="first")
    rows = planner_rows()
    # the loaded counts of test_second_run_loads_nothing
    assert {t: rows[t] for t in ("crm__customers", "erp__products", "erp__orders", "erp__order_lines")} == {
        "crm__customers": 10, "erp__products": 2, "erp__orders": 28, "erp__order_lines": 28}

    # one more order the next day: 1 row on 28 is under a tenth (2.8)
    write_csv(landing / "erp/orders/2026-04-01/orders.csv", ORDERS_HEADER,
              [["C01-9", "C01", "2026-04-01", "completed", "CNY", "2026-04-01T12:00:00"]])
    run_ingest(warehouse_url, landing, date(2026, 4, 1), config, run_id="second")

    assert count(warehouse_url, "raw.erp__orders") == 29
    assert planner_rows()["erp__orders"] == 28  # not analyzed again


def test_redelivered_file_is_loaded_again(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    run_ingest(warehouse_url, landing, AS_OF, config)
    path = "crm/customers/2026-03-01/customers.csv"
    # same path, new content: K2 renamed, K3 added
    write_csv(landing / path, CUSTOMERS_HEADER,
              [["K2", "Bob Renamed", "2025-06-01", "2026-03-01T20:00:00"],
               ["K3", "Carol", "2025-07-01", "2026-03-01T20:00:00"]])

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    assert [f.path for f in report.files] == [path]
    assert report.skipped_already_loaded == 3
    versions = audit(warehouse_url)[path]
    assert [(v[1], v[2], v[3]) for v in versions] == [("loaded", 2, 2), ("loaded", 2, 2)]
    first_id, second_id = versions[0][0], versions[1][0]
    assert first_id != second_id
    checksums = query(warehouse_url, "select distinct checksum from tierflow_meta.load_audit"
                      " where file_path = %s", (path,))
    assert len(checksums) == 2
    assert query(
        warehouse_url,
        "select customer_id, customer_name, _load_id from raw.crm__customers"
        " order by _load_id, customer_id",
    ) == [("K1", "Alice Trading", first_id), ("K2", "Bob", first_id),
          ("K2", "Bob Renamed", second_id), ("K3", "Carol", second_id)]


# -- formats ---------------------------------------------------------------------------------
# One small customers extract, written in each format; every variant must load the same rows.
FULL_HEADER = ["customer_id", "customer_name", "customer_type", "credit_limit",
               "payment_terms_days", "created_at", "updated_at", "is_active"]
TEXT_ROWS = [
    ["K1", "Alice Trading", "b2b", "50000.5", "30", "2025-01-15", "2026-02-01T09:30:00", "true"],
    ["K2", "王芳", "B2C", "", "", "2025-06-01", "2026-02-02T10:00:00", "false"],
    ["K3", "", "", "0", "0", "2025-07-01", "2026-02-03T11:15:00", ""],
]
EXPECTED_CUSTOMERS = [
    ("K1", "Alice Trading", "b2b", Decimal("50000.5"), 30, date(2025, 1, 15),
     datetime(2026, 2, 1, 9, 30), True),
    ("K2", "王芳", "b2c", None, None, date(2025, 6, 1), datetime(2026, 2, 2, 10, 0), False),
    ("K3", None, None, Decimal(0), 0, date(2025, 7, 1), datetime(2026, 2, 3, 11, 15), None),
]


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _native(row: list[str]) -> dict:
    """The TEXT_ROWS values as JSON / Parquet would carry them (typed, null for empty)."""
    k, name, kind, limit, terms, created, updated, active = row
    return {
        "customer_id": k,
        "customer_name": name or None,
        "customer_type": kind or None,
        "credit_limit": float(limit) if limit else None,
        "payment_terms_days": int(terms) if terms else None,
        "created_at": date.fromisoformat(created),
        "updated_at": datetime.fromisoformat(updated),
        "is_active": {"true": True, "false": False}.get(active),
    }


def _write_customers(folder: Path, variant: str) -> tuple[str, list[int]]:
    """Write the extract as ``variant``; return (file name, expected line numbers)."""
    folder.mkdir(parents=True, exist_ok=True)
    if variant == "csv":
        (folder / "c.csv").write_text(_csv_text(FULL_HEADER, TEXT_ROWS), encoding="utf-8")
        return "c.csv", [2, 3, 4]
    if variant == "csv-bom":
        (folder / "c.csv").write_text(_csv_text(FULL_HEADER, TEXT_ROWS), encoding="utf-8-sig")
        assert (folder / "c.csv").read_bytes().startswith(b"\xef\xbb\xbfcustomer_id")
        return "c.csv", [2, 3, 4]
    if variant == "csv-shuffled":
        order = [6, 2, 7, 0, 4, 1, 5, 3]
        text = _csv_text([FULL_HEADER[i] for i in order],
                         [[r[i] for i in order] for r in TEXT_ROWS])
        (folder / "c.csv").write_text(text, encoding="utf-8")
        return "c.csv", [2, 3, 4]
    if variant == "csv-crlf-upper-header":
        text = _csv_text([h.upper() for h in FULL_HEADER], TEXT_ROWS).replace("\r\n", "\n")
        (folder / "c.csv").write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
        return "c.csv", [2, 3, 4]
    if variant == "csv.gz":
        (folder / "c.csv.gz").write_bytes(
            gzip.compress(_csv_text(FULL_HEADER, TEXT_ROWS).encode("utf-8")))
        return "c.csv.gz", [2, 3, 4]
    if variant == "jsonl":
        lines = [json.dumps({k: v.isoformat() if isinstance(v, date) else v
                             for k, v in _native(r).items()}, ensure_ascii=False)
                 for r in TEXT_ROWS]
        (folder / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return "c.jsonl", [1, 2, 3]
    if variant == "parquet":
        records = [_native(r) for r in TEXT_ROWS]
        schema = pa.schema([
            ("customer_id", pa.string()), ("customer_name", pa.string()),
            ("customer_type", pa.string()), ("credit_limit", pa.float64()),
            ("payment_terms_days", pa.int64()), ("created_at", pa.date32()),
            ("updated_at", pa.timestamp("us")), ("is_active", pa.bool_()),
        ])
        pq.write_table(pa.Table.from_pylist(records, schema=schema), folder / "c.parquet")
        return "c.parquet", [1, 2, 3]
    raise AssertionError(variant)


@pytest.mark.parametrize(
    "variant",
    ["csv", "csv-bom", "csv-shuffled", "csv-crlf-upper-header", "csv.gz", "jsonl", "parquet"],
)
def test_every_format_loads_the_same_rows(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, variant: str
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    name, lines = _write_customers(landing / f"crm/customers/{DAY}", variant)

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    path = f"crm/customers/{DAY}/{name}"
    (result,) = [f for f in report.files if f.path == path]
    assert (result.rows_in, result.rows_loaded, result.rows_rejected) == (3, 3, 0)
    assert result.extra_columns == []
    assert query(
        warehouse_url,
        "select customer_id, customer_name, customer_type, credit_limit, payment_terms_days,"
        " created_at, updated_at::timestamp, is_active from raw.crm__customers order by 1",
    ) == EXPECTED_CUSTOMERS
    assert [r[0] for r in query(
        warehouse_url, "select _line_number from raw.crm__customers order by customer_id"
    )] == lines
    assert query(
        warehouse_url,
        "select file_format from tierflow_meta.load_audit where file_path = %s", (path,),
    ) == [(name.split(".", 1)[1],)]


GBK_ROWS = [["K1", "张伟", "2025-01-15", TS], ["K2", "北京新材料科技有限公司", "2025-06-01", TS],
            ["K3", "陈静（华东）", "2025-07-01", TS]]


def test_gbk_customers_load_when_configured(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    path = write_csv(landing / f"crm/customers/{DAY}/customers.csv", CUSTOMERS_HEADER, GBK_ROWS,
                     encoding="gbk")
    assert "张伟".encode("gbk") in path.read_bytes()

    run_ingest(warehouse_url, landing, AS_OF, with_encoding(config, "crm", "gbk"))

    assert query(warehouse_url,
                 "select customer_id, customer_name from raw.crm__customers order by 1") == [
        ("K1", "张伟"), ("K2", "北京新材料科技有限公司"), ("K3", "陈静（华东）")]


def test_gbk_customers_read_as_utf8_fail_naming_the_file(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    write_csv(landing / f"crm/customers/{DAY}/customers.csv", CUSTOMERS_HEADER, GBK_ROWS,
              encoding="gbk")
    assert config.ingest.encodings["crm"] == "utf-8"

    with pytest.raises(IngestError) as excinfo:
        run_ingest(warehouse_url, landing, AS_OF, config)

    message = str(excinfo.value)
    assert f"crm/customers/{DAY}/customers.csv" in message
    assert "decode" in message and "utf-8" in message
    assert count(warehouse_url, "raw.crm__customers") == 0


# -- whole-file failures ---------------------------------------------------------------------
BAD_ORDERS = f"erp/orders/{DAY}/orders"


def _missing_column(folder: Path) -> str:
    write_csv(folder / "orders.csv", [h for h in ORDERS_HEADER if h != "status"],
              [["O1", "K1", "2026-02-20", "CNY", TS]])
    return "orders.csv"


def _undecodable_late(folder: Path) -> str:
    # 400 good rows (~20 kB, well past the first read buffer) then one row with a byte that
    # is not UTF-8: rows before it are already streaming into COPY when decoding fails
    text = _csv_text(ORDERS_HEADER, [[f"O{n}", "K1", "2026-02-20", "completed", "CNY", TS]
                                     for n in range(1, 401)])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_bytes(
        text.encode("utf-8") + b"O401,K1,2026-02-20,completed,CNY,\xff\xfe\r\n")
    return "orders.csv"


def _undecodable_header(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_bytes(b"order_id,customer\xe9id\r\nO1,K1\r\n")
    return "orders.csv"


def _empty(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.csv").write_bytes(b"")
    return "orders.csv"


def _xlsx(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.xlsx").write_bytes(b"PK\x03\x04not really a spreadsheet")
    return "orders.xlsx"


def _not_parquet(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "orders.parquet").write_text(_csv_text(ORDERS_HEADER, []), encoding="utf-8")
    return "orders.parquet"


@pytest.mark.parametrize(
    ("write_bad", "problem"),
    [
        pytest.param(_missing_column, "required column(s) missing: status", id="missing-column"),
        pytest.param(_undecodable_late, "cannot decode as utf-8", id="undecodable-late"),
        pytest.param(_undecodable_header, "cannot decode as utf-8", id="undecodable-header"),
        pytest.param(_empty, "empty file", id="empty"),
        pytest.param(_xlsx, "unsupported file type", id="xlsx"),
        pytest.param(_not_parquet, "not a readable Parquet file", id="not-parquet"),
    ],
)
def test_unreadable_file_fails_alone_and_loudly(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, write_bad, problem: str
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/orders",))
    name = write_bad(landing / f"erp/orders/{DAY}")
    bad_path = f"erp/orders/{DAY}/{name}"

    with pytest.raises(IngestError) as excinfo:
        run_ingest(warehouse_url, landing, AS_OF, config, run_id="r1")

    message = str(excinfo.value)
    assert bad_path in message and problem in message
    # nothing of the failing file is left behind
    assert count(warehouse_url, "raw.erp__orders") == 0
    assert count(warehouse_url, "tierflow_meta.rejects") == 0
    rows = audit(warehouse_url)
    (failed,) = rows[bad_path]
    assert failed[1] == "failed" and failed[5] == message
    # files loaded before it keep truthful audit rows (load order: customers, products first)
    (cust,) = rows[f"crm/customers/{DAY}/customers.csv"]
    (prod,) = rows[f"erp/products/{DAY}/products.csv"]
    assert cust[1:] == ("loaded", 2, 2, 0, None)
    assert prod[1:] == ("loaded", 1, 1, 0, None)
    assert count(warehouse_url, "raw.crm__customers") == 2
    assert count(warehouse_url, "raw.erp__products") == 1
    # the run stopped there: order lines were not attempted
    assert f"erp/order_lines/{DAY}/order_lines.csv" not in rows
    assert count(warehouse_url, "raw.erp__order_lines") == 0


def test_truncated_gzip_fails_naming_the_file(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/orders",))
    text = _csv_text(ORDERS_HEADER, [[f"O{n}", "K1", "2026-02-20", "completed", "CNY", TS]
                                     for n in range(1, 2001)])
    blob = gzip.compress(text.encode("utf-8"))
    path = landing / f"erp/orders/{DAY}/orders.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(blob[: len(blob) // 2])

    with pytest.raises(IngestError, match=f"erp/orders/{DAY}/orders.csv.gz"):
        run_ingest(warehouse_url, landing, AS_OF, config)
    assert audit(warehouse_url)[f"erp/orders/{DAY}/orders.csv.gz"][0][1] == "failed"
    assert count(warehouse_url, "raw.erp__orders") == 0


# -- row rejects -----------------------------------------------------------------------------
def test_bad_rows_are_rejected_with_reasons(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/orders", "erp/order_lines"))
    write_csv(landing / f"erp/fx_rates/{DAY}/fx.csv", ["rate_date", "currency", "rate_to_base"],
              [["2026-02-15", "USD", "7.1"]])
    rows = [
        ["O1", "K1", "2026-02-20", "completed", "CNY", TS],  # 2 ok
        ["O2", "K1", "2026-02-30", "completed", "CNY", TS],  # 3 no such day
        ["O3", "", "2026-02-20", "completed", "CNY", TS],  # 4 missing customer_id
        ["O4", "K1", "2026-02-20", "shipped", "CNY", TS],  # 5 bad enum
        ["O5", "K1", "2026-02-14", "completed", "USD", TS],  # 6 USD before the first rate
        ["O6", "K1", "2026-02-15", "completed", "USD", TS],  # 7 USD on the rate date: ok
        ["O7", "K2", "2026-02-28", "pending", "usd", TS],  # 8 USD after the rate date: ok
        ["O8", "K1", "2026-02-20", "completed", "EUR", TS],  # 9 no EUR rate at all
        ["O9", "K1", "2026-03-02", "completed", "CNY", TS],  # 10 folder + 1 day: tolerated
        ["O10", "K1", "2026-03-03", "completed", "CNY", TS],  # 11 folder + 2 days: future
        ["O11", "K1", "2027-03-01", "completed", "CNY", TS],  # 12 a year ahead
        ["O12", "K1", "20/02/2026", "completed", "CNY", TS],  # 13 not ISO
        ["O13", "K1", "2026-02-20", "Completed", "CNY", "yesterday"],  # 14 bad timestamp
        ["O14", "K1", "2026-02-20", "completed"],  # 15 too few fields
        ["O1", "K2", "2026-02-21", "completed", "CNY", TS],  # 16 duplicate of line 2
    ]
    write_csv(landing / f"erp/orders/{DAY}/orders.csv", ORDERS_HEADER, rows)
    write_csv(landing / f"erp/order_lines/{DAY}/order_lines.csv", LINES_HEADER,
              [["O1", "1", "P1", "2", "10", TS]])
    assert config.ingest.max_future_days == 1 and config.base_currency == "CNY"

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    path = f"erp/orders/{DAY}/orders.csv"
    (res,) = [f for f in report.files if f.path == path]
    assert (res.rows_in, res.rows_loaded, res.rows_rejected) == (15, 4, 11)
    assert query(warehouse_url, "select order_id, currency from raw.erp__orders order by 1") == [
        ("O1", "CNY"), ("O6", "USD"), ("O7", "USD"), ("O9", "CNY")]
    got = {line: reason for (f, line), (_, reason) in rejects(warehouse_url).items()
           if f == path}
    expected = {
        3: ["bad date", "order_date", "2026-02-30"],
        4: ["missing required value", "customer_id"],
        5: ["status", "shipped"],
        6: ["fx rate", "USD", "2026-02-14"],
        9: ["fx rate", "EUR"],
        11: ["future", "2026-03-03"],
        12: ["future", "2027-03-01"],
        13: ["bad date", "20/02/2026"],
        14: ["bad timestamp", "updated_at", "yesterday"],
        15: ["malformed", "4 fields"],
        16: ["duplicate key", "line 2"],
    }
    assert set(got) == set(expected)
    for line, parts in expected.items():
        for part in parts:
            assert part in got[line], (line, part, got[line])
    raw = rejects(warehouse_url)[(path, 15)][0]
    assert raw == {"fields": ["O14", "K1", "2026-02-20", "completed"]}
    raw = rejects(warehouse_url)[(path, 4)][0]
    assert raw == dict(zip(ORDERS_HEADER, rows[2], strict=True))


def test_date_with_trailing_garbage_is_rejected(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/orders",))
    write_csv(landing / f"erp/orders/{DAY}/orders.csv", ORDERS_HEADER,
              [["O1", "K1", "2026-02-20", "completed", "CNY", TS],
               ["O2", "K1", "2026-02-20xyz", "completed", "CNY", TS]])
    run_ingest(warehouse_url, landing, AS_OF, config)
    assert query(warehouse_url, "select order_id from raw.erp__orders") == [("O1",)]


# -- extra columns ---------------------------------------------------------------------------
def test_unknown_columns_are_kept_and_reported(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    write_csv(landing / f"crm/customers/{DAY}/customers.csv",
              [*CUSTOMERS_HEADER, "Loyalty_Code", "wechat_id"],
              [["K1", "Alice Trading", "2025-01-15", TS, "GOLD", "alice_wx"],
               ["K2", "Bob", "2025-06-01", TS, "", "鲍勃"]])

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    assert report.as_dict()["extra_columns"] == [
        "crm/customers: loyalty_code", "crm/customers: wechat_id"]
    assert query(warehouse_url, "select customer_id, _extra from raw.crm__customers order by 1") \
        == [("K1", {"loyalty_code": "GOLD", "wechat_id": "alice_wx"}),
            ("K2", {"loyalty_code": "", "wechat_id": "鲍勃"})]
    assert query(
        warehouse_url,
        "select extra_columns, status from tierflow_meta.load_audit where file_path = %s",
        (f"crm/customers/{DAY}/customers.csv",),
    ) == [(["loyalty_code", "wechat_id"], "loaded")]
    # files without extra columns keep _extra null
    assert query(warehouse_url, "select count(*) from raw.erp__orders where _extra is null") \
        == [(1,)]


def test_jsonl_extra_key_on_a_later_line_is_kept(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    folder = landing / f"crm/customers/{DAY}"
    folder.mkdir(parents=True)
    records = [{"customer_id": "K1", "created_at": "2025-01-15", "updated_at": TS},
               {"customer_id": "K2", "created_at": "2025-06-01", "updated_at": TS,
                "loyalty_code": "GOLD"}]
    (folder / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records),
                                    encoding="utf-8")

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    assert report.as_dict()["extra_columns"] == ["crm/customers: loyalty_code"]
    assert query(warehouse_url, "select _extra from raw.crm__customers where customer_id = 'K2'") \
        == [({"loyalty_code": "GOLD"},)]


def test_jsonl_malformed_first_line_is_a_row_reject(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    folder = landing / f"crm/customers/{DAY}"
    folder.mkdir(parents=True)
    good = [{"customer_id": k, "created_at": "2025-01-15", "updated_at": TS} for k in ("K1", "K2")]
    (folder / "c.jsonl").write_text(
        '{"customer_id": "K0", oops\n' + "".join(json.dumps(r) + "\n" for r in good),
        encoding="utf-8")

    run_ingest(warehouse_url, landing, AS_OF, config)

    assert query(warehouse_url, "select customer_id from raw.crm__customers order by 1") == [
        ("K1",), ("K2",)]
    ((line, reason),) = query(warehouse_url,
                              "select line_number, reason from tierflow_meta.rejects")
    assert line == 1 and "not valid JSON" in reason


# -- catch-up --------------------------------------------------------------------------------
def test_catch_up_loads_missed_days_in_a_later_run(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    for day, oid in (("2026-03-02", "O2"), ("2026-03-03", "O3")):
        write_csv(landing / f"erp/orders/{day}/orders.csv", ORDERS_HEADER,
                  [[oid, "K2", day, "completed", "CNY", f"{day}T09:00:00"]])
        write_csv(landing / f"erp/order_lines/{day}/order_lines.csv", LINES_HEADER,
                  [[oid, "1", "P1", "1", "10", f"{day}T09:00:00"]])

    first = run_ingest(warehouse_url, landing, AS_OF, config)
    assert first.totals()["files_loaded"] == 4
    assert query(warehouse_url, "select order_id from raw.erp__orders") == [("O1",)]

    later = run_ingest(warehouse_url, landing, date(2026, 3, 3), config)

    assert later.skipped_already_loaded == 4
    assert [f.path for f in later.files] == [
        "erp/orders/2026-03-02/orders.csv", "erp/order_lines/2026-03-02/order_lines.csv",
        "erp/orders/2026-03-03/orders.csv", "erp/order_lines/2026-03-03/order_lines.csv",
    ]
    assert query(warehouse_url,
                 "select order_id, _business_date from raw.erp__orders order by 1") == [
        ("O1", date(2026, 3, 1)), ("O2", date(2026, 3, 2)), ("O3", date(2026, 3, 3))]
    assert count(warehouse_url, "raw.erp__order_lines") == 3


# -- landing root safety ---------------------------------------------------------------------
def test_symlink_outside_the_landing_root_is_refused(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    outside = write_csv(tmp_path / "elsewhere" / "secret.csv", CUSTOMERS_HEADER,
                        [["K9", "Mallory", "2025-01-01", TS]])
    link = landing / f"crm/customers/{DAY}/more.csv"
    link.symlink_to(outside)

    with pytest.raises(IngestError, match="outside the landing root") as excinfo:
        run_ingest(warehouse_url, landing, AS_OF, config)

    assert "more.csv" in str(excinfo.value)
    assert query(warehouse_url,
                 "select count(*) from pg_tables where schemaname = 'raw'") == [(0,)]


# -- the set-based CSV path (tierflow.ingest.sql_path) ---------------------------------------
# CSV files are checked in SQL after a plain COPY; these pin that it behaves exactly as the
# row-by-row checks did, on the cases where PostgreSQL and Python read values differently.
ROW_PATH = "loading row by row"


@pytest.fixture
def config(config: TierflowConfig) -> TierflowConfig:
    """Every CSV in this module takes the set-based path, whatever its size, so the
    equivalence tests below exercise it (the shipped config sends small files row by row)."""
    return config.model_copy(update={"ingest": config.ingest.model_copy(update={"bulk_min_bytes": 0})})


def test_small_csv_files_take_the_row_path_by_default(
    warehouse_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tierflow.config import load_config

    shipped = load_config(ROOT / "config" / "tierflow.yml")
    assert shipped.ingest.bulk_min_bytes > 1000
    landing = tmp_path / "landing"
    expected = write_tiny_landing(landing)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        report = run_ingest(warehouse_url, landing, TINY_AS_OF, shipped)
    assert report.totals()["rows_in"] == sum(expected.values())
    assert report.totals()["rows_rejected"] == 3


def test_plain_csv_takes_the_set_based_path(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        report = run_ingest(warehouse_url, landing, TINY_AS_OF, config)
    assert report.totals()["files_loaded"] == 6
    assert ROW_PATH not in caplog.text


def test_values_are_stripped_like_python_strip(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    folder = landing / f"crm/customers/{DAY}"
    folder.mkdir(parents=True)
    # spaces at a field's edge, inside quotes, a tab, a no-break and an ideographic space
    (folder / "c.csv").write_text(
        "customer_id,customer_name,customer_type,credit_limit,created_at,updated_at\n"
        f" K1 ,\"  Alice  \", B2B ,\t12.5 ,2025-01-15 , {TS}\n"
        f"K2,\u00a0王芳\u3000,b2c,,2025-06-01,{TS}\n"
        f"K3,   ,,  ,2025-07-01,{TS}\n",
        encoding="utf-8")

    run_ingest(warehouse_url, landing, AS_OF, config)

    assert query(warehouse_url, "select customer_id, customer_name, customer_type, credit_limit,"
                 " created_at from raw.crm__customers order by 1") == [
        ("K1", "Alice", "b2b", Decimal("12.5"), date(2025, 1, 15)),
        ("K2", "王芳", "b2c", None, date(2025, 6, 1)),
        ("K3", None, None, None, date(2025, 7, 1)),
    ]


def test_numbers_postgres_reads_but_python_does_not_are_rejected(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    header = ["customer_id", "credit_limit", "payment_terms_days", "is_active", "created_at",
              "updated_at"]
    rows = [
        ["K1", "1e3", "2.0", "yes", "2025-01-15", TS],  # 2 ok: Decimal reads both
        ["K2", "NaN", "", "", "2025-01-15", TS],  # 3
        ["K3", "Infinity", "", "", "2025-01-15", TS],  # 4
        ["K4", "0x1F", "", "", "2025-01-15", TS],  # 5
        ["K5", "", "0b101", "", "2025-01-15", TS],  # 6
        ["K6", "", "2.5", "", "2025-01-15", TS],  # 7 not an int
        ["K7", "", "", "on", "2025-01-15", TS],  # 8 PostgreSQL's bool, not ours
        ["K8", "", "", "", "Feb 20 2025", TS],  # 9 PostgreSQL's date, not ISO
        ["K9", "", "", "", "2025-01-15", "2026-03-01T08:00:00+08:00"],  # 10 ok
        ["K10", "-0", "-0", "", "2025-01-15", TS],  # 11 ok: minus zero is not negative
    ]
    path = f"crm/customers/{DAY}/c.csv"
    write_csv(landing / path, header, rows)

    run_ingest(warehouse_url, landing, AS_OF, config)

    assert query(warehouse_url, "select customer_id, credit_limit, payment_terms_days, is_active"
                 " from raw.crm__customers order by _line_number") == [
        ("K1", Decimal(1000), 2, True), ("K9", None, None, None), ("K10", Decimal(0), 0, None)]
    got = {line: reason for (f, line), (_, reason) in rejects(warehouse_url).items() if f == path}
    assert got == {
        3: "bad numeric in credit_limit: 'NaN'",
        4: "bad numeric in credit_limit: 'Infinity'",
        5: "bad numeric in credit_limit: '0x1F'",
        6: "bad int in payment_terms_days: '0b101'",
        7: "bad int in payment_terms_days: '2.5'",
        8: "bad bool in is_active: 'on'",
        9: "bad date in created_at: 'Feb 20 2025'",
    }


def test_duplicate_keys_compare_parsed_values(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/order_lines",))
    path = f"erp/order_lines/{DAY}/order_lines.csv"
    write_csv(landing / path, LINES_HEADER, [
        ["O1", "1", "P1", "2", "10", TS],  # 2
        ["O1", "x", "P1", "2", "10", TS],  # 3 bad int: not a duplicate of anything
        ["O1", "1.0", "P1", "3", "10", TS],  # 4 the same line number as line 2
        ["O1", "2", "P1", "-1", "10", TS],  # 5 negative: rejected before any duplicate check
        ["O1", "2", "P1", "4", "10", TS],  # 6 ok: line 5 was not loaded
        ["O1", "01", "P1", "5", "10", TS],  # 7 duplicate of line 2 again
    ])

    run_ingest(warehouse_url, landing, AS_OF, config)

    assert query(warehouse_url, "select line_number, quantity, _line_number from raw.erp__order_lines"
                 " order by 3") == [(1, Decimal(2), 2), (2, Decimal(4), 6)]
    got = {line: reason for (f, line), (_, reason) in rejects(warehouse_url).items() if f == path}
    assert got == {
        3: "bad int in line_number: 'x'",
        4: "duplicate key (order_id, line_number) = ('O1', 1) also on line 2 of this file",
        5: "negative quantity: -1",
        7: "duplicate key (order_id, line_number) = ('O1', 1) also on line 2 of this file",
    }


def test_records_spanning_lines_report_their_first_line(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("crm/customers",))
    folder = landing / f"crm/customers/{DAY}"
    folder.mkdir(parents=True)
    path = f"crm/customers/{DAY}/c.csv"
    (folder / "c.csv").write_text(
        "customer_id,customer_name,created_at,updated_at\n"
        f'K1,"Alice\nTrading\nLtd",2025-01-15,{TS}\n'  # lines 2-4
        "\n"  # 5: blank, skipped
        f"K2,Bob,not a date,{TS}\n"  # 6
        f'K3,"Carol",2025-07-01,{TS}\n',  # 7
        encoding="utf-8")

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    (res,) = [f for f in report.files if f.path == path]
    assert (res.rows_in, res.rows_loaded, res.rows_rejected) == (3, 2, 1)
    assert query(warehouse_url, "select customer_id, customer_name, _line_number"
                 " from raw.crm__customers order by 1") == [
        ("K1", "Alice\nTrading\nLtd", 2), ("K3", "Carol", 7)]
    assert set(rejects(warehouse_url)) == {(path, 6)}


def test_csv_gz_and_extra_columns_on_the_set_based_path(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    write_base(landing, skip=("erp/orders",))
    rows = [[f"O{n}", "K1" if n % 50 else "K9", "2026-02-20", "completed", "CNY", TS, f"x{n}"]
            for n in range(1, 5001)]
    path = landing / f"erp/orders/{DAY}/orders.csv.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(_csv_text([*ORDERS_HEADER, "Note"], rows).encode("utf-8")))

    with caplog.at_level("INFO", logger="tierflow.ingest"):
        report = run_ingest(warehouse_url, landing, AS_OF, config)

    assert ROW_PATH not in caplog.text
    (res,) = [f for f in report.files if f.path.endswith("orders.csv.gz")]
    assert (res.rows_in, res.rows_loaded, res.rows_rejected, res.extra_columns) == (
        5000, 4900, 100, ["note"])
    assert query(warehouse_url, "select _extra from raw.erp__orders where order_id = 'O7'") == [
        ({"note": "x7"},)]
    raw, reason = rejects(warehouse_url)[(f"erp/orders/{DAY}/orders.csv.gz", 51)]
    assert reason == "unknown customer_id 'K9': no such crm/customers row loaded"
    assert raw == dict(zip([*ORDERS_HEADER, "note"], rows[49], strict=True))
