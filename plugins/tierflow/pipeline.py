"""The nightly run's steps, as plain functions the DAG's tasks call.

Each step takes the as-of date and the run id explicitly and talks to the next step only
through warehouse tables. A step that fails records why in ``tierflow_meta.runs`` so the
CLI and the on-call engineer can read one sentence instead of a stack trace.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from tierflow import dbt_group_build
from tierflow.config import TierflowConfig, load_config
from tierflow.settings import META_SCHEMA, Settings, load_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

# dbt model folders built together by the DAG's `prepare` task (staging and the converted
# intermediates, incremental and plain tables); the marts get a task each
DBT_PREPARE_LAYERS = ("staging", "intermediate")
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


def _record_failure(url: str, run_id: str, as_of: str, step: str, exc: BaseException) -> None:
    """Write the failed step and its error into ``tierflow_meta.runs`` (created if missing: the
    first step of a fresh warehouse may be what failed). Never raises: the warehouse itself may
    be what failed, and the step's own error is the one to see, so a failure to record it is
    logged with its traceback."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            # imported when needed, like every step's package here: the DAG file imports this
            # module at parse time, and tierflow.ingest loads the whole loader (seconds)
            from tierflow.ingest.schema import ensure_schema

            ensure_schema(conn)
            conn.execute(
                sql.SQL(
                    "insert into {}.runs (run_id, as_of_date, status, error) values (%s, %s, 'failed', %s)"
                    " on conflict (run_id) do update set status = 'failed', error = excluded.error"
                ).format(sql.Identifier(META_SCHEMA)),
                (run_id, as_of, f"{step}: {exc}"),
            )
    except Exception:
        log.exception("could not record the failure of %s in %s.runs", step, META_SCHEMA)


