"""The nightly run's steps, as plain functions the DAG's tasks call.

Each step takes the as-of date and the run id explicitly and talks to the next step only
through warehouse tables. A step that fails records why in ``tierflow_meta.runs`` so the
CLI and the on-call engineer can read one sentence instead of a stack trace.
"""

from __future__ import annotations

import functools
import gc
import logging
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from tierflow.config import TierflowConfig, load_config
from tierflow.settings import META_SCHEMA, Settings, load_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# dbt model folders built together by the DAG's `prepare` task (views); the marts get a task each
DBT_VIEW_LAYERS = ("staging", "intermediate")
# the models built after the `clv` step: int_customers_scored (it reads customer_clv), the
# tier cutoffs and hysteresis built on it, customer_tiers and every model downstream
DBT_TIERS_SELECTOR = "int_customers_scored+"


def resolve_as_of_date(param: str | None, logical_date: datetime | None) -> str:
    """The as-of date: the ``as_of_date`` param, else the run's logical date.

    A manual run without a logical date and without the param is refused rather than
    guessed: tiers for the wrong date are worse than no tiers.
    """
    if param:
        return date.fromisoformat(str(param)).isoformat()
    if logical_date is not None:
        return logical_date.date().isoformat()
    raise ValueError("no as-of date: trigger the run with a logical date or the as_of_date param")


def _context() -> tuple[Settings, TierflowConfig, str]:
    settings = load_settings()
    return settings, load_config(settings.config_path), settings.warehouse_url()


def _record_failure(url: str, run_id: str, as_of: str, step: str, exc: BaseException) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL(
                    "insert into {}.runs (run_id, as_of_date, status, error) values (%s, %s, 'failed', %s)"
                    " on conflict (run_id) do update set status = 'failed', error = excluded.error"
                ).format(sql.Identifier(META_SCHEMA)),
                (run_id, as_of, f"{step}: {exc}"),
            )
    except Exception:  # the warehouse itself may be what failed
        log.exception("could not record the failure of %s", step)


