"""One dbt build per group of marts under `tierflow run` (tierflow.dbt_group_build): the build
must run exactly the nodes the group's tasks would run one by one. dbt itself says what each
task's own `dbt build` selects (`dbt ls` with the task's selection, exclusions and flags); the
group build's selection must be their union, node for node. The nights it runs are in
test_nights.py (a failing dbt test) and every other `tierflow run` test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_dag import load_dagbag

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory: pytest.TempPathFactory):
    # rendered as `tierflow run` renders it: LOCAL, a `dbt build` task per mart
    saved = os.environ.get("TIERFLOW_DBT_EXECUTION_MODE")
    os.environ["TIERFLOW_DBT_EXECUTION_MODE"] = "local"
    try:
        yield load_dagbag(tmp_path_factory.mktemp("airflow-home"))
    finally:
        if saved is None:
            os.environ.pop("TIERFLOW_DBT_EXECUTION_MODE", None)
        else:
            os.environ["TIERFLOW_DBT_EXECUTION_MODE"] = saved


def _ls(runner, target: Path, *selection: str) -> set[str]:
    """The unique ids `dbt build` would run for ``selection`` (models and data tests)."""
    res = runner.invoke([
        "ls", *selection, "--resource-type", "model", "--resource-type", "test",
        "--output", "json", "--output-keys", "unique_id", "--quiet",
        "--project-dir", str(ROOT / "dbt_project"), "--profiles-dir", str(ROOT / "dbt_project"),
        "--target-path", str(target),
    ])
    assert res.success, res.exception
    return {json.loads(line)["unique_id"] for line in res.result}


def _flags(value: str | list[str] | None) -> list[str]:
    return value.split() if isinstance(value, str) else list(value or [])


def test_the_group_build_runs_exactly_the_nodes_of_its_tasks_own_builds(dagbag, tmp_path) -> None:
    from dbt.cli.main import dbtRunner
    from tierflow import dbt_group_build
    from tierflow.transform import MANIFEST_PATH, ensure_manifest

    ensure_manifest()
    manifest = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    parsed = dbtRunner().invoke([
        "parse", "--quiet", "--project-dir", str(ROOT / "dbt_project"),
        "--profiles-dir", str(ROOT / "dbt_project"), "--target-path", str(tmp_path),
    ])
    assert parsed.success, parsed.exception
    runner = dbtRunner(manifest=parsed.result)

    dag = dagbag.dags["customer_tiering"]
    groups: dict[str, list] = {}
    for task in dag.tasks:
        if task.task_id.split(".")[0] in ("transform", "tiers"):
            groups.setdefault(task.task_group.group_id, []).append(task)
    assert set(groups) == {"transform", "tiers"} and sum(map(len, groups.values())) >= 20

    for group_id, tasks in groups.items():
        union: set[str] = set()
        for task in tasks:
            # the task's own build: its selection, its group's exclusions, its dbt flags
            flags = [f for f in task.dbt_cmd_flags or [] if f != "--"]
            own = _ls(runner, tmp_path, "--select", *_flags(task.select),
                      *(["--exclude", *_flags(task.exclude)] if task.exclude else []), *flags)
            nodes = dbt_group_build.task_nodes(manifest, task.select)
            assert nodes is not None and set(nodes) == own, task.task_id
            assert nodes[0].startswith("model.") and len(own) >= 1
            union |= own
        # what the group's one build selects (dbt_group_build's own command), resolved by dbt
        selectors = [dbt_group_build._selector(manifest, uid)
                     for task in tasks for uid in dbt_group_build.task_nodes(manifest, task.select)]
        command = dbt_group_build._with_selection(["dbt", "build", "--select", "x"], selectors)
        assert _ls(runner, tmp_path, *command[2:]) == union, group_id
    # the tests are most of the nodes: a group build that dropped them would show here
    assert sum(1 for uid in union if uid.startswith("test.")) > 50


def test_the_group_command_keeps_every_flag_but_the_selection() -> None:
    from tierflow.dbt_group_build import _with_selection

    command = ["/venv/bin/dbt", "build", "--select", "fqn:a.b", "--exclude", "path:x", "y+",
               "--indirect-selection", "cautious", "--vars", '{"as_of_date": "2026-03-31"}',
               "--project-dir", "/tmp/p", "--profile", "tierflow"]
    assert _with_selection(command, ["fqn:a.b", "fqn:a.t1"]) == [
        "/venv/bin/dbt", "build", "--vars", '{"as_of_date": "2026-03-31"}', "--project-dir", "/tmp/p",
        "--profile", "tierflow", "--select", "fqn:a.b", "fqn:a.t1", "--indirect-selection", "empty",
    ]


def test_a_marts_seconds_are_its_share_of_the_builds_wall_by_dbts_timing() -> None:
    from types import SimpleNamespace

    from tierflow.dbt_group_build import GroupBuild

    build = GroupBuild(built_by="g.a", seconds=8.0)
    # dbt timed the nodes 16 s in all (its threads wait for each other) in a build of 8 s wall
    for uid, seconds in {"model.a": 1.0, "test.a": 3.0, "model.b": 4.0, "test.b": 8.0}.items():
        build.results[uid] = SimpleNamespace(execution_time=seconds)
    assert build.share(["model.a", "test.a"]) == 8.0 * 4 / 16 == 2.0
    assert build.share(["model.b", "test.b"]) == 6.0
    assert build.share(["model.a", "test.a"]) + build.share(["model.b", "test.b"]) == build.seconds
    build.artifacts.rmdir()
