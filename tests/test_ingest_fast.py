"""The binary CSV path (tierflow.ingest.binary_path) loads exactly what the row path loads.

Why: the fast path checks values with vectorised kernels and writes binary COPY rows, the row
path parses each value in Python; the SPEC's "nothing lost" promise and every reject reason
must not depend on which one ran. These tests load the same hand-made files (every kind of
value the two could read differently: spaces at an edge, ``1e3``, ``2.0`` and ``01`` in an
int column, ``-0``, 16-digit and 7-decimal numbers, Feb 30, timestamps with a space, an
offset or a fraction, ``yes``/``TRUE``/``on``, lower-case currencies, unknown keys, future
dates, duplicate keys in different spellings, quoted commas and quotes, non-ASCII) once
through each path into the same database and compare every raw row and every reject.
"""

from __future__ import annotations

import csv
import io
import random
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from tierflow.config import TierflowConfig
from tierflow.ingest import IngestError, run_ingest
from tierflow.ingest.key_hashing import KeyRuns as _KeyRuns
from tierflow.ingest.key_hashing import KeySet

DAY = "2026-03-01"
AS_OF = date(2026, 3, 1)
TS = "2026-03-01T08:00:00"
ENTITIES = ("erp__fx_rates", "crm__customers", "erp__products", "erp__orders", "erp__order_lines")


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def tricky_landing(landing: Path, seed: int = 3, pad: bool = False) -> None:
    """Rows of plain values (the fast path's own encodings: 0 to 6 decimals, 9-digit
    integers, both timestamp separators, every bool word, ...) where about one row in three
    has one value the two paths could read apart. ``pad``: ids zero-padded to one length
    (K007, O0042, P07), which the fast path encodes as fixed-width fields."""
    rng = random.Random(seed)
    k_, o_, p_ = (("K{:03d}", "O{:04d}", "P{:02d}") if pad else ("K{}", "O{}", "P{}"))
    pick = rng.choice

    def row(plain: list[list[str]], tricky: list[list[str]]) -> list[str]:
        values = [pick(p) for p in plain]
        if rng.random() < 0.35:
            col = rng.randrange(len(plain))
            if tricky[col]:
                values[col] = pick(tricky[col])
        return values

    ts = [TS, "2026-02-28 23:59:59", "2024-02-29T00:00:00", "1999-12-31T23:59:59", "2000-01-01T00:00:00",
          "2026-03-01T08:00:00+08:00", "2025-12-31 23:30:00-05:30", "2026-03-01T08:00:00Z",
          "2026-03-01T08:00:00-15:59"]
    bad_ts = ["2026-03-01T08:00:00.5", " 2026-03-01T08:00:00", "2026-02-30T08:00:00",
              "2026-03-01T24:00:00", "2026-3-1T08:00:00", "yesterday", "",
              "2026-03-01T08:00:00+0800", "2026-03-01T08:00:00+08", "2026-03-01T08:00:00+24:00",
              "2026-03-01T08:00:00+16:00", "2026-03-01T08:00:00+08:60", "2026-03-01T08:00:00z",
              "2026-03-01T08:00:00.5+08:00", "2026-03-01T08:00:00 +08:00", "2026-03-01T08:00:00+08:00:00",
              "2026-03-01T08:00:00+08:00:00.5", "2026-03-01T08:00:00-15:59:59", "2026-03-01t08:00:00"]
    dates = ["2025-01-15", "2024-02-29", "1970-01-01", "1969-12-31", "2000-02-29", "2026-03-02"]
    bad_dates = ["2025-02-29", "2026-02-30", "2025-1-5", " 2025-01-15", "2025-01-15T10:00:00",
                 "0000-01-01", "20250115", "2026-03-05", ""]
    nums = ["12.5", "0", "7.50", "0.000001", "999999999.999999", "123456789", "42", "3.14159", ""]
    bad_nums = ["007.50", "1e3", "-0", "-5", "NaN", " 3 ", "1234567890123456", "0.1234567", "1.", ".5",
                "12x"]
    ints = ["30", "0", "7", "999999999", ""]
    bad_ints = ["2.0", "01", "-0", "-1", "2147483647", "1.5", " 7", "x"]
    bools = ["true", "false", "t", "f", "1", "0", "yes", "no", "y", "n", ""]
    bad_bools = ["TRUE", "on", " n ", "Yes"]
    names = ["Alice", "王芳", 'say "hi"', "a,b", "Ünïcødé", ""]
    bad_names = [" Bob ", "\u00a0Li\u3000", "  ", "\tTab"]
    write_csv(landing / f"erp/fx_rates/{DAY}/fx.csv", ["rate_date", "currency", "rate_to_base"],
              [["2026-01-01", "EUR", "7.8"], ["2026-02-20", "gbp", "9.1"], ["2026-02-21", "USD", "-1"]])
    customers = [[k_.format(k)] + row([names, ["b2b", "b2c", ""], nums, ints, dates, ts, bools],
                                 [bad_names, ["B2C", " b2b", "x"], bad_nums, bad_ints, bad_dates, bad_ts,
                                  bad_bools]) for k in range(1, 301)]
    customers[49][0] = f" {k_.format(50)} "
    customers.append([k_.format(1), "again", "b2b", "", "", "2025-01-15", TS, ""])  # duplicate of line 2
    customers.append(["", "nobody", "", "", "", "2025-01-15", TS, ""])  # missing id
    write_csv(landing / f"crm/customers/{DAY}/c.csv",
              ["customer_id", "customer_name", "customer_type", "credit_limit", "payment_terms_days",
               "created_at", "updated_at", "is_active"], customers)
    # columns in another order than the contract's; "Note" is an unknown, extra column
    write_csv(landing / f"erp/products/{DAY}/p.csv", ["updated_at", "Note", "product_id", "standard_cost"],
              [[TS, f"n{p}", p_.format(p), pick(["6", "6.25", "-1", "x", "1e2", "0.5"])]
               for p in range(1, 21)])
    orders = [[o_.format(o)] + row(
        [[k_.format(k) for k in range(1, 301)], ["2026-02-20", "2026-02-25", "2026-03-02"],
         ["completed", "pending", "returned"], ["CNY", "EUR", "GBP"], ts],
        [[" " + k_.format(7), "K999", k_.format(50), ""], ["2025-12-31", "2026-03-09", "2026-02-30", ""],
         ["Completed", "lost"], ["cny", "USD", "XX", " CNY", "C1Y"], bad_ts]) for o in range(1, 401)]
    write_csv(landing / f"erp/orders/{DAY}/o.csv",
              ["order_id", "customer_id", "order_date", "status", "currency", "updated_at"], orders)
    lines = []
    for n in range(1, 1501):
        order = o_.format(rng.randint(1, 400) if n % 50 else 999)
        lines.append([order] + row(
            [[str(n % 9 + 1)], [p_.format(p) for p in range(1, 21)], nums[:-1], nums[:-1], nums, nums, ts],
            [["1.0", "01", "2", "x"], [" " + p_.format(3), "P99", ""], bad_nums, bad_nums, ["-1"], ["-1"],
             bad_ts]))
    write_csv(landing / f"erp/order_lines/{DAY}/l.csv",
              ["order_id", "line_number", "product_id", "quantity", "unit_price", "discount_amount",
               "unit_cost", "updated_at"], lines)


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every raw row (but its load id) and every reject, in a stable order."""
    out: dict[str, list[tuple]] = {}
    with psycopg.connect(url) as conn:
        for table in ENTITIES:
            cols = [r[0] for r in conn.execute(
                "select column_name from information_schema.columns where table_schema = 'raw'"
                " and table_name = %s and column_name <> '_load_id' order by ordinal_position", (table,))]
            out[table] = conn.execute(
                f"select {', '.join(cols)} from raw.{table} order by _line_number").fetchall()
        out["rejects"] = conn.execute(
            "select file_path, line_number, raw_record, reason from tierflow_meta.rejects"
            " order by file_path, line_number").fetchall()
        out["audit"] = conn.execute(
            "select file_path, rows_in, rows_loaded, rows_rejected, extra_columns, status"
            " from tierflow_meta.load_audit order by load_id").fetchall()
    return out


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("drop schema raw cascade")
        conn.execute("drop schema tierflow_meta cascade")


def with_bulk_min(cfg: TierflowConfig, size: int) -> TierflowConfig:
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"bulk_min_bytes": size})})


@pytest.mark.parametrize("block", [None, 4096], ids=["one-block", "many-blocks-in-threads"])
def test_fast_path_loads_and_rejects_exactly_what_the_row_path_does(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch, block: int | None,
) -> None:
    from tierflow.ingest import binary_path as fast

    if block:  # the order lines file (~75 kB) becomes ~18 blocks, checked two at a time
        monkeypatch.setattr(fast, "BLOCK", block)
    landing = tmp_path / "landing"
    tricky_landing(landing)

    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 10**12))  # row by row
    by_row = snapshot(warehouse_url)
    reset(warehouse_url)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))
    fast = snapshot(warehouse_url)

    assert "row by row" not in caplog.text and "set-based in SQL" not in caplog.text
    for table in (*ENTITIES, "rejects", "audit"):
        assert fast[table] == by_row[table], table
    # the inputs do exercise both outcomes in every file: 3 + 302 + 20 + 400 + 1500 rows
    assert [a[1] for a in fast["audit"]] == [3, 302, 20, 400, 1500]
    assert all(a[2] > 0 and a[3] > 0 for a in fast["audit"]), fast["audit"]
    # spot checks worked out by hand on the fixed values
    reasons = {(f.split("/")[1], line): reason for f, line, _, reason in fast["rejects"]}
    assert reasons[("fx_rates", 4)] == "negative rate_to_base: -1"
    assert reasons[("customers", 302)] == (
        "duplicate key (customer_id) = 'K1' also on line 2 of this file")
    assert reasons[("customers", 303)] == "missing required value: customer_id"
    assert fast["erp__fx_rates"][1][:3] == (date(2026, 2, 20), "GBP", Decimal("9.1"))


def test_fast_path_with_ids_of_one_length_matches_the_row_path(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ids of one length (K007, O0042, P07) in blocks without an odd id are encoded as fixed-width
    fields laid side by side by numpy; blocks with one (" K007", "K999") join per row."""
    from tierflow.ingest import binary_path as fast

    monkeypatch.setattr(fast, "BLOCK", 4096)
    joins: list[int] = []
    real_join = fast._join_pieces
    monkeypatch.setattr(fast, "_join_pieces", lambda pieces, n: joins.append(
        sum(not isinstance(p, fast.np.ndarray) for p in pieces)) or real_join(pieces, n))
    landing = tmp_path / "landing"
    tricky_landing(landing, pad=True)

    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 10**12))  # row by row
    by_row = snapshot(warehouse_url)
    reset(warehouse_url)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))
    fast_rows = snapshot(warehouse_url)

    assert "row by row" not in caplog.text and "set-based in SQL" not in caplog.text
    for table in (*ENTITIES, "rejects", "audit"):
        assert fast_rows[table] == by_row[table], table
    assert [a[1] for a in fast_rows["audit"]] == [3, 302, 20, 400, 1500]
    # blocks with no variable-width piece at all (every field fixed) and blocks with some
    assert 0 in joins and any(j > 0 for j in joins), joins
    assert fast_rows["crm__customers"][0][0] == "K001"


