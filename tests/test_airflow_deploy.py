"""Issue 12: the DAG under the real Airflow services, started by ``tierflow airflow start``.

API server, scheduler, dag-processor, triggerer and two Celery workers on this machine's Redis,
the metadata in this machine's PostgreSQL (127.0.0.1:5432), the warehouse a fresh database
there too. The run is triggered through the REST API like an operator would, and what it
publishes is compared with a ``tierflow run`` (``dag.test()``) of the same date into another
fresh database. Then a fault: one worker is SIGKILLed (its whole process session, as when its
machine dies) while it runs a transform task; the scheduler notices the missing heartbeat,
the task is retried on the other worker, and the night publishes exactly what an undisturbed
night publishes.

Without Redis or PostgreSQL on their standard ports the test skips and says which is missing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from tierflow.publish import PUBLISHED_TABLES  # all bi tables but data_quality_results (run ids)
from tiny_fixture import AS_OF, write_tiny_landing

ROOT = Path(__file__).resolve().parents[1]
TIERFLOW = [sys.executable, "-m", "tierflow.cli"]
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
FAULT_DATE = date(2026, 3, 30)
PRODUCER = "transform.dbt_producer_watcher"  # Cosmos WATCHER mode: the one dbt build of the marts
# Which worker dies in the fault night. LOCAL: the one running a mart's task. WATCHER (the
# default): the one running a mart's task but not the dbt build (its retry waits for the
# build, ~20 s more than a night). With True, the one running the dbt build: its retry skips
# by design and each mart's own tasks rebuild the marts one dbt process at a time: passed,
# but the night took 700 s on this 2-core machine (load 8-10), too long for `make test`.
KILL_THE_DBT_BUILD = False
XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")

pytestmark = pytest.mark.e2e


def _reachable_or_skip() -> None:
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 for the Airflow metadata: {str(exc).strip()}")
    import redis

    try:
        redis.Redis.from_url(REDIS, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis on 127.0.0.1:6379 for the Celery broker: {exc}")


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    """Three throwaway databases on this machine's PostgreSQL: Airflow's metadata, the
    deployment's warehouse, and the reference warehouse of `tierflow run`."""
    _reachable_or_skip()
    names = {role: f"tierflow_{role}_{uuid.uuid4().hex[:10]}" for role in ("meta", "wh", "ref")}
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        for name in names.values():
            admin.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    yield {role: urlsplit(POSTGRES)._replace(path=f"/{name}").geturl() for role, name in names.items()}
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        for name in names.values():
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW"))}


