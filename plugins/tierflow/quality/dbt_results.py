"""dbt test outcomes beside the GX results in ``tierflow_meta.data_quality_results``.

Every dbt task of the DAG (``prepare`` and each mart of ``transform``) builds its models with
their tests. Cosmos calls :func:`record_dbt_test_results` after dbt ran, passed or failed,
with the task's temporary project folder, where dbt left ``run_results.json`` and the
``manifest.json`` that says which model and column each test checks. One row per data test
or unit test: its name, the model, the column, ``critical`` for an error-severity test and
``warning`` for a warn-severity one, whether it passed, and the failures counted.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tierflow.settings import META_SCHEMA

log = logging.getLogger(__name__)

SUITE = "dbt"


@dataclass(frozen=True)
class DbtTestResult:
    unique_id: str
    test: str
    model: str
    column: str | None
    severity: str  # critical | warning
    success: bool
    observed: str | None


def read_test_results(target_dir: Path) -> list[DbtTestResult]:
    """The data and unit tests of one dbt invocation, from its artifacts in ``target_dir``."""
    run_results = target_dir / "run_results.json"
    if not run_results.is_file():
        return []
    results = json.loads(run_results.read_text(encoding="utf-8"))["results"]
    manifest_path = target_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    tests = []
    for r in results:
        uid = r["unique_id"]
        if not uid.startswith(("test.", "unit_test.")):
            continue
        node = nodes.get(uid, {})
        status = r.get("status")
        config = node.get("config") or {}
        if uid.startswith("unit_test."):
            name, model, column = node.get("name") or uid.split(".")[-1], node.get("model") or "", None
        else:
            meta = node.get("test_metadata") or {}
            name = meta.get("name") or node.get("name") or uid.split(".")[2]
            model = (node.get("attached_node") or "").split(".")[-1]
            column = node.get("column_name")
        observed = None
        if r.get("failures"):
            observed = f"{r['failures']} failing row(s)"
        elif status not in ("pass", "success") and r.get("message"):
            observed = str(r["message"])[:500]
        tests.append(
            DbtTestResult(
                unique_id=uid,
                test=name,
                model=model,
                column=column,
                severity="warning" if str(config.get("severity", "error")).lower() == "warn" else "critical",
                # a warn-severity test that found rows reports "warn": recorded as not passed
                success=status in ("pass", "success"),
                observed=observed,
            )
        )
    return tests


def record_dbt_results(url: str, run_id: str, as_of: date, tests: list[DbtTestResult]) -> int:
    """Write the tests' outcomes; a retry of the task replaces its own earlier rows."""
    if not tests:
        return 0
    meta = sql.Identifier(META_SCHEMA)
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute(
            sql.SQL(
                "delete from {}.data_quality_results where run_id = %s and suite = %s"
                " and details->>'unique_id' = any(%s)"
            ).format(meta),
            (run_id, SUITE, [t.unique_id for t in tests]),
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "insert into {}.data_quality_results (run_id, as_of_date, suite, data_asset, expectation,"
                    " column_name, severity, success, observed_value, details)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(meta),
                [
                    (run_id, as_of, SUITE, t.model, t.test, t.column, t.severity, t.success, t.observed,
                     json.dumps({"unique_id": t.unique_id}))
                    for t in tests
                ],
            )
    return len(tests)


def record_dbt_test_results(project_dir: str, context: Any = None, **_: Any) -> None:
    """Cosmos callback (``callback=`` of the dbt operators): record this task's dbt tests.

    A failure to record is logged, never raised: the task's own outcome is dbt's.
    """
    from tierflow.settings import load_settings

    try:
        ti = context["ti"]
        as_of = date.fromisoformat(ti.xcom_pull(task_ids="resolve_as_of_date"))
        tests = read_test_results(Path(project_dir) / "target")
        n = record_dbt_results(load_settings().warehouse_url(), context["run_id"], as_of, tests)
        log.info("recorded %d dbt test result(s) in %s.data_quality_results", n, META_SCHEMA)
    except Exception:
        log.exception("could not record the dbt test results of %s", project_dir)
