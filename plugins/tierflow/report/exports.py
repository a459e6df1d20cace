"""The per-date exports: CSV and Parquet of the published tables, and the CRM import file.

Written by the report step into ``$TIERFLOW_EXPORTS/<as-of date>/`` for spreadsheets, BI tools
and the CRM (``crm_import.csv`` writes tiers back to it). Only the CSV files, meant for
spreadsheets, neutralise formula triggers; the tables and the Parquet files keep values verbatim.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import sys
from collections.abc import Iterable, Iterator
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


# rows per chunk of an export (a Parquet row group, a block of CSV lines); the database's text of a
# table is read EXPORT_BLOCK_BYTES at a time: the memory of one export is one block, whatever the
# customer count
EXPORT_CHUNK_ROWS = 10_000
EXPORT_BLOCK_BYTES = 1 << 20
# PostgreSQL type (oid) -> pyarrow type of the Parquet column (and of the text in the CSV file): the
# published tables hold these types; a column of another type stops the export and is named
EXPORT_TYPES: dict[int, str] = {
    20: "int64", 21: "int64", 23: "int64",  # int8, int2, int4
    700: "float64", 701: "float64", 1700: "float64",  # float4, float8, numeric (as float64 for consumers)
    16: "bool_",
    25: "string", 1043: "string", 1042: "string",
    1082: "date32",
}


def write_exports(url: str, publish_schema: str, as_of: date, exports_root: Path) -> list[str]:
    """CSV and Parquet of the tier and allocation tables for ``as_of``, and of the team and
    outcome tables that are published, then the CRM import file (all replaced on rerun).

    The CSV files neutralise formula triggers in text cells (``neutralise_formula``); the
    Parquet files hold the values as published. Each table is read as the server's CSV text
    (``COPY``) ``EXPORT_BLOCK_BYTES`` at a time and written in chunks of ``EXPORT_CHUNK_ROWS`` rows,
    each column typed by its database type, so that the memory of the step does not grow with
    the customer count; the CSV text of a value is what pandas' ``to_csv`` writes for it."""
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
    """One table's CSV and Parquet files, written block by block as the database sends them.

    The rows come as the server's own CSV (``COPY ... TO STDOUT``), parsed by Arrow into columns
    of the Parquet types, and each chunk of them is written to the Parquet file as it is and to
    the CSV file in pandas' text of a value (``_csv_lines``): no Python object per cell."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    with conn.transaction():
        # the types of the columns, without reading a row
        columns = conn.execute(sql.SQL("select * from ({}) as q limit 0").format(query), (as_of,)).description
        unknown = [f"{d.name} (type oid {d.type_code})" for d in columns if d.type_code not in EXPORT_TYPES]
        if unknown:
            raise ValueError(f"export of {name}: no export type for column(s) {', '.join(unknown)}")
        schema = pa.schema([(d.name, getattr(pa, EXPORT_TYPES[d.type_code])()) for d in columns])
        conn.execute("set local client_encoding to 'UTF8'")  # what Arrow reads
        copy_sql = sql.SQL("copy ({}) to stdout (format csv)").format(query)
        with (conn.cursor() as cur, cur.copy(copy_sql, (as_of,)) as copy,
              open(csv_path, "wb") as csv_file, pq.ParquetWriter(pq_path, schema) as parquet):
            csv_file.write(_csv_header(schema.names))
            source = _CopyReader(copy)
            if not source.peek():  # no rows: pyarrow reads no columns from an empty text
                parquet.write_table(schema.empty_table())
                return
            reader = pa_csv.open_csv(
                source,
                read_options=pa_csv.ReadOptions(column_names=schema.names, block_size=EXPORT_BLOCK_BYTES),
                # the server quotes a value holding a line end, a comma or a quote; a null is an
                # unquoted empty field (a row of one null: an empty line), an empty text a quoted
                # one; booleans are t and f
                parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False),
                convert_options=pa_csv.ConvertOptions(
                    column_types=schema, null_values=[""], strings_can_be_null=True,
                    quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"]),
            )
            for chunk in _chunks(reader, EXPORT_CHUNK_ROWS):
                parquet.write_table(chunk)  # a row group per chunk
                csv_file.write(_csv_lines(chunk))


def _chunks(batches: Iterable, rows: int) -> Iterator:
    """Tables of ``rows`` rows (the last one shorter) from record batches of any length."""
    import pyarrow as pa

    pending, count = [], 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows).combine_chunks()
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks()


class _CopyReader(io.RawIOBase):
    """The text of a ``COPY ... TO STDOUT`` as a file that Arrow's CSV reader reads from."""

    def __init__(self, copy: psycopg.Copy) -> None:
        self._copy, self._pending = copy, memoryview(b"")

    def peek(self) -> bool:
        """Whether any text is left (reads the next block from the server if needed)."""
        if not self._pending:
            self._pending = memoryview(self._copy.read())
        return bool(self._pending)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # noqa: ANN001 (a writable buffer)
        """Fills the buffer (the server sends a row at a time; Arrow parses each read as a block)."""
        filled = 0
        while filled < len(buffer) and self.peek():
            n = min(len(buffer) - filled, len(self._pending))
            buffer[filled:filled + n] = self._pending[:n]
            self._pending = self._pending[n:]
            filled += n
        return filled


