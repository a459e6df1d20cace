"""Hostile extracts (issue 16): nothing under the landing root is passed over in silence, no row
disappears inside another, a load never stays `running`, odd numbers are row rejects, and a
run's summary says what it saw even when it fails.

Why: each of these was a night that lost data without telling anyone (a mistyped entity
folder, a folder named like a file, an unbalanced quote swallowing two customers), or a night
whose failure was hard to act on (an int4 overflow on the binary path failing with a message
naming neither file nor line, its load_audit row left `running` forever). Every CSV case runs
through the row path and the binary fast path (which hands such files to the row path); the
expected counts and reasons are written out by hand.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from psycopg.rows import dict_row
from tierflow.config import TierflowConfig
from tierflow.ingest import IngestError, run_ingest

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-03-01"
AS_OF = date(2026, 3, 1)
TS = "2026-03-01T08:00:00"
CUSTOMERS_HEADER = ["customer_id", "customer_name", "created_at", "updated_at"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="")
    return path


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    return out.getvalue()


def write_base(landing: Path, day: str = DAY) -> None:
    """The minimum input: customers K1, K2; product P1; order O1 with one line."""
    write(landing / f"crm/customers/{day}/customers.csv", csv_text(
        CUSTOMERS_HEADER, [["K1", "Alice", "2025-01-15", TS], ["K2", "Bob", "2025-06-01", TS]]))
    write(landing / f"erp/products/{day}/products.csv", csv_text(
        ["product_id", "standard_cost", "updated_at"], [["P1", "6", TS]]))
    write(landing / f"erp/orders/{day}/orders.csv", csv_text(
        ["order_id", "customer_id", "order_date", "status", "currency", "updated_at"],
        [["O1", "K1", "2026-02-20", "completed", "CNY", TS]]))
    write(landing / f"erp/order_lines/{day}/order_lines.csv", csv_text(
        ["order_id", "line_number", "product_id", "quantity", "unit_price", "updated_at"],
        [["O1", "1", "P1", "2", "10", TS]]))


def with_ingest(cfg: TierflowConfig, **update) -> TierflowConfig:
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update=update)})


def query(url: str, text: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(text, params).fetchall()


def start_run(url: str, run_id: str) -> None:
    """The runs row the pipeline's ingest step writes before it calls run_ingest."""
    from tierflow.ingest.schema import ensure_schema

    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("insert into tierflow_meta.runs (run_id, as_of_date, status) values (%s, %s, 'running')",
                     (run_id, AS_OF))


def run_summary(url: str, run_id: str) -> dict:
    return query(url, "select summary from tierflow_meta.runs where run_id = %s", (run_id,))[0][0]


# -- 1. every path under the landing root is loaded or reported ---------------------------------
def hostile_layout(landing: Path) -> dict[str, tuple[str, str]]:
    """Deliveries in the wrong place, next to the good ones: path -> (kind, reason)."""
    write_base(landing)
    lines = csv_text(["order_id", "line_number", "product_id", "quantity", "unit_price", "updated_at"],
                     [["O1", "2", "P1", "1", "10", TS]])
    write(landing / f"erp/order_line/{DAY}/lines.csv", lines)  # the typo
    write(landing / f"erp/order_line/{DAY}/more.csv", lines)
    write(landing / f"ERP/orders/{DAY}/orders.csv", lines)  # a system folder in capitals
    write(landing / f"erp/orders/{DAY}/late.csv/part-0.csv", lines)  # a folder named like a file
    write(landing / "erp/orders/2026-3-02/orders.csv", lines)  # a date that is not YYYY-MM-DD
    write(landing / "erp/orders/orders.csv", lines)  # no date folder at all
    write(landing / f"crm/customers/{DAY}/.customers.csv.tmp", "still being written")  # hidden
    write(landing / "_demo_manifest.json", "{}")  # not a delivery: reported, never fatal
    return {
        "ERP/": ("unknown_system", "unknown system folder (1 file in it); did you mean erp/?"),
        "erp/order_line/": ("unknown_entity",
                            "unknown entity folder (2 files in it); did you mean erp/order_lines/?"),
        f"erp/orders/{DAY}/late.csv/": ("directory_not_file",
                                        "a directory where a file was expected (1 file in it)"),
        "erp/orders/2026-3-02/": ("not_a_date_folder", "not a YYYY-MM-DD date folder (1 file in it)"),
        "erp/orders/orders.csv": ("misplaced_file", "a file where a YYYY-MM-DD date folder was expected"
                                  " (a landing format: a delivery in the wrong place?)"),
        f"crm/customers/{DAY}/.customers.csv.tmp": (
            "hidden", "hidden (its name starts with a dot): not read, e.g. a delivery still being written"),
        "_demo_manifest.json": ("misplaced_file",
                                "a file where a system folder (erp, crm, service) was expected"),
    }