def test_timestamps_with_an_offset_are_plain_rows_of_the_fast_path(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture,
) -> None:
    """``2026-03-01 08:00:00+08:00`` (what many CRM and ERP exports write) and ``...Z`` are
    checked and encoded vectorised, like naive timestamps, to the instant the row path stores;
    the future-date rule reads the date as written (the row path's ``value.date()``), not the
    UTC date. Other endings take the row path's checks one by one."""
    landing = tmp_path / "landing"
    write_csv(landing / f"crm/customers/{DAY}/c.csv", ["customer_id", "created_at", "updated_at"],
              [["K1", "2025-01-15", TS], ["K2", "2025-01-15", TS]])
    header = ["ticket_id", "customer_id", "opened_at", "closed_at", "handling_minutes", "updated_at"]
    tickets = [  # extract date 2026-03-01, max_future_days 1: opened_at up to 2026-03-02 as written
        ["T1", "K1", "2026-03-01T08:00:00+08:00", "2026-03-01 09:30:00-05:30", "10", "2026-03-01T08:00:00Z"],
        ["T2", "K2", "2026-03-02T23:30:00-05:00", "", "5", "2026-03-01 00:00:00+00:00"],  # UTC: 03-03
        ["T3", "K1", "2026-03-03T01:00:00+08:00", "", "5", TS],  # UTC 03-02, but written 03-03
        ["T4", "K1", "2026-03-01T08:00:00+24:00", "", "5", TS],
        ["T5", "K1", "2026-03-01T08:00:00+08:60", "", "5", TS],  # Python reads +09:00, PostgreSQL not
        ["T6", "K1", "2026-03-01T08:00:00+0800", "", "5", TS],
        ["T7", "K1", "2026-03-01T08:00:00z", "", "5", TS],
        ["T8", "K1", "2026-03-01T08:00:00.5+08:00", "", "5", TS],
        ["T9", "K2", "2026-03-01T08:00:00+15:59", "", "5", "2026-03-01T08:00:00-00:00"],
        ["T10", "K2", "2026-03-01T08:00:00+16:00", "", "5", TS],  # beyond PostgreSQL's offsets
    ]
    write_csv(landing / f"service/tickets/{DAY}/t.csv", header, tickets)

    def load(bulk_min: int) -> tuple[dict, str]:
        with caplog.at_level("DEBUG", logger="tierflow.ingest"):
            caplog.clear()
            with pytest.raises(IngestError, match="never delivered"):  # no orders: fine here
                run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, bulk_min))
            text = caplog.text
        with psycopg.connect(warehouse_url) as conn:
            got = {
                "tickets": conn.execute("select ticket_id, opened_at, closed_at, updated_at from"
                                        " raw.service__tickets order by _line_number").fetchall(),
                "customers": conn.execute("select customer_id, created_at, updated_at from"
                                          " raw.crm__customers order by _line_number").fetchall(),
                "rejects": conn.execute("select line_number, reason from tierflow_meta.rejects"
                                        " order by 1").fetchall(),
            }
        reset(warehouse_url)
        return got, text

    by_row, _ = load(10**12)
    fast, log = load(0)
    assert "row by row" not in log and "set-based in SQL" not in log
    # T3 to T8 and T10 are the rows checked one by one; T1, T2, T9 and both customers are not
    assert "10 rows in" in log and "(7 checked one by one)" in log, log
    assert fast == by_row

    def utc(*parts: int) -> datetime:
        return datetime(*parts, tzinfo=UTC)

    assert fast["tickets"] == [  # the instants, worked out by hand
        ("T1", utc(2026, 3, 1, 0, 0), utc(2026, 3, 1, 15, 0), utc(2026, 3, 1, 8, 0)),
        ("T2", utc(2026, 3, 3, 4, 30), None, utc(2026, 3, 1, 0, 0)),
        ("T6", utc(2026, 3, 1, 0, 0), None, utc(2026, 3, 1, 8, 0)),
        ("T8", utc(2026, 3, 1, 0, 0, 0, 500_000), None, utc(2026, 3, 1, 8, 0)),
        ("T9", utc(2026, 2, 28, 16, 1), None, utc(2026, 3, 1, 8, 0)),
    ]
    assert fast["rejects"] == [
        (4, "opened_at 2026-03-03 is in the future: more than 1 day(s) after the extract date 2026-03-01"),
        (5, "bad timestamp in opened_at: '2026-03-01T08:00:00+24:00'"),
        (6, "bad timestamp in opened_at: '2026-03-01T08:00:00+08:60'"),
        (8, "bad timestamp in opened_at: '2026-03-01T08:00:00z'"),
        (11, "bad timestamp in opened_at: '2026-03-01T08:00:00+16:00'"),
    ]


