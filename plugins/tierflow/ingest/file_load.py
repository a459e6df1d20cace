"""What the loader hands each load path, what a path hands back, and how a path declines.

The loader tries the paths in turn for a CSV file (binary, then SQL, then row by row) and
goes straight to the row path for Parquet and JSON lines; each gets the same ``FileLoad``
and returns a ``PathResult``, or raises ``UseSqlPath`` / ``UseRowPath`` to hand the file on
(inside a savepoint: nothing it did remains). ``IngestError`` is the package's error for a
file that cannot be loaded at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from tierflow.extracts import Entity


class IngestError(RuntimeError):
    """A file could not be loaded; the message names the file and the problem."""


class UseSqlPath(Exception):
    """The binary path cannot load this file exactly; the SQL path (or the row path) will."""


class UseRowPath(Exception):
    """The SQL or binary path cannot load this file exactly; the row path will (or will fail it)."""


@dataclass(frozen=True)
class FileLoad:
    """One landing file to load, inside the transaction of its audit row ``load_id``."""

    path: Path
    relpath: str  # under the landing root: how messages, the audit and the rejects name it
    entity: Entity
    business_date: date
    load_id: int
    encoding: str
    base_currency: str
    max_future_days: int


@dataclass
class PathResult:
    """What a load path did with a file: ``rows_in = rows_loaded + rows_rejected``."""

    rows_in: int
    rows_loaded: int
    rows_rejected: int
    extra_columns: list[str]
    # the loaded values of the columns other files' foreign keys point at (pyarrow string
    # arrays), where the path collected them: the run's key sets grow by them
    loaded_keys: dict[str, Any] | None = None
