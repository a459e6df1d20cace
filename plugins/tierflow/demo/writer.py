"""The demo's output: one CSV per entity and day in the landing layout, and the manifest.

Every file follows SPEC "The extract contract" (:mod:`tierflow.extracts`): its columns in
contract order, a header line, UTF-8, ``\\n`` line ends. The manifest lists every bad row by
file and line, so tests can check each one ends up in the rejects table; it holds no timings,
so the same arguments give a byte-identical manifest.
"""

from __future__ import annotations

import csv
import json
import shutil
from datetime import date
from operator import itemgetter
from pathlib import Path
from typing import Any

from tierflow.demo.values import iso
from tierflow.extracts import BY_PATH

MANIFEST_NAME = "_demo_manifest.json"

# Entities the generator owns, in the order their files are written each day.
ENTITY_PATHS: tuple[str, ...] = (
    "erp/fx_rates",
    "erp/products",
    "crm/customers",
    "erp/orders",
    "erp/order_lines",
    "erp/invoices",
    "service/tickets",
    "crm/activities",
)

NOTES: tuple[str, ...] = (
    "Each file holds the delta of its date folder; re-delivered rows (customers, products, "
    "orders, invoices, tickets) carry a newer updated_at and supersede the older version.",
    "Initial customers and products arrive in the first date folder (customers keep their "
    "historic created_at); later customers arrive in the folder of their created_at.",
    "unit_cost is empty only on CNY order lines (falls back to standard_cost); lines of USD/EUR "
    "orders carry unit_cost in the order currency. Invoice amount = net lines + shipping_cost.",
    "Bad rows sit in otherwise normal files and are listed under bad_rows (line 1 = header); "
    "no bad row is ever the target of a re-delivery.",
    "duplicate_key: an erp/order_lines row repeated exactly on the next line (first_line is "
    "the valid original, line is the repeat).",
    "unparsable_date: an erp/orders row whose order_date is not a date (e.g. 2025-13-45); "
    "the order has no lines.",
    "negative_quantity: an extra erp/order_lines row with quantity < 0 on a valid order.",
    "unknown_customer: an erp/orders row for a customer id in no crm/customers file "
    "(C-UNKNOWN-n); the order has no lines.",
    "unknown_product: an extra erp/order_lines row whose product_id is in no erp/products "
    "file (P-UNKNOWN-n).",
    "missing_required: an erp/orders row with an empty customer_id; the order has no lines.",
)


class Entry:
    """A buffered output row; identity equality so equal (duplicated) rows stay distinct.

    ``bad`` describes a planted bad row (kind, key, column, value; ``original`` is the
    entry a duplicate repeats); None for a good row.
    """

    __slots__ = ("values", "bad")

    def __init__(self, values: dict[str, str], bad: dict[str, Any] | None = None) -> None:
        self.values = values
        self.bad = bad


class Landing:
    """Writes one CSV per entity and day, and records row counts and bad-row positions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.rows: dict[str, int] = {p: 0 for p in ENTITY_PATHS}
        self.bad_rows: list[dict[str, Any]] = []

    def write(self, path: str, day: date, entries: list[Entry]) -> None:
        if not entries:
            return
        entity = BY_PATH[path]
        rel = f"{path}/{iso(day)}/{entity.name}_{day:%Y%m%d}.csv"
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        cols = entity.column_names
        values = itemgetter(*cols)  # every row carries every column: a typo fails loudly
        with target.open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(cols)
            w.writerows(values(e.values) for e in entries)
        if any(e.bad is not None for e in entries):
            line_of = {id(e): n for n, e in enumerate(entries, start=2)}
            for e in entries:
                if e.bad is not None:
                    self.bad_rows.append(self._bad_record(rel, path, line_of, e))
        self.files += 1
        self.rows[path] += len(entries)

    @staticmethod
    def _bad_record(rel: str, path: str, line_of: dict[int, int], e: Entry) -> dict[str, Any]:
        bad = dict(e.bad or {})
        original = bad.pop("original", None)
        rec: dict[str, Any] = {"file": rel, "line": line_of[id(e)], "entity": path}
        rec.update(bad)
        if original is not None:
            rec["first_line"] = line_of[id(original)]
        return rec


def prepare_landing(landing: Path) -> None:
    """Refuse to mix demo data with real extracts; replace an earlier demo's entity folders."""
    landing.mkdir(parents=True, exist_ok=True)
    owned = [landing / p for p in ENTITY_PATHS]
    if (landing / MANIFEST_NAME).exists():
        for d in owned:
            if d.exists():
                shutil.rmtree(d)
        return
    if any(d.exists() and any(d.rglob("*")) for d in owned):
        raise FileExistsError(
            f"{landing} already holds extracts and no {MANIFEST_NAME}; "
            "generate demo data into an empty landing directory")


def write_manifest(landing: Path, manifest: dict[str, Any]) -> None:
    """``<landing>/_demo_manifest.json``: pretty-printed UTF-8 JSON (names stay readable)."""
    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
    (landing / MANIFEST_NAME).write_text(text, encoding="utf-8")
