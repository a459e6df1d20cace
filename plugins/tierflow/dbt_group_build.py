"""One ``dbt build`` per Cosmos group under ``tierflow run``, with a task per mart kept.

``tierflow run`` runs the night in one process (Airflow's ``dag.test()``), where Cosmos' LOCAL
mode starts dbt once per mart task: 23 invocations a night, each paying what dbt costs before
and after any SQL (loading the parsed project, selecting and linking the graph, the adapter's
cache, writing ``manifest.json`` and ``run_results.json``; ~0.5 s each on 2 cores,
docs/performance.md, stop 31). Cosmos' WATCHER mode runs one build per group, but in one
process its producer turns every dbt event into an XCom and took longer than the LOCAL tasks
(docs/performance.md, 2026-11-30).

Here, under ``tierflow run`` only (:func:`enable`), the first task of a group to run builds,
in one dbt invocation, exactly the nodes every task of the group would have built on its own:
each task's model and the tests its own ``dbt build --select <model> --indirect-selection
cautious`` selects (:func:`task_nodes`; ``tests/test_dbt_group_build.py`` compares them with
``dbt ls`` for every mart task). Each task then takes its verdict from its own nodes' results:
it fails when its model or one of its tests failed, as its own build would have, and
Airflow's ``upstream_failed`` follows as before; dbt, for its part, skips the models below a
failed one. A task whose nodes are not all in the group build's results (dbt stopped early,
skipped one) builds them itself, as in plain LOCAL mode. Each task that runs leaves its own
nodes' part of the build's ``run_results.json`` (and the build's ``manifest.json``) in its
project folder, where Cosmos' callback records the task's tests; a task below a failed mart
never runs, so its tests, which dbt reports as skipped, are not recorded, as before. A task's
duration then no longer says what its mart cost (the first task carries the group's
build): each task's XCom ``dbt_node_seconds`` does, the build's wall time apportioned to its
model and tests by dbt's own timing of each node (:meth:`GroupBuild.share`).

Only when every task outside the group that a task of the group waits for has already run
(it is upstream of the task starting the build); otherwise each task builds on its own.
Under the Airflow services each task is its own process and this stays off: WATCHER (or
LOCAL) runs there as configured.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_enabled = False
# (run_id, group_id) -> the group's build; only the latest run's builds are kept
_builds: dict[tuple[str, str], GroupBuild] = {}
_manifest_cache: dict[str, Any] = {}

# the statuses of a node that passed: a model built, a test passed or only warned
PASSED = frozenset({"success", "pass", "warn"})
# XCom of each task built in a group build: its mart's share of the build's wall time
NODE_SECONDS_KEY = "dbt_node_seconds"


def enable(on: bool = True) -> None:
    """Build each Cosmos group once in this process (``tierflow run``; see the module doc)."""
    global _enabled
    _enabled = on
    _forget()


def _forget(keep_run: str | None = None) -> None:
    """Drop the group builds (their artifacts too), except those of the run ``keep_run``."""
    for key in [k for k in _builds if k[0] != keep_run]:
        shutil.rmtree(_builds.pop(key).artifacts, ignore_errors=True)


def enabled() -> bool:
    return _enabled


@dataclass
class GroupBuild:
    built_by: str
    results: dict[str, Any] = field(default_factory=dict)  # unique_id -> dbt RunResult
    seconds: float = 0.0
    # the build's run_results.json and manifest.json (its own folder is deleted with its task)
    artifacts: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tierflow-group-build-")))

    def share(self, nodes: list[str]) -> float:
        """The build's wall seconds apportioned to ``nodes`` by dbt's timing of each node (on
        4 threads and 2 cores a node's own timing includes its wait for the others, so the
        nodes' timings add up to more than the build's wall; the shares add up to it)."""
        timed = {uid: float(r.execution_time or 0) for uid, r in self.results.items()}
        total = sum(timed.values())
        return self.seconds * sum(timed.get(uid, 0.0) for uid in nodes) / total if total else 0.0

    def keep_artifacts(self, target: Path) -> None:
        for name in ("run_results.json", "manifest.json"):
            if (target / name).is_file():
                shutil.copyfile(target / name, self.artifacts / name)

    def leave_artifacts(self, nodes: list[str], target: Path) -> None:
        """The task's own part of the build's artifacts, in the task's target folder."""
        run_results = self.artifacts / "run_results.json"
        if not run_results.is_file():
            return
        document = json.loads(run_results.read_text(encoding="utf-8"))
        mine = set(nodes)
        document["results"] = [r for r in document["results"] if r["unique_id"] in mine]
        target.mkdir(parents=True, exist_ok=True)
        (target / "run_results.json").write_text(json.dumps(document), encoding="utf-8")
        if (self.artifacts / "manifest.json").is_file():
            shutil.copyfile(self.artifacts / "manifest.json", target / "manifest.json")


def _manifest(path: Path) -> dict:
    """The rendered DAG's manifest (Cosmos renders the tasks from it), read once per version."""
    stamp = f"{path}:{path.stat().st_mtime_ns}"
    if _manifest_cache.get("stamp") != stamp:
        _manifest_cache.update(stamp=stamp, manifest=json.loads(path.read_text(encoding="utf-8")))
    return _manifest_cache["manifest"]


