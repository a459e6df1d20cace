"""``tierflow airflow start | stop | status``: the real Airflow services on this machine.

The API server, scheduler, dag-processor, triggerer and (CeleryExecutor) N Celery workers run
as background processes, each the leader of a session of its own, with their state under
``<TIERFLOW_HOME>/airflow-local``: ``state.json`` (executor, URL, each service's pid and start
time), ``logs/<service>.log``, the Airflow home, ``secrets.json`` and the admin password
(``admin-password.json``, both mode 600, never on a command line). The metadata database is
PostgreSQL: ``TIERFLOW_AIRFLOW_DB_URL``, or database ``airflow`` of the embedded server. The
Celery broker is Redis (``TIERFLOW_CELERY_BROKER_URL``).

``stop`` signals exactly the sessions ``start`` created (a process counts only while it is in
one of them, and a session leader only with the start time recorded for it): every process a
service started, task processes and dbt included, and nothing else.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tierflow.deploy.plan import (
    ADMIN_USER,
    Layout,
    Service,
    environment,
    queue_name,
    redact,
    services,
)
from tierflow.settings import PROJECT_ROOT, Settings


class DeployError(RuntimeError):
    """The local deployment could not be started, reached or stopped; the message says why."""


# -- processes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Proc:
    pid: int
    sid: int
    start_ticks: int


def _proc(pid: int) -> Proc | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie holds no resources; its parent reaps it
        return None
    return Proc(pid=pid, sid=int(fields[3]), start_ticks=int(fields[19]))


def _all_procs() -> Iterator[Proc]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (proc := _proc(int(entry.name))) is not None:
            yield proc


def session_members(leader: int, start_ticks: int) -> list[int]:
    """Live processes of the session ``leader`` created, if it is the one we started.

    While any process of a session lives, Linux does not hand its id to a new process; so
    members of session ``leader`` are ours, unless the leader's pid now belongs to another
    process (its start time differs), which means our session is long gone.
    """
    members = [p for p in _all_procs() if p.sid == leader]
    head = next((p for p in members if p.pid == leader), None)
    if head is not None and head.start_ticks != start_ticks:
        return []
    return [p.pid for p in members]


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


# -- state -------------------------------------------------------------------------------------
def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (created 600, never world-readable on the way)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    path.chmod(0o600)


def _load_or_create_secrets(layout: Layout) -> dict[str, str]:
    if layout.secrets_file.exists():
        return json.loads(layout.secrets_file.read_text(encoding="utf-8"))
    values = {
        "fernet_key": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "jwt_secret": secrets.token_hex(32),
        "api_secret_key": secrets.token_hex(32),
    }
    _write_private(layout.secrets_file, json.dumps(values))
    return values


def _ensure_admin_password(layout: Layout) -> None:
    if not layout.password_file.exists():
        _write_private(layout.password_file, json.dumps({ADMIN_USER: secrets.token_urlsafe(16)}))
    layout.password_file.chmod(0o600)


def admin_password(layout: Layout) -> str:
    return json.loads(layout.password_file.read_text(encoding="utf-8"))[ADMIN_USER]


def _read_state(layout: Layout) -> dict | None:
    try:
        return json.loads(layout.state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _locked(layout: Layout) -> Iterator[None]:
    """One start or stop at a time per deployment."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


