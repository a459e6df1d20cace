"""Publish the audited marts into the BI schema in one transaction.

dbt builds into ``build_*`` schemas; only after every critical quality check passed do the
marts reach ``bi`` (write-audit-publish). The build schema is the night's scratch area: a
failed night leaves its rows there, never in ``bi``, and the next night rebuilds over them.

Two kinds of published table:

- **per as-of date** (every customer mart, the tier history and migrations, alerts, the
  allocation plans, the sales KPIs as known on the date): ``bi`` keeps every published
  date; tonight replaces only its own date's rows. A rerun of an old date replaces that
  date and nothing else, and the marts read earlier nights (previous tiers) from here, so
  history is what passed the gates.
- **current state** (order facts, customers): ``bi`` holds the newest published
  date's state; a rerun of an older date leaves them as the newer date published them.

Everything happens inside a single transaction, so BI readers see either the previous state
or tonight's, never a mix, and views that BI users built on top of ``bi`` tables keep
working. New columns are added in place; a current-state table whose columns changed is
recreated (the error names the dependent view if one blocks that); a per-date table whose
columns were removed or retyped stops the publish, because recreating it would lose the
history of every earlier date.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import date

import psycopg
from psycopg import sql

from tierflow.settings import MARTS_SCHEMA, META_SCHEMA

log = logging.getLogger(__name__)

# one row set per as-of date (column as_of_date); bi keeps every published date
PER_DATE_TABLES = (
    "customer_rfm",
    "customer_profitability",
    "customer_credit_risk",
    "customer_lifecycle",
    "customer_profile",
    "customer_clv",  # predicted value (tierflow.clv); no rows on a night without a fit in use
    "clv_model_fits",  # the night's fit in use, its candidate, the holdout check
    "customer_tiers",
    "account_group_tiers",
    "customer_tier_history",
    "tier_migrations",
    "account_alerts",
    "allocation_plan_tier",
    "allocation_plan_customer",
    "sales_kpis",  # every month up to A, as known on A
    "sales_rep_performance",  # every month up to A, as known on A
    "region_potential",  # every month up to A, as known on A
    # closing the loop (docs/closing-the-loop.md)
    "plan_performance",  # every closed plan period, as judged on A
    "revenue_bridge",  # every month up to A, as known on A
    "cohort_retention",
    "customer_health",
)
# the state as of the newest published date
CURRENT_STATE_TABLES = (
    "fct_orders",
    "fct_order_lines",
    "dim_customers",
)
PUBLISHED_TABLES = CURRENT_STATE_TABLES + PER_DATE_TABLES
# current-state tables whose rows carry the number of the build that last wrote them (column
# BUILD_NUMBER, macro build_number), by key: the publish replaces only the rows built since the
# largest number bi holds, instead of the whole table (3.6 M order lines at 100,000 customers)
CHANGED_ROWS = {
    "fct_orders": ("order_id",),
    "fct_order_lines": ("order_id", "line_number"),
}
BUILD_NUMBER = "build_number"
# a current-state table with fewer changed rows than this share is not analyzed by the publish:
# its statistics still describe it (autovacuum's own threshold is 10% of the rows changed)
ANALYZE_SHARE = 0.10
# per-date tables the marts read a customer's history from, one index probe per customer
# (macro has_published_index): their history grows by every customer each night, so reading
# it whole would make each night cost every night before it
HISTORY_INDEXES = {
    "customer_tier_history": ("customer_id", "as_of_date"),  # cohort_retention: the first tier
    "allocation_plan_customer": ("as_of_date", "plan_period"),  # plan_performance: the nights
}


class PublishError(RuntimeError):
    """Publishing failed; the BI schema was left as it was."""


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute a
        join pg_class c on c.oid = a.attrelid
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped
        order by a.attnum
        """,
        (schema, table),
    ).fetchall()


def _copy_comments(conn: psycopg.Connection, src_schema: str, dst_schema: str, table: str) -> None:
    rows = conn.execute(
        """
        select a.attname, col_description(c.oid, a.attnum), obj_description(c.oid, 'pg_class')
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
        where n.nspname = %s and c.relname = %s
        """,
        (src_schema, table),
    ).fetchall()
    target = sql.Identifier(dst_schema, table)
    if rows and rows[0][2]:
        conn.execute(sql.SQL("comment on table {} is {}").format(target, sql.Literal(rows[0][2])))
    for column, comment, _ in rows:
        if comment:
            conn.execute(
                sql.SQL("comment on column {}.{} is {}").format(
                    target, sql.Identifier(column), sql.Literal(comment)
                )
            )


