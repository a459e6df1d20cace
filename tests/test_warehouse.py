"""Tests of the warehouse plumbing: the embedded server, an external server, the URL setting.

Why: a new user gets an embedded PostgreSQL that must start, keep running between steps,
stop, and restart with its data intact; and TIERFLOW_WAREHOUSE_URL must point everything at
an existing server instead, so the same ingest must work against a plain external Postgres.
"""

from __future__ import annotations

import os
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
from tierflow.warehouse import EmbeddedWarehouse
from tiny_fixture import AS_OF, write_tiny_landing

EXTERNAL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _select_one(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        return conn.execute("select 1").fetchone()[0]


@pytest.fixture
def traversable_dir() -> Iterator[Path]:
    """A scratch folder every user can traverse (see test_starts_under_a_root_only_folder).

    pytest's tmp_path sits under root-only (0700) folders; as root the server cannot reach it
    (product bug), so the lifecycle test uses a fresh 0755 folder directly under /tmp.
    """
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
        if psql:
            out = subprocess.run(
                [psql, url, "-tAc", "select 1"], capture_output=True, text=True, timeout=30
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


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops privileges to the service user")
def test_starts_under_a_root_only_folder(tmp_path: Path) -> None:
    wh = EmbeddedWarehouse(tmp_path / "wh")
    try:
        assert wh.start().running
    finally:
        wh.stop()


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
