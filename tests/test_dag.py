"""The DAG file imports cleanly and is wired as documented."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    from tierflow.transform import ensure_manifest

    ensure_manifest()
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


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
    # dbt models became Cosmos tasks inside the `transform` group
    assert any(t.startswith("transform.customer_tiers") for t in ids)
    assert any(t.startswith("transform.customer_rfm") for t in ids)
    # the staging and intermediate views are one task, after the raw gate and before the marts
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
    assert {t for t in allocate.upstream_task_ids if t.startswith("transform.")}
    assert dag.get_task("validate_marts").upstream_task_ids == {"allocate", "resolve_as_of_date"}
    # alert e-mails go out only after publish
    assert "publish" in dag.get_task("notify").upstream_task_ids
    assert not dag.catchup
    assert dag.max_active_runs == 1
    assert "tierflow" in dag.tags


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
