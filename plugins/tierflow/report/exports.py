"""The per-date exports: CSV and Parquet of the published tables, and the CRM import file.

Written by the report step into ``$TIERFLOW_EXPORTS/<as-of date>/`` for spreadsheets, BI tools
and the CRM (``crm_import.csv`` writes tiers back to it). Only the CSV files, meant for
spreadsheets, neutralise formula triggers; the tables and the Parquet files keep values verbatim.
"""

from __future__ import annotations

import csv
import logging
import os
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

EXPORTED_TABLES = ("customer_tiers", "allocation_plan_tier", "allocation_plan_customer")
# exported when published: a BI schema restored from before them, or built by hand, has none
# (a warning says so). The customer typing and the sales team's view (docs/typing.md), and
# closing the loop (docs/closing-the-loop.md).
TEAM_EXPORTED_TABLES = ("customer_profile", "sales_rep_performance", "region_potential")
OUTCOME_TABLES = ("plan_performance", "revenue_bridge", "cohort_retention", "customer_health")
OPTIONAL_EXPORTED_TABLES = TEAM_EXPORTED_TABLES + OUTCOME_TABLES
CRM_IMPORT_FILE = "crm_import.csv"
CRM_IMPORT_COLUMNS = ("customer_id", "value_tier", "rfm_segment", "service_level", "primary_action")
# A spreadsheet reads a cell starting with one of these as a formula (=HYPERLINK(...), =cmd|...)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: object) -> object:
    """A text cell as a spreadsheet must not evaluate it (OWASP "CSV injection"): one that
    starts with a formula trigger gets a leading ``'``, which Excel and LibreOffice read as
    "text". Numbers, dates and empty cells are left as they are; only the CSV files meant for
    spreadsheets and CRM imports get this, the tables and Parquet files keep values verbatim."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


# rows per chunk of an export: the memory of one export is one chunk, whatever the customer count
EXPORT_CHUNK_ROWS = 10_000
# PostgreSQL type (oid) -> (pandas dtype of a chunk, pyarrow type factory for the Parquet file); the
# published tables hold these types (tests/test_exports.py checks that every exported column's
# type is here)
_INT = ("Int64", "int64")
_FLOAT = ("float64", "float64")
EXPORT_TYPES: dict[int, tuple[str, str]] = {
    20: _INT, 21: _INT, 23: _INT,  # int8, int2, int4
    700: _FLOAT, 701: _FLOAT, 1700: _FLOAT,  # float4, float8, numeric (as float64 for consumers)
    16: ("object", "bool_"),
    25: ("object", "string"), 1043: ("object", "string"), 1042: ("object", "string"),
    1082: ("object", "date32"),
}


def write_exports(url: str, publish_schema: str, as_of: date, exports_root: Path) -> list[str]:
    """CSV and Parquet of the tier and allocation tables for ``as_of``, and of the team and
    outcome tables that are published, then the CRM import file (all replaced on rerun).

    The CSV files neutralise formula triggers in text cells (``neutralise_formula``); the
    Parquet files hold the values as published. Each table is read and written in chunks of
    ``EXPORT_CHUNK_ROWS`` rows (a server-side cursor), each column typed by its database type,
    so that the memory of the step does not grow with the customer count."""
    out = exports_root / as_of.isoformat()
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    with psycopg.connect(url) as conn:
        published = [t for t in OPTIONAL_EXPORTED_TABLES
                     if conn.execute("select to_regclass(%s)", (f'"{publish_schema}"."{t}"',)).fetchone()[0]]
        for table in sorted(set(OPTIONAL_EXPORTED_TABLES) - set(published)):
            log.warning("export: %s.%s is not published, not exported", publish_schema, table)
        for table in (*EXPORTED_TABLES, *published):
            csv_path, pq_path = out / f"{table}.csv", out / f"{table}.parquet"
            query = sql.SQL("select * from {} where as_of_date = %s order by 1, 2").format(
                sql.Identifier(publish_schema, table))
            _export_table(conn, query, as_of, f"{publish_schema}.{table}", csv_path, pq_path)
            written += [str(csv_path), str(pq_path)]
    written.append(str(write_crm_import(url, publish_schema, as_of, out)))
    return written


def _export_table(conn: psycopg.Connection, query: sql.Composed, as_of: date, name: str,
                  csv_path: Path, pq_path: Path) -> None:
    """One table's CSV and Parquet files, written chunk by chunk from a server-side cursor."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    with conn.transaction(), conn.cursor(name=f"export_{csv_path.stem}") as cur:
        cur.execute(query, (as_of,))
        columns = [d.name for d in cur.description]
        unknown = [f"{d.name} (type oid {d.type_code})" for d in cur.description
                   if d.type_code not in EXPORT_TYPES]
        if unknown:
            raise ValueError(f"export of {name}: no export type for column(s) {', '.join(unknown)}")
        dtypes = {d.name: EXPORT_TYPES[d.type_code][0] for d in cur.description}
        schema = pa.schema([(d.name, getattr(pa, EXPORT_TYPES[d.type_code][1])()) for d in cur.description])
        text = [d.name for d in cur.description if EXPORT_TYPES[d.type_code][1] == "string"]
        with (open(csv_path, "w", encoding="utf-8", newline="") as csv_file,
              pq.ParquetWriter(pq_path, schema) as parquet):
            first = True
            while True:
                rows = cur.fetchmany(EXPORT_CHUNK_ROWS)
                if not rows and not first:
                    break
                frame = pd.DataFrame(rows, columns=columns).astype(dtypes)
                # CRLF line ends (RFC 4180): the csv module then also quotes a value holding a bare
                # CR, which with "\n" line ends it writes unquoted, splitting the row for a reader
                frame.assign(**{c: frame[c].map(neutralise_formula) for c in text}).to_csv(
                    csv_file, header=first, index=False, lineterminator="\r\n")
                parquet.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
                first = False
                if len(rows) < EXPORT_CHUNK_ROWS:
                    break


