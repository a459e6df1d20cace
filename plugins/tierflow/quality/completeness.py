"""Which optional extracts a night lacks, and what its results lose without them.

SPEC: without invoices credit risk is `unknown`; without tickets / activities cost-to-serve
uses only the configured per-order costs; each such degradation is reported (run summary,
HTML report).
"""

from __future__ import annotations

from datetime import date

import psycopg
from psycopg import sql
from psycopg.rows import tuple_row

from tierflow.settings import RAW_SCHEMA

# optional extracts, and what the night loses without them (SPEC: each degradation is reported)
DEGRADATIONS = (
    ("erp__invoices", "erp/invoices",
     "credit risk is 'unknown' for every customer and cost-to-serve has no cost of capital"),
    ("service__tickets", "service/tickets", "cost-to-serve has no support cost"),
    ("crm__activities", "crm/activities", "cost-to-serve has no sales-activity cost"),
)


def degradations(conn: psycopg.Connection, as_of: date) -> list[str]:
    """What tonight's results lack because an optional extract was never delivered up to ``as_of``."""
    found = []
    with conn.cursor(row_factory=tuple_row) as cur:  # whatever the connection's row factory
        for table, entity, consequence in DEGRADATIONS:
            (exists,) = cur.execute("select to_regclass(%s)", (f"{RAW_SCHEMA}.{table}",)).fetchone()
            if exists is None:  # not a loaded warehouse (nothing to say about it)
                continue
            (known,) = cur.execute(
                sql.SQL("select exists (select 1 from {} where _business_date <= %s)").format(
                    sql.Identifier(RAW_SCHEMA, table)
                ),
                (as_of,),
            ).fetchone()
            if not known:
                found.append(f"no {entity} delivered up to {as_of}: {consequence}")
    return found
