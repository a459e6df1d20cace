"""Publishing keeps the published tables (and so the BI views on them) across releases."""

from __future__ import annotations

import psycopg
import pytest


def test_new_columns_reach_bi_without_breaking_its_views(warehouse_url: str) -> None:
    from tierflow.publish.publisher import PublishError, _publish_table

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("create schema build_marts; create schema bi")
        conn.execute("create table build_marts.t (customer_id text, value_tier text)")
        conn.execute("insert into build_marts.t values ('C1', 'high'), ('C2', 'low')")
        assert _publish_table(conn, "build_marts", "bi", "t") == 2
        # a BI tool's view on the published table
        conn.execute("create view bi.high_customers as"
                     " select customer_id from bi.t where value_tier = 'high'")

        # the next release adds a column (in the middle) and the night's rows change
        conn.execute("drop table build_marts.t")
        conn.execute("create table build_marts.t (customer_id text, is_override boolean, value_tier text)")
        conn.execute("insert into build_marts.t values ('C1', false, 'low'), ('C3', true, 'high')")
        assert _publish_table(conn, "build_marts", "bi", "t") == 2
        assert conn.execute("select customer_id from bi.high_customers").fetchall() == [("C3",)]
        assert conn.execute(
            "select customer_id, value_tier, is_override from bi.t order by 1"
        ).fetchall() == [("C1", "low", False), ("C3", "high", True)]

        # a removed column cannot be published under the view: stop, name it, change nothing
        conn.execute("drop table build_marts.t")
        conn.execute("create table build_marts.t (customer_id text, is_override boolean)")
        conn.execute("insert into build_marts.t values ('C9', false)")
        with pytest.raises(PublishError, match="bi.t changed shape but objects depend on it.*high_customers"):
            _publish_table(conn, "build_marts", "bi", "t")
        assert conn.execute("select count(*) from bi.t").fetchone() == (2,)
