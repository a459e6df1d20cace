"""The DAG file imports cleanly and is wired as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import psycopg
import pytest
from tierflow.deploy.plan import PARSE_TIMEOUTS

ROOT = Path(__file__).resolve().parents[1]


def load_dagbag(home: Path):
    """The project's DAGs, parsed with an Airflow home (metadata DB) under ``home``."""
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    return load_dagbag(tmp_path_factory.mktemp("airflow-home"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    assert {"customer_tiering", "tiers_published_example"} <= set(dagbag.dag_ids)


def test_customer_tiering_shape(dagbag) -> None:
    dag = dagbag.dags["customer_tiering"]
    assert dag.schedule == "@daily" or str(dag.timetable.summary) == "@daily"
    ids = set(dag.task_ids)
    steps = ("resolve_as_of_date", "ingest", "validate_raw", "allocate", "validate_marts", "publish")
    for step in (*steps, "report", "notify"):
        assert step in ids
    # dbt models became Cosmos tasks: the marts in the `transform` group, customer_tiers and
    # the marts downstream of it in the `tiers` group, after the `clv` step that they read
    assert any(t.startswith("tiers.customer_tiers") for t in ids)
    assert any(t.startswith("transform.customer_rfm") for t in ids)
    assert not any(t.startswith("transform.customer_tiers") for t in ids)
    clv = dag.get_task("clv")
    assert {t for t in clv.upstream_task_ids if t.startswith("transform.")}
    assert not {t for t in clv.upstream_task_ids if t.startswith("tiers.")}
    assert clv.downstream_task_ids and all(t.startswith("tiers.") for t in clv.downstream_task_ids)
    # the staging and intermediate tables are one task, after the raw gate and before the marts
    prepare = dag.get_task("prepare")
    assert prepare.select == ["path:models/staging", "path:models/intermediate"]
    assert "validate_raw" in prepare.upstream_task_ids
    assert not any(t.startswith(("transform.stg_", "transform.int_")) for t in ids)
    downstream = prepare.downstream_task_ids
    assert downstream and all(t.startswith("transform.") for t in downstream)
    # publish runs only after the marts were validated, which runs after every dbt task
    publish = dag.get_task("publish")
    assert "validate_marts" in publish.upstream_task_ids
    # the allocation is planned after every dbt task and checked by the marts gate
    allocate = dag.get_task("allocate")
    assert {t for t in allocate.upstream_task_ids if t.startswith("tiers.")}
    assert dag.get_task("validate_marts").upstream_task_ids == {"allocate", "resolve_as_of_date"}
    # alert e-mails go out only after publish
    assert "publish" in dag.get_task("notify").upstream_task_ids
    assert not dag.catchup
    assert dag.max_active_runs == 1
    assert "tierflow" in dag.tags


def test_every_dbt_task_of_a_night_shares_one_partial_parse(dagbag) -> None:
    # the night's vars change dbt's parse each night: `prepare` parses once and every mart task
    # of both Cosmos groups reads that parse from one cache folder, not its group's own
    dag = dagbag.dags["customer_tiering"]
    folders = {t.task_id: t.cache_dir for t in dag.tasks if hasattr(t, "cache_dir")}
    assert any(t.startswith("tiers.") for t in folders) and any(t.startswith("transform.") for t in folders)
    assert "prepare" in folders
    assert len(set(folders.values())) == 1, folders
    assert next(iter(folders.values())) is not None


def test_every_dbt_tasks_flags_are_options_of_each_command_it_or_its_retry_runs(dagbag) -> None:
    """A mart task runs `dbt build` (LOCAL) or, in WATCHER mode, waits for the producer's build
    and retries as `dbt run` / `dbt test` after losing its worker, always with the task's
    dbt_cmd_flags: a flag one of them lacks fails that retry (`--exclude-resource-type` did, under
    Celery with a killed worker). The nights' unit-test exclusion is dbt's environment variable,
    which a command without the option ignores."""
    from dbt.cli.main import cli

    def options(command: str) -> set[str]:
        return {o for p in cli.commands[command].params for o in p.opts}

    dbt_tasks = [t for t in dagbag.dags["customer_tiering"].tasks if hasattr(t, "dbt_cmd_flags")]
    ids = {t.task_id for t in dbt_tasks}
    assert "prepare" in ids and any(t.startswith("tiers.") for t in ids)
    for task in dbt_tasks:
        flags = [f for f in task.dbt_cmd_flags or [] if f.startswith("--")]
        for command in ("build", "run", "test"):
            assert set(flags) <= options(command), (task.task_id, command, set(flags) - options(command))
        assert task.env.get("DBT_EXCLUDE_RESOURCE_TYPES") == "unit_test", task.task_id
        # no debug log file in Cosmos' temporary project folder, which is deleted after the task
        assert task.env.get("DBT_LOG_LEVEL_FILE") == "none", task.task_id
    excluding = [p for p in cli.commands["build"].params if "--exclude-resource-type" in p.opts]
    assert len(excluding) == 1 and "DBT_EXCLUDE_RESOURCE_TYPES" in excluding[0].envvar
    (file_level,) = [p for p in cli.params if "--log-level-file" in p.opts]
    assert "DBT_LOG_LEVEL_FILE" in file_level.envvar and "none" in file_level.type.choices


def test_the_interceptor_gives_a_dbt_task_the_nights_vars_and_no_lineage_parse(dagbag, tmp_path) -> None:
    """What every dbt task's interceptor does before dbt starts: the night's vars, and (no
    OpenLineage provider here) Cosmos' lineage parse of the run's artifacts replaced by nothing."""
    import gc

    from tierflow import pipeline

    task = dagbag.dags["customer_tiering"].get_task("prepare")

    class TaskInstance:  # the one call the interceptor makes on the running task instance
        def xcom_pull(self, task_ids: str) -> str:
            assert task_ids == "resolve_as_of_date"
            return "2026-03-31"

    assert not pipeline.openlineage_provider_installed()
    shipped = type(task).calculate_openlineage_events_completes
    try:
        pipeline.dbt_vars_interceptor({"ti": TaskInstance()}, task)
    finally:
        gc.unfreeze()
    assert task.vars["as_of_date"] == "2026-03-31"
    # Cosmos' own method reads the run's dbt project and artifacts (none here)
    with pytest.raises(FileNotFoundError):
        shipped(task, {}, tmp_path)
    assert task.calculate_openlineage_events_completes({}, tmp_path) is False


def test_publish_emits_assets_that_the_example_consumes(dagbag) -> None:
    from tierflow.assets import PUBLISHED_ALLOCATION, PUBLISHED_CUSTOMER_ALLOCATION, PUBLISHED_TIERS

    publish = dagbag.dags["customer_tiering"].get_task("publish")
    published = {PUBLISHED_TIERS.uri, PUBLISHED_ALLOCATION.uri, PUBLISHED_CUSTOMER_ALLOCATION.uri}
    assert {a.uri for a in publish.outlets} == published
    example = dagbag.dags["tiers_published_example"]
    assert {PUBLISHED_TIERS.uri, PUBLISHED_ALLOCATION.uri} == {a.uri for a in example.schedule.objects}
    assert not any(t.startswith("transform.") for t in example.task_ids)


def test_dag_file_is_thin() -> None:
    text = (ROOT / "dags" / "customer_tiering.py").read_text(encoding="utf-8")
    for forbidden in ("select ", "insert ", "psycopg.connect", "schedule_interval", "execution_date"):
        assert forbidden not in text.lower()


# Parses the DAG folder of the checkout on PYTHONPATH (its own tierflow package: the editable
# install's path entry comes after PYTHONPATH) and prints what a dag-processor would see.
_PARSE = """
import json, sys
import tierflow
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("customer_tiering")
print(json.dumps({
    "tierflow": tierflow.__file__,
    "errors": {path: str(err) for path, err in bag.import_errors.items()},
    "tasks": {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks} if dag else {},
}))
"""


def _fresh_clone(dest: Path) -> Path:
    """The repository's files as a clone has them (tracked, plus new files not yet committed
    and not ignored): no dbt_project/target, no .tierflow, no .venv."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _parse_dags(checkout: Path, airflow_home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW", "PYTHONPATH"))}
    env.update(
        PYTHONPATH=str(checkout / "plugins"),
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{airflow_home / 'airflow.db'}",
        # as the deployment parses (compose, `tierflow airflow start`): the parse that builds
        # the manifest runs `dbt parse`, longer than Airflow's default 30 s on a busy machine
        **PARSE_TIMEOUTS,
    )
    res = subprocess.run(
        [sys.executable, "-c", _PARSE, str(checkout / "dags")],
        env=env, cwd=checkout, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    parsed = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(parsed["tierflow"]).is_relative_to(checkout), parsed["tierflow"]
    return parsed


@pytest.mark.slow
def test_fresh_clone_parses_and_follows_model_changes(tmp_path: Path) -> None:
    """Issue 12: no prebuilt manifest on a fresh clone; a changed model changes the DAG."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout to list the repository's files")
    checkout = _fresh_clone(tmp_path / "clone")
    target = checkout / "dbt_project" / "target"
    assert not target.exists()

    fresh = _parse_dags(checkout, tmp_path / "airflow")
    assert fresh["errors"] == {}
    # the deployments' default, Cosmos WATCHER: a task per mart and one per mart's tests
    assert fresh["tasks"]["tiers.customer_tiers.test"] == ["tiers.customer_tiers.run"]
    assert (target / "manifest.json").is_file() and (target / "manifest.fingerprint").is_file()

    # a new mart: its task appears, after the model it reads
    probe = checkout / "dbt_project" / "models" / "marts" / "customers" / "zz_probe.sql"
    probe.write_text("select customer_id from {{ ref('customer_rfm') }}\n", encoding="utf-8")
    added = _parse_dags(checkout, tmp_path / "airflow")
    assert added["errors"] == {}
    # (a model without tests is one task)
    assert added["tasks"]["transform.zz_probe_run"] == ["transform.customer_rfm.test"]

    # the same model now reads another mart; its modification time is put back, so only the
    # content tells that the project changed
    stat = probe.stat()
    probe.write_text("select customer_id from {{ ref('customer_tiers') }}\n", encoding="utf-8")
    os.utime(probe, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = _parse_dags(checkout, tmp_path / "airflow")
    assert changed["errors"] == {}
    # (it now reads customer_tiers, so it moved to the `tiers` group, after the CLV step)
    assert changed["tasks"]["tiers.zz_probe_run"] == ["tiers.customer_tiers.test"]
    assert set(changed["tasks"]) - set(added["tasks"]) == {"tiers.zz_probe_run"}
    assert set(added["tasks"]) - set(changed["tasks"]) == {"transform.zz_probe_run"}


def test_every_task_says_what_it_does(dagbag) -> None:
    """The Airflow UI shows a task's doc: the TaskFlow steps' docstrings, the dbt tasks' doc."""
    for dag_id in ("customer_tiering", "tiers_published_example"):
        undocumented = [t.task_id for t in dagbag.dags[dag_id].tasks if not (t.doc_md or "").strip()]
        assert undocumented == [], f"{dag_id}: tasks without a doc: {undocumented}"
    publish = dagbag.dags["customer_tiering"].get_task("publish")
    assert "as-of date and row counts" in publish.doc_md


# -- the published Assets' events: what publish writes into them and the example reads back


def _publish_event(asset, extra: dict, minute: int):
    from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
    from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult

    return AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=asset.name, uri=asset.uri, extra={}),
        extra=extra,
        source_task_id="publish",
        source_dag_id="customer_tiering",
        source_run_id=f"scheduled__{minute}",
        source_map_index=-1,
        source_aliases=[],
        timestamp=datetime(2026, 3, 31, 2, minute, tzinfo=UTC),
    )


