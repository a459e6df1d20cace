"""dbt docs per run: the report step writes one static page listing every model.

Runs the real `dbt docs generate --static` (compile + catalog) through the report step, on
a hand-made `bi` schema (test_exports.make_bi) and otherwise empty database: compiling needs
no data, and the page lists the models whether or not they were built.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest
from test_exports import AS_OF, make_bi

pytestmark = pytest.mark.slow

RUN = "manual__2026-03-31T00:00:00+00:00"
INGEST = {"files_loaded": 0, "files_skipped": 0, "rows_in": 0, "rows_loaded": 0, "rows_rejected": 0}


def test_report_step_writes_dbt_docs_and_exports(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tierflow.ingest.schema import ensure_schema
    from tierflow.pipeline import report
    from tierflow.transform import MANIFEST_PATH

    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("TIERFLOW_EXPORTS", str(tmp_path))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)  # raw sources and tierflow_meta, as after ingest
    make_bi(warehouse_url)
    manifest_before = MANIFEST_PATH.stat().st_mtime_ns if MANIFEST_PATH.exists() else None

    started = time.perf_counter()
    summary = report(AS_OF.isoformat(), RUN, INGEST)
    print(f"report step with dbt docs generate --static: {time.perf_counter() - started:.1f} s")

    run_dir = tmp_path / "2026-03-31"
    index = run_dir / "dbt-docs" / "index.html"
    report_html = run_dir / "report.html"
    # no gate ran here, so no Data Docs; the HTML report links the dbt docs only
    assert summary["docs"] == {"data_docs": None, "dbt_docs": str(index), "report": str(report_html)}
    html = report_html.read_text(encoding="utf-8")
    assert 'href="dbt-docs/index.html"' in html and "data-docs/index.html" not in html
    page = index.read_text(encoding="utf-8")
    for model in ("stg_erp__orders", "fct_orders", "customer_rfm", "customer_tiers", "sales_kpis"):
        assert f'"model.tierflow.{model}"' in page, model
    # the allocation plans are written by the allocate step, not dbt: sources in the lineage
    assert '"source.tierflow.allocation.allocation_plan_tier"' in page
    assert '"exposure.tierflow.crm_tier_write_back"' in page
    assert str(run_dir / "crm_import.csv") in summary["exports"]
    # the three tiers of make_bi, one customer each
    assert [(t["tier"], t["customers"]) for t in summary["tiers"]] == [("high", 1), ("medium", 1), ("low", 1)]
    # and the night's movements, actions and alerts (make_bi's 2026-03-31 rows only)
    assert summary["tier_movements"] == {"up": 1, "down": 0, "new": 1, "held_by_hysteresis": 1,
                                         "overrides": 1, "high_potential": 1}
    assert summary["actions"] == [{"action": "quarterly business review", "customers": 1},
                                  {"action": 'win-back "comeback" offer', "customers": 1}]
    assert summary["alerts"] == [{"alert_type": "credit", "alerts": 2},
                                 {"alert_type": "churn_risk", "alerts": 1}]
    # the project's own target/ (Cosmos' manifest) is left alone
    assert (MANIFEST_PATH.stat().st_mtime_ns if MANIFEST_PATH.exists() else None) == manifest_before


def test_dbt_docs_start_from_the_parse_the_nights_dbt_tasks_left(
    warehouse_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The night's dbt tasks leave their parse in Cosmos' cache, made with the profile Cosmos
    builds from the Airflow connection and the night's vars; the docs start from it (an
    earlier night's date here: the date is not part of dbt's check, tierflow.dbt_patches)."""
    import json
    import logging

    import cosmos.settings
    from dbt.cli.main import dbtRunner
    from tierflow.config import load_config
    from tierflow.dbt_patches import apply_dbt_patches
    from tierflow.ingest.schema import ensure_schema
    from tierflow.settings import DBT_PROJECT_DIR, WAREHOUSE_CONN_ID, airflow_conn_uri, load_settings
    from tierflow.transform import (
        NIGHT_PARSE_GROUP,
        cosmos_cache_dir,
        cosmos_profile_config,
        generate_docs,
        run_vars,
    )

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
    make_bi(warehouse_url)
    monkeypatch.setattr(cosmos.settings, "cache_dir", tmp_path / "cosmos")
    monkeypatch.setenv(f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}", airflow_conn_uri(warehouse_url))
    cfg = load_config(load_settings().config_path)
    apply_dbt_patches()
    # what a dbt task of the night before leaves: Cosmos' profile, flags and cache folder
    with cosmos_profile_config().ensure_profile() as (profile_path, _):
        res = dbtRunner().invoke([
            "parse", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(profile_path.parent),
            "--profile", "tierflow", "--target", "warehouse",
            "--target-path", str(cosmos_cache_dir(NIGHT_PARSE_GROUP) / "target"),
            "--vars", json.dumps(run_vars(cfg, "2026-03-30")),
        ])
    assert res.success, res.exception

    messages: list[str] = []

    class Seen(logging.Handler):  # on the logger itself: Airflow's logging set-up may not propagate
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger, seen = logging.getLogger("tierflow.transform"), Seen()
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(seen)
    try:
        index = generate_docs(warehouse_url, cfg, AS_OF, tmp_path / "docs")
    finally:
        logger.removeHandler(seen)
    assert "dbt docs: started from the night's parsed project" in messages, messages
    assert '"model.tierflow.customer_tiers"' in index.read_text(encoding="utf-8")
