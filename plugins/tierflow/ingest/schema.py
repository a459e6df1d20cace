"""DDL for the raw tables and tierflow's own metadata tables (idempotent)."""

from __future__ import annotations

import psycopg
from psycopg import sql

from tierflow.extracts import ENTITIES, PG_TYPES, RAW_META_COLUMNS
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

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


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the raw and meta schemas and tables; add contract columns that are new."""
    with conn.transaction():
        # serialize concurrent first runs
        conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.ensure_schema'))")
        for schema in (RAW_SCHEMA, META_SCHEMA):
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        conn.execute(sql.SQL(META_DDL.replace("{meta}", "{m}")).format(m=sql.Identifier(META_SCHEMA)))
        conn.execute(sql.SQL(META_MIGRATIONS.replace("{meta}", "{m}")).format(m=sql.Identifier(META_SCHEMA)))
        for entity in ENTITIES:
            cols = [(c.name, PG_TYPES[c.type]) for c in entity.columns] + list(RAW_META_COLUMNS)
            conn.execute(
                sql.SQL("create table if not exists {}.{} ({})").format(
                    sql.Identifier(RAW_SCHEMA),
                    sql.Identifier(entity.raw_table),
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in cols
                    ),
                )
            )
            for name, pgtype in cols:
                conn.execute(
                    sql.SQL("alter table {}.{} add column if not exists {} {}").format(
                        sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
                        sql.Identifier(name), sql.SQL(pgtype.replace(" not null", "")),
                    )
                )
