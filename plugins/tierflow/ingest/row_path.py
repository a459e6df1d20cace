"""The row path: parse and check each record in Python, COPY the good ones as text.

The path for Parquet and JSON lines, for CSV files under ``ingest.bulk_min_bytes`` (it costs
less per file), and for the CSV files the binary and SQL paths hand back (quoted newlines,
blank lines, headers only this path judges). It is the reference the other two are compared
with: each record goes through ``row_contract.validate_row`` and a repeated key is a reject;
an unreadable file is an ``IngestError`` naming the line it got to.

``RunLookups`` answers the contract's lookups from the warehouse, read once per run and kept
up to date as files load.
"""

from __future__ import annotations

import bisect
import csv
import json
from collections import defaultdict
from datetime import date

import psycopg
import pyarrow as pa
from psycopg import sql

from tierflow.extracts import BY_PATH, Entity, referenced_columns
from tierflow.ingest.file_load import FileLoad, IngestError, PathResult
from tierflow.ingest.key_hashing import GrowingKeySet, fetch_keys
from tierflow.ingest.readers import FileProblem, open_records
from tierflow.ingest.rejects import copy_rejects
from tierflow.ingest.row_contract import RowProblem, duplicate_key_message, jsonable, raw_json, validate_row
from tierflow.settings import RAW_SCHEMA


class RunLookups:
    """Keys already loaded (for foreign keys) and fx rates, read once per run."""

    def __init__(self, conn: psycopg.Connection, base_currency: str) -> None:
        self.conn = conn
        self.base = base_currency
        self._keys: dict[tuple[str, str], set[str]] = {}
        self._key_sets: dict[tuple[str, str], GrowingKeySet] = {}  # the binary path's
        self._fx: dict[str, list[date]] | None = None

    def keys(self, entity: Entity, column: str) -> set[str]:
        k = (entity.path, column)
        if k not in self._keys:
            q = sql.SQL("select distinct {} from {}.{}").format(
                sql.Identifier(column), sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table)
            )
            self._keys[k] = {r[0] for r in self.conn.execute(q)}
        return self._keys[k]

    def key_set(self, entity: Entity, column: str) -> GrowingKeySet:
        """The binary path's form of the same keys: read once per run, grown as files load."""
        k = (entity.path, column)
        if k not in self._key_sets:
            self._key_sets[k] = GrowingKeySet(fetch_keys(self.conn, entity, column))
        return self._key_sets[k]

    def fx_dates(self) -> dict[str, list[date]]:
        if self._fx is None:
            fx: dict[str, list[date]] = defaultdict(list)
            for cur, d in self.conn.execute(
                sql.SQL("select distinct currency, rate_date from {}.erp__fx_rates order by 1, 2").format(
                    sql.Identifier(RAW_SCHEMA)
                )
            ):
                fx[cur].append(d)
            self._fx = fx
        return self._fx

    def has_rate(self, currency: str, on: date) -> bool:
        dates = self.fx_dates().get(currency)
        return bool(dates) and bisect.bisect_right(dates, on) > 0

    def forget(self, entity: Entity) -> None:
        """Drop what is cached about ``entity``: it was loaded without saying what it loaded."""
        for cache in (self._keys, self._key_sets):
            for k in [k for k in cache if k[0] == entity.path]:
                del cache[k]
        if entity.path == "erp/fx_rates":
            self.forget_rates()

    def forget_rates(self) -> None:
        self._fx = None

    def add_loaded(self, entity: Entity, rows: list[dict]) -> None:
        """The row path loaded these rows (their referenced columns)."""
        self.add_loaded_keys(entity, {column: pa.array([r[column] for r in rows], pa.string())
                                      for column in referenced_columns(entity)})
        if entity.path == "erp/fx_rates" and self._fx is not None:
            for r in rows:
                bisect.insort(self._fx.setdefault(r["currency"], []), r["rate_date"])

    def add_loaded_keys(self, entity: Entity, loaded: dict[str, pa.Array]) -> None:
        """A file of ``entity`` loaded these values of its referenced columns (every one)."""
        for column in referenced_columns(entity):
            k = (entity.path, column)
            if k in self._keys:
                self._keys[k].update(loaded[column].to_pylist())
            if k in self._key_sets:
                self._key_sets[k].add(loaded[column])


def load_rows(conn: psycopg.Connection, load: FileLoad, lookups: RunLookups) -> PathResult:
    """Load one file of any landing format record by record; IngestError when it cannot be read."""
    entity, relpath = load.entity, load.relpath
    result = PathResult(0, 0, 0, [])
    try:
        columns, records, handle = open_records(load.path, load.encoding)
    except FileProblem as exc:
        raise IngestError(f"{relpath}: {exc}") from None
    known = set(entity.column_names)
    missing = [c for c in entity.required_columns if c not in columns]
    if missing:
        handle.close()
        raise IngestError(f"{relpath}: required column(s) missing: {', '.join(missing)}")
    extra_seen: dict[str, None] = dict.fromkeys(c for c in columns if c not in known)

    raw_cols = [*entity.column_names, "_load_id", "_line_number", "_business_date", "_extra"]
    copy_raw = sql.SQL("copy {}.{} ({}) from stdin").format(
        sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
        sql.SQL(", ").join(map(sql.Identifier, raw_cols)),
    )
    # Read what validation looks up before the COPY starts: the connection is busy during it.
    for fk in entity.foreign_keys:
        lookups.keys(BY_PATH[fk.entity], fk.ref_column)
    if entity.currency_column:
        lookups.fx_dates()
    seen_keys: dict[tuple, int] = {}
    loaded_rows: list[dict] = []
    kept = _referenced_columns(entity)
    rejects: list[tuple] = []
    line = 0
    try:
        with conn.cursor() as cur, cur.copy(copy_raw) as copy:
            for line, record in records:
                result.rows_in += 1
                try:
                    row = validate_row(entity, record, lookups, load.business_date, load.max_future_days)
                    key = tuple(row[k] for k in entity.key)
                    if key in seen_keys:
                        raise RowProblem(duplicate_key_message(entity, key, seen_keys[key]))
                    seen_keys[key] = line
                except RowProblem as exc:
                    result.rows_rejected += 1
                    rejects.append((line, raw_json(record), str(exc)))
                    continue
                # JSON lines may bring new keys on any line, so extras are found per record
                extras = {k: jsonable(v) for k, v in record.items() if k not in known} or None
                if extras:
                    extra_seen.update(dict.fromkeys(extras))
                copy.write_row(
                    [*row.values(), load.load_id, line, load.business_date,
                     json.dumps(extras, ensure_ascii=False) if extras else None]
                )
                result.rows_loaded += 1
                if kept:
                    loaded_rows.append({k: row[k] for k in kept})
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{relpath}: cannot decode as {load.encoding} after line {line}: {exc.reason}"
        ) from None
    except FileProblem as exc:
        raise IngestError(f"{relpath}: {exc}") from None
    except (EOFError, OSError, csv.Error, ValueError) as exc:
        # truncated gzip, I/O error, broken CSV quoting, corrupt Parquet page, ...
        raise IngestError(f"{relpath}: cannot read past line {line}: {exc}") from None
    finally:
        handle.close()
    result.extra_columns = list(extra_seen)
    if rejects:
        copy_rejects(conn, load, rejects)
    lookups.add_loaded(entity, loaded_rows)
    return result


def _referenced_columns(entity: Entity) -> set[str]:
    cols = set(referenced_columns(entity))
    if entity.path == "erp/fx_rates":
        cols |= {"currency", "rate_date"}
    return cols
