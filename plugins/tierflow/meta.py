"""DDL of every table in ``tierflow_meta``, tierflow's own bookkeeping (idempotent).

One home for all of it, at the top of the package rather than inside a step, because no single
step owns these tables: ingest writes ``load_audit``, ``rejects`` and ``ignored_paths``, the
quality gates ``data_quality_results``, the pipeline ``runs``, alerts ``alert_notifications``,
and the report (with its run summary) and the raw gate read them. Each step reads this leaf (it
imports only ``tierflow.settings``) instead of reaching into another step for a table.

Two entry points, because the tables are made at two moments: ``create_meta_tables`` inside
``ingest.schema.ensure_schema`` (the first thing a night does), and
``ensure_alert_notifications_table`` when the alerts step first records an e-mail.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tierflow.settings import META_SCHEMA

META_DDL = """
create table if not exists {meta}.load_audit (
    load_id        bigserial primary key,
    run_id         text,
    file_path      text not null,
    system         text not null,
    entity         text not null,
    business_date  date not null,
    file_format    text,
    checksum       text not null,
    size_bytes     bigint not null,
    rows_in        bigint,
    rows_loaded    bigint,
    rows_rejected  bigint,
    extra_columns  text[],
    started_at     timestamptz not null default clock_timestamp(),
    finished_at    timestamptz,
    status         text not null check (status in ('running', 'loaded', 'failed')),
    error          text,
    constraint rows_add_up check (status <> 'loaded' or rows_in = rows_loaded + rows_rejected)
);
create index if not exists load_audit_path_checksum on {meta}.load_audit (file_path, checksum);

create table if not exists {meta}.rejects (
    load_id        bigint not null references {meta}.load_audit (load_id),
    file_path      text not null,
    entity         text not null,
    business_date  date not null,
    line_number    integer not null,
    raw_record     jsonb not null,
    reason         text not null
);

create table if not exists {meta}.data_quality_results (
    run_id          text not null,
    as_of_date      date not null,
    checked_at      timestamptz not null default now(),
    suite           text not null,
    data_asset      text not null,
    expectation     text not null,
    column_name     text,
    severity        text not null check (severity in ('critical', 'warning')),
    success         boolean not null,
    observed_value  text,
    details         jsonb
);

create table if not exists {meta}.runs (
    run_id        text primary key,
    as_of_date    date not null,
    started_at    timestamptz not null default now(),
    published_at  timestamptz,
    status        text not null,
    error         text,
    summary       jsonb
);

create table if not exists {meta}.ignored_paths (
    run_id         text,
    as_of_date     date not null,
    seen_at        timestamptz not null default now(),
    path           text not null,
    kind           text not null,
    reason         text not null,
    may_hold_data  boolean not null
);
"""


# columns added to tierflow's own tables after their first release (idempotent)
META_MIGRATIONS = """
alter table {meta}.load_audit add column if not exists raw_validated_at timestamptz;
alter table {meta}.load_audit add column if not exists raw_validated_run_id text;
"""

ALERT_NOTIFICATIONS_DDL = """
create table if not exists {meta}.alert_notifications (
    run_id       text not null,
    as_of_date   date not null,
    owner        text not null,
    recipient    text,
    alert_count  integer not null,
    alert_digest text,
    status       text not null check (status in ('sent', 'failed', 'skipped')),
    error        text,
    attempted_at timestamptz not null default now()
);
alter table {meta}.alert_notifications add column if not exists alert_digest text;
comment on table {meta}.alert_notifications is
    'One row per account-alert e-mail attempt: run, owner, recipient, number of alerts, outcome.';
"""


def _ddl(text: str) -> sql.Composed:
    return sql.SQL(text.replace("{meta}", "{m}")).format(m=sql.Identifier(META_SCHEMA))


def create_meta_tables(conn: psycopg.Connection) -> None:
    """The meta schema and every table but ``alert_notifications``, in the caller's transaction."""
    conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(META_SCHEMA)))
    conn.execute(_ddl(META_DDL))
    conn.execute(_ddl(META_MIGRATIONS))


def ensure_alert_notifications_table(conn: psycopg.Connection) -> None:
    """The meta schema and ``alert_notifications``, in a transaction of their own."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.alert_notifications'))")
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(META_SCHEMA)))
        conn.execute(_ddl(ALERT_NOTIFICATIONS_DDL))
