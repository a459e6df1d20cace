"""One measured fix to how GX Core learns a query asset's columns, applied where tierflow runs GX.

Every suite is a GX query asset (``select ... from <table> where ...``: the raw gate's new
loads, the marts' as-of date). The first expectation on such a batch asks for the batch's
columns; GX 1.x cannot reflect a query, so ``column_reflection_fallback`` runs the asset's query
as it is, without a limit, only to read the column names off the result. psycopg2 holds a whole
result in the client, so the task fetches every row of the suite once: on the first night at
100,000 customers the raw gate's order-line and invoice suites took the process from 296 MB to
1,347 MB, and the marts gate grew the same way with the customer count (docs/performance.md,
"What grew with the data in memory").

The replacement asks the server for the same query's columns with ``limit 0`` around it: the
same names in the same order, no rows. Other selectables (tables) go to GX's own function.
Applied once per process; if a GX release changes the function this patches, nothing is
patched and GX runs as shipped.
"""

from __future__ import annotations

import inspect
import logging

log = logging.getLogger(__name__)

_applied = False
shipped_column_reflection_fallback = None  # GX's own function, kept for the test that compares them
_SIGNATURE = ("selectable", "dialect", "sqlalchemy_engine", "schema_name")


def _query_columns(selectable, dialect, sqlalchemy_engine, schema_name=None) -> list[dict[str, str]]:
    """The column names of a text query (read from a ``limit 0`` result); anything else as GX does."""
    import sqlalchemy as sa

    if not isinstance(selectable, sa.TextClause):
        return shipped_column_reflection_fallback(selectable, dialect, sqlalchemy_engine, schema_name)
    engine = sqlalchemy_engine.engine
    connection = engine.connect() if isinstance(engine, sa.Engine) else engine
    with connection:
        # the newline ends a trailing "-- comment" of the query before the closing parenthesis
        query = f"select * from ({selectable.text}\n) as tierflow_columns limit 0"
        result = connection.execute(sa.text(query))
        return [{"name": name} for name in result.keys()]


def apply_gx_patches() -> None:
    """Install the rowless column lookup for query assets (idempotent)."""
    global _applied, shipped_column_reflection_fallback
    if _applied:
        return
    _applied = True
    from great_expectations.expectations.metrics import util

    current = getattr(util, "column_reflection_fallback", None)
    if current is None or tuple(inspect.signature(current).parameters) != _SIGNATURE:
        log.info("GX's column_reflection_fallback has changed: left as shipped")
        return
    shipped_column_reflection_fallback = current
    util.column_reflection_fallback = _query_columns