def step(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(as_of: str, run_id: str, *args: Any, **kwargs: Any) -> T:
            settings, cfg, url = _context()
            try:
                return fn(settings, cfg, url, date.fromisoformat(as_of), run_id, *args, **kwargs)
            except Exception as exc:
                from tierflow.ingest.schema import ensure_schema

                try:
                    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                        ensure_schema(conn)
                except Exception:
                    pass
                _record_failure(url, run_id, as_of, name, exc)
                raise

        return wrapper

    return decorate


@step("ingest")
def ingest(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    from tierflow.ingest import run_ingest

    with psycopg.connect(url, autocommit=True) as conn:
        from tierflow.ingest.schema import ensure_schema

        ensure_schema(conn)
        conn.execute(
            sql.SQL(
                "insert into {}.runs (run_id, as_of_date, status) values (%s, %s, 'running')"
                " on conflict (run_id) do update"
                " set status = 'running', error = null, as_of_date = excluded.as_of_date"
            ).format(sql.Identifier(META_SCHEMA)),
            (run_id, as_of),
        )
    report = run_ingest(url, settings.landing, as_of, cfg, run_id=run_id)
    return report.as_dict()


def _run_dir(settings: Settings, as_of: date) -> Path:
    """One as-of date's folder of exports, Data Docs, dbt docs and report."""
    return settings.exports / as_of.isoformat()


@step("validate_raw")
def validate_raw(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    from tierflow.quality import run_gate

    return run_gate(url, "raw", as_of, cfg, run_id, settings.expectations, _run_dir(settings, as_of))


@step("clv")
def clv(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    """Predicted lifetime value for A (customer_clv, clv_model_fits), between the two dbt groups."""
    from tierflow.clv import run_clv

    return run_clv(url, cfg.clv, as_of, settings.publish_schema)


@step("allocate")
def allocate(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    """The allocation plan for A, written next to the dbt marts so the marts gate checks it."""
    from tierflow.allocation import run_allocation

    return run_allocation(url, cfg, as_of)


@step("validate_marts")
def validate_marts(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    from tierflow.quality import run_gate

    return run_gate(url, "marts", as_of, cfg, run_id, settings.expectations, _run_dir(settings, as_of))


@step("publish")
def publish(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    from tierflow.publish import publish as do_publish

    return do_publish(url, settings.publish_schema, run_id, as_of, settings.bi_role)


@step("notify")
def notify(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    """One e-mail per owner listing tonight's published account alerts (only with SMTP set)."""
    from tierflow.alerts import send_alert_emails

    return send_alert_emails(url, settings.publish_schema, as_of, run_id, cfg.notifications, settings.smtp)


@step("report")
def report(
    settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str, ingest_report: dict
) -> dict:
    from tierflow.publish.summary import build_summary, format_summary, save_summary, write_exports

    run_dir = _run_dir(settings, as_of)
    exports = write_exports(url, settings.publish_schema, as_of, settings.exports)
    summary = build_summary(url, settings.publish_schema, as_of, run_id, ingest_report, exports)
    summary["docs"] = {"data_docs": _data_docs(run_dir), "dbt_docs": _dbt_docs(url, cfg, as_of, run_dir)}

    summary["docs"]["report"] = _html_report(url, settings, as_of, run_id, run_dir, summary["docs"])

    save_summary(url, run_id, summary)
    log.info("\n%s", format_summary(summary))
    return summary


def _html_report(
    url: str, settings: Settings, as_of: date, run_id: str, run_dir: Path, docs: dict
) -> str | None:
    """The self-contained HTML report of the run, linking the doc sites that were built.

    ``bi`` is published by now: a report that cannot be drawn is logged and shown as not
    built in the summary rather than failing a night whose tables are already out.
    """
    from tierflow.report import render_report

    sites = (("Data Docs", "data_docs", "data-docs"), ("dbt docs", "dbt_docs", "dbt-docs"))
    links = {label: f"{folder}/index.html" for label, key, folder in sites if docs.get(key)}
    try:
        return str(render_report(url, settings.publish_schema, as_of, run_id, run_dir / "report.html", links))
    except Exception:
        log.exception("the HTML report for %s was not built", as_of)
        return None


def _data_docs(run_dir: Path) -> str | None:
    """The Data Docs site the gates of this run built (quality/docs.py), if they did."""
    index = run_dir / "data-docs" / "index.html"
    if not index.is_file():
        log.warning("no GX Data Docs in %s (see the validate tasks' logs)", index.parent)
        return None
    return str(index)


def _dbt_docs(url: str, cfg: TierflowConfig, as_of: date, run_dir: Path) -> str | None:
    """dbt docs of the run; like the Data Docs, for reading: a failure is logged, not fatal,
    because ``bi`` is already published by now and a missing docs page must not fail the night.
    """
    import time

    from tierflow.transform import DbtError, generate_docs

    started = time.perf_counter()
    try:
        index = generate_docs(url, cfg, as_of, run_dir / "dbt-docs")
    except DbtError:
        log.exception("could not generate the dbt docs in %s", run_dir / "dbt-docs")
        return None
    log.info("dbt docs generated in %.1f s: %s", time.perf_counter() - started, index)
    return str(index)


def record_dbt_test_results(project_dir: str, **kwargs: Any) -> None:
    """Cosmos callback: every dbt task's test outcomes go to data_quality_results beside GX's.

    Also ends the task's garbage-collector freeze (see :func:`dbt_vars_interceptor`).
    """
    from tierflow.quality.dbt_results import record_dbt_test_results as record

    gc.unfreeze()
    record(project_dir, **kwargs)


def dbt_vars_interceptor(context: Any, operator: Any) -> None:
    """Cosmos interceptor: give every dbt task the business config and the as-of date.

    Runs when the task executes (not when the DAG file is parsed), so a config change
    takes effect on the next run and parsing the DAG reads no files.

    It also freezes the garbage collector's view of every object alive before dbt starts:
    Cosmos runs ``gc.collect()`` after each dbt invocation (to release dbt's adapter
    semaphores), and in a long-lived process (``tierflow run`` runs the whole night in one)
    that full collection walks everything Airflow, GX and earlier dbt tasks left alive, about
    a second per mart task on the 3,000-customer demo. Frozen, it walks only what this dbt
    invocation made. The callback (:func:`record_dbt_test_results`) unfreezes, so nothing
    stays exempt from collection after the task.
    """
    from tierflow.transform import run_vars

    gc.freeze()

    settings = load_settings()
    as_of = context["ti"].xcom_pull(task_ids="resolve_as_of_date")
    operator.vars = {**(operator.vars or {}), **run_vars(load_config(settings.config_path), as_of)}