def step(name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Make ``fn(settings, cfg, url, as_of, run_id, ...)`` a task-callable step
    ``step(as_of: str, run_id: str, ...)``.

    The wrapper loads the settings and the business config, parses the as-of date, and, when
    anything after loading the settings fails (a bad config file included), records the
    failure as ``"<name>: <error>"`` in ``tierflow_meta.runs`` (the one sentence the CLI
    prints) and re-raises the original exception, so the task fails with its own traceback.
    Settings (or a warehouse URL) that cannot be had are raised as they are: without them
    there is no warehouse to record anything in.
    """

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def wrapper(as_of: str, run_id: str, *args: Any, **kwargs: Any) -> T:
            refreeze_for_the_task()
            settings = load_settings()
            url = settings.warehouse_url()
            try:
                cfg = load_config(settings.config_path)
                return fn(settings, cfg, url, date.fromisoformat(as_of), run_id, *args, **kwargs)
            except Exception as exc:
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


@step("validate_raw")
def validate_raw(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    from tierflow.quality import run_gate

    return run_gate(url, "raw", as_of, cfg, run_id, settings.expectations, settings.run_dir(as_of))


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

    return run_gate(url, "marts", as_of, cfg, run_id, settings.expectations, settings.run_dir(as_of))


@step("publish")
def publish(
    settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str, outlet_events: Any = None
) -> dict:
    """Publish the night into ``bi``; with the task's ``outlet_events``, each published Asset's
    event carries the as-of date and the row counts (tierflow.assets)."""
    from tierflow.assets import annotate_published_events
    from tierflow.publish import publish as do_publish

    counts = do_publish(url, settings.publish_schema, run_id, as_of, settings.bi_role)
    if outlet_events is not None:
        annotate_published_events(outlet_events, as_of, counts)
    return counts


@step("notify")
def notify(settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str) -> dict:
    """One e-mail per owner listing tonight's published account alerts (only with SMTP set)."""
    from tierflow.alerts import send_alert_emails

    return send_alert_emails(url, settings.publish_schema, as_of, run_id, cfg.notifications, settings.smtp)


@step("report")
def report(
    settings: Settings, cfg: TierflowConfig, url: str, as_of: date, run_id: str, ingest_report: dict
) -> dict:
    """Exports, CRM import file, doc sites, HTML report and run summary (tierflow.report)."""
    from tierflow.report import write_report

    return write_report(url, settings, cfg, as_of, run_id, ingest_report)


def record_dbt_test_results(project_dir: str, **kwargs: Any) -> None:
    """Cosmos callback: every dbt task's test outcomes go to data_quality_results beside GX's.

    Also ends the task's garbage-collector freeze (see :func:`dbt_vars_interceptor`), except
    in a process that runs the whole night (:func:`freeze_for_the_night`).
    """
    from tierflow.quality.dbt_results import record_dbt_test_results as record

    if not _night_frozen:
        gc.unfreeze()
    record(project_dir, **kwargs)


# whether this process runs whole nights with its long-lived objects frozen (`tierflow run`)
_night_frozen = False


def freeze_for_the_night() -> None:
    """For a process that runs whole nights (``tierflow run``, after its imports and the DAG's
    parse): collect once and freeze what is alive, so the collector's full passes during the
    night walk only what the night made, and start a young pass every 10,000 new container
    objects instead of every 700. With the 1.3 million objects of Airflow, dbt, GX and pandas
    in one process, the collector took 5.5 s of the 3,000-customer demo's 34 s night, 4.5 s of
    it in 33 full passes (docs/performance.md, stop 33). Each task then collects what the night
    made since the last freeze and freezes what is alive (:func:`refreeze_for_the_task`), and a
    dbt task does not unfreeze after it: an object frozen alive and freed later by its
    reference count is freed as always; one left in a reference cycle waits for
    :func:`thaw_between_nights`."""
    global _night_frozen
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    _night_frozen = True


def refreeze_for_the_task() -> None:
    """At the start of a task of a night frozen by :func:`freeze_for_the_night`: collect what
    the night made since the last freeze (only that is walked) and freeze what is alive, so
    this task's passes walk only what it makes. Nothing in any other process."""
    if _night_frozen:
        gc.collect()
        gc.freeze()


def thaw_between_nights() -> None:
    """Between two nights of one process: everything back to the collector, one full pass
    (what the last night froze and left in cycles), and frozen again."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def openlineage_provider_installed() -> bool:
    """Whether Airflow's OpenLineage provider, the one emitter of Cosmos' lineage events, is installed."""
    try:
        return importlib.util.find_spec("airflow.providers.openlineage") is not None
    except ModuleNotFoundError:  # no airflow.providers at all
        return False


def _no_lineage_events(*args: Any, **kwargs: Any) -> bool:
    """Stands in for Cosmos' ``calculate_openlineage_events_completes``: no events, no parse."""
    return False


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
    stays exempt from collection after the task; in a process frozen for the night
    (:func:`freeze_for_the_night`) the task first collects what the night left since the last
    freeze (cheap: only that is walked), and stays frozen.

    And it spares the task Cosmos' OpenLineage parse when nothing would emit its events: after
    every dbt run Cosmos reads the run's ``manifest.json`` and ``run_results.json`` into
    OpenLineage events, which only Airflow's OpenLineage provider sends (tierflow does not
    install it; with it installed, Cosmos' own behaviour is kept).
    """
    from tierflow.dbt_patches import apply_dbt_patches
    from tierflow.transform import run_vars

    apply_dbt_patches()
    refreeze_for_the_task()
    gc.freeze()
    if not openlineage_provider_installed() and hasattr(operator, "calculate_openlineage_events_completes"):
        operator.calculate_openlineage_events_completes = _no_lineage_events

    settings = load_settings()
    as_of = context["ti"].xcom_pull(task_ids="resolve_as_of_date")
    operator.vars = {**(operator.vars or {}), **run_vars(load_config(settings.config_path), as_of)}
    # under `tierflow run`: the mart's group built in one dbt invocation (its own verdict kept)
    dbt_group_build.attach(context, operator)
