"""Run the expectation suites stored as JSON under ``expectations/<gate>/``.

Each suite file is a GX Core ``ExpectationSuite`` (name, expectations with ``severity``)
whose ``meta.tierflow`` says what it checks:

    {"schema": "raw" | "marts", "table": "customer_tiers", "as_of_filter": "as_of_date"}
or  {"schema": ..., "query": "select ... where as_of_date = :as_of_date"}

The raw gate checks the loads no raw gate has passed yet (``load_audit.raw_validated_at``
is null), not all history: a suite on a raw table sees only those loads' rows, and a query
suite names them as ``{new_loads}``. When the gate passes, those loads are marked checked;
when it fails they stay unchecked, so the next night checks them again (a failed night's
rows never slip through unchecked) while rows that ingest rejected never reach raw at all.

Suite parameters (``{"$PARAMETER": "budget"}``) come from the business config. Every
result of every run is written to ``tierflow_meta.data_quality_results``; a failed
``critical`` expectation fails the gate (and so the run, before anything is published).
Given the run's exports folder, the gate also adds its suites and results to that as-of
date's GX Data Docs site (``quality/docs.py``), failed or not.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from tierflow.config import TierflowConfig
from tierflow.quality.docs import SuiteValidation, build_data_docs
from tierflow.quality.suites import read_only_url, validate_suite
from tierflow.settings import EXPECTATIONS_DIR, MARTS_SCHEMA, META_SCHEMA, RAW_SCHEMA, sqlalchemy_url

log = logging.getLogger(__name__)

SCHEMAS = {"raw": RAW_SCHEMA, "marts": MARTS_SCHEMA}
# suites validated at a time (validate_suites); 1 runs them one after the other as before
GX_WORKERS = 2


class QualityGateFailed(RuntimeError):
    """At least one critical expectation failed; the message names them."""


@dataclass
class CheckResult:
    suite: str
    data_asset: str
    expectation: str
    column: str | None
    severity: str
    success: bool
    observed_value: str | None
    details: dict


def suite_parameters(cfg: TierflowConfig) -> dict:
    return {
        "budget": cfg.allocation.budget,
        "account_manager_capacity_hours": cfg.allocation.account_manager_capacity_hours,
        "tier_names": [lv.name for lv in cfg.tiers.levels],
        "segment_names": [s.name for s in cfg.rfm.segments] + [cfg.rfm.no_purchase_segment],
    }


def load_suites(gate: str, directory: Path = EXPECTATIONS_DIR) -> list[dict]:
    folder = directory / gate
    suites = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from None
        validate_suite(path, data)  # expectations/ is code: known types and keys, read-only queries
        target = data.get("meta", {}).get("tierflow")
        if not target or "schema" not in target or not ("table" in target or "query" in target):
            raise ValueError(f"{path}: meta.tierflow must name a schema and a table or query")
        if target["schema"] not in SCHEMAS:
            raise ValueError(f"{path}: meta.tierflow.schema must be one of {sorted(SCHEMAS)}")
        data["_path"] = str(path)
        suites.append(data)
    if not suites:
        raise ValueError(f"no expectation suites found in {folder}")
    return suites


def new_loads_query(max_load_id: int) -> str:
    """The loads the raw gate checks: loaded, not yet passed by a raw gate, up to ``max_load_id``
    (the newest when the gate started, so the loads checked are the loads marked)."""
    meta = sql.Identifier(META_SCHEMA).as_string()
    return (
        f"(select load_id from {meta}.load_audit where status = 'loaded'"
        f" and raw_validated_at is null and load_id <= {int(max_load_id)})"
    )


def _asset_query(target: dict, as_of: date, new_loads: str) -> tuple[str, str]:
    schema = SCHEMAS[target["schema"]]
    if "query" in target:
        # the only substitutions are our own schema names, our own subquery and a date's ISO form
        q = (
            target["query"]
            .replace("{schema}", schema)
            .replace("{new_loads}", new_loads)
            .replace(":as_of_date", f"date '{as_of.isoformat()}'")
        )
        return q, target.get("name", "query")
    table = target["table"]
    ident = sql.Identifier(schema, table).as_string()
    filters = []
    if target["schema"] == "raw":
        filters.append(f"_load_id in {new_loads}")
    if target.get("as_of_filter"):
        filters.append(f"{sql.Identifier(target['as_of_filter']).as_string()} = date '{as_of.isoformat()}'")
    q = f"select * from {ident}" + (f" where {' and '.join(filters)}" if filters else "")
    return q, f"{schema}.{table}"


def _newest_load_id(url: str) -> int:
    """The newest load id (0 before any load: a warehouse without tierflow's own tables)."""
    with psycopg.connect(url) as conn:
        if conn.execute("select to_regclass(%s)", (f"{META_SCHEMA}.load_audit",)).fetchone()[0] is None:
            return 0
        return conn.execute(
            sql.SQL("select coalesce(max(load_id), 0) from {}.load_audit").format(sql.Identifier(META_SCHEMA))
        ).fetchone()[0]


def analyze_unanalyzed_tables(url: str, schema: str) -> list[str]:
    """ANALYZE the tables of ``schema`` whose rows changed by 10% or more (autovacuum's own
    default) since their last ANALYZE, or that were never analyzed; returns their names.

    dbt writes every build-schema mart anew each night (``create table as``), and the marts gate
    reads them minutes later: whether autovacuum analyzed a table by then is a race, and without
    statistics the planner takes an ``as_of_date = A`` filter for 0.5% of the rows and plans the
    gate's join and anti-join suites (every customer tiered, allocation vs tiers, health vs
    tiers) as nested loops of customers x customers. Raw tables are analyzed by ``ingest`` when
    it grows them; a night that changed nothing here pays one catalog query.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        stale = [
            name
            for (name,) in conn.execute(
                "select relname from pg_stat_user_tables where schemaname = %s"
                " and (coalesce(last_analyze, last_autoanalyze) is null"
                " or n_mod_since_analyze >= 0.1 * greatest(n_live_tup, 1))"
                " order by relname",
                (schema,),
            )
        ]
        if stale:
            started = time.monotonic()
            tables = sql.SQL(", ").join(sql.Identifier(schema, name) for name in stale)
            conn.execute(sql.SQL("analyze {}").format(tables))
            log.info("analyzed %d tables of %s in %.1fs", len(stale), schema, time.monotonic() - started)
    return stale


def mark_loads_checked(url: str, run_id: str, max_load_id: int) -> int:
    """Record that the raw gate passed the loads it checked; returns how many."""
    with psycopg.connect(url) as conn:
        cur = conn.execute(
            sql.SQL(
                "update {}.load_audit set raw_validated_at = now(), raw_validated_run_id = %s"
                " where status = 'loaded' and raw_validated_at is null and load_id <= %s"
            ).format(sql.Identifier(META_SCHEMA)),
            (run_id, max_load_id),
        )
        return cur.rowcount


def _observed(result: dict) -> str | None:
    res = result.get("result") or {}
    for key in ("observed_value", "unexpected_count", "element_count"):
        if key in res and res[key] is not None:
            v = res[key]
            if key == "unexpected_count":
                partial = res.get("partial_unexpected_list") or []
                return f"{v} unexpected, e.g. {partial[:5]}"
            return json.dumps(v, default=str) if not isinstance(v, str) else v
    return None


def validate(
    url: str, gate: str, as_of: date, cfg: TierflowConfig, directory: Path = EXPECTATIONS_DIR
) -> list[CheckResult]:
    return check_results(validate_suites(url, gate, as_of, cfg, directory, _newest_load_id(url)))


def validate_suites(
    url: str,
    gate: str,
    as_of: date,
    cfg: TierflowConfig,
    directory: Path = EXPECTATIONS_DIR,
    max_load_id: int = 0,
    workers: int = GX_WORKERS,
) -> list[SuiteValidation]:
    """Run every suite of ``gate``; GX's own result objects (for Data Docs and our rows), in the
    suites' order.

    ``workers`` suites run at a time, each worker with a GX context and datasource of its own
    (nothing of GX is shared between two threads): a suite is a few queries the server works
    on while its thread waits, so one at a time left a core idle (the marts gate at 100,000
    customers: 11 s of statements, one after the other).
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from tierflow.quality.gx_patches import apply_gx_patches

    apply_gx_patches()  # a query asset's columns without fetching its rows
    specs = load_suites(gate, directory)
    suites = []
    for spec in specs:
        expectations = spec.get("expectations", [])
        suite = ExpectationSuite(name=spec["name"], expectations=expectations)
        if len(suite.expectations) != len(expectations):
            # GX logs and skips invalid expectations; a silently skipped check is a check that cannot fail
            raise ValueError(f"{spec['_path']}: some expectations are invalid (see the log above)")
        suites.append(suite)
    started = time.monotonic()
    connection_string = read_only_url(sqlalchemy_url(url))
    datasources: queue.SimpleQueue = queue.SimpleQueue()
    for _ in range(max(1, min(workers, len(specs)))):
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # keep task logs readable
        # read-only sessions: a suite's query cannot write, whatever slipped past validate_suite
        datasources.put(
            context.data_sources.add_postgres(name="warehouse", connection_string=connection_string)
        )
    log.info("GX contexts and datasources in %.2fs", time.monotonic() - started)
    params = suite_parameters(cfg)

    def validate(spec: dict, suite) -> SuiteValidation:
        query, asset_name = _asset_query(spec["meta"]["tierflow"], as_of, new_loads_query(max_load_id))
        datasource = datasources.get()
        try:
            started = time.monotonic()
            asset = datasource.add_query_asset(name=spec["name"], query=query)
            batch = asset.add_batch_definition_whole_table("all").get_batch()
            outcome = batch.validate(suite, expectation_parameters=params)
            log.info("suite %s: %d expectations in %.2fs", spec["name"], len(suite.expectations),
                     time.monotonic() - started)
        finally:
            datasources.put(datasource)
        return SuiteValidation(suite=suite, data_asset=asset_name, result=outcome)

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gx-suite")
    try:
        return list(pool.map(validate, specs, suites))
    finally:
        pool.shutdown(cancel_futures=True)  # a suite that raised: the ones not started do not run


def check_results(validations: list[SuiteValidation]) -> list[CheckResult]:
    results: list[CheckResult] = []
    for v in validations:
        for r in v.result.to_json_dict()["results"]:
            cfg_ = r["expectation_config"]
            results.append(
                CheckResult(
                    suite=v.suite.name,
                    data_asset=v.data_asset,
                    expectation=cfg_["type"],
                    column=(cfg_.get("kwargs") or {}).get("column"),
                    severity=str(cfg_.get("severity") or "critical"),
                    success=bool(r["success"]),
                    observed_value=_observed(r),
                    details={"kwargs": cfg_.get("kwargs"), "exception": r.get("exception_info")},
                )
            )
    return results


def record(url: str, run_id: str, as_of: date, results: list[CheckResult]) -> None:
    with psycopg.connect(url) as conn, conn.transaction():
        # a rerun of the same run id replaces its results for this gate's suites
        suites = sorted({r.suite for r in results})
        conn.execute(
            sql.SQL("delete from {}.data_quality_results where run_id = %s and suite = any(%s)").format(
                sql.Identifier(META_SCHEMA)
            ),
            (run_id, suites),
        )
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "insert into {}.data_quality_results (run_id, as_of_date, suite, data_asset, expectation,"
                    " column_name, severity, success, observed_value, details)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                ).format(sql.Identifier(META_SCHEMA)),
                [
                    (run_id, as_of, r.suite, r.data_asset, r.expectation, r.column, r.severity, r.success,
                     r.observed_value, json.dumps(r.details, default=str))
                    for r in results
                ],
            )