def _publish_table(
    conn: psycopg.Connection, src_schema: str, dst_schema: str, table: str,
    written: dict[str, int] | None = None,
) -> int:
    """Replace the rows of ``dst_schema.table`` with those of ``src_schema.table``; returns the
    table's row count (and puts the rows it wrote in ``written[table]``).

    The published table is kept (delete + insert), so BI views on it keep working. New
    columns in the source are added to it (a release that adds columns does not disturb
    BI); a column removed or retyped needs the table recreated, which a dependent view
    prevents: that stops the publish and names the objects. A table of ``CHANGED_ROWS``
    gets only the rows built since its last publish (``_publish_changed_rows``).
    """
    src = sql.Identifier(src_schema, table)
    dst = sql.Identifier(dst_schema, table)
    src_cols = _columns(conn, src_schema, table)
    if not src_cols:
        raise PublishError(f"{src_schema}.{table} does not exist: did dbt build it?")
    dst_cols = _columns(conn, dst_schema, table)
    tracked = table in CHANGED_ROWS and (BUILD_NUMBER, "bigint") in src_cols  # rows carry build numbers
    if dst_cols and set(dst_cols) <= set(src_cols):
        for name, type_ in src_cols:
            if (name, type_) not in dst_cols:
                add = sql.SQL("alter table {} add column {} {}")  # type_: the catalog's own spelling
                conn.execute(add.format(dst, sql.Identifier(name), sql.SQL(type_)))
        if tracked:
            done = _publish_changed_rows(conn, src, dst, table, [name for name, _ in src_cols])
            if done is not None:
                _copy_comments(conn, src_schema, dst_schema, table)
                if written is not None:
                    written[table] = done[1]
                return done[0]
        conn.execute(sql.SQL("delete from {}").format(dst))
    else:
        if dst_cols:
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("drop table {}").format(dst))
            except psycopg.errors.DependentObjectsStillExist as exc:
                raise PublishError(
                    f"{dst_schema}.{table} changed shape but objects depend on it: {exc.diag.message_detail}"
                ) from None
        conn.execute(sql.SQL("create table {} (like {} including defaults)").format(dst, src))
    columns = sql.SQL(", ").join(sql.Identifier(name) for name, _ in src_cols)
    cur = conn.execute(sql.SQL("insert into {} ({}) select {} from {}").format(dst, columns, columns, src))
    if tracked:
        _index_changed_rows(conn, dst, table)
    _copy_comments(conn, src_schema, dst_schema, table)
    if written is not None:
        written[table] = cur.rowcount
    return cur.rowcount


def _key(table: str, alias: str | None = None) -> sql.Composable:
    """The key columns of a ``CHANGED_ROWS`` table, as a column list (of ``alias``)."""
    names = [(alias, k) if alias else (k,) for k in CHANGED_ROWS[table]]
    return sql.SQL(", ").join(sql.Identifier(*name) for name in names)


def _index_changed_rows(conn: psycopg.Connection, dst: sql.Identifier, table: str) -> None:
    """Index a published table of ``CHANGED_ROWS`` by its key and its build number, if it is not:
    the publish reads the largest number and deletes each rebuilt key by them. Made after a whole
    copy, not before it (a bulk insert into an indexed table costs more than building the index
    afterwards: 5.6 s for both order facts at 100,000 customers, against 14 s more for the insert)."""
    number = sql.Identifier(BUILD_NUMBER)
    for name, columns in ((f"{table}_key", _key(table)), (f"{table}_{BUILD_NUMBER}", number)):
        create = sql.SQL("create index if not exists {} on {} ({})")
        conn.execute(create.format(sql.Identifier(name), dst, columns))


