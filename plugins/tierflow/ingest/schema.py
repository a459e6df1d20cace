"""DDL for the raw tables (idempotent), and ``ensure_schema``: raw and meta schemas and tables.

The raw tables are ingest's output, shaped by the extract contract, so their DDL lives here;
the ``tierflow_meta`` tables are everybody's and live in ``tierflow.meta``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from tierflow.extracts import ENTITIES, PG_TYPES, RAW_META_COLUMNS
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