def test_a_path_that_may_hold_data_fails_the_night_after_the_rest_is_loaded(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    expected = hostile_layout(landing)
    start_run(warehouse_url, "r1")

    with pytest.raises(IngestError) as excinfo:
        run_ingest(warehouse_url, landing, AS_OF, config, run_id="r1")  # on_unknown_path: fail (default)

    message = str(excinfo.value)
    assert message.startswith("5 path(s) under the landing root may hold data and were not loaded: ")
    assert "erp/order_line/: unknown entity folder (2 files in it); did you mean erp/order_lines/?" in message
    assert "ingest.on_unknown_path: fail" in message
    assert ".customers.csv.tmp" not in message and "_demo_manifest" not in message
    # the good files were loaded first: only the missing data is missing
    assert query(warehouse_url, "select count(*), sum(rows_loaded) from tierflow_meta.load_audit"
                 " where status = 'loaded'") == [(4, 5)]
    rows = query(warehouse_url, "select path, kind, reason, may_hold_data from tierflow_meta.ignored_paths"
                 " where run_id = 'r1'")
    assert {p: (k, r) for p, k, r, _ in rows} == expected
    assert {p for p, *_, blocking in rows if not blocking} == {
        f"crm/customers/{DAY}/.customers.csv.tmp", "_demo_manifest.json"}
    # the failed run's summary says what it saw
    ingest = run_summary(warehouse_url, "r1")["ingest"]
    assert {p["path"]: (p["kind"], p["reason"]) for p in ingest["ignored_paths"]} == expected
    assert ingest["error"] == message and ingest["files_loaded"] == 4


def test_warn_loads_the_rest_and_reports_every_ignored_path(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    from tierflow.report.summary import format_summary

    landing = tmp_path / "landing"
    expected = hostile_layout(landing)
    write(landing / f"crm/customers/{DAY}/customers.xlsx", "PK not a spreadsheet")
    expected[f"crm/customers/{DAY}/customers.xlsx"] = (
        "unsupported_file", "unsupported file type (expected one of .csv.gz, .csv, .parquet, .jsonl)")
    start_run(warehouse_url, "r2")

    report = run_ingest(warehouse_url, landing, AS_OF, with_ingest(config, on_unknown_path="warn"),
                        run_id="r2")

    assert report.totals()["files_loaded"] == 4
    assert {p.path: (p.kind, p.reason) for p in report.ignored} == expected
    assert {p["path"] for p in run_summary(warehouse_url, "r2")["ingest"]["ignored_paths"]} == set(expected)
    assert len(query(warehouse_url, "select * from tierflow_meta.ignored_paths where run_id = 'r2'")) == 8
    text = format_summary({**EMPTY_SUMMARY, "ingest": report.as_dict()})
    assert ("  ignored: erp/order_line/: unknown entity folder (2 files in it);"
            " did you mean erp/order_lines/?") in text.splitlines()
    # a rerun of the run replaces its rows, it does not add to them
    run_ingest(warehouse_url, landing, AS_OF, with_ingest(config, on_unknown_path="warn"), run_id="r2")
    assert len(query(warehouse_url, "select * from tierflow_meta.ignored_paths where run_id = 'r2'")) == 8


EMPTY_SUMMARY = {"run_id": "r", "as_of_date": DAY, "tiers": [], "allocation": [], "rejects_by_reason": [],
                 "exports": []}


def test_config_rejects_an_unknown_on_unknown_path(config: TierflowConfig) -> None:
    from pydantic import ValidationError
    from tierflow.config import IngestConfig

    with pytest.raises(ValidationError, match="on_unknown_path"):
        IngestConfig.model_validate({**config.ingest.model_dump(), "on_unknown_path": "ignore"})
    assert config.ingest.on_unknown_path == "fail"


# -- 2. an unbalanced quote does not swallow records ------------------------------------------
# the row path; the binary fast path; the set-based SQL path (the fast path hands it files in
# another encoding than UTF-8: GBK here, whose ASCII these files are). The last two hand files
# whose records span lines to the row path, which is what these tests show they do.
PATHS = ("row", "fast", "sql")


def path_config(cfg: TierflowConfig, load_path: str) -> TierflowConfig:
    if load_path == "row":
        return cfg
    if load_path == "fast":
        return with_ingest(cfg, bulk_min_bytes=0)
    return with_ingest(cfg, bulk_min_bytes=0, encodings={"crm": "gbk", "erp": "gbk", "service": "gbk"})


@pytest.mark.parametrize("load_path", PATHS)
def test_an_unbalanced_quote_rejects_its_line_and_reads_the_next_ones(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, load_path: str
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    rel = f"crm/customers/{DAY}/more.csv"
    write(landing / rel,
          "customer_id,customer_name,created_at,updated_at\n"
          f"K3,Carol,2025-01-15,{TS}\n"  # 2
          f'K4,"Dan,2025-01-15,{TS}\n'  # 3: the quote opens here and closes on line 5
          f"K5,Eve,2025-01-15,{TS}\n"  # 4
          f'K6,"Fay",2025-01-15,{TS}\n'  # 5
          f'K7,"Gus\nAlley",2025-01-15,{TS}\n'  # 6-7: a real value over two lines
          f'K8,"Hal,2025-01-15,{TS}\n'  # 8: never closed
          f"K9,Ivy,2025-01-15,{TS}\n")  # 9

    report = run_ingest(warehouse_url, landing, AS_OF, path_config(config, load_path))

    (res,) = [f for f in report.files if f.path == rel]
    # 7 records: K3, K4 (rejected), K5, K6, K7 (two lines), K8 (rejected), K9
    assert (res.rows_in, res.rows_loaded, res.rows_rejected) == (7, 5, 2)
    assert query(warehouse_url, "select customer_id, customer_name, _line_number from raw.crm__customers"
                 " where _load_id = (select load_id from tierflow_meta.load_audit where file_path = %s)"
                 " order by 3", (rel,)) == [
        ("K3", "Carol", 2), ("K5", "Eve", 4), ("K6", "Fay", 5), ("K7", "Gus\nAlley", 6), ("K9", "Ivy", 9)]
    assert query(warehouse_url, "select line_number, raw_record, reason from tierflow_meta.rejects"
                 " order by 1") == [
        (3, {"fields": ["K4", f"Dan,2025-01-15,{TS}"]},
         "malformed row: unbalanced quote in customer_name: its quoted value would run on over lines 4-5,"
         " records of their own, which are read as such"),
        (8, {"fields": ["K8", f"Hal,2025-01-15,{TS}"]},
         "malformed row: unbalanced quote in customer_name: its quoted value would run on over line 9,"
         " a record of its own, which is read as such"),
    ]


@pytest.mark.parametrize("load_path", PATHS)
def test_a_quote_that_runs_on_over_no_records_fails_the_file_naming_its_line(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, load_path: str
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    rel = f"crm/customers/{DAY}/more.csv"
    # more than 4 MiB of text after an opening quote, none of it shaped like a record
    write(landing / rel, "customer_id,customer_name,created_at,updated_at\n"
          f"K3,Carol,2025-01-15,{TS}\n" + 'K4,"Dan\n' + "free text without separators\n" * 160_000)

    with pytest.raises(IngestError) as excinfo:
        run_ingest(warehouse_url, landing, AS_OF, path_config(config, load_path))

    assert str(excinfo.value).startswith(f"{rel}: unbalanced quote on line 3: its quoted value runs on for"
                                         " more than 4194304 characters")
    assert query(warehouse_url, "select status from tierflow_meta.load_audit where file_path = %s",
                 (rel,)) == [("failed",)]


# -- 3. load_audit never stays 'running' ------------------------------------------------------
def test_a_value_the_binary_format_cannot_carry_names_line_and_column(
    warehouse_url: str, config: TierflowConfig
) -> None:
    """The row path's checks now reject such values (test_ingest_poison); should one ever get
    through, the fast path's error names the line and the column (the loader adds the file)."""
    from tierflow.extracts import BY_PATH
    from tierflow.ingest.binary_path import EncodeError, _File
    from tierflow.ingest.row_path import RunLookups
    from tierflow.ingest.schema import ensure_schema

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        f = _File(conn, BY_PATH["erp/order_lines"], ["order_id", "line_number", "product_id", "quantity",
                                                     "unit_price", "updated_at"], "CNY", AS_OF, 1, 1, 10,
                  RunLookups(conn, "CNY").key_set)
        row = {"order_id": "O1", "line_number": 99999999999, "product_id": "P1", "quantity": 1,
               "unit_price": 1, "updated_at": None}
        with pytest.raises(EncodeError) as excinfo:
            f._encode_row(4, {}, row)
    assert str(excinfo.value).startswith("line 5, column line_number: 99999999999 cannot be sent as int")


# The child takes Ctrl-C as an interactive process does, whatever it inherited: a process
# started in the background by a shell without job control (`cmd &` in a script, nohup) has
# SIGINT ignored, and so would every process it starts.
INGEST_CHILD = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import sys
from datetime import date
from pathlib import Path
from tierflow.config import load_config
from tierflow.ingest import run_ingest
url = sys.stdin.readline().strip()
print("started", flush=True)
run_ingest(url, Path(sys.argv[1]), date(2026, 3, 1), load_config(Path(sys.argv[2])), run_id="child")
"""


def big_jsonl(landing: Path, rows: int = 400_000) -> str:
    rel = f"crm/customers/{DAY}/big.jsonl"
    path = landing / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for n in range(rows):
            fh.write(f'{{"customer_id": "B{n}", "created_at": "2025-01-15", "updated_at": "{TS}"}}\n')
    return rel


def interrupt_mid_load(url: str, landing: Path, rel: str, sig: int) -> subprocess.CompletedProcess:
    """Run an ingest in a child process and send it ``sig`` once ``rel`` is loading."""
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST_CHILD, str(landing), str(ROOT / "config" / "tierflow.yml")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")},
    )
    child.stdin.write(url + "\n")
    child.stdin.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = _has_audit(url) and query(
            url, "select 1 from tierflow_meta.load_audit where file_path = %s and status = 'running'", (rel,))
        if running:
            break
        assert child.poll() is None, child.stderr.read()
        time.sleep(0.05)
    else:
        child.kill()
        pytest.fail("the child never started loading the file")
    time.sleep(0.3)  # inside the file's load
    child.send_signal(sig)
    child.wait(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, child.stdout.read(), child.stderr.read())


def _has_audit(url: str) -> bool:
    return query(url, "select to_regclass('tierflow_meta.load_audit') is not null")[0][0]


def test_an_interrupted_load_is_recorded_as_failed(warehouse_url: str, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    rel = big_jsonl(landing)

    done = interrupt_mid_load(warehouse_url, landing, rel, signal.SIGINT)

    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr, done.stderr[-3000:]
    assert query(warehouse_url, "select status, error, finished_at is not null from tierflow_meta.load_audit"
                 " where file_path = %s", (rel,)) == [
        ("failed", f"{rel}: interrupted (KeyboardInterrupt) while loading", True)]
    assert query(warehouse_url, "select count(*) from raw.crm__customers") == [(0,)]


def test_a_killed_load_is_marked_failed_by_the_next_ingest_and_loaded_again(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    rel = big_jsonl(landing)
    killed = interrupt_mid_load(warehouse_url, landing, rel, signal.SIGKILL)
    assert killed.returncode == -signal.SIGKILL
    (orphan,) = query(warehouse_url, "select load_id, status from tierflow_meta.load_audit")
    assert orphan[1] == "running"  # nobody recorded anything: the process was killed
    wait_for_other_sessions_to_end(warehouse_url)  # the server notices the closed socket

    big_jsonl(landing, rows=3)  # the corrected delivery, and the rest of the night
    write_base(landing)
    report = run_ingest(warehouse_url, landing, AS_OF, config, run_id="next")

    assert query(warehouse_url, "select status, error from tierflow_meta.load_audit where load_id = %s",
                 (orphan[0],)) == [
        ("failed", f"{rel}: orphaned: the load ended without recording an outcome (its process was killed"
                   " or lost its connection); marked failed by the start-up sweep of run next")]
    (reloaded,) = [f for f in report.files if f.path == rel]
    assert (reloaded.status, reloaded.rows_loaded) == ("loaded", 3)


def wait_for_other_sessions_to_end(url: str) -> None:
    deadline = time.monotonic() + 30
    while query(url, "select count(*) from pg_stat_activity where datname = current_database()"
                " and pid <> pg_backend_pid()") != [(0,)]:
        assert time.monotonic() < deadline, "the killed loader's session is still there"
        time.sleep(0.05)


def test_the_sweep_leaves_a_load_that_is_still_running_alone(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    """Another process's load holds its lock: its audit row is not an orphan."""
    from tierflow.ingest.schema import ensure_schema

    landing = tmp_path / "landing"
    write_base(landing)
    with psycopg.connect(warehouse_url, autocommit=True) as other:
        ensure_schema(other)
        (load_id,) = other.execute(
            "insert into tierflow_meta.load_audit (file_path, system, entity, business_date, checksum,"
            " size_bytes, status) values ('crm/customers/x/c.csv', 'crm', 'customers', %s, 'x', 1, 'running')"
            " returning load_id", (AS_OF,)).fetchone()
        other.execute("select pg_advisory_lock(hashtext('tierflow.load_audit'), %s)", (load_id,))
        run_ingest(warehouse_url, landing, AS_OF, config)
        assert query(warehouse_url, "select status from tierflow_meta.load_audit where load_id = %s",
                     (load_id,)) == [("running",)]
    # its process ended (the connection closed): now it is an orphan
    run_ingest(warehouse_url, landing, AS_OF, config)
    assert query(warehouse_url, "select status from tierflow_meta.load_audit where load_id = %s",
                 (load_id,)) == [("failed",)]


# -- 5. non-finite and out-of-range numbers in JSON lines and Parquet --------------------------
def test_non_finite_and_out_of_range_json_numbers_are_row_rejects(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    rel = f"crm/customers/{DAY}/more.jsonl"
    lines = [
        '{"customer_id": "J1", "credit_limit": NaN, "created_at": "2025-01-15", "updated_at": "%s"}',  # 1
        '{"customer_id": "J2", "credit_limit": Infinity, "created_at": "2025-01-15", "updated_at": "%s"}',
        '{"customer_id": "J3", "credit_limit": -Infinity, "created_at": "2025-01-15", "updated_at": "%s"}',
        '{"customer_id": "J4", "credit_limit": 1e400, "created_at": "2025-01-15", "updated_at": "%s"}',  # 4
        '{"customer_id": "J5", "payment_terms_days": 99999999999, "created_at": "2025-01-15",'
        ' "updated_at": "%s"}',
        '{"customer_id": "J6", "payment_terms_days": 1e10, "created_at": "2025-01-15", "updated_at": "%s"}',
        '{"customer_id": "J7", "customer_name": "nul\\u0000byte", "created_at": "2025-01-15",'
        ' "updated_at": "%s"}',  # 7
        '{"customer_id": "J8", "payment_terms_days": 1' + "0" * 5000 + ', "created_at": "2025-01-15"}',  # 8
        '{"customer_id": "J9", "credit_limit": 1e300, "payment_terms_days": 30, "note": NaN,'
        ' "created_at": "2025-01-15", "updated_at": "%s"}',  # 9: loaded
    ]
    write(landing / rel, "".join((line % TS if "%s" in line else line) + "\n" for line in lines))

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    (res,) = [f for f in report.files if f.path == rel]
    assert (res.rows_in, res.rows_loaded, res.rows_rejected, res.status) == (9, 1, 8, "loaded")
    got = {line: (raw, reason) for line, raw, reason in query(
        warehouse_url, "select line_number, raw_record, reason from tierflow_meta.rejects order by 1")}
    assert {line: reason for line, (_, reason) in got.items()} == {
        1: "bad numeric in credit_limit: NaN",
        2: "bad numeric in credit_limit: Infinity",
        3: "bad numeric in credit_limit: -Infinity",
        4: "bad numeric in credit_limit: 1e400",
        5: "bad int in payment_terms_days: 99999999999 (out of the integer range -2147483648..2147483647)",
        6: "bad int in payment_terms_days: 10000000000.0 (out of the integer range -2147483648..2147483647)",
        7: "customer_name: NUL byte (PostgreSQL text cannot hold it; shown as \u2400 in raw_record)",
        8: "malformed row: not valid JSON: Exceeds the limit (4300 digits) for integer string conversion:"
           " value has 5001 digits; use sys.set_int_max_str_digits() to increase the limit",
    }
    # JSON has no NaN: the raw record keeps the number as the text it was written as
    assert got[4][0]["credit_limit"] == "1e400" and got[1][0]["credit_limit"] == "NaN"
    assert got[7][0]["customer_name"] == "nul\u2400byte"
    assert query(warehouse_url, "select customer_id, credit_limit, _extra from raw.crm__customers"
                 " where customer_id like 'J%%'") == [("J9", 10**300, {"note": "NaN"})]


def test_non_finite_and_out_of_range_parquet_numbers_are_row_rejects(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    rel = f"crm/customers/{DAY}/more.parquet"
    (landing / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "customer_id": ["Q1", "Q2", "Q3", "Q4", "Q5", "Q6"],
        "customer_name": ["a", "b", "c", "d", "e\x00f", "ok"],
        "credit_limit": pa.array([float("nan"), float("inf"), float("-inf"), 1.5, 2.0, 1e300], pa.float64()),
        "payment_terms_days": pa.array([30, 30, 30, 2**40, 30, 30], pa.int64()),
        "created_at": ["2025-01-15"] * 6,
        "updated_at": [TS] * 6,
    }), landing / rel)

    report = run_ingest(warehouse_url, landing, AS_OF, config)

    (res,) = [f for f in report.files if f.path == rel]
    assert (res.rows_in, res.rows_loaded, res.rows_rejected) == (6, 1, 5)
    got = {line: (raw, reason) for line, raw, reason in query(
        warehouse_url, "select line_number, raw_record, reason from tierflow_meta.rejects order by 1")}
    assert {line: reason for line, (_, reason) in got.items()} == {
        1: "bad numeric in credit_limit: nan",
        2: "bad numeric in credit_limit: inf",
        3: "bad numeric in credit_limit: -inf",
        4: "bad int in payment_terms_days: 1099511627776 (out of the integer range -2147483648..2147483647)",
        5: "customer_name: NUL byte (PostgreSQL text cannot hold it; shown as \u2400 in raw_record)",
    }
    assert [got[n][0]["credit_limit"] for n in (1, 2, 3)] == ["NaN", "Infinity", "-Infinity"]
    assert query(warehouse_url, "select customer_id from raw.crm__customers"
                 " where customer_id like 'Q%%'") == [("Q6",)]


# -- 6. the summary of a failed run names extra columns and ignored paths ---------------------
def test_a_run_that_fails_later_still_reports_extra_columns_and_ignored_paths(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    landing = tmp_path / "landing"
    write_base(landing)
    write(landing / f"crm/customers/{DAY}/more.csv", csv_text(
        [*CUSTOMERS_HEADER, "Loyalty Card"], [["K3", "Carol", "2025-01-15", TS, "gold"]]))
    write(landing / f"service/ticket/{DAY}/t.csv", "ticket_id\nT1\n")  # singular: not loaded
    # a file that fails: orders after customers and products, so those are loaded first
    write(landing / f"erp/orders/{DAY}/orders.csv", "order_id,customer_id\nO1,K1\n")
    start_run(warehouse_url, "r6")

    with pytest.raises(IngestError, match="required column"):
        run_ingest(warehouse_url, landing, AS_OF, with_ingest(config, on_unknown_path="warn"), run_id="r6")

    ingest = run_summary(warehouse_url, "r6")["ingest"]
    assert ingest["extra_columns"] == ["crm/customers: loyalty card"]
    assert ingest["ignored_paths"] == [{
        "path": "service/ticket/", "kind": "unknown_entity",
        "reason": "unknown entity folder (1 file in it); did you mean service/tickets/?"}]
    assert ingest["files_failed"] == 1 and "required column(s) missing" in ingest["error"]


def test_the_report_lists_ignored_paths_and_extra_columns(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    from tierflow.report.queries import read_rejects
    from tierflow.report.sections.checks import _not_loaded

    landing = tmp_path / "landing"
    write_base(landing)
    write(landing / f"crm/customers/{DAY}/more.csv", csv_text(
        [*CUSTOMERS_HEADER, "note"], [["K3", "Carol", "2025-01-15", TS, "<b>gold</b>"]]))
    write(landing / f"crm/customer/{DAY}/c.csv", "customer_id\nK9\n")
    run_ingest(warehouse_url, landing, AS_OF, with_ingest(config, on_unknown_path="warn"), run_id="r7")

    with psycopg.connect(warehouse_url, row_factory=dict_row) as conn:
        rejects = read_rejects(conn, "r7")
    assert rejects.ignored == [("crm/customer/", "unknown entity folder (1 file in it); did you mean"
                                                 " crm/customers/?")]
    assert rejects.extra_columns == [(f"crm/customers/{DAY}/more.csv", ["note"])]
    html = _not_loaded(rejects)
    assert "crm/customer/" in html and "did you mean crm/customers/?" in html
    assert f"crm/customers/{DAY}/more.csv</td><td class=\"wrap\">note</td>" in html
