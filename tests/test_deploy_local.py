"""`tierflow airflow` without starting Airflow: what it would run, its settings, its refusals,
and the process bookkeeping `stop` relies on (real processes, no Airflow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tierflow.deploy.local import _proc, session_members
from tierflow.deploy.plan import Layout, environment, queue_name, redact, services

ROOT = Path(__file__).resolve().parents[1]
SECRETS = {"fernet_key": "f" * 44, "jwt_secret": "j" * 64, "api_secret_key": "a" * 64}


def test_celery_services_and_their_command_lines() -> None:
    started = services("celery", workers=3, concurrency=2, port=8123, queue="tierflow-q")
    assert [s.name for s in started] == ["api-server", "scheduler", "dag-processor", "triggerer",
                                         "worker-1", "worker-2", "worker-3"]
    api = started[0].argv
    assert api[-7:] == ("api-server", "--host", "127.0.0.1", "--port", "8123", "--workers", "1")
    for worker in started[4:]:
        argv = " ".join(worker.argv)
        assert "celery worker --queues tierflow-q --concurrency 2" in argv
        assert f"--celery-hostname {worker.name}@tierflow-q" in argv
    # nothing secret on any command line
    for service in started:
        assert not any(value in " ".join(service.argv) for value in SECRETS.values())
    assert [s.name for s in services("local", 3, 2, 8123, "q")] == [
        "api-server", "scheduler", "dag-processor", "triggerer"]


def test_each_deployment_has_its_own_queue(tmp_path: Path) -> None:
    a, b = queue_name(tmp_path / "a"), queue_name(tmp_path / "b")
    assert a != b and a.startswith("tierflow-")
    assert queue_name(tmp_path / "a") == a


def test_environment_fixes_what_makes_one_deployment_and_lets_tunables_be_overridden(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    inherited = {
        "PATH": "/usr/bin",
        "AIRFLOW_HOME": "/elsewhere",  # the caller's own Airflow must not leak in
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////elsewhere/airflow.db",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "16",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",  # a tunable: kept
    }
    env = environment(
        layout=layout, executor="celery", port=8123,
        db_url="postgresql://airflow:pw@127.0.0.1:5432/airflow",
        warehouse_url="postgresql://tierflow:wpw@127.0.0.1:5433/tierflow",
        broker_url="redis://127.0.0.1:6379/0", queue="tierflow-q", secrets=SECRETS, inherited=inherited,
    )
    assert env["PATH"] == "/usr/bin"
    assert env["AIRFLOW_HOME"] == str(tmp_path / "airflow")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg://airflow:pw@127.0.0.1:5432/airflow"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql+psycopg://airflow:pw@127.0.0.1:5432/airflow"
    assert "AIRFLOW__CELERY__WORKER_CONCURRENCY" not in env
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://127.0.0.1:8123/execution/"
    assert env["AIRFLOW__OPERATORS__DEFAULT_QUEUE"] == "tierflow-q"
    assert env["AIRFLOW_CONN_TIERFLOW_WAREHOUSE"] == "postgres://tierflow:wpw@127.0.0.1:5433/tierflow"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(layout.password_file)
    assert env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] == "20"
    assert env["AIRFLOW__CORE__DEFAULT_TASK_RETRIES"] == "2"
    local = environment(
        layout=layout, executor="local", port=8123, db_url="postgresql://a@h/airflow",
        warehouse_url="postgresql://t@h/t", broker_url="redis://h/0", queue="q", secrets=SECRETS,
        inherited={},
    )
    assert local["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"


def test_redact() -> None:
    assert redact("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("postgresql://u:p@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_session_members_are_the_processes_of_a_session_we_started() -> None:
    # a session leader with a child, like a Celery worker and its pool
    code = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    leader = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:
        ticks = _proc(leader.pid).start_ticks
        deadline = time.monotonic() + 10
        while len(members := session_members(leader.pid, ticks)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert leader.pid in members and len(members) == 2
        assert os.getpid() not in members
        # a leader pid whose start time is not the recorded one is someone else's: not ours
        assert session_members(leader.pid, ticks + 1) == []
    finally:
        for pid in session_members(leader.pid, ticks):
            os.kill(pid, signal.SIGKILL)
        leader.wait()
    # SIGKILL is delivered asynchronously: the orphaned child may take a moment to die
    deadline = time.monotonic() + 10
    while session_members(leader.pid, ticks) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_members(leader.pid, ticks) == []


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tierflow.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_start_refuses_an_unreachable_broker_and_bad_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW"))}
    env["TIERFLOW_HOME"] = str(tmp_path)
    res = _cli(["airflow", "start", "--port", "0"], {**env, "TIERFLOW_CELERY_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert res.returncode == 1
    assert "TIERFLOW_CELERY_BROKER_URL" in res.stderr and "--executor local" in res.stderr
    assert not (tmp_path / "airflow-local" / "state.json").exists()
    res = _cli(["airflow", "status"], env)
    assert res.returncode == 3 and "not started" in res.stdout
    res = _cli(["airflow", "stop"], env)
    assert res.returncode == 0 and "nothing was running" in res.stdout
    for name, value in (("TIERFLOW_CELERY_BROKER_URL", "amqp://127.0.0.1//"),
                        ("TIERFLOW_AIRFLOW_DB_URL", "mysql://a@b/c"),
                        ("TIERFLOW_DBT_EXECUTION_MODE", "kubernetes")):
        res = _cli(["airflow", "status"], {**env, name: value})
        assert res.returncode == 2 and name in res.stderr, (name, res.stderr)


def test_start_rejects_zero_workers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "TIERFLOW"))}
    res = _cli(["airflow", "start", "--workers", "0"], {**env, "TIERFLOW_HOME": str(tmp_path)})
    assert res.returncode == 1 and "--workers must be at least 1" in res.stderr
