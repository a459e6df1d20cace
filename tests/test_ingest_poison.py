"""No poison pills (issue 10): a row the raw gate would refuse, or PostgreSQL would, is rejected
at ingest with its file, line and reason, so it never reaches raw to block this night and the
nights after it.

Why: the raw gates' critical expectations run on raw tables. A row that ingest accepts but a
critical expectation refuses (an fx rate of 0, a currency that is not three letters, an
override that ends before it starts) fails the gate, and being in raw it fails it again every
later night, whatever is re-delivered. A value PostgreSQL refuses (a NUL byte, an integer or
numeric overflow) or the CSV reader refuses (a field over 131,072 characters) failed the whole
file, so one bad row in a million stopped the night.

Every test runs through the three CSV loads: the row path (small files), the binary fast
path, and the set-based SQL path (the fast path hands non-UTF-8 files to it: here the systems
are configured as GBK, whose ASCII is UTF-8's).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from tierflow.config import TierflowConfig
from tierflow.extracts import BY_PATH
from tierflow.ingest import run_ingest
from tierflow.settings import EXPECTATIONS_DIR

D = date(2026, 3, 1)
TS = "2026-03-01T08:00:00"
LOAD_PATHS = ("row", "fast", "sql")


def path_config(cfg: TierflowConfig, load_path: str) -> TierflowConfig:
    """The shipped config, with every CSV sent down one load path."""
    if load_path == "row":
        return cfg  # the test files are far below ingest.bulk_min_bytes
    update: dict = {"bulk_min_bytes": 0}
    if load_path == "sql":  # the fast path reads UTF-8 only and hands the rest to SQL
        update["encodings"] = {"crm": "gbk", "erp": "gbk", "service": "gbk"}
    return cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update=update)})


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    path.write_bytes(out.getvalue().encode(encoding))
    return str(path)


def encoding_of(load_path: str) -> str:
    return "gbk" if load_path == "sql" else "utf-8"


def write_entity(
    landing: Path, entity_path: str, day: date, name: str, rows: list[dict], encoding: str = "utf-8"
) -> str:
    """A CSV of the entity's contract columns that the rows use; returns its landing path."""
    header = [c for c in BY_PATH[entity_path].column_names if any(c in r for r in rows)]
    rel = f"{entity_path}/{day.isoformat()}/{name}"
    write_csv(landing / rel, header, [[r.get(c, "") for c in header] for r in rows], encoding)
    return rel


# A good row of each entity, its key made from n: every rule holds, every key it refers to
# (customer K1, product P1, order O1, CNY the base currency, EUR with a rate) is loaded.
GOOD: dict[str, object] = {
    "erp/fx_rates": lambda n: {"rate_date": (date(2025, 1, 1) + timedelta(days=n)).isoformat(),
                               "currency": "EUR", "rate_to_base": "7.8"},
    "crm/customers": lambda n: {"customer_id": f"K{n}", "customer_name": f"Customer {n}",
                                "created_at": "2025-01-15", "updated_at": TS},
    "crm/tier_overrides": lambda n: {"customer_id": "K1", "value_tier": "high", "reason": "key account",
                                     "set_by": "Li Lei", "valid_from": f"2026-01-{n:02d}",
                                     "valid_to": "2026-06-30"},
    "crm/activities": lambda n: {"activity_id": f"A{n}", "customer_id": "K1", "activity_date": "2026-02-20",
                                 "updated_at": TS},
    "erp/products": lambda n: {"product_id": f"P{n}", "standard_cost": "6", "updated_at": TS},
    "erp/orders": lambda n: {"order_id": f"O{n}", "customer_id": "K1", "order_date": "2026-02-20",
                             "status": "completed", "currency": "CNY", "updated_at": TS},
    "erp/order_lines": lambda n: {"order_id": "O1", "line_number": str(n), "product_id": "P1",
                                  "quantity": "2", "unit_price": "10", "updated_at": TS},
    "erp/invoices": lambda n: {"invoice_id": f"I{n}", "customer_id": "K1", "invoice_date": "2026-02-20",
                               "due_date": "2026-03-20", "amount": "100", "currency": "CNY",
                               "updated_at": TS},
    "service/tickets": lambda n: {"ticket_id": f"T{n}", "customer_id": "K1", "opened_at": TS,
                                  "updated_at": TS},
}
# first row numbers 1..9 stay for the base data below
BASE = {"crm/customers": [1, 2], "erp/products": [1], "erp/orders": [1], "erp/order_lines": [1],
        "erp/fx_rates": [1]}