def task_nodes(manifest: dict, select: str | list[str] | None) -> list[str] | None:
    """The unique ids a task's ``dbt build --select fqn:<model> --indirect-selection cautious``
    builds: the model, and every data test whose parents are all that model. None when the
    selection is not one model's fqn (the task then builds on its own). Cosmos gives a task's
    selection as one string of space-separated selectors, or a list."""
    selectors = select.split() if isinstance(select, str) else list(select or [])
    if len(selectors) != 1 or not selectors[0].startswith("fqn:"):
        return None
    fqn = selectors[0].removeprefix("fqn:")
    nodes = manifest["nodes"]
    models = [uid for uid, n in nodes.items() if n["resource_type"] == "model" and ".".join(n["fqn"]) == fqn]
    if len(models) != 1:
        return None
    (model,) = models
    tests = sorted(
        uid for uid, n in nodes.items()
        if n["resource_type"] == "test" and n["depends_on"]["nodes"]
        and set(n["depends_on"]["nodes"]) == {model} and n["config"].get("enabled", True)
    )
    return [model, *tests]


def _selector(manifest: dict, uid: str) -> str:
    return "fqn:" + ".".join(manifest["nodes"][uid]["fqn"])


def _group_tasks(operator: Any) -> list[Any]:
    group = operator.task_group
    return [t for t in operator.dag.tasks if t.task_group is group and hasattr(t, "select")]


def _with_selection(command: list[str], selectors: list[str]) -> list[str]:
    """``command`` selecting exactly ``selectors`` (no other select, exclude or indirect tests)."""
    out, skip = [], False
    for arg in command:
        if skip:
            if arg.startswith("--"):
                skip = False
            else:
                continue
        if arg in ("--select", "-s", "--models", "-m", "--exclude", "--indirect-selection"):
            skip = True
            continue
        out.append(arg)
    return [*out, "--select", *selectors, "--indirect-selection", "empty"]


def _result_for(nodes: list[str], build: GroupBuild) -> Any:
    """The task's own part of the group's results, as dbt would have returned it to the task."""
    from dbt.cli.main import dbtRunnerResult
    from dbt.contracts.results import RunExecutionResult

    mine = [build.results[uid] for uid in nodes]
    ok = all(str(r.status) in PASSED for r in mine)
    elapsed = sum(float(getattr(r, "execution_time", 0) or 0) for r in mine)
    return dbtRunnerResult(success=ok, result=RunExecutionResult(results=mine, elapsed_time=elapsed))


def attach(context: Any, operator: Any) -> None:
    """Cosmos interceptor part: route this mart task's dbt run through its group's one build."""
    # an operator object can outlive a run (`tierflow run --from/--to` reuses the DAG's): no
    # routing of an earlier run stays on it
    vars(operator).pop("run_dbt_runner", None)
    if not _enabled or getattr(operator, "task_group", None) is None:
        return
    from tierflow.transform import MANIFEST_PATH

    if not MANIFEST_PATH.is_file():
        return
    manifest = _manifest(MANIFEST_PATH)
    group = _group_tasks(operator)
    if len(group) < 2:
        return
    per_task = {t.task_id: task_nodes(manifest, t.select) for t in group}
    if any(nodes is None for nodes in per_task.values()):
        log.info("dbt group build: a task of the group selects more than one model; each builds its own")
        return
    run_id = context["run_id"]
    group_id = operator.task_group.group_id
    shipped = type(operator).run_dbt_runner

    def run_dbt_runner(command: list[str], env: dict, cwd: str, **kwargs: Any) -> Any:
        key = (run_id, group_id)
        mine = per_task[operator.task_id]
        build = _builds.get(key)
        if build is None:
            ahead = operator.get_flat_relative_ids(upstream=True)
            members = set(per_task)
            waits = {u for t in group for u in t.upstream_task_ids if u not in members}
            if not waits <= ahead:
                log.info("dbt group build: %s waits for tasks outside the group (%s): a build per task",
                         group_id, ", ".join(sorted(waits - ahead)))
                return shipped(operator, command, env, cwd, **kwargs)
            _forget(keep_run=run_id)  # an earlier run's builds are not needed again
            selectors = [_selector(manifest, uid) for nodes in per_task.values() for uid in nodes]
            log.info("dbt group build: one dbt build of %s's %d models and their %d tests for its %d tasks",
                     group_id, len(per_task), len(selectors) - len(per_task), len(per_task))
            # kept before dbt runs: if the build raises, the group's other tasks build on their own
            build = _builds[key] = GroupBuild(built_by=operator.task_id)
            started = time.perf_counter()
            result = shipped(operator, _with_selection(command, selectors), env, cwd, **kwargs)
            build.seconds = time.perf_counter() - started
            build.keep_artifacts(Path(cwd) / "target")
            for r in getattr(result.result, "results", None) or []:
                build.results[r.node.unique_id] = r
            if result.exception is not None or not all(uid in build.results for uid in mine):
                build.leave_artifacts(mine, Path(cwd) / "target")
                return result  # the build did not get to this task's nodes: its error is the task's
        elif not all(uid in build.results and str(build.results[uid].status) != "skipped" for uid in mine):
            # not built by the group's build (it stopped, or skipped them): as in a build per task
            log.info("dbt group build: %s's nodes are not in the group's results; it builds them itself",
                     operator.task_id)
            return shipped(operator, command, env, cwd, **kwargs)
        build.leave_artifacts(mine, Path(cwd) / "target")
        # the task's duration no longer says what its mart cost: its share of the build's wall does
        context["ti"].xcom_push(key=NODE_SECONDS_KEY, value=round(build.share(mine), 3))
        for uid in mine:
            r = build.results[uid]
            log.info("%s: %s in %.2f s (group build by %s)%s", manifest["nodes"][uid]["name"], r.status,
                     float(r.execution_time or 0), build.built_by, f": {r.message}" if r.message else "")
        return _result_for(mine, build)

    operator.run_dbt_runner = run_dbt_runner