def test_duplicate_in_another_block_and_hash_collision_free_check(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks of ~200 bytes: a key repeated many blocks later is still found (held back,
    compared exactly with its first line, which is read again from the file)."""
    from tierflow.ingest import binary_path as fast

    monkeypatch.setattr(fast, "BLOCK", 200)
    landing = tmp_path / "landing"
    write_csv(landing / f"crm/customers/{DAY}/c.csv", ["customer_id", "created_at", "updated_at"],
              [[f"K{k}", "2025-01-15", TS] for k in range(1, 101)] + [["K3", "2025-01-15", TS],
                                                                       [" K50", "2025-01-15", TS]])
    with pytest.raises(IngestError, match="never delivered"):  # only customers here: loaded first
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))
    with psycopg.connect(warehouse_url) as conn:
        # 102 rows: K1..K100 loaded (lines 2-101); line 102 repeats K3 (line 4), 103 K50 (line 51)
        assert conn.execute("select rows_in, rows_loaded, rows_rejected from tierflow_meta.load_audit"
                            ).fetchall() == [(102, 100, 2)]
        assert conn.execute("select line_number, reason from tierflow_meta.rejects order by 1"
                            ).fetchall() == [
            (102, "duplicate key (customer_id) = 'K3' also on line 4 of this file"),
            (103, "duplicate key (customer_id) = 'K50' also on line 51 of this file"),
        ]


def test_key_set_is_exact() -> None:
    import pyarrow as pa

    # 60,000 keys (above KeySet.SMALL: the hashed lookup), every other id from K0
    keys = KeySet(pa.array([f"K{i}" for i in range(0, 120_000, 2)]))
    probe = pa.array(["K0", "K1", "K119998", "K120000", "", "K0 ", "k0", "K00"])
    assert keys.contains(probe).tolist() == [True, False, True, False, False, False, False, False]
    assert "K4" in keys and "K5" not in keys


def test_key_runs_return_the_records_of_every_repeated_hash() -> None:
    import numpy as np

    runs = _KeyRuns(expected_rows=4 * _KeyRuns.PART_ROWS)  # 4 parts: by the hash's top 2 bits
    top = np.uint64(1) << np.uint64(62)  # hashes 0..9 in part 0, top + 5 in part 1
    for block in range(6):  # six blocks of hashes 0..9 (block 0) or 10*block..10*block+9, records 1..60
        h = np.arange(10 * block, 10 * block + 10, dtype=np.uint64)
        if block == 3:  # records 31-40: hashes 0..9 again
            h = np.arange(10, dtype=np.uint64)
        runs.add(h, np.arange(10 * block + 1, 10 * block + 11))
    runs.add(np.array([top + np.uint64(5), top + np.uint64(5)], dtype=np.uint64), np.array([61, 62]))
    runs.add(np.array([np.uint64(25), top + np.uint64(5)], dtype=np.uint64), np.array([63, 64]))
    # part 0: hash k (0..9) on record k+1 and k+31; hash 25 on records 26 and 63
    # part 1: hash top+5 on records 61, 62, 64
    assert [r.tolist() for r in runs.repeats()] == [[*range(1, 11), 26, *range(31, 41), 63], [61, 62, 64]]
    assert runs.count == 64


def test_too_many_odd_rows_go_to_the_set_based_path_with_the_same_result(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tierflow.ingest import binary_path as fast

    landing = tmp_path / "landing"
    tricky_landing(landing)
    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 10**12))  # row by row
    by_row = snapshot(warehouse_url)
    reset(warehouse_url)
    monkeypatch.setattr(fast, "SLOW_ROWS_LIMIT", 5)  # every file but fx_rates has more odd rows
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))

    assert caplog.text.count("more than 5 rows need checking one by one") == 4
    assert snapshot(warehouse_url) == by_row


def test_bom_crlf_and_no_final_newline_read_alike(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture
) -> None:
    landing = tmp_path / "landing"
    tricky_landing(landing)
    path = landing / f"crm/customers/{DAY}/c.csv"
    text = path.read_text(encoding="utf-8").rstrip("\n").replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))  # BOM, CRLF, no newline at the end

    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 10**12))
    by_row = snapshot(warehouse_url)
    reset(warehouse_url)
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))

    assert "row by row" not in caplog.text and "set-based in SQL" not in caplog.text
    assert snapshot(warehouse_url) == by_row
    assert by_row["audit"][1][:2] == (f"crm/customers/{DAY}/c.csv", 302)


def test_growing_key_set_is_exact_as_pieces_are_added() -> None:
    import pyarrow as pa
    from tierflow.ingest.key_hashing import GrowingKeySet

    keys = GrowingKeySet(pa.array([f"O{i}" for i in range(0, 120_000, 3)]))  # 40,000 keys
    for day in range(1, 41):  # 40 more days of 1,500 new keys each: O120000..O179999
        keys.add(pa.array([f"O{i}" for i in range(118_500 + 1_500 * day, 120_000 + 1_500 * day)]))
    keys.add(pa.array([], pa.string()))
    sizes = [p.size for p in keys.parts]
    assert keys.size == 40_000 + 60_000 == sum(sizes)
    # each set more than twice the next: at most log2(100,000) ~ 17 of them
    assert all(a > 2 * b for a, b in zip(sizes, sizes[1:], strict=False)), sizes
    probe = pa.array(["O0", "O1", "O3", "O119997", "O119998", "O120000", "O179999", "O180000", "o0", ""])
    assert keys.contains(probe).tolist() == [True, False, True, True, False, True, True, False, False, False]
    assert "O150000" in keys and "O2" not in keys


def test_key_sets_kept_across_a_nights_files_load_what_the_row_path_loads(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A first night of three days: each day's order lines are checked against the orders of
    every earlier file, held by the run and grown as files load, whichever path loaded them:
    day 1's orders on the binary path, day 2's row by row (a file under ``bulk_min_bytes``),
    day 3's set-based in SQL (too many odd rows for the binary path). An order rejected in its
    file stays unknown to later order lines, an order of a later day is unknown before it."""
    from tierflow.ingest import binary_path as fast

    landing = tmp_path / "landing"
    days = ["2026-02-27", "2026-02-28", "2026-03-01"]
    write_csv(landing / f"crm/customers/{days[0]}/c.csv", ["customer_id", "created_at", "updated_at"],
              [[f"K{k}", "2025-01-15", TS] for k in range(1, 6)])
    write_csv(landing / f"erp/products/{days[0]}/p.csv", ["product_id", "standard_cost", "updated_at"],
              [["P1", "6.25", TS]])
    header = ["order_id", "customer_id", "order_date", "status", "currency", "updated_at"]
    for d, day in enumerate(days, start=1):
        orders = [[f"O{d}{i:03d}", f"K{i % 5 + 1}", day, "completed", "CNY", f"{day}T08:00:00+08:00"]
                  for i in range(1, 200)]
        orders[9][1] = "K9"  # unknown customer: O{d}010 is rejected
        if d == 2:  # day 2: a small file, row by row
            orders = orders[:20]
        if d == 3:  # day 3: 1 odd value (a space) in every row, set-based in SQL past the limit
            orders = [[o[0], f" {o[1]}", *o[2:]] for o in orders]
        write_csv(landing / f"erp/orders/{day}/o.csv", header, orders)
        # each day's lines refer to orders of days 1, 2 and 3, which exist by then or not
        lines = [[f"O{e}{i:03d}", str(n), "P1", "2", "10", "0", "6", TS]
                 for e in (1, 2, 3) for i in (1, 10, 15, 150) for n in range(1, 11)]
        write_csv(landing / f"erp/order_lines/{day}/l.csv",
                  ["order_id", "line_number", "product_id", "quantity", "unit_price", "discount_amount",
                   "unit_cost", "updated_at"], lines)
    tables = ("crm__customers", "erp__products", "erp__orders", "erp__order_lines")

    def snap() -> dict:
        with psycopg.connect(warehouse_url) as conn:
            got = {t: conn.execute(f"select * from raw.{t} order by _business_date, _line_number"
                                   ).fetchall() for t in tables}
            got["rejects"] = conn.execute("select file_path, line_number, raw_record->>'order_id', reason"
                                          " from tierflow_meta.rejects order by 1, 2").fetchall()
        return {t: [r[1:] if t != "rejects" else r for r in rows] for t, rows in got.items()}

    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 10**12))  # row by row
    by_row = snap()
    reset(warehouse_url)
    monkeypatch.setattr(fast, "SLOW_ROWS_LIMIT", 100)
    fetched: list[str] = []
    real_fetch = fast.fetch_keys

    def counting_fetch(conn: psycopg.Connection, entity: object, column: str) -> object:
        fetched.append(f"{entity.path}.{column}")
        return real_fetch(conn, entity, column)

    import tierflow.ingest.row_path as row_path
    monkeypatch.setattr(row_path, "fetch_keys", counting_fetch)
    orders_bytes = (landing / f"erp/orders/{days[1]}/o.csv").stat().st_size
    with caplog.at_level("INFO", logger="tierflow.ingest"):
        run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, orders_bytes + 1))
    fast_rows = snap()

    assert f"erp/orders/{days[2]}/o.csv: loading set-based in SQL" in caplog.text
    assert "row by row" not in caplog.text
    assert fast_rows == by_row
    # the orders' keys were read from the warehouse twice in the run: for day 1's order lines,
    # and again after the set-based load of day 3 (which does not say what it loaded); the
    # customers' once, for day 1's orders (day 3's went to SQL)
    assert sorted(fetched) == ["crm/customers.customer_id", "erp/orders.order_id", "erp/orders.order_id",
                               "erp/products.product_id"], fetched
    # worked out by hand: day d's lines find the orders of days <= d but O{e}010 (rejected in
    # its file) and O2150 (day 2's file has 20 orders), 10 lines each
    unknown = {}
    for f, _, order, reason in fast_rows["rejects"]:
        if "order_lines" in f:
            assert reason == f"unknown order_id {order!r}: no such erp/orders row loaded", reason
            unknown.setdefault(f.split("/")[2], set()).add(order)
    day3 = {"O3001", "O3010", "O3015", "O3150"}
    assert unknown == {days[0]: {"O1010", "O2001", "O2010", "O2015", "O2150"} | day3,
                       days[1]: {"O1010", "O2010", "O2150"} | day3,
                       days[2]: {"O1010", "O2010", "O2150", "O3010"}}
    assert len([r for r in fast_rows["rejects"] if "order_lines" in r[0]]) == 10 * (9 + 7 + 4)


