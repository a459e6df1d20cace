"""Load landing files into ``raw``, one transaction per file: the orchestrator of the ingest.

Every row of every file ends up either in its raw table or in ``tierflow_meta.rejects``
(file, line, the record as received, the reason), and ``loaded + rejected = rows in`` is
recorded per file in ``tierflow_meta.load_audit``. A file that cannot be read at all fails
with an error naming the file and the problem; it leaves no partial rows, its audit row
says why, and the ingest stops there so the run does not publish.

Three load paths, one row contract (``row_contract.py``), chosen here per file:
CSV and csv.gz files of at least ``ingest.bulk_min_bytes`` go to the binary path
(``binary_path.py``: pyarrow, vectorised checks, binary COPY); the files it hands back go to
the SQL path (``sql_path.py``: the bytes stream into COPY, the checks run in SQL); Parquet,
JSON lines, small CSV files and the CSV files the SQL path hands back take the row path
(``row_path.py``: each record checked in Python). All apply the same rules with the same
reasons; see docs/ingest.md. This module also keeps the load audit (a lock per running load,
a sweep of orphaned ones), records ignored landing paths, and waits for expected extracts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from tierflow.config import TierflowConfig
from tierflow.extracts import BY_PATH, REQUIRED_ENTITIES
from tierflow.ingest.binary_path import EncodeError, load_csv_binary
from tierflow.ingest.file_load import FileLoad, IngestError, PathResult, UseRowPath, UseSqlPath
from tierflow.ingest.landing import IgnoredPath, LandingError, LandingFile, discover, unsupported
from tierflow.ingest.readers import file_format
from tierflow.ingest.row_path import RunLookups, load_rows
from tierflow.ingest.schema import ensure_raw_indexes, ensure_schema
from tierflow.ingest.sql_path import load_csv_in_sql
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

log = logging.getLogger(__name__)


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


def _checksum(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# -- the loader ------------------------------------------------------------------------------
def _load_file(
    conn: psycopg.Connection,
    lf: LandingFile,
    load_id: int,
    cfg: TierflowConfig,
    lookups: RunLookups,
) -> FileResult:
    """Load one file by the first path that takes it: binary, then SQL, then row by row."""
    entity = lf.entity
    load = FileLoad(lf.path, lf.relpath, entity, lf.business_date, load_id,
                    cfg.ingest.encodings.get(entity.system, "utf-8"), cfg.base_currency,
                    cfg.ingest.max_future_days)
    if file_format(lf.path) in ("csv", "csv.gz") and lf.path.stat().st_size >= cfg.ingest.bulk_min_bytes:
        try:
            try:
                done = load_csv_binary(conn, load, lookups.key_set)
            except UseSqlPath as why:
                log.info("%s: loading set-based in SQL: %s", lf.relpath, why)
                done = load_csv_in_sql(conn, load)
        except UseRowPath as why:
            log.info("%s: loading row by row: %s", lf.relpath, why)
        else:
            if done.loaded_keys is None:  # the cached keys / rates no longer cover this entity
                lookups.forget(entity)
            else:
                lookups.add_loaded_keys(entity, done.loaded_keys)
                if entity.path == "erp/fx_rates":
                    lookups.forget_rates()
            return _file_result(lf, done)
    return _file_result(lf, load_rows(conn, load, lookups))


def _file_result(lf: LandingFile, done: PathResult) -> FileResult:
    return FileResult(lf.relpath, lf.entity.path, lf.business_date, done.rows_in, done.rows_loaded,
                      done.rows_rejected, done.extra_columns)


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
            _index_raw_tables(conn)
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
    lookups = RunLookups(conn, cfg.base_currency)
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


def _index_raw_tables(conn: psycopg.Connection) -> None:
    started = time.monotonic()
    created = ensure_raw_indexes(conn)
    if created:
        log.info("indexed the raw tables (%d indexes) in %.1fs", len(created), time.monotonic() - started)


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
