"""
# customer_tiering

Nightly customer tiering: the extracts under the landing root become published customer
tiers and an allocation plan in the BI schema.

`ingest` -> `validate_raw` (GX) -> `prepare` (dbt: the staging and intermediate tables, one
task) -> `transform` (dbt via Cosmos: each mart and its tests visible as tasks; one dbt build
for all marts under the Airflow services, one per mart under `tierflow run`) ->
`clv` (predicted lifetime value, fitted on customer_rfm) -> `tiers` (dbt via Cosmos: the
value score, tier cutoffs and hysteresis, customer_tiers and the marts downstream of it, which
use the predicted value) ->
`allocate` (allocation plans per customer and tier) -> `validate_marts` (GX) -> `publish`
(one transaction into `bi`; emits the published tables' Assets, their events carrying the
as-of date and row counts) -> `report` (exports, dbt docs, HTML report and run summary) and
`notify` (account-alert e-mails, one per owner, when SMTP is set).

The as-of date is the run's logical date, or the `as_of_date` param for a manual run.
A failed quality gate stops the run before `publish`: BI keeps yesterday's tables.
Backfill with `tierflow run --from D1 --to D2` (or Airflow backfills): dates run in order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from cosmos import DbtTaskGroup, ProjectConfig, RenderConfig
from cosmos.constants import LoadMode
from cosmos.operators.local import DbtBuildLocalOperator
from tierflow import pipeline
from tierflow.assets import PUBLISHED_ALLOCATION, PUBLISHED_CUSTOMER_ALLOCATION, PUBLISHED_TIERS
from tierflow.settings import DBT_PROJECT_DIR
from tierflow.transform import (
    NIGHT_PARSE_GROUP,
    cosmos_cache_dir,
    cosmos_execution_config,
    cosmos_profile_config,
    cosmos_test_behavior,
    ensure_manifest,
)

DAG_ID = "customer_tiering"
TRANSFORM_GROUP_ID = NIGHT_PARSE_GROUP


@dag(
    dag_id=DAG_ID,
    schedule="@daily",
    # Any as-of date must run, however old (a company loading years of history): Airflow runs
    # no task for a logical date before start_date. catchup=False keeps the scheduler from
    # creating the runs in between; backfills go date by date with `tierflow run --from`.
    start_date=pendulum.datetime(1900, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["tierflow"],
    doc_md=__doc__,
    params={"as_of_date": Param(None, type=["null", "string"], format="date",
                                description="As-of date (YYYY-MM-DD); defaults to the logical date")},
    # no retries here: the deployment sets them ([core] default_task_retries; 2 under
    # `tierflow airflow start` and compose, so a task on a worker that died runs again), and
    # `tierflow run` fails fast with 0
)
def customer_tiering() -> None:
    @task
    def resolve_as_of_date() -> str:
        """The run's as-of date: the `as_of_date` param of a manual run, else the logical date.
        Every step reads it from here; a run with neither is refused, not guessed."""
        ctx = get_current_context()
        return pipeline.resolve_as_of_date(ctx["params"].get("as_of_date"), ctx.get("logical_date"))

    @task
    def ingest(as_of: str) -> dict:
        """Load every not-yet-loaded extract in the landing date folders up to the as-of date
        into `raw`; bad rows go to the rejects table with their reason, never silently dropped."""
        return pipeline.ingest(as_of, get_current_context()["run_id"])

    @task
    def validate_raw(as_of: str) -> dict:
        """Great Expectations checks of the raw tables, recorded and added to the night's Data
        Docs; a failed critical check fails the run here, before dbt builds anything."""
        return pipeline.validate_raw(as_of, get_current_context()["run_id"])

    # The staging models (incremental: the keys the night touched) and the converted
    # intermediates are plumbing: one dbt build for all of them (with their tests), where a
    # Cosmos task per model costs a dbt start each. The marts, where the business logic is,
    # stay one task per model.
    profile_config = cosmos_profile_config()
    dbt_executable = str(Path(sys.executable).parent / "dbt")
    prepare_paths = [f"path:models/{layer}" for layer in pipeline.DBT_PREPARE_LAYERS]
    dbt_task_args = {
        "install_deps": False,
        "interceptors": [pipeline.dbt_vars_interceptor],
        # every dbt test's outcome is recorded beside the GX results, passed or failed
        "callback": pipeline.record_dbt_test_results,
        # a relationship test runs with the model built last, not with the first parent
        "dbt_cmd_flags": ["--indirect-selection", "cautious"],
    }
    # dbt's unit tests check the SQL, not the night's data: they run in CI
    # (tests/test_dbt_tiers.py), not in every night. An environment variable, not the
    # --exclude-resource-type flag: a WATCHER mart task that lost its worker retries as `dbt run`
    # with the task's flags, and `dbt run` has no such option (it failed the retry)
    # dbt's debug log file: Cosmos runs dbt in a temporary copy of the project and deletes it,
    # log file included, after the task; dbt's own output is in the task's log either way.
    # Writing it cost each of the night's ~450 nodes a few debug lines, every line scrubbed of
    # the environment's secrets (~1.5 s a night on 2 cores)
    dbt_env = {"DBT_EXCLUDE_RESOURCE_TYPES": "unit_test", "DBT_LOG_LEVEL_FILE": "none"}
    # the folder of the night's one dbt parse (Cosmos' cache of the transform group)
    night_parse_cache = cosmos_cache_dir(TRANSFORM_GROUP_ID)
    prepare = DbtBuildLocalOperator(
        task_id="prepare",
        doc_md="dbt build of the staging and intermediate tables and their tests.",
        project_dir=DBT_PROJECT_DIR,
        profile_config=profile_config,
        dbt_executable_path=dbt_executable,
        select=prepare_paths,
        # the value tiering's intermediate models read customer_clv: they wait for `tiers`
        exclude=[pipeline.DBT_TIERS_SELECTOR],
        emit_datasets=False,
        # the transform group's partial-parse cache: `prepare` reuses the parse of the nights before
        # (the as-of date is not part of dbt's check: tierflow.dbt_patches, fix 6), parses what
        # changed in the project, and every mart task and the report's dbt docs reuse it
        cache_dir=night_parse_cache,
        env=dbt_env,
        **dbt_task_args,
    )
    # ensure_manifest() costs one hash of the dbt project when the manifest is current and runs
    # `dbt parse` (no database) when it is missing or stale: a fresh clone, a new image or a
    # changed model never renders from an old manifest.
    # The marts come in two Cosmos groups with the CLV step between them: the tiers
    # (int_customers_scored and every model downstream of it) read the predicted value that `clv`
    # fits on customer_rfm, so they wait for it; every other mart is built before it.
    project_config = ProjectConfig(
        dbt_project_path=DBT_PROJECT_DIR, manifest_path=ensure_manifest(), env_vars=dbt_env
    )

    def marts(group_id: str, **selection: list[str]) -> DbtTaskGroup:
        # Cosmos renders these tasks from the manifest: their doc comes from here, not a docstring
        doc = (
            f"A task of the `{group_id}` group of dbt marts, rendered by Cosmos. In watcher mode (the "
            "Airflow services' default) `dbt_producer_watcher` runs one `dbt build` of the group's "
            "models and tests, and each `<model>.run` / `<model>.test` task follows its model / its "
            "tests in that build; under `tierflow run` (local mode) a model's task runs `dbt build` "
            "of that model and its tests. What a model holds: the night's dbt docs (`report`)."
        )
        return DbtTaskGroup(
            group_id=group_id,
            project_config=project_config,
            profile_config=profile_config,
            execution_config=cosmos_execution_config(dbt_executable),
            render_config=RenderConfig(
                load_method=LoadMode.DBT_MANIFEST,
                test_behavior=cosmos_test_behavior(),
                emit_datasets=False,  # our own Assets are emitted by `publish`
                **selection,
            ),
            operator_args={**dbt_task_args, "doc_md": doc},
        )

    transform = marts(TRANSFORM_GROUP_ID, exclude=[*prepare_paths, pipeline.DBT_TIERS_SELECTOR])
    tiers = marts("tiers", select=[pipeline.DBT_TIERS_SELECTOR])
    # one dbt parse a night: the tiers group reads the partial parse `prepare` left in the
    # transform group's cache (same vars, same profile) instead of parsing the project again
    for dbt_task in tiers.iter_tasks():
        if getattr(dbt_task, "cache_dir", None) is not None:
            dbt_task.cache_dir = night_parse_cache

    @task
    def clv(as_of: str) -> dict:
        """Predicted customer lifetime value, fitted on customer_rfm (built by `transform`);
        the `tiers` group's models read it."""
        return pipeline.clv(as_of, get_current_context()["run_id"])

    @task
    def allocate(as_of: str) -> dict:
        """The allocation plans per customer and per tier for the as-of date, written beside the
        marts so that `validate_marts` checks them with the marts."""
        return pipeline.allocate(as_of, get_current_context()["run_id"])

    @task
    def validate_marts(as_of: str) -> dict:
        """Great Expectations checks of the marts and the allocation plans; a failed critical
        check fails the run before `publish`, so BI keeps the last good night's tables."""
        return pipeline.validate_marts(as_of, get_current_context()["run_id"])

    @task(outlets=[PUBLISHED_TIERS, PUBLISHED_ALLOCATION, PUBLISHED_CUSTOMER_ALLOCATION])
    def publish(as_of: str) -> dict:
        """The night's audited marts into `bi` in one transaction; then each published Asset's
        event carries the as-of date and row counts in its `extra` for the DAGs waiting on it."""
        ctx = get_current_context()
        return pipeline.publish(as_of, ctx["run_id"], ctx["outlet_events"])

    @task
    def report(as_of: str, ingest_report: dict) -> dict:
        """What the night leaves for people, after `publish`: the exports, the dbt docs, the HTML
        report (linking the gates' Data Docs) and the run summary."""
        return pipeline.report(as_of, get_current_context()["run_id"], ingest_report)

    @task
    def notify(as_of: str) -> dict:
        """One e-mail per owner listing the night's published account alerts; without SMTP
        settings it sends nothing and says so."""
        return pipeline.notify(as_of, get_current_context()["run_id"])

    as_of = resolve_as_of_date()
    loaded = ingest(as_of)
    checked_raw = validate_raw(as_of)
    predicted = clv(as_of)
    planned = allocate(as_of)
    checked_marts = validate_marts(as_of)
    published = publish(as_of)
    loaded >> checked_raw >> prepare >> transform >> predicted >> tiers
    tiers >> planned >> checked_marts >> published
    published >> report(as_of, loaded)
    published >> notify(as_of)


customer_tiering()
