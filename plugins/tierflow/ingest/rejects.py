"""The one writer of ``tierflow_meta.rejects``: a reject is (line number, raw record, reason).

The row and binary paths hold their rejects in Python and COPY them (``copy_rejects``); the
SQL path has them in a server-side table already and moves them with one statement
(``insert_rejects_from``). Both name the table and its columns through ``_target``.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
from psycopg import sql

from tierflow.ingest.file_load import FileLoad
from tierflow.settings import META_SCHEMA

COLUMNS = ("load_id", "file_path", "entity", "business_date", "line_number", "raw_record", "reason")


def _target() -> sql.Composed:
    return sql.SQL("{}.rejects ({})").format(
        sql.Identifier(META_SCHEMA), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))


def copy_rejects(conn: psycopg.Connection, load: FileLoad, rejects: Iterable[tuple[int, str, str]]) -> None:
    """COPY (line number, raw record as JSON text, reason) triples, in the order given."""
    file = (load.load_id, load.relpath, load.entity.path, load.business_date)
    with conn.cursor() as cur, cur.copy(sql.SQL("copy {} from stdin").format(_target())) as copy:
        for line, raw, reason in rejects:
            copy.write_row([*file, line, raw, reason])


def insert_rejects_from(conn: psycopg.Connection, load: FileLoad, table: sql.Composable) -> int:
    """Move the rows of a server-side table of (``_rec``, ``raw_record``, ``reason``) into the
    rejects, record n as line n + 1, in record order; returns how many."""
    return conn.execute(sql.SQL(
        "insert into {} select %s, %s, %s, %s, _rec + 1, raw_record, reason from {} order by _rec"
    ).format(_target(), table), (load.load_id, load.relpath, load.entity.path, load.business_date)).rowcount
