"""The DAG file imports cleanly and is wired as documented."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tierflow.deploy.plan import PARSE_TIMEOUTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("airflow-home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
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
    # dbt models became Cosmos tasks: the marts in the `transform` group, customer_tiers and
    # the marts downstream of it in the `tiers` group, after the `clv` step that they read
    assert any(t.startswith("tiers.customer_tiers") for t in ids)
    assert any(t.startswith("transform.customer_rfm") for t in ids)
    assert not any(t.startswith("transform.customer_tiers") for t in ids)
    clv = dag.get_task("clv")
    assert {t for t in clv.upstream_task_ids if t.startswith("transform.")}
    assert not {t for t in clv.upstream_task_ids if t.startswith("tiers.")}
    assert clv.downstream_task_ids and all(t.startswith("tiers.") for t in clv.downstream_task_ids)
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
    assert {t for t in allocate.upstream_task_ids if t.startswith("tiers.")}
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