def _crm_import_rows(conn: psycopg.Connection, publish_schema: str, as_of: date) -> list[tuple]:
    """Rows in byte order of customer_id (collation "C"), the same on every server."""
    query = sql.SQL(
        """
        select t.customer_id, t.value_tier, t.rfm_segment, c.service_level, c.primary_action
        from {tiers} as t
        left join {plan} as c on c.customer_id = t.customer_id and c.as_of_date = t.as_of_date
        where t.as_of_date = %s
        order by t.customer_id collate "C"
        """
    ).format(
        tiers=sql.Identifier(publish_schema, "customer_tiers"),
        plan=sql.Identifier(publish_schema, "allocation_plan_customer"),
    )
    return conn.execute(query, (as_of,)).fetchall()


def write_crm_import(url: str, publish_schema: str, as_of: date, out: Path) -> Path:
    """``crm_import.csv``: one row per tiered customer, to write tiers back to the CRM.

    The file is meant for CRM import tools and for the people who open it in Excel first, so:
    UTF-8 with a byte-order mark, comma-separated, CRLF line ends, quotes only where needed
    (RFC 4180). The BOM is what makes Excel (and so the many Chinese CRMs and Dynamics 365
    imports that start from an Excel file) read UTF-8 instead of the local ANSI code page, and it
    is what Excel's own "CSV UTF-8" format writes. Salesforce's Import Wizard and Dynamics accept
    it; a tool that reads the BOM as part of the first header (some Salesforce Data Loader
    set-ups) needs the file's first three bytes dropped. Empty means unknown. The file is
    written beside the old one and then moved over it, so an importer never reads half a file.
    A text that starts with a formula trigger (``=``, ``+``, ``-``, ``@``, tab, CR) is written
    with a leading ``'`` so a spreadsheet shows it instead of evaluating it.
    """
    with psycopg.connect(url) as conn:
        rows = _crm_import_rows(conn, publish_schema, as_of)
    path = out / CRM_IMPORT_FILE
    partial = out / f".{CRM_IMPORT_FILE}.partial"
    with partial.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(CRM_IMPORT_COLUMNS)
        writer.writerows(["" if v is None else neutralise_formula(v) for v in row] for row in rows)
    os.replace(partial, path)
    return path