def _csv_header(names: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(names)
    return out.getvalue().encode("utf-8")


# Python's repr (and so pandas) writes a float from 1e-4 up to below 1e16 in positional notation,
# with at least one decimal (175.0); Arrow writes the same shortest digits, without the decimal
# (175), and chooses positional or exponent notation by other rules: its exponents are rewritten
_FLOAT_POSITIONAL = (1e-4, 1e16)
_CSV_SPECIAL = r'[,"\r\n]'  # what the csv module quotes (with "\r\n" line ends)
# a text starting with one of FORMULA_TRIGGERS (single characters), for Arrow's regex functions
_FORMULA_START = "^([" + "".join("\\" + c if c in "\\]^-" else c for c in FORMULA_TRIGGERS) + "])"


def _csv_cells(column):  # noqa: ANN001, ANN202 (pyarrow arrays)
    """One column's CSV cells, each as pandas' ``to_csv`` writes the value (null: null)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type):
        text = pc.replace_substring_regex(column, _FORMULA_START, r"'\1", max_replacements=1)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
        return pc.if_else(pc.match_substring_regex(text, _CSV_SPECIAL), quoted, text)
    if pa.types.is_boolean(column.type):
        return pc.if_else(column, "True", "False")
    if pa.types.is_floating(column.type):
        text = pc.cast(column, pa.string())
        text = pc.if_else(pc.match_substring(text, "."), text, pc.binary_join_element_wise(text, ".0", ""))
        low, high = _FLOAT_POSITIONAL
        size = pc.abs(column)
        outside = pc.or_(pc.less(size, low), pc.greater_equal(size, high))
        exponent = pc.and_(pc.not_equal(column, 0.0), outside)
        odd = pc.fill_null(pc.or_(pc.or_(pc.invert(pc.is_finite(column)), pc.match_substring(text, "e")),
                                  exponent), False)
        if pc.any(odd).as_py():  # rare: an exponent, inf or NaN (an empty cell, as pandas writes it)
            values = column.to_pylist()
            exact = pa.array([None if v is None or v != v else repr(v) for v in values], pa.string())
            text = pc.if_else(odd, exact, text)
        return text
    return pc.cast(column, pa.string())  # integers and dates: the same text in both


def _csv_lines(chunk) -> bytes:  # noqa: ANN001 (a pyarrow Table of one chunk)
    """The chunk's rows as pandas' ``to_csv(index=False, lineterminator="\r\n")`` writes them
    (the csv module's minimal quoting; formula triggers neutralised in text cells)."""
    import pyarrow.compute as pc

    cells = [pc.fill_null(_csv_cells(column), "") for column in chunk.columns]
    if len(cells) == 1:  # the csv module quotes a row's only field when it is empty
        cells[0] = pc.if_else(pc.equal(cells[0], ""), '""', cells[0])
    # each row's text and its line end, then the lines' bytes as Arrow holds them (one buffer of
    # UTF-8 text, no Python string per row)
    lines = pc.binary_join_element_wise(pc.binary_join_element_wise(*cells, ","), "", "\r\n")
    text = []
    for array in (lines.chunks if hasattr(lines, "chunks") else [lines]):
        _, offsets, data = array.buffers()  # no nulls: no validity bitmap; int32 offsets
        first, last = (int.from_bytes(offsets[4 * i:4 * i + 4], sys.byteorder, signed=True)
                       for i in (array.offset, array.offset + len(array)))
        text.append(memoryview(data)[first:last])
    return b"".join(text)


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