def _publish_changed_rows(
    conn: psycopg.Connection, src: sql.Identifier, dst: sql.Identifier, table: str, names: list[str]
) -> tuple[int, int] | None:
    """Bring ``dst`` to the rows of ``src`` by replacing only the rows built since the largest
    build number ``dst`` holds: (rows of the table, rows written), or None (and ``dst`` as it
    was, or empty) when the whole table has to be copied instead.

    Exact, not a guess: ``dst`` is what an earlier publish copied from ``src``, and every row
    ``src`` rewrote since carries a larger build number (a sequence, not a clock). After the
    keys of those rows are deleted from ``dst`` and the rows inserted, ``dst`` holds every row of
    ``src`` and, besides, only the rows of keys ``src`` no longer has (a rerun of an older date
    deletes the orders delivered after it): equal row counts prove there are none; otherwise they
    are deleted by an anti-join on the key. More than half the rows changed (a full refresh):
    copied whole.
    """
    key = _key(table)
    number = sql.Identifier(BUILD_NUMBER)
    (published,) = conn.execute(sql.SQL("select max({}) from {}").format(number, dst)).fetchone()
    if published is None:  # never published with build numbers: the first copy is whole
        return None
    _index_changed_rows(conn, dst, table)  # a warehouse of an earlier release has none yet
    total, changed = conn.execute(
        sql.SQL("select count(*), count(*) filter (where {} > %s) from {}").format(number, src), (published,)
    ).fetchone()
    if changed * 2 > total:
        return None
    conn.execute(
        sql.SQL("delete from {dst} where ({key}) in (select {key} from {src} where {number} > %s)").format(
            dst=dst, key=key, src=src, number=number),
        (published,),
    )
    columns = sql.SQL(", ").join(sql.Identifier(name) for name in names)
    insert = sql.SQL("insert into {} ({}) select {} from {} where {} > %s")
    conn.execute(insert.format(dst, columns, columns, src, number), (published,))
    (rows,) = conn.execute(sql.SQL("select count(*) from {}").format(dst)).fetchone()
    if rows != total:  # keys the build no longer has: found by the key indexes of both tables
        gone = conn.execute(sql.SQL(
            "delete from {dst} as d where not exists (select from {src} as s where ({s_key}) = ({d_key}))"
        ).format(dst=dst, src=src, s_key=_key(table, "s"), d_key=_key(table, "d"))).rowcount
        log.info("%s: %s row(s) of keys the build no longer has, deleted", dst.as_string(conn), f"{gone:,}")
        changed += gone
    log.info("%s: %s of %s rows built since build %s", dst.as_string(conn), f"{changed:,}", f"{total:,}",
             published)
    return total, changed


def _publish_partition(
    conn: psycopg.Connection, src_schema: str, dst_schema: str, table: str, as_of: date
) -> int:
    """Replace the ``as_of`` rows of ``dst_schema.table`` with those of ``src_schema.table``.

    The published table keeps every other date. New columns in the source are added (older
    dates get nulls); a column removed or retyped stops the publish and says why, because
    the only way to change it is to recreate the table and lose the earlier dates.
    """
    src = sql.Identifier(src_schema, table)
    dst = sql.Identifier(dst_schema, table)
    src_cols = _columns(conn, src_schema, table)
    if not src_cols:
        raise PublishError(f"{src_schema}.{table} does not exist: did dbt build it?")
    if "as_of_date" not in {name for name, _ in src_cols}:
        raise PublishError(f"{src_schema}.{table} has no as_of_date column: it cannot be published by date")
    dst_cols = _columns(conn, dst_schema, table)
    if not dst_cols:
        conn.execute(sql.SQL("create table {} (like {} including defaults)").format(dst, src))
    else:
        missing = [f"{name} {type_}" for name, type_ in dst_cols if (name, type_) not in src_cols]
        if missing:
            raise PublishError(
                f"{dst_schema}.{table} keeps the published history of earlier dates, but tonight's "
                f"{src_schema}.{table} lacks or retypes its column(s) {', '.join(missing)}: "
                "migrate the published table (or drop it to start its history again), then rerun"
            )
        for name, type_ in src_cols:
            if (name, type_) not in dst_cols:
                add = sql.SQL("alter table {} add column {} {}")  # type_: the catalog's own spelling
                conn.execute(add.format(dst, sql.Identifier(name), sql.SQL(type_)))
    conn.execute(
        sql.SQL("create index if not exists {} on {} (as_of_date)").format(
            sql.Identifier(f"{table}_as_of_date_idx"), dst
        )
    )
    # (a table without those columns is not one the marts read history from)
    history_columns = HISTORY_INDEXES.get(table, ())
    if history_columns and set(history_columns) <= {name for name, _ in src_cols}:
        conn.execute(
            sql.SQL("create index if not exists {} on {} ({})").format(
                sql.Identifier(f"{table}_{'_'.join(history_columns)}_idx"),
                dst,
                sql.SQL(", ").join(sql.Identifier(c) for c in history_columns),
            )
        )
    conn.execute(sql.SQL("delete from {} where as_of_date = %s").format(dst), (as_of,))
    columns = sql.SQL(", ").join(sql.Identifier(name) for name, _ in src_cols)
    cur = conn.execute(
        sql.SQL("insert into {} ({}) select {} from {} where as_of_date = %s").format(
            dst, columns, columns, src
        ),
        (as_of,),
    )
    _copy_comments(conn, src_schema, dst_schema, table)
    return cur.rowcount


