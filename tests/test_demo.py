"""Tests of the demo-data generator (tierflow.demo).

Why: the demo data is the pipeline's test input and its showcase. It must be reproducible,
follow the landing contract exactly, look like a real business (so tiers mean something),
and its manifest must point at every bad row precisely, because reject tests rely on it.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
from tierflow.demo import BAD_KINDS, MANIFEST_NAME, generate
from tierflow.extracts import BY_PATH

END = date(2026, 11, 20)
SMALL = {"customers": 60, "days": 40, "seed": 7, "end_date": END}
MEDIUM = {"customers": 400, "days": 240, "seed": 11, "end_date": END}
PATH_RE = re.compile(r"^(\w+)/(\w+)/(\d{4}-\d{2}-\d{2})/[^/]+\.csv$")
HAN = re.compile(r"[\u4e00-\u9fff]")
FX = {"CNY": 1.0, "USD": 7.1, "EUR": 7.8}  # close enough to weigh revenue across currencies


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _read(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


def _rows(root: Path, entity: str) -> list[tuple[str, dict[str, str]]]:
    """(date folder, row) for every data row of an entity, in folder order."""
    out = []
    for f in sorted((root / entity).rglob("*.csv")):
        with f.open(encoding="utf-8", newline="") as fh:
            out.extend((f.parent.name, r) for r in csv.DictReader(fh))
    return out


def _latest(rows: list[tuple[str, dict[str, str]]], key: str) -> dict[str, dict[str, str]]:
    """Supersession as the loader does it: newest updated_at (then later folder) wins."""
    best: dict[str, tuple[tuple[str, str], dict[str, str]]] = {}
    for folder, r in rows:
        rank = (r["updated_at"], folder)
        if r[key] not in best or rank >= best[r[key]][0]:
            best[r[key]] = (rank, r)
    return {k: v[1] for k, v in best.items()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("small")
    return root, generate(root, **SMALL)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("medium")
    return root, generate(root, **MEDIUM)


def test_same_arguments_give_identical_bytes(small: tuple[Path, dict], tmp_path: Path) -> None:
    root, manifest = small
    again = generate(tmp_path / "again", **SMALL)
    assert _files(root) == _files(tmp_path / "again")
    assert again == manifest
    other = generate(tmp_path / "other", **{**SMALL, "seed": 8})
    assert _files(tmp_path / "other") != _files(root)
    assert other["rows"] != manifest["rows"] or other["bad_rows"] != manifest["bad_rows"]


def test_layout_dates_and_headers(small: tuple[Path, dict]) -> None:
    root, manifest = small
    start = END - timedelta(days=SMALL["days"] - 1)
    assert manifest["date_range"] == {"start": start.isoformat(), "end": END.isoformat(),
                                      "days": SMALL["days"]}
    counts: dict[str, int] = defaultdict(int)
    files = [p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME]
    assert len(files) == manifest["files"]
    for p in files:
        rel = p.relative_to(root).as_posix()
        m = PATH_RE.match(rel)
        assert m, rel
        entity = BY_PATH[f"{m[1]}/{m[2]}"]
        assert start <= date.fromisoformat(m[3]) <= END, rel
        header, *data = _read(p)
        assert set(entity.required_columns) <= set(header), rel
        assert set(header) <= set(entity.column_names), rel
        assert data, f"{rel} has no data rows"
        assert all(len(r) == len(header) for r in data), rel
        counts[entity.path] += len(data)
    assert dict(counts) == {k: v for k, v in manifest["rows"].items() if v}


def test_every_entity_and_the_first_day_snapshot(small: tuple[Path, dict]) -> None:
    root, manifest = small
    first = (END - timedelta(days=SMALL["days"] - 1)).isoformat()
    assert all(manifest["rows"][p] > 0 for p in BY_PATH if p != "crm/tier_overrides")
    assert {f for f, _ in _rows(root, "erp/products")} >= {first}
    fx = _rows(root, "erp/fx_rates")
    assert len(fx) == 2 * SMALL["days"]
    assert {r["currency"] for _, r in fx} == {"USD", "EUR"}


def test_no_unlisted_duplicate_keys_in_a_file(small: tuple[Path, dict]) -> None:
    """Re-deliveries go to later files; the only in-file duplicates are the listed bad rows."""
    root, manifest = small
    listed = {(b["file"], b["line"]) for b in manifest["bad_rows"] if b["kind"] == "duplicate_key"}
    for p in root.rglob("*.csv"):
        rel = p.relative_to(root).as_posix()
        entity = BY_PATH["/".join(rel.split("/")[:2])]
        header, *data = _read(p)
        idx = [header.index(k) for k in entity.key]
        seen: set[tuple[str, ...]] = set()
        for line, r in enumerate(data, start=2):
            key = tuple(r[i] for i in idx)
            assert key not in seen or (rel, line) in listed, (rel, line, key)
            seen.add(key)


def test_realistic_mix_and_pareto_revenue(medium: tuple[Path, dict]) -> None:
    root, _ = medium
    customers = _latest(_rows(root, "crm/customers"), "customer_id")
    assert {c["customer_type"] for c in customers.values()} == {"b2b", "b2c"}
    assert any(HAN.search(c["customer_name"]) for c in customers.values())
    assert any(re.fullmatch(r"[A-Za-z][\w .,()&-]+", c["customer_name"])
               for c in customers.values())
    assert any(HAN.search(c["region"]) for c in customers.values())
    assert any(c["parent_customer_id"] in customers for c in customers.values())
    orders = _latest(_rows(root, "erp/orders"), "order_id")
    statuses = {o["status"] for o in orders.values()}
    assert {"completed", "cancelled", "returned", "pending"} <= statuses
    assert {"CNY", "USD"} <= {o["currency"] for o in orders.values()}
    net: dict[str, float] = defaultdict(float)
    for _, ln in _rows(root, "erp/order_lines"):
        q = float(ln["quantity"])
        if q > 0:
            net[ln["order_id"]] += q * float(ln["unit_price"]) - float(ln["discount_amount"] or 0)
    revenue: dict[str, float] = defaultdict(float)
    for oid, o in orders.items():
        if o["status"] == "completed":
            revenue[o["customer_id"]] += net[oid] * FX[o["currency"]]
    ranked = sorted(revenue.values(), reverse=True)
    top = ranked[: max(1, len(ranked) // 5)]
    assert sum(top) / sum(ranked) > 0.5
    invoices = _latest(_rows(root, "erp/invoices"), "invoice_id")
    assert {"paid", "open"} <= {i["status"] for i in invoices.values()}
    assert all(i["paid_date"] == "" for i in invoices.values() if i["status"] != "paid")


def _row_at(root: Path, rel: str, line: int) -> tuple[dict[str, str], list[list[str]]]:
    rows = _read(root / rel)
    return dict(zip(rows[0], rows[line - 1], strict=True)), rows


def test_manifest_bad_rows_are_real(small: tuple[Path, dict]) -> None:
    root, manifest = small
    bad = manifest["bad_rows"]
    customer_ids = {r["customer_id"] for _, r in _rows(root, "crm/customers")}
    product_ids = {r["product_id"] for _, r in _rows(root, "erp/products")}
    for kind, entity in BAD_KINDS.items():
        mine = [b for b in bad if b["kind"] == kind]
        assert len({b["file"].split("/")[2] for b in mine}) >= 2, kind
        assert all(b["entity"] == entity for b in mine)
    for b in bad:
        row, rows = _row_at(root, b["file"], b["line"])
        assert len(rows) > 2, f"{b['file']}: a bad row must not be alone"
        assert {k: row[k] for k in b["key"]} == {k: str(v) for k, v in b["key"].items()}
        kind = b["kind"]
        if kind == "negative_quantity":
            assert float(row["quantity"]) < 0
        elif kind == "unparsable_date":
            with pytest.raises(ValueError):
                date.fromisoformat(row["order_date"])
        elif kind == "unknown_customer":
            assert row["customer_id"] and row["customer_id"] not in customer_ids
        elif kind == "unknown_product":
            assert row["product_id"] not in product_ids
        elif kind == "missing_required":
            assert row["customer_id"] == ""
        else:
            assert kind == "duplicate_key"
            assert rows[b["first_line"] - 1] == rows[b["line"] - 1]
            assert b["first_line"] < b["line"]


def test_bad_rows_are_never_redelivered(small: tuple[Path, dict]) -> None:
    root, manifest = small
    for b in manifest["bad_rows"]:
        if b["kind"] == "duplicate_key":
            continue
        entity = BY_PATH[b["entity"]]
        want = tuple(str(b["key"][k]) for k in entity.key)
        hits = [r for _, r in _rows(root, b["entity"])
                if tuple(r[k] for k in entity.key) == want]
        assert len(hits) == 1, b


def test_landing_with_other_extracts_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "crm" / "customers" / "2026-01-01"
    real.mkdir(parents=True)
    (real / "customers.csv").write_text("customer_id\nX\n", encoding="utf-8")
    with pytest.raises(FileExistsError):
        generate(tmp_path, customers=10, days=3)


def test_regenerating_a_demo_replaces_it(tmp_path: Path) -> None:
    generate(tmp_path, customers=30, days=20, seed=1)
    manifest = generate(tmp_path, customers=30, days=10, seed=1)
    dated = {p.parent.name for p in tmp_path.rglob("*.csv")}
    assert min(dated) == manifest["date_range"]["start"]
    assert len(list(tmp_path.rglob("*.csv"))) == manifest["files"]
