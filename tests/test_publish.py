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


def test_per_date_tables_keep_other_dates_and_an_older_date_leaves_current_state(warehouse_url: str) -> None:
    """bi keeps every published date of the per-date tables; publishing a date replaces only
    that date's rows; a rerun of an older date does not turn the current-state tables back."""
    from datetime import date

    from tierflow.ingest.schema import ensure_schema
    from tierflow.publish.publisher import CURRENT_STATE_TABLES, PER_DATE_TABLES, publish

    d1, d2 = date(2026, 3, 30), date(2026, 3, 31)

    def night(conn: psycopg.Connection, as_of: date, tier: str, state: str) -> None:
        """What a night leaves in the build schema: its own date only, and the current state."""
        for t in PER_DATE_TABLES:
            conn.execute(f"drop table if exists build_marts.{t}")
            conn.execute(f"create table build_marts.{t} (customer_id text, as_of_date date, value_tier text)")
            conn.execute(f"insert into build_marts.{t} values ('C1', %s, %s)", (as_of, tier))
        for t in CURRENT_STATE_TABLES:
            conn.execute(f"drop table if exists build_marts.{t}")
            conn.execute(f"create table build_marts.{t} (order_id text, status text)")
            conn.execute(f"insert into build_marts.{t} values ('O1', %s)", (state,))

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("create schema build_marts")
        night(conn, d1, "low", "pending")
    publish(warehouse_url, "bi", "run-d1", d1)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        night(conn, d2, "high", "completed")
    publish(warehouse_url, "bi", "run-d2", d2)

    def tiers(conn: psycopg.Connection) -> list[tuple]:
        return conn.execute("select as_of_date, value_tier from bi.customer_tiers order by 1").fetchall()

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert tiers(conn) == [(d1, "low"), (d2, "high")]
        assert conn.execute("select status from bi.fct_orders").fetchall() == [("completed",)]
        # a rerun of d1 (its rows now say medium) replaces d1 only; the order facts stay as d2 left them
        night(conn, d1, "medium", "pending")
    counts = publish(warehouse_url, "bi", "run-d1-again", d1)
    assert "fct_orders" not in counts and counts["customer_tiers"] == 1
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert tiers(conn) == [(d1, "medium"), (d2, "high")]
        assert conn.execute("select status from bi.fct_orders").fetchall() == [("completed",)]
        for t in PER_DATE_TABLES:
            assert conn.execute(f"select count(*) from bi.{t}").fetchone() == (2,), t

        # a per-date column that disappears would cost the history of every earlier date: stop
        conn.execute("alter table build_marts.customer_tiers drop column value_tier")
    with pytest.raises(Exception, match="bi.customer_tiers keeps the published history.*value_tier text"):
        publish(warehouse_url, "bi", "run-d2-again", d2)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        assert tiers(conn) == [(d1, "medium"), (d2, "high")]


def test_publish_leaves_statistics_that_know_the_new_date(warehouse_url: str) -> None:
    """publish ANALYZEs what it wrote: a reader of bi right after it (the report's CRM export, the
    alert e-mails) is planned for tonight's rows, not for a date the statistics have never seen
    (estimated at one row: a nested loop over every customer twice, docs/performance.md). A
    per-date table analyzed before gets its as_of_date statistics only (the other columns'
    still describe it); a new column is analyzed with the whole table."""
    import json
    from datetime import date

    from tierflow.ingest.schema import ensure_schema
    from tierflow.publish.publisher import CURRENT_STATE_TABLES, PER_DATE_TABLES, publish

    def night(conn: psycopg.Connection, as_of: date, tier: str, extra: str = "") -> None:
        for t in PER_DATE_TABLES:
            conn.execute(f"drop table if exists build_marts.{t}")
            conn.execute(f"create table build_marts.{t} as select 'C' || i as customer_id,"
                         f" %s::date as as_of_date, %s as value_tier{extra}"
                         f" from generate_series(1, 2000) as i", (as_of, tier))
        for t in CURRENT_STATE_TABLES:
            conn.execute(f"drop table if exists build_marts.{t}")
            conn.execute(f"create table build_marts.{t} as select 'O' || i as order_id"
                         f" from generate_series(1, 2000) as i")

    def estimated_rows(conn: psycopg.Connection, table: str, as_of: date) -> float:
        (plan,) = conn.execute(
            f"explain (format json) select * from bi.{table} where as_of_date = %s", (as_of,)
        ).fetchone()
        plan = plan if isinstance(plan, list) else json.loads(plan)
        return plan[0]["Plan"]["Plan Rows"]

    def common_values(conn: psycopg.Connection, table: str, column: str) -> list[str] | None:
        row = conn.execute(
            "select most_common_vals::text from pg_stats where schemaname = 'bi' and tablename = %s"
            " and attname = %s", (table, column)).fetchone()
        return None if row is None else sorted(row[0].strip("{}").split(","))

    d1, d2, d3 = date(2026, 3, 29), date(2026, 3, 30), date(2026, 3, 31)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("create schema build_marts")
        night(conn, d1, "high")
    publish(warehouse_url, "bi", "run-d1", d1)
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        night(conn, d2, "low")
    publish(warehouse_url, "bi", "run-d2", d2)

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        never = conn.execute(
            "select relname from pg_stat_user_tables where schemaname = 'bi' and last_analyze is null"
        ).fetchall()
        assert never == []
        for t in ("customer_tiers", "allocation_plan_customer"):
            assert 1500 <= estimated_rows(conn, t, d2) <= 2500, t
            # as_of_date's statistics know both dates; value_tier's are still night 1's
            assert common_values(conn, t, "as_of_date") == [str(d1), str(d2)], t
            assert common_values(conn, t, "value_tier") == ["high"], t
        night(conn, d3, "low", extra=", i %% 2 = 0 as is_even")
    publish(warehouse_url, "bi", "run-d3", d3)

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for t in ("customer_tiers", "allocation_plan_customer"):
            assert 1500 <= estimated_rows(conn, t, d3) <= 2500, t
            # a new column: the table analyzed whole (is_even: null on the earlier dates)
            assert common_values(conn, t, "value_tier") == ["high", "low"], t
            assert common_values(conn, t, "is_even") is not None, t