def test_a_long_value_in_a_block_changes_no_other_values_hash(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value's 64-bit hash is its own: it used to depend on the longest value of the array it
    was hashed in (zero words past its end were mixed in), so one 9-character id in a block
    made every order's customer unknown and let a key repeated from an earlier block through."""
    import pyarrow as pa
    from tierflow.ingest import binary_path as fast
    from tierflow.ingest.key_hashing import hash_strings
    monkeypatch.setattr(fast, "BLOCK", 200)
    landing = tmp_path / "landing"
    customers = [[f"K{k}", "2025-01-15", TS] for k in range(1, 41)]
    customers += [["K3", "2025-01-15", TS], ["K1234567890", "2025-01-15", TS]]  # a later block
    write_csv(landing / f"crm/customers/{DAY}/c.csv", ["customer_id", "created_at", "updated_at"], customers)
    write_csv(landing / f"erp/products/{DAY}/p.csv", ["product_id", "standard_cost", "updated_at"],
              [["P1", "6.25", TS]])
    orders = [[f"O{i}", f"K{i % 40 + 1}", DAY, "completed", "CNY", TS] for i in range(1, 31)]
    orders.insert(20, ["O99", "K99999999999", DAY, "completed", "CNY", TS])  # unknown, and long
    write_csv(landing / f"erp/orders/{DAY}/o.csv",
              ["order_id", "customer_id", "order_date", "status", "currency", "updated_at"], orders)
    write_csv(landing / f"erp/order_lines/{DAY}/l.csv",
              ["order_id", "line_number", "product_id", "quantity", "unit_price", "updated_at"],
              [["O1", "1", "P1", "1", "5", TS]])

    run_ingest(warehouse_url, landing, AS_OF, with_bulk_min(config, 0))
    with psycopg.connect(warehouse_url) as conn:
        rejects = conn.execute("select file_path, line_number, reason from tierflow_meta.rejects"
                               " order by 1, 2").fetchall()
        loaded = conn.execute("select rows_loaded from tierflow_meta.load_audit order by load_id").fetchall()
    assert rejects == [  # by hand: line 42 repeats K3 (line 4); line 22 is O99's
        (f"crm/customers/{DAY}/c.csv", 42, "duplicate key (customer_id) = 'K3' also on line 4 of this file"),
        (f"erp/orders/{DAY}/o.csv", 22,
         "unknown customer_id 'K99999999999': no such crm/customers row loaded"),
    ]
    assert loaded == [(41,), (1,), (30,), (1,)]

    alone = hash_strings(pa.array(["K3"]))[0][0]
    assert hash_strings(pa.array(["K3", "K123456789012"]))[0][0] == alone
    assert hash_strings(pa.array(["K3"]), width=64)[0][0] == alone
    assert hash_strings(pa.array(["K3\x00"]))[0][0] != alone  # the length is part of it