def _publish_results(conn: psycopg.Connection, publish_schema: str, written: dict[str, int]) -> int:
    """Bring ``data_quality_results`` in ``publish_schema`` to the quality results of every run,
    rewriting only the runs whose results changed since the last publish; returns its row count.

    The results grow by every check of every night (450 at the demo's size) and were copied
    whole by each publish: a cost that grows with the nights before. A run's results are
    compared by their count, newest ``checked_at`` and a sum of the hashes of their rows (a
    gate's rerun replaces its suites' rows: a new transaction time, new observed values); the
    runs that differ are deleted and copied again, a run gone from the results deleted. The
    first publish, and one after new columns, copy the table whole (``_publish_table``).
    """
    table = "data_quality_results"
    src, dst = sql.Identifier(META_SCHEMA, table), sql.Identifier(publish_schema, table)
    src_cols, dst_cols = _columns(conn, META_SCHEMA, table), _columns(conn, publish_schema, table)
    if not dst_cols or set(dst_cols) != set(src_cols):
        rows = _publish_table(conn, META_SCHEMA, publish_schema, table, written)
        conn.execute(sql.SQL("create index if not exists {} on {} (run_id)").format(
            sql.Identifier(f"{table}_run_id_idx"), dst))
        return rows
    columns = sql.SQL(", ").join(sql.Identifier(name) for name, _ in src_cols)
    # the same columns in the same order on both sides (a column bi got later is at its end)
    runs = [
        sql.SQL(
            "select run_id, count(*) as n, max(checked_at) as newest,"
            " sum(hashtext(row({})::text)::bigint) as digest from {} group by run_id"
        ).format(columns, relation)
        for relation in (src, dst)
    ]
    changed = [run_id for (run_id,) in conn.execute(sql.SQL(
        "select coalesce(s.run_id, d.run_id) from ({}) as s full join ({}) as d on s.run_id = d.run_id"
        " where (s.n, s.newest, s.digest) is distinct from (d.n, d.newest, d.digest)"
    ).format(*runs)).fetchall()]
    conn.execute(sql.SQL("delete from {} where run_id = any(%s)").format(dst), (changed,))
    insert = sql.SQL("insert into {} ({}) select {} from {} where run_id = any(%s)")
    copied = conn.execute(insert.format(dst, columns, columns, src), (changed,)).rowcount
    written[table] = copied
    (rows,) = conn.execute(sql.SQL("select count(*) from {}").format(dst)).fetchone()
    log.info("%s: %s row(s) of %d run(s) with new results, of %s", dst.as_string(conn), f"{copied:,}",
             len(changed), f"{rows:,}")
    return rows


def analyze_published(conn: psycopg.Connection, publish_schema: str, tables: Iterable[str]) -> None:
    """ANALYZE the published tables this publish wrote, inside its transaction.

    Every publish writes rows the planner's statistics have never seen: a per-date table gets
    a new as_of_date value (outside its most-common-values list, so a filter on it is estimated
    at one row), a current-state table is replaced whole. The first reader then plans for
    nothing: the report's CRM export (customer_tiers left join allocation_plan_customer for one
    date) ran as a nested loop of 50,000 x 50,000 rows, over 5 minutes on the second night at
    50,000 customers, instead of a hash join (docs/performance.md). Autovacuum would analyze
    them, but only after its nap and not before the report and the alerts read them. Inside the
    transaction the statistics are committed with the rows they describe.

    A table with an ``as_of_date`` whose every column already has statistics gets that column's
    only: a night adds one date's rows like the dates before it, so the other columns'
    statistics still describe the table, and all of them cost customer_tiers 1.7-1.9 s at
    100,000 customers against 0.2 s for the one (its texts are sampled and sorted column by
    column). A new table, or a new column, is analyzed whole; autovacuum refreshes the rest as
    the history grows.
    """
    started = time.monotonic()
    tables = list(tables)
    # per table: whether every column has statistics and whether it has an as_of_date
    dated_ready = {table for (table,) in conn.execute(
        "select c.relname::text from pg_class as c"
        " join pg_namespace as n on n.oid = c.relnamespace"
        " join pg_attribute as a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped"
        " left join pg_stats as s on s.schemaname = n.nspname and s.tablename = c.relname"
        "  and s.attname = a.attname"
        " where n.nspname = %s and c.relname = any(%s)"
        " group by c.relname"
        " having bool_or(a.attname = 'as_of_date') and count(*) filter (where s.attname is null) = 0",
        (publish_schema, tables),
    )}
    whole = [t for t in tables if t not in dated_ready]
    dated = [t for t in tables if t in dated_ready]
    targets = [sql.Identifier(publish_schema, t) for t in whole]
    targets += [sql.SQL("{} (as_of_date)").format(sql.Identifier(publish_schema, t)) for t in dated]
    if targets:
        conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(targets)))
    log.info("analyzed the published tables in %.1fs (%d whole, %d by as_of_date)",
             time.monotonic() - started, len(whole), len(dated))