def test_the_order_facts_publish_only_the_rows_built_since_the_last_publish(warehouse_url: str) -> None:
    """bi's order facts end each publish equal to the build's, row for row, while only the rows a
    later build wrote (larger build_number) are rewritten: a row no build touched keeps its place
    in bi (same ctid, same xmin). A key the build no longer has (a rerun of an older date deletes
    the orders delivered after it) is deleted from bi; a rebuild of most rows (a full refresh)
    copies the table whole.
    """
    from datetime import date, timedelta

    from tierflow.ingest.schema import ensure_schema
    from tierflow.publish.publisher import CURRENT_STATE_TABLES, PER_DATE_TABLES, publish

    def state(conn: psycopg.Connection, schema: str, table: str) -> list[tuple]:
        return conn.execute(f"select * from {schema}.{table} order by 1, 2").fetchall()

    def place(conn: psycopg.Connection, order_id: str) -> tuple:
        return conn.execute("select ctid::text, xmin::text from bi.fct_orders where order_id = %s",
                            (order_id,)).fetchone()

    day = iter(date(2026, 3, 1) + timedelta(days=n) for n in range(10))

    def published(conn: psycopg.Connection) -> dict[str, int]:
        as_of = next(day)
        counts = publish(warehouse_url, "bi", f"run-{as_of}", as_of)
        for table in ("fct_orders", "fct_order_lines"):
            assert state(conn, "bi", table) == state(conn, "build_marts", table), table
        return counts

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("create schema build_marts")
        for t in PER_DATE_TABLES:
            conn.execute(f"create table build_marts.{t} (customer_id text, as_of_date date)")
        conn.execute("create table build_marts.dim_customers (customer_id text, region text)")
        conn.execute("insert into build_marts.dim_customers values ('C1', 'north')")
        conn.execute("create table build_marts.fct_orders (order_id text, status text, build_number bigint)")
        conn.execute("create table build_marts.fct_order_lines"
                     " (order_id text, line_number int, amount numeric, build_number bigint)")
        conn.execute("insert into build_marts.fct_orders select 'O' || i, 'completed', 1"
                     " from generate_series(1, 10) as i")
        conn.execute("insert into build_marts.fct_order_lines select 'O' || i, 1, i, 1"
                     " from generate_series(1, 10) as i")
        assert sorted(CURRENT_STATE_TABLES) == ["dim_customers", "fct_order_lines", "fct_orders"]

        # night 1: bi is empty, everything is copied
        assert published(conn)["fct_orders"] == 10
        before = {o: place(conn, o) for o in ("O1", "O2", "O3")}

        # night 2: build 2 rewrote O2 (a late correction) and added O11; O1 and O3 stay where they are
        conn.execute("update build_marts.fct_orders set status = 'returned', build_number = 2"
                     " where order_id = 'O2'")
        conn.execute("update build_marts.fct_order_lines set amount = 0, build_number = 2"
                     " where order_id = 'O2'")
        conn.execute("insert into build_marts.fct_orders values ('O11', 'completed', 2)")
        conn.execute("insert into build_marts.fct_order_lines values ('O11', 1, 11, 2), ('O11', 2, 0.5, 2)")
        assert published(conn)["fct_orders"] == 11
        assert place(conn, "O1") == before["O1"] and place(conn, "O3") == before["O3"]
        assert place(conn, "O2") != before["O2"]

        # night 3: the build no longer has O11's second line nor O3 (and rewrote O4): deleted from bi
        conn.execute("delete from build_marts.fct_order_lines where order_id = 'O11' and line_number = 2")
        conn.execute("delete from build_marts.fct_orders where order_id = 'O3'")
        conn.execute("update build_marts.fct_orders set status = 'cancelled', build_number = 3"
                     " where order_id = 'O4'")
        assert published(conn)["fct_order_lines"] == 11
        assert place(conn, "O1") == before["O1"]

        # night 4: a full refresh renumbers every row: copied whole
        conn.execute("update build_marts.fct_orders set build_number = 4")
        conn.execute("update build_marts.fct_order_lines set build_number = 4, amount = amount + 1")
        published(conn)
        # night 5: nothing rebuilt, nothing rewritten
        kept = place(conn, "O1")
        published(conn)
        assert place(conn, "O1") == kept


