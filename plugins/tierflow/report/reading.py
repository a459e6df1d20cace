"""What every reader of the report shares: a table that is not there, and numbers as floats.

A section whose table does not exist (e.g. a mart a later release adds) gets ``Missing`` and
says so on the page instead of stopping the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass
class Missing:
    """A table the section needs does not exist (yet)."""

    table: str


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute(
        "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
        (schema, table),
    ).fetchone()
    return row is not None


def num(value: Any) -> float:
    """A numeric column's value as a float; null as 0."""
    return float(value) if value is not None else 0.0