def write_base(landing: Path, day: date, encoding: str) -> None:
    """The minimum input plus an EUR rate: what the rows of the other files refer to."""
    for entity_path, ns in BASE.items():
        write_entity(landing, entity_path, day, "base.csv", [GOOD[entity_path](n) for n in ns], encoding)


# -- the critical raw expectations, and a row that breaks each ---------------------------------
NOT_ROW_RULES = {"expect_table_row_count_to_be_between"}  # about a whole table, not its rows
REGEX_BREAKERS = ["US", "USDX", "U5D", "ΑΒΓ", "$US"]  # ΑΒΓ: Greek capitals, letters to isalpha()


def critical_raw_expectations() -> list[tuple[str, str, dict]]:
    """(entity path, expectation type, kwargs) of every critical expectation on a raw table;
    suites over a query (the load-audit reconciliation, the minimum input) are about files
    and whole tables, not rows."""
    found = []
    for path in sorted((EXPECTATIONS_DIR / "raw").glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        table = suite["meta"]["tierflow"].get("table")
        for exp in suite["expectations"]:
            if exp.get("severity", "critical") != "critical":
                continue
            if table is None:
                # query suites check files and tables as a whole (the load-audit reconciliation,
                # the minimum input), through a column's max or min, never single rows
                assert exp["type"].startswith(("expect_column_max", "expect_column_min")), (
                    f"{path.name}: {exp['type']}"
                )
                continue
            system, entity = table.split("__")
            found.append((f"{system}/{entity}", exp["type"], exp["kwargs"]))
    return found


def breaking_values(entity_path: str, kind: str, kw: dict) -> list[dict]:
    """Changes to a good row that break the expectation, as the raw table would hold them.
    An expectation this does not know fails the test: a new critical expectation needs an
    ingest rule (row_contract.validate_row) and a case here."""
    entity = BY_PATH[entity_path]
    if kind == "expect_column_values_to_not_be_null":
        return [{kw["column"]: ""}]
    if kind == "expect_column_values_to_be_in_set":
        return [{kw["column"]: "not-a-" + str(kw["value_set"][0])}]
    if kind == "expect_column_values_to_match_regex":
        # values that do not match even after the upper-casing ingest does to currencies
        out = [{kw["column"]: v} for v in REGEX_BREAKERS
               if not re.search(kw["regex"], v) and not re.search(kw["regex"], v.upper())]
        assert out, f"no breaking value for {kw['regex']}: add one to REGEX_BREAKERS"
        return out
    if kind == "expect_column_values_to_be_between":
        col, out = kw["column"], []
        assert entity.column(col).type in ("numeric", "int"), (entity_path, col)
        if kw.get("min_value") is not None:
            low = kw["min_value"]
            out += [{col: str(low)}] if kw.get("strict_min") else [{col: str(low - 1)}, {col: str(low - 0.5)}]
        if kw.get("max_value") is not None:
            high = kw["max_value"]
            out += [{col: str(high)}] if kw.get("strict_max") else [{col: str(high + 1)}]
        return out
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = kw["column_A"], kw["column_B"]
        assert {entity.column(a).type, entity.column(b).type} <= {"date", "timestamp"}, (a, b)
        out = [{a: "2026-02-01", b: "2026-02-15"}]
        if not kw.get("or_equal"):
            out.append({a: "2026-02-15", b: "2026-02-15"})
        return out
    pytest.fail(f"critical raw expectation {kind} on {entity_path} has no ingest case in this test: "
                "enforce it per row at ingest (row_contract.validate_row) and add a case here")


def test_the_critical_raw_expectations_are_the_known_ones() -> None:
    """The cases below cover these; this pins that the derivation runs over all of them."""
    kinds = {(e, k, kw.get("column") or kw.get("column_A")) for e, k, kw in critical_raw_expectations()
             if k not in NOT_ROW_RULES}
    assert kinds >= {
        ("erp/fx_rates", "expect_column_values_to_be_between", "rate_to_base"),
        ("erp/fx_rates", "expect_column_values_to_match_regex", "currency"),
        ("crm/tier_overrides", "expect_column_pair_values_a_to_be_greater_than_b", "valid_to"),
        ("erp/orders", "expect_column_values_to_match_regex", "currency"),
        ("erp/invoices", "expect_column_values_to_match_regex", "currency"),
    }


@pytest.mark.parametrize("load_path", LOAD_PATHS)
def test_a_row_breaking_any_critical_raw_expectation_is_rejected_at_ingest(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, load_path: str
) -> None:
    landing = tmp_path / "landing"
    encoding = encoding_of(load_path)
    write_base(landing, D, encoding)
    cases: dict[str, list[tuple[str, dict]]] = {}  # entity -> (what it breaks, row)
    for entity_path, kind, kw in critical_raw_expectations():
        if kind in NOT_ROW_RULES:
            continue
        for change in breaking_values(entity_path, kind, kw):
            cases.setdefault(entity_path, []).append((f"{kind}({kw.get('column') or kw})", change))
    expected: dict[tuple[str, int], str] = {}
    good_rows: dict[str, int] = {}
    for entity_path, broken in cases.items():
        rows = [GOOD[entity_path](10)]  # line 2: a good row
        for n, (_, change) in enumerate(broken, start=11):  # lines 3...
            rows.append({**GOOD[entity_path](n), **change})
        rel = write_entity(landing, entity_path, D, "poison.csv", rows, encoding)
        good_rows[entity_path] = 1
        for line, (what, _) in enumerate(broken, start=3):
            expected[(rel, line)] = what

    report = run_ingest(warehouse_url, landing, D, path_config(config, load_path))

    with psycopg.connect(warehouse_url) as conn:
        got = {(f, line): reason for f, line, reason in conn.execute(
            "select file_path, line_number, reason from tierflow_meta.rejects")}
        for entity_path, n in good_rows.items():
            table = BY_PATH[entity_path].raw_table
            (loaded,) = conn.execute(
                f"select count(*) from raw.{table} a join tierflow_meta.load_audit l"
                " on l.load_id = a._load_id where l.file_path like '%%poison.csv'").fetchone()
            assert loaded == n, f"{entity_path}: a row breaking a critical expectation reached raw"
    missing = {k: what for k, what in expected.items() if k not in got}
    assert not missing, f"rows breaking critical expectations were loaded, not rejected: {missing}"
    assert set(got) == set(expected)
    assert report.totals()["files_failed"] == 0


# -- the cases of issue 10, night after night, with the raw gate ------------------------------
LONG = "x" * 131_073


def poison_night(landing: Path, day: date, encoding: str) -> dict[tuple[str, int], str]:
    """The base data and one file per poison pill; (file, line) -> the start of its reason."""
    write_base(landing, day, encoding)
    expected: dict[tuple[str, int], str] = {}

    def add(entity_path: str, name: str, bad: list[tuple[dict, str]]) -> None:
        rows = [GOOD[entity_path](20)] + [{**GOOD[entity_path](21 + i), **change}
                                          for i, (change, _) in enumerate(bad)]
        rel = write_entity(landing, entity_path, day, name, rows, encoding)
        for line, (_, reason) in enumerate(bad, start=3):
            expected[(rel, line)] = reason

    add("erp/fx_rates", "fx.csv", [
        ({"rate_to_base": "0"}, "rate_to_base must be greater than 0: '0'"),
        ({"rate_to_base": "0.000"}, "rate_to_base must be greater than 0: '0.000'"),
        ({"currency": "US"}, "unknown currency 'US'"),
        ({"currency": "ΑΒΓ"}, "unknown currency 'ΑΒΓ'"),
    ])
    add("crm/tier_overrides", "overrides.csv", [
        ({"valid_from": "2026-03-01", "valid_to": "2026-02-01"},
         "valid_to 2026-02-01 is before valid_from 2026-03-01"),
    ])
    add("erp/orders", "orders.csv", [
        ({"currency": "USDX"}, "unknown currency 'USDX'"),
        ({"customer_id": "K1\x00"}, "customer_id: NUL byte"),
    ])
    add("crm/customers", "customers.csv", [
        ({"customer_name": "Bad\x00Name"}, "customer_name: NUL byte"),
        ({"customer_name": LONG}, "customer_name: a value of 131073 characters, over the limit of 131072"),
    ])
    add("erp/order_lines", "lines.csv", [
        ({"line_number": "99999999999"},
         "bad int in line_number: '99999999999' (out of the integer range -2147483648..2147483647)"),
        ({"line_number": "2147483648"}, "bad int in line_number: '2147483648' (out of the integer range"),
        ({"quantity": "1e200000"}, "bad numeric in quantity: '1e200000' (out of PostgreSQL's numeric range"),
        ({"unit_price": "0." + "0" * 16383 + "1"}, "bad numeric in unit_price: '0.000"),
    ])
    return expected


def good_night(landing: Path, day: date, encoding: str) -> None:
    """The next night: new rows of every entity that had poison, and the corrected override."""
    for entity_path, n in (("erp/fx_rates", 40), ("erp/orders", 40), ("crm/customers", 40),
                           ("erp/order_lines", 40)):
        write_entity(landing, entity_path, day, "next.csv", [GOOD[entity_path](n)], encoding)
    write_entity(landing, "crm/tier_overrides", day, "overrides.csv",
                 [{**GOOD["crm/tier_overrides"](21), "valid_from": "2026-02-01", "valid_to": "2026-03-01"}],
                 encoding)


@pytest.mark.parametrize("load_path", LOAD_PATHS)
def test_poison_rows_are_rejected_and_the_night_and_the_next_pass_the_raw_gate(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig, load_path: str
) -> None:
    from tierflow.quality import run_gate

    cfg = path_config(config, load_path)
    landing = tmp_path / "landing"
    expected = poison_night(landing, D, encoding_of(load_path))

    report = run_ingest(warehouse_url, landing, D, cfg, run_id="night-1")
    assert report.totals()["files_failed"] == 0
    with psycopg.connect(warehouse_url) as conn:
        got = {(f, line): reason for f, line, reason in conn.execute(
            "select file_path, line_number, reason from tierflow_meta.rejects")}
        assert set(got) == set(expected)
        for key, start in expected.items():
            assert got[key].startswith(start), (key, got[key])
        # the NUL byte is shown, not dropped, in the raw record
        (raw,) = conn.execute("select raw_record from tierflow_meta.rejects where reason like"
                              " 'customer_name: NUL%%'").fetchone()
        assert raw["customer_name"] == "Bad\u2400Name"
        # every file's good row (line 2) is loaded; nothing else of the poisoned files is
        assert conn.execute(
            "select count(*) from tierflow_meta.load_audit where rows_loaded <> 1 and file_path not like"
            " '%%base.csv'").fetchone() == (0,)
    run_gate(warehouse_url, "raw", D, cfg, "night-1")

    good_night(landing, D + timedelta(days=1), encoding_of(load_path))
    report = run_ingest(warehouse_url, landing, D + timedelta(days=1), cfg, run_id="night-2")
    assert report.totals()["files_loaded"] == 5 and report.totals()["rows_rejected"] == 0
    run_gate(warehouse_url, "raw", D + timedelta(days=1), cfg, "night-2")


def snapshot(url: str) -> dict[str, list[tuple]]:
    """Every raw row (but its load id) and every reject, in a stable order."""
    out: dict[str, list[tuple]] = {}
    with psycopg.connect(url) as conn:
        for entity in BY_PATH.values():
            cols = ", ".join([*entity.column_names, "_line_number", "_business_date", "_extra"])
            out[entity.raw_table] = conn.execute(
                f"select {cols} from raw.{entity.raw_table} order by _business_date, _line_number, 1"
            ).fetchall()
        out["rejects"] = conn.execute(
            "select file_path, line_number, raw_record, reason from tierflow_meta.rejects"
            " order by file_path, line_number").fetchall()
        out["audit"] = conn.execute(
            "select file_path, rows_in, rows_loaded, rows_rejected, status from tierflow_meta.load_audit"
            " order by file_path").fetchall()
    return out


def test_the_three_paths_agree_on_every_poison_row(
    warehouse_url: str, tmp_path: Path, config: TierflowConfig
) -> None:
    seen = {}
    for load_path in LOAD_PATHS:
        landing = tmp_path / load_path
        poison_night(landing, D, encoding_of(load_path))
        run_ingest(warehouse_url, landing, D, path_config(config, load_path))
        seen[load_path] = snapshot(warehouse_url)
        with psycopg.connect(warehouse_url, autocommit=True) as conn:
            conn.execute("drop schema raw cascade")
            conn.execute("drop schema tierflow_meta cascade")
    assert len(seen["row"]["rejects"]) == 13
    for table in seen["row"]:
        assert seen["fast"][table] == seen["row"][table], table
        assert seen["sql"][table] == seen["row"][table], table


@pytest.mark.parametrize("text", [
    "123.456", "1e131071", "9.9e131071", "-1e131071", "1e131072", "1e-16383", "1e-16384", "0.5e-16383",
    "1.5e-16383", "0e-16383", "0e-16384", "0e99999999", "0e3000000000", "1e2147483647", "0.000",
])
def test_the_numeric_range_is_postgresqls(warehouse_url: str, text: str) -> None:
    """PostgreSQL is the oracle: the loader takes a number exactly when its numeric type does."""
    from decimal import Decimal

    from tierflow.ingest.row_contract import _numeric_in_range

    with psycopg.connect(warehouse_url) as conn:
        (valid,) = conn.execute("select pg_input_is_valid(%s, 'numeric')", (text,)).fetchone()
    assert _numeric_in_range(Decimal(text)) == valid