def tierflow(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*TIERFLOW, *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


class Api:
    """The deployment's REST API, logged in as the admin (password read from its 0600 file)."""

    def __init__(self, home: Path) -> None:
        local = home / "airflow-local"
        self.state = json.loads((local / "state.json").read_text())
        password_file = local / "admin-password.json"
        assert password_file.stat().st_mode & 0o777 == 0o600
        password = json.loads(password_file.read_text())["admin"]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password},
                               auth=False)["access_token"]

    def call(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.state["url"] + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def trigger(self, as_of: date) -> str:
        run = self.call("POST", "/api/v2/dags/customer_tiering/dagRuns",
                        {"logical_date": f"{as_of.isoformat()}T00:00:00Z", "conf": {}})
        return run["dag_run_id"]

    def run_state(self, run_id: str) -> str:
        return self.call("GET", f"/api/v2/dags/customer_tiering/dagRuns/{run_id}")["state"]

    def task_instances(self, run_id: str) -> list[dict]:
        path = f"/api/v2/dags/customer_tiering/dagRuns/{run_id}/taskInstances?limit=200"
        return self.call("GET", path)["task_instances"]

    def wait_for_dag(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.call("GET", "/api/v2/dags/customer_tiering")
                return
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
            time.sleep(2)
        raise AssertionError(f"the dag-processor did not parse customer_tiering within {timeout}s")

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while (state := self.run_state(run_id)) in ("queued", "running") and time.monotonic() < deadline:
            time.sleep(3)
        return state


def _failed_tasks(api: Api, run_id: str) -> list[tuple[str, str]]:
    return [(t["task_id"], t["state"]) for t in api.task_instances(run_id) if t["state"] != "success"]


def _session_of(pid: int) -> int | None:
    """The session id of a live process (None for a zombie or a process that is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return None if fields[0] == "Z" else int(fields[3])


def _sessions_members(leaders: set[int]) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _session_of(int(entry.name)) in leaders:
            members.append(int(entry.name))
    return members


def _kill_session(leader: int) -> None:
    """SIGKILL every process of a worker's session, as if its machine died; until none is left
    (one may fork while we kill)."""
    deadline = time.monotonic() + 10
    while members := _sessions_members({leader}):
        assert time.monotonic() < deadline, f"processes {members} of session {leader} survive SIGKILL"
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def published(url: str) -> dict[str, list[tuple]]:
    """Every published row, in an order fixed by the values alone (several tables have no
    unique pair of leading columns, so `order by 1, 2` would leave ties in insertion order)."""
    with psycopg.connect(url) as conn:
        select = sql.SQL("select * from {}")
        return {t: sorted(conn.execute(select.format(sql.Identifier("bi", t))).fetchall(), key=repr)
                for t in PUBLISHED_TABLES}


def query(url: str, q: str, *params) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(q, params).fetchall()


def test_celery_deployment_runs_the_night_and_survives_a_killed_worker(
    databases: dict[str, str], tmp_path: Path
) -> None:
    timings: dict[str, float] = {}
    clock = time.monotonic()
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    base = {**_clean_env(), "TIERFLOW_LANDING": str(landing)}
    # the reference: `tierflow run` (dag.test, one process) into its own database, in the
    # background while the deployment starts
    ref_env = {
        **base,
        # Airflow's SQLite for dag.test(), as tests/test_pipeline_e2e.py keeps it: one per test worker
        "TIERFLOW_HOME": str(ROOT / ".tierflow" / f"test-home-{XDIST_WORKER}"),
        "TIERFLOW_WAREHOUSE_URL": databases["ref"],
        "TIERFLOW_EXPORTS": str(tmp_path / "ref-exports"),
    }
    reference = subprocess.Popen([*TIERFLOW, "run", "--date", AS_OF.isoformat()], env=ref_env, cwd=ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    home = tmp_path / "home"
    env = {
        **base,
        "TIERFLOW_HOME": str(home),
        "TIERFLOW_WAREHOUSE_URL": databases["wh"],
        "TIERFLOW_AIRFLOW_DB_URL": databases["meta"],
        "TIERFLOW_CELERY_BROKER_URL": REDIS,
        # only the runs the test triggers: no scheduled run when the DAG is unpaused
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # a dead worker's task is failed after 20 s without a heartbeat, retried 3 s later
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "3",
    }
    started = tierflow(["airflow", "start", "--executor", "celery", "--workers", "2", "--port", "0"], env)
    leaders: set[int] = set()
    try:
        assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
        timings["start"] = time.monotonic() - clock
        assert "UI and REST API: http://127.0.0.1:" in started.stdout
        assert "user admin, password in" in started.stdout
        api = Api(home)
        assert api.state["executor"] == "celery" and api.state["workers"] == 2
        leaders = {s["pid"] for s in api.state["services"]}
        assert [s["name"] for s in api.state["services"]] == [
            "api-server", "scheduler", "dag-processor", "triggerer", "worker-1", "worker-2"]
        # the password never appears on a command line or in what `start` printed
        password = json.loads((home / "airflow-local" / "admin-password.json").read_text())["admin"]
        assert password not in started.stdout + started.stderr
        for pid in _sessions_members(leaders):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            assert password not in cmdline

        status = tierflow(["airflow", "status"], env)
        assert status.returncode == 0, status.stdout + status.stderr
        for name in ("scheduler", "dag-processor", "triggerer"):
            assert f"{name}" in status.stdout and "healthy" in status.stdout

        # 1. an undisturbed night, triggered through the REST API
        clock = time.monotonic()
        api.wait_for_dag(timeout=180)
        api.call("PATCH", "/api/v2/dags/customer_tiering", {"is_paused": False})
        run_id = api.trigger(AS_OF)
        state = api.wait_for_run(run_id, timeout=900)
        assert state == "success", _failed_tasks(api, run_id)
        timings["night"] = time.monotonic() - clock
        tis = api.task_instances(run_id)
        assert len(tis) > 15 and all(t["state"] == "success" for t in tis)
        assert any(t["task_id"].startswith("transform.") for t in tis)

        out, _ = reference.communicate(timeout=900)
        assert reference.returncode == 0, out[-4000:]
        deployed = published(databases["wh"])
        assert deployed == published(databases["ref"])
        assert len(deployed["customer_tiers"]) == 10

        # 2. a night on which a worker dies while it runs a transform task; its reference in
        # the background meanwhile
        reference = subprocess.Popen([*TIERFLOW, "run", "--date", FAULT_DATE.isoformat()], env=ref_env,
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        clock = time.monotonic()
        workers = {s["pid"]: s["name"] for s in api.state["services"] if s["name"].startswith("worker-")}
        run_id = api.trigger(FAULT_DATE)
        tasks = api.call("GET", "/api/v2/dags/customer_tiering/tasks")["tasks"]
        watcher = PRODUCER in {t["task_id"] for t in tasks}
        killed: tuple[str, str, int] | None = None
        deadline = time.monotonic() + 600
        while killed is None and time.monotonic() < deadline:
            running = {ti["task_id"]: (ti, _session_of(ti["pid"]) if ti.get("pid") else None)
                       for ti in api.task_instances(run_id) if ti["state"] == "running"}
            build_session = running.get(PRODUCER, (None, None))[1]
            for task_id, (ti, session) in running.items():
                if not task_id.startswith("transform.") or session not in workers:
                    continue
                if watcher and (task_id == PRODUCER) != KILL_THE_DBT_BUILD or (
                        not KILL_THE_DBT_BUILD and session == build_session):
                    continue
                _kill_session(session)
                killed = (workers[session], task_id, ti["try_number"])
                break
            assert api.run_state(run_id) in ("queued", "running"), _failed_tasks(api, run_id)
            time.sleep(0.3)
        assert killed is not None, "no transform task was seen running on a worker"
        worker, task_id, try_number = killed

        state = api.wait_for_run(run_id, timeout=900)
        assert state == "success", _failed_tasks(api, run_id)
        timings["night with a killed worker"] = time.monotonic() - clock
        tis = api.task_instances(run_id)
        task = next(t for t in tis if t["task_id"] == task_id)
        # retried: a mart's task runs again; WATCHER's dbt build skips its retry by design (no
        # second dbt build) and each mart's own task builds what the killed build had not
        expected = "skipped" if task_id == PRODUCER else "success"
        assert task["state"] == expected and task["try_number"] > try_number
        assert all(t["state"] == "success" for t in tis if t["task_id"] not in (task_id, PRODUCER))
        tries = api.call("GET", f"/api/v2/dags/customer_tiering/dagRuns/{run_id}/taskInstances/{task_id}"
                                "/tries")
        assert tries["task_instances"][0]["state"] in ("failed", "up_for_retry")
        # the retry ran on the surviving worker: its log shows it executing the task again
        survivor = next(name for name in workers.values() if name != worker)
        survivor_log = (home / "airflow-local" / "logs" / f"{survivor}.log").read_text(errors="replace")
        assert f"run_id={run_id}/task_id={task_id}/attempt={task['try_number']}.log" in survivor_log

        out, _ = reference.communicate(timeout=900)
        assert reference.returncode == 0, out[-4000:]
        deployed = published(databases["wh"])
        assert deployed == published(databases["ref"])
        # nothing published twice, nothing lost: ten customers a night, one published run a date
        assert query(databases["wh"], "select as_of_date, count(*), count(distinct customer_id)"
                                      " from bi.customer_tier_history group by 1 order by 1") == [
            (FAULT_DATE, 10, 10), (AS_OF, 10, 10)]
        assert query(databases["wh"], "select as_of_date, count(*) from tierflow_meta.runs"
                                      " where status = 'published' group by 1 order by 1") == [
            (FAULT_DATE, 1), (AS_OF, 1)]
    finally:
        stopped = tierflow(["airflow", "stop"], env)
        reference.kill()
        print("deployment timings (s):", {k: round(v) for k, v in timings.items()})
    assert stopped.returncode == 0, stopped.stderr
    assert "airflow stopped: api-server, scheduler, dag-processor, triggerer" in stopped.stdout
    assert not _sessions_members(leaders), "processes of the deployment outlived `tierflow airflow stop`"