def _build_docs(run_dir: Path, run_id: str, validations: list[SuiteValidation]) -> str | None:
    """Data Docs are for reading, not a check: a failure to build them is logged loudly and
    shown as a missing link, but never blocks a publish that every check allowed.
    """
    started = time.perf_counter()
    try:
        index = build_data_docs(run_dir, run_id, validations)
    except Exception:
        log.exception("could not build the GX Data Docs in %s", run_dir)
        return None
    log.info("GX Data Docs updated in %.1f s: %s", time.perf_counter() - started, index)
    return str(index)


def run_gate(
    url: str,
    gate: str,
    as_of: date,
    cfg: TierflowConfig,
    run_id: str,
    directory: Path = EXPECTATIONS_DIR,
    run_dir: Path | None = None,
) -> dict:
    """Analyze the gate's tables that lack statistics, validate, record every result, add them
    to the Data Docs in ``run_dir`` (the as-of date's exports folder; none when not given), and
    raise QualityGateFailed on a critical failure.
    """
    max_load_id = _newest_load_id(url)
    analyze_unanalyzed_tables(url, SCHEMAS[gate])
    validations = validate_suites(url, gate, as_of, cfg, directory, max_load_id)
    results = check_results(validations)
    record(url, run_id, as_of, results)
    data_docs = _build_docs(run_dir, run_id, validations) if run_dir is not None else None
    failed = [r for r in results if not r.success]
    critical = [r for r in failed if r.severity == "critical"]
    for r in failed:
        log.warning("%s check failed: %s %s on %s (observed %s)", r.severity, r.suite, r.expectation,
                    r.column or r.data_asset, r.observed_value)
    summary = {
        "gate": gate,
        "checks": len(results),
        "failed_critical": len(critical),
        "failed_warning": len(failed) - len(critical),
        "data_docs": data_docs,
    }
    if critical:
        names = "; ".join(
            f"{r.suite}: {r.expectation}({r.column or r.data_asset}) observed {r.observed_value}"
            for r in critical
        )
        raise QualityGateFailed(
            f"{len(critical)} critical {gate} check(s) failed, nothing published: {names}"
        )
    if gate == "raw":
        summary["loads_checked"] = mark_loads_checked(url, run_id, max_load_id)
    return summary
