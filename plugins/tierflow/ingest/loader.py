"""Load landing files into ``raw`` with COPY, one transaction per file.

Every row of every file ends up either in its raw table or in ``tierflow_meta.rejects``
(file, line, the record as received, the reason), and ``loaded + rejected = rows in`` is
recorded per file in ``tierflow_meta.load_audit``. A file that cannot be read at all fails
with an error naming the file and the problem; it leaves no partial rows, its audit row
says why, and the ingest stops there so the run does not publish.

CSV and csv.gz files take the set-based path (``bulk.load_csv``: the bytes stream into COPY,
the checks run in SQL); Parquet, JSON lines and the CSV files that path hands back take the
row-by-row path here (``_load_rows``). Both apply the same rules with the same reasons; see
docs/ingest.md.
"""

from __future__ import annotations

import bisect
import csv
import hashlib
import json
import logging
import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

import psycopg
from psycopg import sql

from tierflow.config import TierflowConfig
from tierflow.extracts import (
    BY_PATH,
    FIELD_LIMIT,
    INT4_MAX,
    INT4_MIN,
    NUMERIC_MAX_SCALE,
    NUMERIC_MAX_WEIGHT_DIGITS,
    REQUIRED_ENTITIES,
    Column,
    Entity,
)
from tierflow.ingest.bulk import PLAIN_DECIMAL, UseRowPath, load_csv
from tierflow.ingest.fast import EncodeError, UseSqlPath, load_csv_fast
from tierflow.ingest.landing import IgnoredPath, LandingError, LandingFile, discover, unsupported
from tierflow.ingest.readers import FileProblem, JsonNumber, file_format, open_records
from tierflow.ingest.schema import ensure_schema
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

log = logging.getLogger(__name__)


class IngestError(RuntimeError):
    """A file could not be loaded; the message names the file and the problem."""


class RowProblem(ValueError):
    """One row cannot be loaded; the message is the reject reason."""


@dataclass
class FileResult:
    path: str
    entity: str
    business_date: date
    rows_in: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    extra_columns: list[str] = field(default_factory=list)
    status: str = "loaded"
    error: str | None = None


@dataclass
class IngestReport:
    as_of_date: date
    files: list[FileResult] = field(default_factory=list)
    skipped_already_loaded: int = 0
    warnings: list[str] = field(default_factory=list)
    ignored: list[IgnoredPath] = field(default_factory=list)
    error: str | None = None  # why the ingest failed, when it did

    def totals(self) -> dict:
        return {
            "files_loaded": sum(f.status == "loaded" for f in self.files),
            "files_failed": sum(f.status == "failed" for f in self.files),
            "files_skipped": self.skipped_already_loaded,
            "rows_in": sum(f.rows_in for f in self.files),
            "rows_loaded": sum(f.rows_loaded for f in self.files),
            "rows_rejected": sum(f.rows_rejected for f in self.files),
        }

    def as_dict(self) -> dict:
        return {
            "as_of_date": self.as_of_date.isoformat(),
            **self.totals(),
            "warnings": self.warnings,
            "extra_columns": sorted({f"{f.entity}: {c}" for f in self.files for c in f.extra_columns}),
            "ignored_paths": [p.as_dict() for p in self.ignored],
            **({"error": self.error} if self.error else {}),
        }


# -- value parsing -------------------------------------------------------------------------
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}
_ISO_CURRENCY = re.compile(r"[A-Za-z]{3}")
NUL_SHOWN_AS = "\u2400"  # what a NUL byte becomes in rejects.raw_record (jsonb cannot hold it)


def _numeric_in_range(num: Decimal) -> bool:
    """Whether PostgreSQL's numeric takes this finite value: at most 131,072 digits before the
    point and 16,383 after (a zero may have any exponent that keeps its scale in range)."""
    exponent = num.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > NUMERIC_MAX_SCALE or abs(exponent) >= 2**30:
        return False
    return num.is_zero() or num.adjusted() < NUMERIC_MAX_WEIGHT_DIGITS