def newest_published_date(conn: psycopg.Connection) -> date | None:
    """The newest as-of date that reached BI (None before the first publish)."""
    exists = conn.execute("select to_regclass(%s)", (f"{META_SCHEMA}.runs",)).fetchone()[0]
    if exists is None:
        return None
    return conn.execute(
        sql.SQL("select max(as_of_date) from {}.runs where published_at is not null").format(
            sql.Identifier(META_SCHEMA)
        )
    ).fetchone()[0]


def _grant_read_only(conn: psycopg.Connection, publish_schema: str, role: str) -> None:
    """The BI role may read the published schema and nothing else.

    It is a NOLOGIN group role: BI tools log in as their own user, granted this role.
    Creating it needs CREATEROLE; on a server where we lack that, the role must exist
    already (docker compose's init script creates it) or publishing stops and says so.
    """
    exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
    if not exists:
        try:
            with conn.transaction():
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege:
            raise PublishError(
                f"the read-only BI role {role!r} does not exist and this user may not create it: "
                f"create it once (create role {role} nologin) or set TIERFLOW_BI_ROLE"
            ) from None
    schema, grantee = sql.Identifier(publish_schema), sql.Identifier(role)
    conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, grantee))
    conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(schema, grantee))


def publish(
    url: str, publish_schema: str, run_id: str, as_of: date, bi_role: str = "tierflow_bi"
) -> dict[str, int]:
    """Publish the night's audited marts into ``publish_schema`` in one transaction.

    The per-date tables get ``as_of``'s rows; the current-state tables are replaced only
    when ``as_of`` is not older than the newest date already published (a rerun of an old
    date must not turn BI's order facts back in time). The returned counts say which.
    """
    counts: dict[str, int] = {}
    with psycopg.connect(url) as conn:
        with conn.transaction():
            # one publisher at a time; readers are never blocked by the delete + insert
            conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.publish'))")
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(publish_schema)))
            newest = newest_published_date(conn)
            is_newest = newest is None or as_of >= newest
            written: dict[str, int] = {}
            if is_newest:
                for table in CURRENT_STATE_TABLES:
                    counts[table] = _publish_table(conn, MARTS_SCHEMA, publish_schema, table, written)
            else:
                log.info(
                    "%s is older than the newest published date %s: the current-state tables (%s) stay "
                    "as %s published them; only %s's per-date rows are replaced",
                    as_of, newest, ", ".join(CURRENT_STATE_TABLES), newest, as_of,
                )
            for table in PER_DATE_TABLES:
                counts[table] = _publish_partition(conn, MARTS_SCHEMA, publish_schema, table, as_of)
            # every quality result of every run (failed ones too: that is what it is for)
            counts["data_quality_results"] = _publish_results(conn, publish_schema, written)
            # a current-state table of few changed rows keeps statistics that describe it
            analyze_published(conn, publish_schema, [
                t for t in counts if t not in written or written[t] >= ANALYZE_SHARE * counts[t]])
            _grant_read_only(conn, publish_schema, bi_role)
            conn.execute(
                sql.SQL(
                    "insert into {}.runs (run_id, as_of_date, status, published_at)"
                    " values (%s, %s, 'published', now())"
                    " on conflict (run_id) do update set status = 'published', published_at = now(),"
                    " as_of_date = excluded.as_of_date"
                ).format(sql.Identifier(META_SCHEMA)),
                (run_id, as_of),
            )
    log.info("published %s", ", ".join(f"{t} ({n} rows)" for t, n in counts.items()))
    return counts
