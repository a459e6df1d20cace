"""bench/explain_incremental.py's plan check, on plans PostgreSQL really makes (issue 11 item 2).

Two 20,000-row tables: 20,000 x 20,000 = 4e8 row pairs, above the check's threshold (1e8).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def explain_incremental():
    path = ROOT / "bench" / "explain_incremental.py"
    spec = importlib.util.spec_from_file_location("explain_incremental", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def conn(warehouse_url: str):
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create table a as select g as x from generate_series(1, 20000) g")
        conn.execute("create table b as select g as y from generate_series(1, 20000) g")
        conn.execute("analyze a")
        conn.execute("analyze b")
        yield conn


def _flags(module, conn, query: str) -> list[str]:
    return module.explain(conn, "probe", query)


def test_a_plain_subplan_per_row_is_flagged_a_hashed_one_is_not(explain_incremental, conn) -> None:
    query = "select * from a where x not in (select y from b)"
    conn.execute("set work_mem = '64kB'")  # too small to hash 20,000 ids: a plain SubPlan
    flagged = _flags(explain_incremental, conn, query)
    assert len(flagged) == 1 and "plain SubPlan" in flagged[0], flagged
    conn.execute("reset work_mem")  # 4 MB: hashed
    assert _flags(explain_incremental, conn, query) == []


def test_a_nested_loop_rescanning_its_inner_side_is_flagged_an_index_lookup_is_not(
    explain_incremental, conn
) -> None:
    query = "select * from a join b on a.x = b.y"
    conn.execute("set enable_hashjoin = off")
    conn.execute("set enable_mergejoin = off")
    flagged = _flags(explain_incremental, conn, query)
    assert len(flagged) == 1 and "nested loop" in flagged[0], flagged
    conn.execute("create index on b (y)")
    conn.execute("analyze b")
    assert _flags(explain_incremental, conn, query) == []
