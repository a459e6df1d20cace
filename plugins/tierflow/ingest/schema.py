"""DDL for the raw tables (idempotent), and ``ensure_schema``: raw and meta schemas and tables.

The raw tables are ingest's output, shaped by the extract contract, so their DDL lives here;
the ``tierflow_meta`` tables are everybody's and live in ``tierflow.meta``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tierflow.extracts import ENTITIES, PG_TYPES, RAW_META_COLUMNS, Entity
from tierflow.meta import create_meta_tables
from tierflow.settings import RAW_SCHEMA


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create the raw and meta schemas and tables; add contract columns that are new."""
    with conn.transaction():
        # serialize concurrent first runs
        conn.execute("select pg_advisory_xact_lock(hashtext('tierflow.ensure_schema'))")
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(RAW_SCHEMA)))
        create_meta_tables(conn)
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


def raw_indexes(entity: Entity) -> list[tuple[str, tuple[str, ...]]]:
    """(name, columns) of the indexes a raw table gets: its load id and date folder (a night's
    new rows, read by the raw gate and by staging's incremental branch) and its key (every
    delivered version of the keys staging rebuilds)."""
    return [(f"{entity.raw_table}__load_id", ("_load_id",)),
            (f"{entity.raw_table}__business_date", ("_business_date",)),
            (f"{entity.raw_table}__key", entity.key)]


def ensure_raw_indexes(conn: psycopg.Connection) -> list[str]:
    """Create the raw tables' missing indexes (``raw_indexes``); returns their names.

    Called after a night's files are loaded: a first night (years of files) builds them once
    over the loaded rows, a sort each, where indexes present from the start would be kept up
    row by row through the whole load; later nights find them and pay one catalog query.
    Without them the raw gate's suites and each staging model scanned the whole raw history
    every night to find the night's rows (1.4 s for the order lines' staging query at 100,000
    customers, 0.06 s with them: docs/performance.md, "Stop 28").
    """
    present = {name for (name,) in conn.execute(
        "select indexname from pg_indexes where schemaname = %s", (RAW_SCHEMA,))}
    created = []
    for entity in ENTITIES:
        for name, columns in raw_indexes(entity):
            if name in present:
                continue
            conn.execute(sql.SQL("create index if not exists {} on {} ({})").format(
                sql.Identifier(name), sql.Identifier(RAW_SCHEMA, entity.raw_table),
                sql.SQL(", ").join(map(sql.Identifier, columns))))
            created.append(name)
    return created