def test_quality_results_publish_rewrites_only_the_runs_whose_results_changed(warehouse_url: str) -> None:
    """bi.data_quality_results ends each publish equal to the results of every run, while only
    the runs with new or replaced results are written: another run's rows keep their place in
    bi (same ctid, same xmin). A run gone from the results leaves bi; a new column is copied."""
    from datetime import date

    from tierflow.ingest.schema import ensure_schema
    from tierflow.publish.publisher import _publish_results

    def result(conn: psycopg.Connection, run: str, suite: str, observed: str) -> None:
        conn.execute(
            "insert into tierflow_meta.data_quality_results (run_id, as_of_date, suite, data_asset,"
            " expectation, severity, success, observed_value)"
            " values (%s, %s, %s, 't', 'e', 'critical', true, %s)",
            (run, date(2026, 3, 31), suite, observed),
        )

    def published(conn: psycopg.Connection) -> tuple[list, list]:
        query = "select run_id, suite, observed_value, checked_at from {}.data_quality_results order by 1, 2"
        meta, bi = (conn.execute(query.format(schema)).fetchall() for schema in ("tierflow_meta", "bi"))
        return meta, bi

    def places(conn: psycopg.Connection, run: str) -> list:
        return conn.execute(
            "select ctid::text, xmin::text from bi.data_quality_results where run_id = %s order by suite",
            (run,),
        ).fetchall()

    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute("create schema bi")
        result(conn, "run-1", "a", "1")
        result(conn, "run-1", "b", "2")
        written: dict[str, int] = {}
        assert _publish_results(conn, "bi", written) == 2 and written["data_quality_results"] == 2
        meta, bi = published(conn)
        assert bi == meta and len(bi) == 2

        # the next night's run: only its rows are written
        run_1 = places(conn, "run-1")
        result(conn, "run-2", "a", "3")
        assert _publish_results(conn, "bi", written) == 3 and written["data_quality_results"] == 1
        meta, bi = published(conn)
        assert bi == meta and places(conn, "run-1") == run_1

        # run-1's gate is rerun: its suite a is replaced (as quality.gates.record does)
        run_2 = places(conn, "run-2")
        with conn.transaction():
            conn.execute(
                "delete from tierflow_meta.data_quality_results where run_id = 'run-1' and suite = 'a'"
            )
            result(conn, "run-1", "a", "1 again")
        assert _publish_results(conn, "bi", written) == 3 and written["data_quality_results"] == 2
        meta, bi = published(conn)
        assert bi == meta and ("run-1", "a", "1 again") in [r[:3] for r in bi]
        assert places(conn, "run-2") == run_2
        # nothing new: nothing written
        assert _publish_results(conn, "bi", written) == 3 and written["data_quality_results"] == 0

        # a run's results removed; then a release adds a column: copied whole, with it
        conn.execute("delete from tierflow_meta.data_quality_results where run_id = 'run-2'")
        assert _publish_results(conn, "bi", written) == 2
        meta, bi = published(conn)
        assert bi == meta
        conn.execute("alter table tierflow_meta.data_quality_results add column rule text default 'r'")
        assert _publish_results(conn, "bi", written) == 2 and written["data_quality_results"] == 2
        assert conn.execute("select distinct rule from bi.data_quality_results").fetchall() == [("r",)]
