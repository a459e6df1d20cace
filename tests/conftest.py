"""Shared fixtures: a real embedded PostgreSQL for the session, a fresh database per test.

Tests never mock the warehouse. One embedded server (its data under
``.tierflow/test-warehouse``) serves the whole session; each test that needs a warehouse
gets its own database on it, dropped afterwards.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tiny_fixture and friends

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
os.environ.setdefault("AIRFLOW__COSMOS__ENABLE_TELEMETRY", "False")
os.environ.setdefault("DO_NOT_TRACK", "1")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: the end-to-end DAG runs, then the tests marked slow, then the rest.
    make test runs two pytest-xdist workers that take one module at a time in this order
    (``--dist loadscope --no-loadscope-reorder``): the modules of the long runs go to both
    workers first and the short modules fill the gaps at the end, instead of one worker
    running every night while the other waits."""

    def weight(item: pytest.Item) -> tuple[bool, bool]:
        return item.get_closest_marker("e2e") is None, item.get_closest_marker("slow") is None

    items.sort(key=weight)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """URL of the session's embedded server (its `postgres` maintenance database)."""
    from tierflow.warehouse import EmbeddedWarehouse

    # one server per pytest process, so parallel sessions never stop each other's server
    directory = ROOT / ".tierflow" / f"test-warehouse-{os.getpid()}"
    wh = EmbeddedWarehouse(directory)
    wh.start()
    try:
        yield wh.url("postgres")
    finally:
        wh.remove()  # stops it; deletes its data, also when kept outside the checkout (root)


def _with_db(url: str, db: str) -> str:
    return urlsplit(url)._replace(path=f"/{db}").geturl()


@pytest.fixture
def warehouse_url(pg_server: str) -> Iterator[str]:
    """A fresh, empty database on the session's embedded server."""
    db = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
    yield _with_db(pg_server, db)
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database {} with (force)").format(sql.Identifier(db)))


@pytest.fixture
def config():
    from tierflow.config import load_config

    return load_config(ROOT / "config" / "tierflow.yml")