def _finite_number(value: object) -> Decimal:
    """A number as received as a finite Decimal PostgreSQL's numeric can hold; ValueError
    otherwise (NaN, the infinities, 1e400 in JSON, 1e200000 as text)."""
    if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError
    num = Decimal(str(value))
    if not num.is_finite() or not _numeric_in_range(num):
        raise ValueError
    return num


def _parse(col: Column, value: object) -> object:
    """Parse one value as received (str from CSV, native from Parquet/JSON) to its type."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    try:
        if col.type == "text":
            text = str(value)
            if col.allowed is not None:
                text = text.lower()
                if text not in col.allowed:
                    raise RowProblem(f"{col.name}: {value!r} is not one of {', '.join(col.allowed)}")
            return text
        if col.type == "numeric":
            try:
                return _finite_number(value)
            except ValueError:
                if isinstance(value, str) and _looks_finite(value):
                    raise RowProblem(
                        f"bad numeric in {col.name}: {value!r} (out of PostgreSQL's numeric range: "
                        f"{NUMERIC_MAX_WEIGHT_DIGITS} digits before the point, {NUMERIC_MAX_SCALE} after)"
                    ) from None
                raise
        if col.type == "int":
            num = _finite_number(value)
            if num != num.to_integral_value():
                raise ValueError
            if num.adjusted() > 9 or not INT4_MIN <= int(num) <= INT4_MAX:
                raise RowProblem(
                    f"bad int in {col.name}: {value!r} (out of the integer range {INT4_MIN}..{INT4_MAX})"
                )
            return int(num)
        if col.type == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            try:
                return date.fromisoformat(str(value))
            except ValueError:
                # a full timestamp in a date column is accepted; anything else is not
                return datetime.fromisoformat(str(value)).date()
        if col.type == "timestamp":
            if isinstance(value, datetime):
                return value
            if isinstance(value, date):
                return datetime(value.year, value.month, value.day)
            return datetime.fromisoformat(str(value))
        if col.type == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
    except RowProblem:
        raise
    except (ValueError, InvalidOperation, TypeError):
        raise RowProblem(f"bad {col.type} in {col.name}: {value!r}") from None
    raise AssertionError(f"unknown column type {col.type}")


_PLAIN_DECIMAL = re.compile(PLAIN_DECIMAL)


def _looks_finite(text: str) -> bool:
    """A plain decimal, with or without exponent: the shape whose only fault can be its size
    (the set-based path tells it apart with the same pattern)."""
    return _PLAIN_DECIMAL.fullmatch(text) is not None


def _value_problem(name: str, value: object) -> str | None:
    """What PostgreSQL (or the CSV reader) could not take in a value as received, whatever
    its column: a field over FIELD_LIMIT characters, a NUL character (also inside a JSON
    object or list of an unknown column)."""
    if isinstance(value, str):
        if len(value) > FIELD_LIMIT:
            return f"{name}: a value of {len(value)} characters, over the limit of {FIELD_LIMIT}"
        if "\x00" in value:
            return f"{name}: NUL byte (PostgreSQL text cannot hold it; shown as {NUL_SHOWN_AS} in raw_record)"
    elif isinstance(value, dict):
        for k, v in value.items():
            problem = _value_problem(name, k) or _value_problem(name, v)
            if problem:
                return problem
    elif isinstance(value, list):
        for v in value:
            problem = _value_problem(name, v)
            if problem:
                return problem
    return None


def _checksum(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# -- the loader ------------------------------------------------------------------------------
class _Lookups:
    """Keys already loaded (for foreign keys) and fx rates, read once per run."""

    def __init__(self, conn: psycopg.Connection, base_currency: str) -> None:
        self.conn = conn
        self.base = base_currency
        self._keys: dict[tuple[str, str], set[str]] = {}
        self._fx: dict[str, list[date]] | None = None

    def keys(self, entity: Entity, column: str) -> set[str]:
        k = (entity.path, column)
        if k not in self._keys:
            q = sql.SQL("select distinct {} from {}.{}").format(
                sql.Identifier(column), sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table)
            )
            self._keys[k] = {r[0] for r in self.conn.execute(q)}
        return self._keys[k]

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
        """Drop what is cached about ``entity``: it was loaded without going through here."""
        for k in [k for k in self._keys if k[0] == entity.path]:
            del self._keys[k]
        if entity.path == "erp/fx_rates":
            self._fx = None

    def add_loaded(self, entity: Entity, rows: list[dict]) -> None:
        for (path, column), keys in self._keys.items():
            if path == entity.path:
                keys.update(r[column] for r in rows)
        if entity.path == "erp/fx_rates" and self._fx is not None:
            for r in rows:
                bisect.insort(self._fx.setdefault(r["currency"], []), r["rate_date"])


def _validate_row(
    entity: Entity, record: dict, lookups: _Lookups, business_date: date, max_future_days: int
) -> dict:
    """The row as loaded, or RowProblem with the reason. Every rule a critical raw expectation
    enforces is enforced here too (expectations/raw; tests/test_ingest_poison.py checks that),
    so a row the raw gate would refuse never reaches raw to block later nights."""
    if "__malformed__" in record:
        raise RowProblem(f"malformed row: {record['__malformed__']}")
    for name, value in record.items():
        problem = _value_problem(name, value)
        if problem:
            raise RowProblem(problem)
    row: dict = {}
    missing: list[str] = []
    for col in entity.columns:
        value = _parse(col, record.get(col.name))
        if value is None and col.required:
            missing.append(col.name)
        if value is not None and (col.non_negative or col.positive):
            if col.non_negative and value < 0:
                raise RowProblem(f"negative {col.name}: {value}")
            if col.positive and value <= 0:
                received = record.get(col.name)
                received = received.strip() if isinstance(received, str) else received
                raise RowProblem(f"{col.name} must be greater than 0: {received!r}")
        row[col.name] = value
    if missing:
        raise RowProblem(f"missing required value: {', '.join(missing)}")
    for earlier, later in entity.ordered_dates:
        if row[earlier] is not None and row[later] is not None and row[later] < row[earlier]:
            raise RowProblem(f"{later} {row[later]} is before {earlier} {row[earlier]}")
    if entity.event_date_column:
        v = row[entity.event_date_column]
        v = v.date() if isinstance(v, datetime) else v
        if v is not None and v > business_date + timedelta(days=max_future_days):
            raise RowProblem(
                f"{entity.event_date_column} {v} is in the future: more than {max_future_days} day(s) "
                f"after the extract date {business_date}"
            )
    currency_column = entity.iso_currency_column
    if currency_column:
        received = str(row[currency_column])
        cur = received.upper()
        row[currency_column] = cur
        # three ASCII letters, as the raw suites' ^[A-Z]{3}$ wants them (isalpha() took 'ÄÖÜ')
        if not _ISO_CURRENCY.fullmatch(received):
            raise RowProblem(f"unknown currency {cur!r}")
        if entity.currency_column:
            on = row[entity.currency_date_column]
            if cur != lookups.base and not lookups.has_rate(cur, on):
                raise RowProblem(f"no fx rate for {cur} on or before {on}")
    for fk in entity.foreign_keys:
        v = row[fk.column]
        if v is not None and v not in lookups.keys(BY_PATH[fk.entity], fk.ref_column):
            raise RowProblem(f"unknown {fk.column} {v!r}: no such {fk.entity} row loaded")
    return row


def _load_file(
    conn: psycopg.Connection,
    lf: LandingFile,
    load_id: int,
    cfg: TierflowConfig,
    lookups: _Lookups,
) -> FileResult:
    entity = lf.entity
    result = FileResult(lf.relpath, entity.path, lf.business_date)
    encoding = cfg.ingest.encodings.get(entity.system, "utf-8")
    if file_format(lf.path) in ("csv", "csv.gz") and lf.path.stat().st_size >= cfg.ingest.bulk_min_bytes:
        args = (conn, lf.path, lf.relpath, entity, lf.business_date, load_id, encoding,
                cfg.base_currency, cfg.ingest.max_future_days)
        try:
            try:
                bulk = load_csv_fast(*args)
            except UseSqlPath as why:
                log.info("%s: loading set-based in SQL: %s", lf.relpath, why)
                bulk = load_csv(*args)
        except UseRowPath as why:
            log.info("%s: loading row by row: %s", lf.relpath, why)
        else:
            lookups.forget(entity)  # the cached keys / rates no longer cover this entity
            result.rows_in, result.rows_loaded = bulk.rows_in, bulk.rows_loaded
            result.rows_rejected, result.extra_columns = bulk.rows_rejected, bulk.extra_columns
            return result
    return _load_rows(conn, lf, load_id, cfg, lookups, result, encoding)


def _load_rows(
    conn: psycopg.Connection,
    lf: LandingFile,
    load_id: int,
    cfg: TierflowConfig,
    lookups: _Lookups,
    result: FileResult,
    encoding: str,
) -> FileResult:
    """The row-by-row path: parse and check each record in Python, COPY the good ones.

    Used for Parquet and JSON lines, and for the CSV files the set-based path hands back.
    """
    entity = lf.entity
    try:
        columns, records, handle = open_records(lf.path, encoding)
    except FileProblem as exc:
        raise IngestError(f"{lf.relpath}: {exc}") from None
    known = set(entity.column_names)
    missing = [c for c in entity.required_columns if c not in columns]
    if missing:
        handle.close()
        raise IngestError(f"{lf.relpath}: required column(s) missing: {', '.join(missing)}")
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
    keep_loaded = _is_referenced(entity)
    rejects: list[tuple] = []
    line = 0
    try:
        with conn.cursor() as cur, cur.copy(copy_raw) as copy:
            for line, record in records:
                result.rows_in += 1
                try:
                    row = _validate_row(entity, record, lookups, lf.business_date, cfg.ingest.max_future_days)
                    key = tuple(row[k] for k in entity.key)
                    if key in seen_keys:
                        raise RowProblem(
                            f"duplicate key ({', '.join(entity.key)}) = {key if len(key) > 1 else key[0]!r} "
                            f"also on line {seen_keys[key]} of this file"
                        )
                    seen_keys[key] = line
                except RowProblem as exc:
                    result.rows_rejected += 1
                    rejects.append((line, _raw_json(record), str(exc)))
                    continue
                # JSON lines may bring new keys on any line, so extras are found per record
                extras = {k: _jsonable(v) for k, v in record.items() if k not in known} or None
                if extras:
                    extra_seen.update(dict.fromkeys(extras))
                copy.write_row(
                    [*row.values(), load_id, line, lf.business_date,
                     json.dumps(extras, ensure_ascii=False) if extras else None]
                )
                result.rows_loaded += 1
                if keep_loaded:
                    loaded_rows.append({k: row[k] for k in _referenced_columns(entity)})
    except UnicodeDecodeError as exc:
        raise IngestError(
            f"{lf.relpath}: cannot decode as {encoding} after line {line}: {exc.reason}"
        ) from None
    except FileProblem as exc:
        raise IngestError(f"{lf.relpath}: {exc}") from None
    except (EOFError, OSError, csv.Error, ValueError) as exc:
        # truncated gzip, I/O error, broken CSV quoting, corrupt Parquet page, ...
        raise IngestError(f"{lf.relpath}: cannot read past line {line}: {exc}") from None
    finally:
        handle.close()
    result.extra_columns = list(extra_seen)
    if rejects:
        with conn.cursor() as cur, cur.copy(
            sql.SQL(
                "copy {}.rejects (load_id, file_path, entity, business_date, line_number, raw_record, reason)"
                " from stdin"
            ).format(sql.Identifier(META_SCHEMA))
        ) as copy:
            for line_no, raw, reason in rejects:
                copy.write_row([load_id, lf.relpath, entity.path, lf.business_date, line_no, raw, reason])
    lookups.add_loaded(entity, loaded_rows)
    return result


def _referenced_columns(entity: Entity) -> set[str]:
    cols = {fk.ref_column for e in BY_PATH.values() for fk in e.foreign_keys if fk.entity == entity.path}
    if entity.path == "erp/fx_rates":
        cols |= {"currency", "rate_date"}
    return cols


def _is_referenced(entity: Entity) -> bool:
    return bool(_referenced_columns(entity))


def _jsonable(v: object) -> object:
    """A value as JSON can hold it in raw_record / _extra: dates and numbers as text, NaN and
    the infinities as the text they were read from (JSON has no such numbers), a NUL as
    NUL_SHOWN_AS (jsonb cannot hold it)."""
    if isinstance(v, date | datetime | Decimal):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v) if isinstance(v, JsonNumber) else {"nan": "NaN", "inf": "Infinity"}.get(
            str(v), "-Infinity")
    if isinstance(v, str):
        return v.replace("\x00", NUL_SHOWN_AS) if "\x00" in v else v
    if isinstance(v, dict):
        return {_jsonable(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def _raw_json(record: dict) -> str:
    if "__malformed__" in record:
        return json.dumps({"fields": [_jsonable(v) for v in record["__fields__"]]}, ensure_ascii=False)
    return json.dumps({_jsonable(k): _jsonable(v) for k, v in record.items()}, ensure_ascii=False)


def run_ingest(
    url: str, landing: Path, as_of: date, cfg: TierflowConfig, *, run_id: str | None = None
) -> IngestReport:
    """Load every not-yet-loaded file in date folders <= ``as_of``.

    A file is identified by its path and checksum: loaded once; re-delivered with new
    content, loaded again. Stops at the first file that cannot be read (IngestError). Paths
    under the landing root that are not loaded are reported (``tierflow_meta.ignored_paths``,
    the report's ``ignored_paths``) and, if they may hold data, fail the night after the
    other files are loaded unless ``ingest.on_unknown_path`` is ``warn``. Whatever happens,
    the run's summary in ``tierflow_meta.runs`` gets this report (extra columns and ignored
    paths included) before the ingest returns or fails.
    """
    report = IngestReport(as_of)
    if cfg.ingest.missing_required_entity == "wait":
        report.warnings.extend(wait_for_expected(landing, as_of, cfg))
    try:
        files, report.ignored = discover(landing, as_of)
    except LandingError as exc:
        raise IngestError(str(exc)) from None
    fail_unknown = cfg.ingest.on_unknown_path == "fail"
    if not fail_unknown:  # files in a date folder that no reader takes are skipped, and said so
        report.ignored.extend(p for p in map(unsupported, files) if p is not None)
        files = [lf for lf in files if unsupported(lf) is None]
    with psycopg.connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        try:
            _sweep_orphans(conn, run_id)
            _record_ignored(conn, run_id, as_of, report.ignored)
            _load_all(conn, files, cfg, report, run_id)
            _analyze_grown_tables(conn, files, report)
            _check_ignored(report.ignored, fail_unknown)
            _check_required_entities(conn, files, as_of, cfg, report)
        except BaseException as exc:
            report.error = str(exc) or type(exc).__name__
            raise
        finally:
            _save_to_run_summary(conn, run_id, report)
    return report


def _load_all(
    conn: psycopg.Connection, files: list[LandingFile], cfg: TierflowConfig, report: IngestReport,
    run_id: str | None,
) -> None:
    done = {
        (p, c)
        for p, c in conn.execute(
            sql.SQL("select file_path, checksum from {}.load_audit where status = 'loaded'").format(
                sql.Identifier(META_SCHEMA)
            )
        )
    }
    lookups = _Lookups(conn, cfg.base_currency)
    for lf in files:
        try:
            checksum, size = _checksum(lf.path)
        except OSError as exc:  # vanished or unreadable since it was found
            checksum, size = "", 0
            problem: BaseException | None = IngestError(f"{lf.relpath}: cannot read: {exc.strerror or exc}")
        else:
            problem = None
            if (lf.relpath, checksum) in done:
                report.skipped_already_loaded += 1
                continue
        started = time.monotonic()
        load_id = _start_audit(conn, lf, checksum, size, run_id)
        try:
            if problem is not None:
                raise problem
            try:
                with conn.transaction():
                    res = _load_file(conn, lf, load_id, cfg, lookups)
                    _finish_audit(conn, load_id, res)
            except psycopg.Error as exc:
                raise IngestError(f"{lf.relpath}: the warehouse refused the rows: {exc}") from None
            except (IngestError, KeyboardInterrupt, SystemExit):
                raise
            except EncodeError as exc:
                raise IngestError(f"{lf.relpath}: {exc}") from exc
            except Exception as exc:  # a bug: still a failed file, named, with its audit row
                raise IngestError(f"{lf.relpath}: unexpected {type(exc).__name__}: {exc}") from exc
        except BaseException as exc:
            error = str(exc) if isinstance(exc, IngestError) else (
                f"{lf.relpath}: interrupted ({type(exc).__name__}) while loading")
            failed = FileResult(lf.relpath, lf.entity.path, lf.business_date, status="failed", error=error)
            _record_failed(conn, load_id, failed)
            report.files.append(failed)
            raise
        finally:
            _release(conn, load_id)
        report.files.append(res)
        log.info(
            "loaded %s: %d rows in, %d loaded, %d rejected (%.2fs)",
            lf.relpath, res.rows_in, res.rows_loaded, res.rows_rejected, time.monotonic() - started,
        )


def _analyze_grown_tables(conn: psycopg.Connection, files: list[LandingFile], report: IngestReport) -> None:
    """ANALYZE each raw table this ingest grew by 10% or more (autovacuum's own default), and
    the load audit with it, before the raw gate and dbt read them.

    A first night loads years of files in one go: without fresh statistics the planner takes
    the new tables for near-empty and picks nested loops over millions of rows (the raw gate's
    load reconciliation took 257 s instead of 0.3 s on the 3,000-customer demo), and autovacuum
    may not get there before the next task. A night of one day's files leaves the tables to
    autovacuum, so this costs what the night's growth costs.
    """
    grown: dict[str, int] = {}
    by_path = {lf.relpath: lf for lf in files}
    for res in report.files:
        lf = by_path.get(res.path)
        if res.status == "loaded" and lf is not None:
            grown[lf.entity.raw_table] = grown.get(lf.entity.raw_table, 0) + res.rows_loaded
    stale = []
    for table, rows in sorted(grown.items()):
        (known,) = conn.execute(
            "select greatest(reltuples, 0) from pg_class where oid = to_regclass(%s)",
            (sql.Identifier(RAW_SCHEMA, table).as_string(conn),),
        ).fetchone() or (None,)
        if rows and (not known or rows >= 0.1 * known):
            stale.append(sql.Identifier(RAW_SCHEMA, table))
    if stale:
        stale += [sql.Identifier(META_SCHEMA, "load_audit"), sql.Identifier(META_SCHEMA, "rejects")]
        started = time.monotonic()
        conn.execute(sql.SQL("analyze {}").format(sql.SQL(", ").join(stale)))
        log.info("analyzed %d grown tables in %.1fs", len(stale), time.monotonic() - started)


# -- load_audit bookkeeping ------------------------------------------------------------------
# While a file loads, its loader holds a session advisory lock on the file's load_id; the lock
# goes with the session when the process dies, however it dies. An audit row still 'running'
# whose lock anyone can take belongs to no live loader: the start-up sweep marks it failed.
_LOCK_SPACE = "select hashtext('tierflow.load_audit')"


def _lock_key(load_id: int) -> int:
    return load_id % 2_147_483_647


def _start_audit(
    conn: psycopg.Connection, lf: LandingFile, checksum: str, size: int, run_id: str | None
) -> int:
    """The file's audit row, 'running', visible to others only once its lock is held."""
    with conn.transaction():
        (load_id,) = conn.execute(
            sql.SQL(
                "insert into {}.load_audit (file_path, system, entity, business_date, checksum,"
                " size_bytes, file_format, run_id, status) values (%s,%s,%s,%s,%s,%s,%s,%s,'running')"
                " returning load_id"
            ).format(sql.Identifier(META_SCHEMA)),
            (lf.relpath, lf.entity.system, lf.entity.name, lf.business_date, checksum, size,
             file_format(lf.path), run_id),
        ).fetchone()
        conn.execute(f"select pg_advisory_lock(({_LOCK_SPACE}), %s)", (_lock_key(load_id),))
    return load_id


def _release(conn: psycopg.Connection, load_id: int) -> None:
    try:
        conn.execute(f"select pg_advisory_unlock(({_LOCK_SPACE}), %s)", (_lock_key(load_id),))
    except psycopg.Error:  # the session is gone, and its lock with it
        log.warning("could not release the load lock of load %s", load_id)


def _record_failed(conn: psycopg.Connection, load_id: int, failed: FileResult) -> None:
    """Best effort: when the warehouse itself is what failed, the next run's sweep does it."""
    try:
        _finish_audit(conn, load_id, failed)
    except psycopg.Error:
        log.exception("could not record the failure of %s in load_audit", failed.path)


def _sweep_orphans(conn: psycopg.Connection, run_id: str | None) -> list[str]:
    """Mark failed the audit rows left 'running' by loads whose process ended without saying
    how (killed, lost its connection); returns their paths."""
    meta = sql.Identifier(META_SCHEMA)
    swept: list[str] = []
    for load_id, path in conn.execute(
        sql.SQL("select load_id, file_path from {}.load_audit where status = 'running' order by load_id"
                ).format(meta)
    ).fetchall():
        (free,) = conn.execute(f"select pg_try_advisory_lock(({_LOCK_SPACE}), %s)",
                               (_lock_key(load_id),)).fetchone()
        if not free:
            continue  # a live loader holds it
        try:
            cur = conn.execute(
                sql.SQL(
                    "update {}.load_audit set status = 'failed', finished_at = clock_timestamp(),"
                    " error = %s where load_id = %s and status = 'running'"
                ).format(meta),
                (f"{path}: orphaned: the load ended without recording an outcome (its process was killed"
                 f" or lost its connection); marked failed by the start-up sweep of run {run_id or '-'}",
                 load_id),
            )
            if cur.rowcount:
                swept.append(path)
        finally:
            conn.execute(f"select pg_advisory_unlock(({_LOCK_SPACE}), %s)", (_lock_key(load_id),))
    if swept:
        log.warning("marked %d orphaned load(s) failed: %s", len(swept), ", ".join(swept))
    return swept


def _record_ignored(
    conn: psycopg.Connection, run_id: str | None, as_of: date, ignored: list[IgnoredPath]
) -> None:
    """This run's ignored paths in tierflow_meta.ignored_paths (a rerun replaces its rows)."""
    meta = sql.Identifier(META_SCHEMA)
    with conn.transaction():
        if run_id is not None:
            conn.execute(sql.SQL("delete from {}.ignored_paths where run_id = %s").format(meta), (run_id,))
        with conn.cursor() as cur:
            cur.executemany(
                sql.SQL(
                    "insert into {}.ignored_paths (run_id, as_of_date, path, kind, reason, may_hold_data)"
                    " values (%s, %s, %s, %s, %s, %s)"
                ).format(meta),
                [(run_id, as_of, p.path, p.kind, p.reason, p.may_hold_data) for p in ignored],
            )
    for p in ignored:
        log.warning("ignored %s: %s", p.path, p.reason)


def _check_ignored(ignored: list[IgnoredPath], fail: bool) -> None:
    blocking = [p for p in ignored if p.may_hold_data]
    if fail and blocking:
        listed = "; ".join(f"{p.path}: {p.reason}" for p in blocking)
        raise IngestError(
            f"{len(blocking)} path(s) under the landing root may hold data and were not loaded: {listed}"
            " (ingest.on_unknown_path: fail; fix the layout, or set it to warn to load without them)"
        )


def _save_to_run_summary(conn: psycopg.Connection, run_id: str | None, report: IngestReport) -> None:
    """The run's summary gets the ingest part now, so a night that fails later (or here) still
    says which extra columns and ignored paths it saw; the full summary keeps it."""
    if run_id is None:
        return
    try:
        conn.execute(
            sql.SQL(
                "update {}.runs set summary = coalesce(summary, '{{}}'::jsonb)"
                " || jsonb_build_object('ingest', %s::jsonb) where run_id = %s"
            ).format(sql.Identifier(META_SCHEMA)),
            (json.dumps(report.as_dict(), ensure_ascii=False), run_id),
        )
    except psycopg.Error:
        log.exception("could not save the ingest summary of run %s", run_id)


def _delivered(landing: Path, entity_path: str, day: date) -> bool:
    """The entity's date folder exists and holds at least one file (hidden ones do not count:
    a writer may still be filling ``.orders.csv.tmp``)."""
    entity = BY_PATH[entity_path]
    folder = landing / entity.system / entity.name / day.isoformat()
    try:
        return any(not f.name.startswith(".") and f.is_file() for f in folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return False


def wait_for_expected(landing: Path, as_of: date, cfg: TierflowConfig) -> list[str]:
    """``missing_required_entity: wait``: poll until every expected entity's ``as_of`` date
    folder holds a file, or fail after ``wait_timeout_minutes`` naming what is still missing.

    Returns notes for the run summary (which entities were waited for, and how long).
    """
    if not landing.is_dir():
        raise IngestError(f"landing folder {landing} does not exist (set TIERFLOW_LANDING)")
    timeout = cfg.ingest.wait_timeout_minutes * 60
    poll = cfg.ingest.wait_poll_seconds
    started = time.monotonic()
    missing = [e for e in cfg.ingest.expected_daily if not _delivered(landing, e, as_of)]
    waited_for = list(missing)
    while missing:
        waited = time.monotonic() - started
        if waited >= timeout:
            raise IngestError(
                f"no {', '.join(missing)} file in the {as_of} date folder after waiting "
                f"{_duration(waited)} (ingest.missing_required_entity: wait, "
                f"wait_timeout_minutes: {cfg.ingest.wait_timeout_minutes:g})"
            )
        log.info("waiting for %s in the %s date folder (%s so far)", ", ".join(missing), as_of,
                 _duration(waited))
        time.sleep(min(poll, max(timeout - waited, 0.0)))
        missing = [e for e in missing if not _delivered(landing, e, as_of)]
    if not waited_for:
        return []
    waited = _duration(time.monotonic() - started)
    return [f"waited {waited} for {', '.join(waited_for)} in the {as_of} date folder"]


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _finish_audit(conn: psycopg.Connection, load_id: int, res: FileResult) -> None:
    conn.execute(
        sql.SQL(
            "update {}.load_audit set rows_in = %s, rows_loaded = %s, rows_rejected = %s,"
            " extra_columns = %s, status = %s, error = %s, finished_at = clock_timestamp()"
            " where load_id = %s"
        ).format(sql.Identifier(META_SCHEMA)),
        (res.rows_in, res.rows_loaded, res.rows_rejected, res.extra_columns, res.status, res.error, load_id),
    )


def _check_required_entities(
    conn: psycopg.Connection, files: list[LandingFile], as_of: date, cfg: TierflowConfig, report: IngestReport
) -> None:
    present_today = {lf.entity.path for lf in files if lf.business_date == as_of}
    ever = {
        f"{s}/{e}"
        for s, e in conn.execute(
            sql.SQL("select distinct system, entity from {}.load_audit where status = 'loaded'").format(
                sql.Identifier(META_SCHEMA)
            )
        )
    }
    never = [e for e in REQUIRED_ENTITIES if e not in ever]
    if never:
        raise IngestError(
            f"required extract(s) never delivered: {', '.join(never)} (the minimum input is "
            f"{', '.join(REQUIRED_ENTITIES)})"
        )
    missing_today = [e for e in cfg.ingest.expected_daily if e not in present_today]
    if missing_today:
        msg = f"no {', '.join(missing_today)} file in the {as_of} date folder"
        if cfg.ingest.missing_required_entity == "fail":
            raise IngestError(msg + " (ingest.missing_required_entity: fail)")
        report.warnings.append(msg + "; using earlier extracts")