def test_publish_puts_the_as_of_date_and_row_counts_on_each_asset_event() -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors
    from tierflow.assets import PUBLISHED_TABLES, annotate_published_events

    counts = {"fct_orders": 900, "customer_tiers": 120, "allocation_plan_tier": 4,
              "allocation_plan_customer": 118, "data_quality_results": 75}
    outlet_events = OutletEventAccessors()  # Airflow's own accessor, as the task context holds it
    annotate_published_events(outlet_events, date(2026, 3, 31), counts)
    for asset, table in PUBLISHED_TABLES:
        extra = outlet_events[asset].extra
        assert extra == {"as_of_date": "2026-03-31", "rows": counts[table], "published_rows": counts}
        assert json.loads(json.dumps(extra)) == extra  # Airflow stores extra as JSON


def test_the_example_consumer_reads_the_triggering_event(
    warehouse_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example names the night the event published, not whatever date is newest in bi."""
    from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
    from tierflow.assets import PUBLISHED_ALLOCATION, PUBLISHED_TIERS
    from tierflow.examples import announce_published_tiers, published_tiers_event

    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", warehouse_url)
    monkeypatch.setenv("TIERFLOW_PUBLISH_SCHEMA", "bi")
    with psycopg.connect(warehouse_url) as conn:
        conn.execute("create schema bi")
        conn.execute("create table bi.customer_tiers (as_of_date date, customer_id text, value_tier text)")
        conn.execute(
            "insert into bi.customer_tiers values ('2026-03-30', 'C1', 'A'), ('2026-03-30', 'C2', 'B'),"
            " ('2026-03-30', 'C3', 'B'), ('2026-03-31', 'C1', 'A')"
        )
    older = {"as_of_date": "2026-03-29", "rows": 2, "published_rows": {"customer_tiers": 2}}
    rerun = {"as_of_date": "2026-03-30", "rows": 3, "published_rows": {"customer_tiers": 3}}
    events = TriggeringAssetEventsAccessor.build([
        _publish_event(PUBLISHED_TIERS, older, 1),
        _publish_event(PUBLISHED_TIERS, rerun, 5),  # the newest event: a rerun of an older date
        _publish_event(PUBLISHED_ALLOCATION, {"as_of_date": "2026-03-30", "rows": 4}, 5),
    ])
    assert published_tiers_event(events) == rerun
    assert announce_published_tiers(events) == "tiers for 2026-03-30: A 1, B 2 (3 customers tiered)"

    # a manual run has no triggering event: the newest published date
    assert published_tiers_event(TriggeringAssetEventsAccessor.build([])) is None
    assert announce_published_tiers(None) == "tiers for 2026-03-31: A 1"
