"""GX Data Docs per as-of date: both gates of a run end up in one static site.

Tiny hand-made tables and suites (no ingest, no dbt): the gates are called directly, so
the whole file runs in seconds on the session's embedded PostgreSQL.
"""

from __future__ import annotations

import html
import json
import re
from datetime import date
from pathlib import Path
from urllib.parse import unquote

import psycopg
import pytest

pytestmark = pytest.mark.slow

AS_OF = date(2026, 3, 31)
RUN = "manual__2026-03-31T00:00:00+00:00"  # an Airflow run id, with ':' and '+' in it


def _tables(url: str) -> None:
    from tierflow.ingest.schema import ensure_schema

    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)  # schema raw and tierflow_meta.data_quality_results
        # a raw table as ingest makes them: rows of a loaded file, which the raw gate checks once
        (load_id,) = conn.execute(
            "insert into tierflow_meta.load_audit (file_path, system, entity, business_date, checksum,"
            " size_bytes, rows_in, rows_loaded, rows_rejected, status)"
            " values ('erp/tiny_orders/2026-03-31/o.csv', 'erp', 'tiny_orders', '2026-03-31', 'x', 1,"
            " 3, 3, 0, 'loaded') returning load_id"
        ).fetchone()
        conn.execute("create table raw.tiny_orders (order_id text, status text, _load_id bigint)")
        conn.execute(
            "insert into raw.tiny_orders values ('O1', 'completed', %s), ('O2', 'completed', %s),"
            " ('O3', 'unknown', %s)",
            (load_id, load_id, load_id),
        )
        conn.execute("create schema build_marts")
        conn.execute("create table build_marts.customer_tiers (customer_id text, as_of_date date)")
        conn.execute(
            "insert into build_marts.customer_tiers values"
            " ('C1', '2026-03-31'), ('C2', '2026-03-31'), ('C2', '2026-03-30')"
        )


def _suite(folder: Path, gate: str, name: str, target: dict, expectations: list[dict]) -> None:
    (folder / gate).mkdir(parents=True, exist_ok=True)
    suite = {"name": name, "meta": {"tierflow": target}, "expectations": expectations}
    (folder / gate / f"{name}.json").write_text(json.dumps(suite), encoding="utf-8")


def _suites(folder: Path) -> None:
    _suite(folder, "raw", "tiny_raw_orders", {"schema": "raw", "table": "tiny_orders"}, [
        # 3 rows: passes
        {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1}, "severity": "critical"},
        # O3 has status 'unknown': fails, but only as a warning, so the raw gate passes
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "status", "value_set": ["completed", "cancelled"]}, "severity": "warning"},
    ])
    _suite(folder, "marts", "tiny_marts_tiers",
           {"schema": "marts", "table": "customer_tiers", "as_of_filter": "as_of_date"}, [
               # 2 rows on 2026-03-31 (C1, C2): passes
               {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "customer_id"},
                "severity": "critical"},
               # 2 rows, a (wrong) promise of at most 1: the critical failure that stops the run
               {"type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 1},
                "severity": "critical"},
           ])


def test_both_gates_of_a_run_build_one_data_docs_site(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierflow.pipeline import validate_marts, validate_raw
    from tierflow.quality import QualityGateFailed

    _tables(warehouse_url)
    suites, exports = tmp_path / "expectations", tmp_path / "exports"
    _suites(suites)
    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("TIERFLOW_EXPECTATIONS", str(suites))
    monkeypatch.setenv("TIERFLOW_EXPORTS", str(exports))

    raw = validate_raw(AS_OF.isoformat(), RUN)
    assert (raw["checks"], raw["failed_critical"], raw["failed_warning"]) == (2, 0, 1)
    index = exports / "2026-03-31" / "data-docs" / "index.html"
    assert raw["data_docs"] == str(index)
    # the failed critical check fails the gate, and its results still reach the Data Docs
    with pytest.raises(QualityGateFailed, match="tiny_marts_tiers: expect_table_row_count_to_be_between"):
        validate_marts(AS_OF.isoformat(), RUN)

    site = index.read_text(encoding="utf-8")
    # both gates in one index, each failed expectation named with its severity and observation
    assert "tiny_raw_orders" in site and "tiny_marts_tiers" in site
    assert "2 suite(s), 2 with failed expectations" in site
    # O3's status 'unknown' is the one unexpected value
    assert ("warning: <code>expect_column_values_to_be_in_set</code> on <code>status</code>;"
            " observed 1 unexpected") in site
    assert "critical: <code>expect_table_row_count_to_be_between</code>; observed 2" in site
    assert "https://" not in site, "the index must open without network"
    # every link of the index is a GX result page of this run
    links = re.findall(r'href="(validations/[^"]+)"', site)
    assert len(links) == 2
    pages = [index.parent / unquote(link) for link in links]
    assert all(p.is_file() for p in pages)
    marts_page = _text(next(p for p in pages if "tiny_marts_tiers" in p.parts).read_text(encoding="utf-8"))
    assert "Status: Failed" in marts_page and "Must have less than or equal to 1 rows." in marts_page
    assert RUN in marts_page
    assert (index.parent / "gx-index.html").is_file()
    assert not (index.parent / "static" / "images" / "glossary_scroller.gif").exists()

    # a later run of the same date replaces the site's content: the first run's pages go. The
    # raw gate reads only loads no gate has passed yet: this run's new file has one order
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        (load_id,) = conn.execute(
            "insert into tierflow_meta.load_audit (file_path, system, entity, business_date, checksum,"
            " size_bytes, rows_in, rows_loaded, rows_rejected, status)"
            " values ('erp/tiny_orders/2026-03-31/o2.csv', 'erp', 'tiny_orders', '2026-03-31', 'y', 1,"
            " 1, 1, 0, 'loaded') returning load_id"
        ).fetchone()
        conn.execute("insert into raw.tiny_orders values ('O4', 'unknown', %s)", (load_id,))
    run2 = "manual__2026-03-31T06:00:00+00:00"
    validate_raw(AS_OF.isoformat(), run2)
    site = index.read_text(encoding="utf-8")
    assert "1 suite(s), 1 with failed expectations" in site and "tiny_marts_tiers" not in site
    assert not any(p.exists() for p in pages)
    assert len(list((index.parent / "validations").rglob("*.html"))) == 1


def _text(page: str) -> str:
    """The visible text of an HTML page, whitespace collapsed."""
    page = re.sub(r"<(script|style).*?</\1>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))