# -- checks ------------------------------------------------------------------------------------
def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_broker(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        raise DeployError(
            f"the Celery broker {redact(url)} (TIERFLOW_CELERY_BROKER_URL) is not reachable: {exc}."
            " Start Redis, or run `tierflow airflow start --executor local`."
        ) from None


def _metadata_db_url(settings: Settings) -> str:
    """TIERFLOW_AIRFLOW_DB_URL, or database ``airflow`` of the embedded server (created here)."""
    import psycopg
    from psycopg import sql

    if settings.airflow_db_url_override:
        url = settings.airflow_db_url_override
        try:
            psycopg.connect(url, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            raise DeployError(
                f"the Airflow metadata database {redact(url)} (TIERFLOW_AIRFLOW_DB_URL) is not reachable:"
                f" {str(exc).strip()}"
            ) from None
        return url
    from tierflow.warehouse import EmbeddedWarehouse

    server = EmbeddedWarehouse(settings.warehouse_dir)
    server.start()
    with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
        if not conn.execute("select 1 from pg_database where datname = 'airflow'").fetchone():
            conn.execute(sql.SQL("create database {}").format(sql.Identifier("airflow")))
    return server.url("airflow")


def _http_json(url: str, timeout: float = 5) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# -- commands ----------------------------------------------------------------------------------
@dataclass
class ServiceStatus:
    name: str
    pid: int
    processes: int  # live processes in its session (0: exited)
    log: Path


def _statuses(layout: Layout, state: dict) -> list[ServiceStatus]:
    return [
        ServiceStatus(s["name"], s["pid"], len(session_members(s["pid"], s["start_ticks"])),
                      layout.logs / f"{s['name']}.log")
        for s in state["services"]
    ]


def _spawn(service: Service, env: dict[str, str], log_path: Path) -> dict:
    with open(log_path, "ab") as log:
        log.write(f"\n=== {datetime.now(UTC).isoformat()} starting {service.name}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(service.argv), env=env, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    info = _proc(proc.pid)
    return {"name": service.name, "pid": proc.pid, "start_ticks": info.start_ticks if info else -1}


def _migrate(env: dict[str, str], layout: Layout) -> None:
    log_path = layout.logs / "db-migrate.log"
    with open(log_path, "wb") as log:
        res = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, cwd=PROJECT_ROOT,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise DeployError(f"airflow db migrate failed (exit {res.returncode}); {log_path}:\n"
                          + _tail(log_path))


def _wait_ready(layout: Layout, state: dict, timeout: float) -> None:
    """Until the API server answers and reports the scheduler, dag-processor and triggerer
    healthy, and every Celery worker has said it is ready; fail fast if a service exits."""
    health_url = f"{state['url']}/api/v2/monitor/health"
    workers = [s["name"] for s in state["services"] if s["name"].startswith("worker-")]
    deadline = time.monotonic() + timeout
    waiting: list[str] = []
    while time.monotonic() < deadline:
        for st in _statuses(layout, state):
            if st.processes == 0:
                raise DeployError(f"{st.name} exited during start-up; {st.log}:\n{_tail(st.log)}")
        health = _http_json(health_url) or {}
        waiting = [
            name for name in ("scheduler", "dag_processor", "triggerer")
            if (health.get(name) or {}).get("status") != "healthy"
        ]
        if not health:
            waiting.insert(0, "api-server")
        waiting += [
            w for w in workers
            if f"worker-{w.split('-')[1]}@{state['queue']} ready." not in _tail(layout.logs / f"{w}.log", 400)
        ]
        if not waiting:
            return
        time.sleep(2)
    raise DeployError(f"not ready after {timeout:.0f}s: {', '.join(waiting)} (logs in {layout.logs})")


def start(settings: Settings, executor: str, workers: int, concurrency: int, port: int,
          timeout: float = 300) -> dict:
    """Start the deployment (a no-op when it already runs); returns its state."""
    if executor == "celery" and workers < 1:
        raise DeployError("--workers must be at least 1 with the Celery executor")
    layout = Layout(settings.local_airflow_dir)
    with _locked(layout):
        state = _read_state(layout)
        if state is not None:
            live = [st for st in _statuses(layout, state) if st.processes]
            if len(live) == len(state["services"]):
                return {**state, "already_running": True}
            if live:
                raise DeployError(
                    "some services of the running deployment have exited ("
                    + ", ".join(st.name for st in _statuses(layout, state) if not st.processes)
                    + f"; see {layout.logs}): run `tierflow airflow stop`, then start again"
                )
        if port == 0:
            port = _free_port()
        elif not _port_free(port):
            raise DeployError(f"port {port} on 127.0.0.1 is in use: pass --port N (0 picks a free one)")
        if executor == "celery":
            check_broker(settings.celery_broker_url)
        db_url = _metadata_db_url(settings)
        if settings.uses_embedded_warehouse:
            from tierflow.warehouse import EmbeddedWarehouse

            EmbeddedWarehouse(settings.warehouse_dir).start()
        for folder in (layout.airflow_home, layout.logs):
            folder.mkdir(parents=True, exist_ok=True)
        _ensure_admin_password(layout)
        queue = queue_name(layout.root)
        env = environment(
            layout=layout, executor=executor, port=port, db_url=db_url,
            warehouse_url=settings.warehouse_url(), broker_url=settings.celery_broker_url, queue=queue,
            secrets=_load_or_create_secrets(layout), inherited=dict(os.environ),
        )
        # the DAG renders its dbt task group from the manifest: build it once here rather than
        # in the dag-processor and every worker at once
        from tierflow.transform import ensure_manifest

        ensure_manifest()
        _migrate(env, layout)
        state = {
            "executor": executor,
            "workers": workers if executor == "celery" else 0,
            "url": f"http://127.0.0.1:{port}",
            "queue": queue,
            "broker": redact(settings.celery_broker_url) if executor == "celery" else None,
            "metadata_db": redact(db_url),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "services": [],
        }
        try:
            for service in services(executor, workers, concurrency, port, queue):
                state["services"].append(_spawn(service, env, layout.logs / f"{service.name}.log"))
            _write_private(layout.state_file, json.dumps(state, indent=2))
            _wait_ready(layout, state, timeout)
        except BaseException:
            _stop_services(layout, state, grace=10)
            layout.state_file.unlink(missing_ok=True)
            raise
    return state


def _stop_services(layout: Layout, state: dict, grace: float) -> list[str]:
    """SIGTERM every process of every session we started, SIGKILL what is left after ``grace``
    seconds; returns the names of the services that had live processes."""
    sessions = {s["name"]: (s["pid"], s["start_ticks"]) for s in state["services"]}
    stopped = [name for name, (pid, ticks) in sessions.items() if session_members(pid, ticks)]

    def alive() -> list[int]:
        return [pid for leader, ticks in sessions.values() for pid in session_members(leader, ticks)]

    _signal_all(alive(), signal.SIGTERM)
    deadline = time.monotonic() + grace
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.5)
    while left := alive():
        _signal_all(left, signal.SIGKILL)
        time.sleep(0.2)
    return stopped


def stop(settings: Settings, grace: float = 30) -> list[str]:
    """Stop what ``start`` started; returns the names of the services that were running."""
    layout = Layout(settings.local_airflow_dir)
    with _locked(layout):
        state = _read_state(layout)
        if state is None:
            return []
        stopped = _stop_services(layout, state, grace)
        layout.state_file.unlink()
    return stopped


def status(settings: Settings) -> tuple[dict | None, list[ServiceStatus], dict]:
    """(state, each service's processes, the API server's health report or {})."""
    layout = Layout(settings.local_airflow_dir)
    state = _read_state(layout)
    if state is None:
        return None, [], {}
    return state, _statuses(layout, state), _http_json(f"{state['url']}/api/v2/monitor/health") or {}


def login_hint(settings: Settings) -> str:
    layout = Layout(settings.local_airflow_dir)
    return f"user {ADMIN_USER}, password in {layout.password_file} (mode 600)"
