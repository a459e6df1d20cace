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
