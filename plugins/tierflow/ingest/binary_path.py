"""The binary path, for UTF-8 CSV files: parse with pyarrow, check vectorised, COPY binary.

The fastest of the three load paths (``loader`` tries it first for every CSV file of at least
``ingest.bulk_min_bytes``). Why: the SQL path (``sql_path.py``) reads every value twice
(COPY into a text staging table, then a cast in SQL) and writes the raw table with ``insert ...
select``; measured, it reached 0.22 x psql's plain ``\\copy``. Here the file is read once, in
blocks of ~2 MB cut at newlines, parsed by pyarrow's CSV parser on the Python side; the rows
that are plainly good are checked with vectorised kernels and encoded straight into
PostgreSQL's binary COPY format (``binary_encoding.py``), which the server stores with less
work than it spends parsing CSV text. Two blocks are parsed and checked at once in threads
(the kernels release the GIL), committed in file order, and a third thread sends the COPY
data while the server (one core) stores it.

Exactly the row path's rules, by construction: the vectorised checks only *accept* values
in narrow, unambiguous shapes (``123.45``, ``2026-03-01T08:00:00``, an id found in the set
of loaded keys, ...) whose parsed value is certain. Every row with any other value (a
space at an edge, ``1e3``, ``2.0`` in an int column, a bad date, an unknown key, a future
date, a missing value, ...) goes through ``row_contract.validate_row`` itself, the row path's
own code, which gives the reject reason or the parsed row. So reasons and counts are the
row path's; only speed differs. Rare rows cost a Python call each; a file with very many
(``SLOW_ROWS_LIMIT``, or as many rows sharing a key hash) goes to the SQL path, which is
faster for such files and bounds the memory they would take here.

Duplicate keys within a file, in bounded memory (``key_hashing.KeyRuns``): each loaded row's
64-bit key hash and record number (12 bytes) go to one of up to 256 temp files chosen by the
hash's top bits, and rows are loaded at once. At the end each file is read back alone and
sorted; the rows of a repeated hash are read again from the file and compared exactly (parsed
key tuples, like the row path) in file order: a true repeat becomes a reject naming the first
line and its row is deleted again (same transaction), so a hash collision can never reject a
good row. Foreign keys: the loaded keys are fetched once per file (one ``string_agg``, as
bytes) and looked up through sorted hashes (``key_hashing.KeySet``), bucketed by their top
bits, each hit confirmed by comparing the strings.

Line numbers: record n is line n + 1. Each block's newlines are counted; if they do not
match its records (quoted newlines, blank lines), everything done is rolled back to the
savepoint and the file goes to the row path, which reports each record's first line.
Anything pyarrow refuses (wrong field count, invalid UTF-8, ...) goes to the SQL path,
which gives the exact reject or error the row path always gave.

Timestamps without an offset are read in the session's time zone; binary COPY carries UTC
instants, so this path runs only when the session's TimeZone is UTC (elsewhere: the SQL path).
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import logging
import queue
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Container
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql

from tierflow.extracts import BY_PATH, FIELD_LIMIT, Column, Entity, referenced_columns
from tierflow.ingest.arrow_views import byte_lengths, fixed_width
from tierflow.ingest.binary_encoding import (
    NULL,
    SIGNATURE,
    TRAILER,
    binary_array,
    dump_value,
    encode_bools,
    encode_dates,
    encode_ints,
    encode_numerics,
    encode_text,
    jsonb_field,
    parse_iso_dates,
    parse_utc_offsets,
)
from tierflow.ingest.file_load import FileLoad, PathResult, UseRowPath, UseSqlPath
from tierflow.ingest.key_hashing import (
    GrowingKeySet,
    KeyRuns,
    KeySet,
    canonical_text,
    fetch_keys,
    hash_strings,
    key_hash,
)
from tierflow.ingest.readers import open_bytes, read_csv_header
from tierflow.ingest.rejects import copy_rejects
from tierflow.ingest.row_contract import (
    FALSE_WORDS,
    TRUE_WORDS,
    WHITESPACE,
    RowProblem,
    duplicate_key_message,
    raw_json,
    validate_row,
)
from tierflow.settings import RAW_SCHEMA

log = logging.getLogger(__name__)

BLOCK = 2 << 20  # bytes of CSV per parsed block (~40,000 order lines)
SLOW_ROWS_LIMIT = 100_000  # rows needing Python per file before the SQL path is cheaper
UTC_NAMES = {"utc", "etc/utc", "gmt", "etc/gmt", "universal", "etc/universal", "zulu", "etc/zulu",
             "uct", "etc/uct", "greenwich", "etc/greenwich", "gmt0", "etc/gmt0", "gmt+0", "gmt-0",
             "etc/gmt+0", "etc/gmt-0"}
_WS_CLASS = "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE)
EDGE_SPACE = f"^[{_WS_CLASS}]|[{_WS_CLASS}]$"
NUMERIC = r"^[0-9]{1,9}(?:\.[0-9]{1,6})?$"  # <= 15 digits: exact in a float64
INT = r"^(?:0|[1-9][0-9]{0,8})$"
CURRENCY = r"^[A-Z]{3}$"
ZERO = r"^0+(?:\.0+)?$"  # zero, in the shapes NUMERIC accepts


class EncodeError(RuntimeError):
    """A checked value could not be encoded; the message names the line and the column."""


@dataclass
class _Block:
    """One parsed block between its (parallel) check and its (in order) commit."""

    rb: pa.RecordBatch
    recs: np.ndarray  # record number of each row (header = record 0)
    ok: np.ndarray  # certainly good as they are
    slow_rows: list[tuple[int, dict, dict]] = field(default_factory=list)  # (position, record, row)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)
    positions: np.ndarray | None = None  # rows that passed, in file order
    hashes: np.ndarray | None = None  # their key hashes
    encoded: pa.Array | None = None  # the ok rows as binary COPY rows


# -- a block's rows from its columns' encoded fields -----------------------------------------------
def _join_pieces(pieces: list[np.ndarray | pa.Array], n: int) -> pa.Array:
    """The rows of a block from its pieces: runs of fixed-width pieces (numpy arrays of n
    items) are laid side by side by numpy, and the rest joined per row by one Arrow kernel.
    A block whose fields are all of fixed width (no NULL, ids of one length) needs no join."""
    fields: list[pa.Array] = []
    run: list[np.ndarray] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            fields.append(binary_array(run[0], n))
        else:
            row = np.empty(n, dtype=[(f"f{i}", f"V{p.dtype.itemsize}") for i, p in enumerate(run)])
            for i, p in enumerate(run):
                row[f"f{i}"] = np.ascontiguousarray(p).view(f"V{p.dtype.itemsize}")
            fields.append(binary_array(row, n))
        run.clear()

    for piece in pieces:
        if isinstance(piece, np.ndarray):
            run.append(piece)
        else:
            flush()
            fields.append(piece)
    flush()
    if len(fields) == 1:
        return fields[0]
    return pc.binary_join_element_wise(*fields, pa.scalar(b"", pa.binary()))


# -- the per-file loader -------------------------------------------------------------------------
class _Recorder:
    """Stands in for a key set: notes every value asked about and says it is there."""

    def __init__(self) -> None:
        self.asked: set[object] = set()

    def __contains__(self, value: object) -> bool:
        self.asked.add(value)
        return True


class _ValidateLookups:
    """The row contract's ``Lookups``, answered from this file's key sets and first fx rates."""

    def __init__(self, base: str, keysets: dict[str, Container[object]], first_rate: dict[str, date]) -> None:
        self.base = base
        self._keysets = keysets
        self._first_rate = first_rate

    def keys(self, entity: Entity, column: str) -> Container[object]:
        return self._keysets[f"{entity.path}.{column}"]

    def has_rate(self, currency: str, on: date) -> bool:
        first = self._first_rate.get(currency)
        return first is not None and first <= on


class _File:
    """One file on the binary path: the key sets and first fx rates its rows are checked
    against, the key-hash spill, its rejects and counts. Blocks are checked and encoded by
    ``check`` (in threads), committed in file order by ``commit``; ``remove_repeats`` finds
    the repeated keys at the end."""

    def __init__(self, conn: psycopg.Connection, entity: Entity, columns: list[str], base: str,
                 business_date: date, max_future_days: int, load_id: int, expected_rows: int,
                 key_sets: Callable[[Entity, str], GrowingKeySet]) -> None:
        self.entity = entity
        self.columns = columns
        self.names = [f"c{i}" for i in range(len(columns))]
        self.pos = {c: i for i, c in enumerate(columns)}
        known = set(entity.column_names)
        self.present = [c for c in entity.columns if c.name in self.pos]
        self.extras = [c for c in columns if c not in known]
        self.base = base
        self.business_date = business_date
        self.max_future_days = max_future_days
        self.load_id = load_id
        self.limit_days = business_date.toordinal() - date(1970, 1, 1).toordinal() + max_future_days
        self.keysets: dict[str, GrowingKeySet] = {}
        for fk in entity.foreign_keys:
            if fk.column in self.pos:
                self.keysets[f"{fk.entity}.{fk.ref_column}"] = key_sets(BY_PATH[fk.entity], fk.ref_column)
        # the values of this file's columns other files' foreign keys point at, as loaded
        self.loaded_keys: dict[str, list[pa.Array]] = {c: [] for c in referenced_columns(entity)}
        self.first_rate: dict[str, date] = {}
        if entity.currency_column:
            self.first_rate = dict(conn.execute(sql.SQL(
                "select currency, min(rate_date) from {}.erp__fx_rates group by currency"
            ).format(sql.Identifier(RAW_SCHEMA))).fetchall())
        self.lookups = _ValidateLookups(base, self.keysets, self.first_rate)
        self.keys = KeyRuns(expected_rows)
        self.rejects: list[tuple[int, str, str]] = []
        self.slow_rows = 0
        self.loaded = 0
        # the bytes every row starts with: its field count, _load_id and _business_date
        self.nfields = 4 + len(self.present)
        self.prefix = (struct.pack(">h", self.nfields) + struct.pack(">iq", 8, load_id)
                       + struct.pack(">ii", 4, business_date.toordinal() - date(2000, 1, 1).toordinal()))
        self.copy_columns = ["_load_id", "_business_date", "_line_number", "_extra",
                             *(c.name for c in self.present)]

    # -- checks ----------------------------------------------------------------------------
    def _fast(self, col: Column, a: pa.Array, n: int, hashes: dict[str, np.ndarray] | None = None,
              local_days: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, object]:
        """(which values are certainly good as they are, what their encoding needs); ``hashes``
        receives the ``hash_strings`` of a foreign-key column of a large key set (the key hash
        reuses it), ``local_days`` the dates as written of a timestamp column's values (the
        row path's ``value.date()``, which is not the UTC date when the value has an offset)."""
        empty = byte_lengths(a) == 0
        ok = empty & (not col.required)
        e = self.entity
        fk = next((f for f in e.foreign_keys if f.column == col.name), None)
        if fk is not None:
            keyset = self.keysets[f"{fk.entity}.{fk.ref_column}"]
            h = None
            if hashes is not None and keyset.size and n:
                h = hashes[col.name] = hash_strings(a)[0]
            return ok | keyset.contains(a, h), empty
        if col.type in ("date", "timestamp"):
            good, value, local = self._fast_date(a, n, ok, col.type == "timestamp")
            if local_days is not None:
                local_days[col.name] = local
            return good, value
        if col.type == "text":
            upper = col.name == e.currency_column or (e.path == "erp/fx_rates" and col.name == "currency")
            if upper:
                good = pc.match_substring_regex(a, CURRENCY)
            elif col.allowed is not None:
                good = pc.is_in(a, value_set=pa.array(list(col.allowed), pa.string()))
            else:
                good = pc.invert(pc.match_substring_regex(a, EDGE_SPACE)).to_numpy(zero_copy_only=False)
                return ok | (good & ~empty), empty
        elif col.type == "bool":
            good = pc.is_in(a, value_set=pa.array(list(TRUE_WORDS + FALSE_WORDS), pa.string()))
        elif col.type == "int":
            good = pc.match_substring_regex(a, INT)
        elif col.type == "numeric":
            good = pc.match_substring_regex(a, NUMERIC)
            if col.positive:  # zero is refused: the row path says so
                good = pc.and_(good, pc.invert(pc.match_substring_regex(a, ZERO)))
        else:
            raise AssertionError(col.type)
        return ok | good.to_numpy(zero_copy_only=False), empty

    @staticmethod
    def _fast_date(a: pa.Array, n: int, ok: np.ndarray, with_time: bool
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ISO dates / timestamps of the plain shapes, checked and parsed on their bytes:
        (certainly good, days since 1970 / seconds since 1970 UTC, days since 1970 of the date
        as written). A timestamp may end in ``Z`` or an offset ``+08:00``: the instant is the
        one ``datetime.fromisoformat`` gives (naive ones are UTC: the session is)."""
        m, lens = fixed_width(a, 25 if with_time else 10)
        head = m[:, :19 if with_time else 10]  # the date and time; the offset is parsed apart
        digit = (head >= 48) & (head <= 57)
        good = digit[:, [0, 1, 2, 3, 5, 6, 8, 9]].all(axis=1)
        good &= (m[:, 4] == 45) & (m[:, 7] == 45)  # 2026-03-01
        east = 0
        if with_time:  # T08:00:00 or " 08:00:00", then nothing, Z or +08:00
            good &= digit[:, [11, 12, 14, 15, 17, 18]].all(axis=1) & (m[:, 13] == 58) & (m[:, 16] == 58)
            good &= (m[:, 10] == 84) | (m[:, 10] == 32)
            ending, east = parse_utc_offsets(m, lens)
            good &= ending
        else:
            good &= lens == 10
        valid, value = parse_iso_dates(m, with_time)
        good &= valid
        as_written = np.where(good, value, 0)
        if not with_time:
            return ok | good, as_written, as_written
        return ok | good, np.where(good, value - east, 0), as_written // 86400

    def check_chunk(self, chunk: bytes, lines: int, first_rec: int) -> _Block:
        # a NUL byte anywhere (memchr: ~0.1 ms a block) sends the rows holding one to the row path
        return self.check(_parse(chunk, lines, self.names), first_rec, nul=b"\x00" in chunk)

    def check(self, rb: pa.RecordBatch, first_rec: int, nul: bool = True) -> _Block:
        """Check and encode one block. Touches no state shared between blocks, so two blocks
        can be checked at once (the Arrow and numpy kernels release the GIL). ``nul``: the
        block may hold a NUL byte."""
        n = rb.num_rows
        e = self.entity
        ok = np.ones(n, dtype=bool)
        good: dict[str, np.ndarray] = {}
        info: dict[str, object] = {}
        hashes: dict[str, np.ndarray] = {}
        local_days: dict[str, np.ndarray] = {}  # of dates and timestamps, as written
        for col in self.present:
            good[col.name], info[col.name] = self._fast(col, rb.column(self.pos[col.name]), n, hashes,
                                                        local_days)
            ok &= good[col.name]
        # values no path loads (too long, a NUL byte), in any column, the unknown ones too
        for i in range(rb.num_columns):
            a = rb.column(i)
            if n and int(byte_lengths(a).max()) > FIELD_LIMIT:
                ok &= byte_lengths(a) <= FIELD_LIMIT
            if nul:
                ok &= ~pc.match_substring(a, "\x00").to_numpy(zero_copy_only=False)
        for earlier, later in e.ordered_dates:
            if earlier in self.pos and later in self.pos:
                both = ((byte_lengths(rb.column(self.pos[earlier])) > 0)
                        & (byte_lengths(rb.column(self.pos[later])) > 0))
                # days or UTC seconds, compared as the row path compares the parsed values
                # (a pair is of one type: dates, or timestamps as instants)
                ok &= ~(both & (info[later] < info[earlier]))
        # rows dated too far after the extract date (the date as written, as the row path's
        # value.date()), or in a currency with no rate yet
        ev = e.event_date_column
        if ev in self.pos:
            ok &= ~(local_days[ev] > self.limit_days)
        if e.currency_column:
            ok &= self._currency_ok(rb, info)
        block = _Block(rb, first_rec + np.arange(n, dtype=np.int64), ok)
        # rows not certainly good: the row path's own checks, one by one
        slow = np.flatnonzero(~ok)
        if slow.size > SLOW_ROWS_LIMIT:
            raise UseSqlPath(f"more than {SLOW_ROWS_LIMIT:,} rows need checking one by one")
        if slow.size:
            records = [{c: values[name] for c, name in zip(self.columns, self.names, strict=True)}
                       for values in rb.take(pa.array(slow)).to_pylist()]
            lookups = self._answered_lookups(records)
            for i, record in zip(slow, records, strict=True):
                row, reject = self._validate(int(block.recs[i]), record, lookups)
                if row is None:
                    block.rejects.append(reject)
                else:
                    block.slow_rows.append((int(i), record, row))
        block.positions, block.hashes = self._key_hashes(rb, ok, block.slow_rows, hashes)
        if ok.any():  # every row; commit sends the runs of plainly good ones
            block.encoded = self._encode(rb, good, info, block.recs)
        return block

    def _answered_lookups(self, records: list[dict]) -> _ValidateLookups:
        """Lookups for ``validate_row`` on these records whose key-set answers were fetched
        in one vectorised call per set: the row path's checks run twice, once to learn which
        keys they ask about (answering "found" to get past every key check), once for real."""
        large = {name: ks for name, ks in self.keysets.items() if ks.size > KeySet.SMALL}
        if not large or len(records) < 4:
            return self.lookups
        asked = {name: _Recorder() for name in large}
        probe = _ValidateLookups(self.base, {**self.keysets, **asked}, self.first_rate)
        for record in records:
            try:
                validate_row(self.entity, record, probe, self.business_date, self.max_future_days)
            except RowProblem:
                pass
        answered: dict[str, Container[object]] = dict(self.keysets)
        for name, recorder in asked.items():
            values = list(recorder.asked)
            hits = large[name].contains(pa.array([str(v) for v in values], pa.string())) if values else []
            answered[name] = {v for v, hit in zip(values, hits, strict=True) if hit}
        return _ValidateLookups(self.base, answered, self.first_rate)

    def commit(self, block: _Block) -> list[memoryview | bytes]:
        """In file order: spill the key hashes (duplicates are found at the end of the file),
        count, and return the block's COPY rows (views on Arrow's buffers: no copy)."""
        self.slow_rows += int((~block.ok).sum())
        if self.slow_rows > SLOW_ROWS_LIMIT:
            raise UseSqlPath(f"more than {SLOW_ROWS_LIMIT:,} rows need checking one by one")
        self.rejects.extend(block.rejects)
        self.keys.add(block.hashes, block.recs[block.positions])
        out: list[memoryview | bytes] = []
        if block.encoded is not None:
            # the runs of plainly good rows, as views on the encoded block (no copy)
            joined = block.encoded
            bufs = joined.buffers()
            offs = np.frombuffer(bufs[1], dtype=np.int32, count=len(joined) + 1, offset=joined.offset * 4)
            data = memoryview(bufs[2])
            edge = np.flatnonzero(np.diff(np.concatenate(([False], block.ok, [False])).astype(np.int8)))
            for lo, hi in edge.reshape(-1, 2).tolist():
                out.append(data[offs[lo]:offs[hi]])
        rows = [self._encode_row(int(block.recs[i]), record, row) for i, record, row in block.slow_rows]
        if rows:
            out.append(b"".join(rows))
        for name, pieces in self.loaded_keys.items():  # the plain rows' text is stored as it is
            pieces.append(block.rb.column(self.pos[name]).filter(pa.array(block.ok)))
            if block.slow_rows:
                pieces.append(pa.array([row[name] for _, _, row in block.slow_rows], pa.string()))
        self.loaded += len(block.positions)
        return out

    def _currency_ok(self, rb: pa.RecordBatch, info: dict[str, object]) -> np.ndarray:
        e = self.entity
        cur = rb.column(self.pos[e.currency_column])
        base = pc.equal(cur, self.base).to_numpy(zero_copy_only=False)
        ok = base.copy()
        if self.first_rate and e.currency_date_column in self.pos:
            names = sorted(self.first_rate)
            first = np.array([self.first_rate[c].toordinal() - 719163 for c in names], dtype=np.int64)
            idx = pc.index_in(cur, value_set=pa.array(names, pa.string())).to_numpy(zero_copy_only=False)
            has = ~np.isnan(idx.astype(float))
            on = info[e.currency_date_column]
            on_days = on if e.column(e.currency_date_column).type == "date" else on // 86400
            pos = np.where(has, np.nan_to_num(idx.astype(float)), 0).astype(np.int64)
            ok |= has & (first[pos] <= on_days)
        return ok

    def _validate(self, rec: int, record: dict, lookups: _ValidateLookups | None = None
                  ) -> tuple[dict | None, tuple[int, str, str] | None]:
        """The row path's checks: (parsed row, None) or (None, the reject)."""
        try:
            return validate_row(self.entity, record, lookups or self.lookups, self.business_date,
                                 self.max_future_days), None
        except RowProblem as exc:
            return None, (rec + 1, raw_json(record), str(exc))

    def _key_hashes(self, rb: pa.RecordBatch, ok: np.ndarray, slow_rows: list,
                    hashes: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the block of the rows that passed, their key hashes), in the order of
        the parts ``KeyRuns`` spills them to (the hash's top bits). Done here, in the checking
        threads, to spare the ordered commit."""
        e = self.entity
        fast_idx = np.flatnonzero(ok)
        idx = np.concatenate([fast_idx, np.array([i for i, _, _ in slow_rows], dtype=np.int64)])
        if idx.size == 0:
            return idx, np.zeros(0, dtype=np.uint64)
        known = [(hashes or {}).get(k) for k in e.key]
        h = key_hash([rb.column(self.pos[k]) for k in e.key], known)[fast_idx]
        if slow_rows:
            slow = [pa.array([canonical_text(row[k]) for _, _, row in slow_rows], pa.string()) for k in e.key]
            h = np.concatenate([h, key_hash(slow)])
        if self.keys.bits:  # a radix sort of small integers
            order = np.argsort((h >> np.uint64(64 - self.keys.bits)).astype(np.uint16), kind="stable")
            idx, h = idx[order], h[order]
        return idx, h

    def _encode(self, rb: pa.RecordBatch, good: dict[str, np.ndarray], info: dict, recs: np.ndarray
                ) -> pa.Array:
        """Every row of the block as a binary COPY row (bad values replaced by harmless ones:
        those rows are dropped in ``commit``)."""
        n = rb.num_rows
        # each row starts with the same bytes (field count, _load_id, _business_date), then
        # _line_number and _extra (NULL when the file has no unknown columns): one fixed-width
        # field for all of them unless _extra varies
        head = [("pre", "u1", (len(self.prefix),)), ("len", ">i4"), ("line", ">i4")]
        if not self.extras:
            head.append(("extra", ">i4"))
        out = np.empty(n, dtype=head)
        out["pre"] = np.frombuffer(self.prefix, dtype=np.uint8)
        out["len"], out["line"] = 4, recs + 1
        if not self.extras:
            out["extra"] = -1
        pieces: list[np.ndarray | pa.Array] = [out]
        if self.extras:
            rows = rb.select([self.pos[c] for c in self.extras]).to_pylist()
            pieces.append(pa.array([jsonb_field(dict(zip(self.extras, r.values(), strict=True)))
                                    for r in rows], pa.binary()))
        for col in self.present:
            a = rb.column(self.pos[col.name])
            pieces.extend(self._encode_column(col, a, good[col.name], info[col.name], n))
        return _join_pieces(pieces, n)

    def _encode_column(self, col: Column, a: pa.Array, good: np.ndarray, info: object, n: int
                       ) -> list[np.ndarray | pa.Array]:
        """The column's encoded fields as pieces for ``_join_pieces``: a numpy array of n
        fixed-width fields, or a binary array (a NULL somewhere, text of varying length).
        ``info``: what ``_fast`` found (days / seconds of dates, else which values are empty)."""
        if col.type in ("date", "timestamp"):
            return [encode_dates(info, byte_lengths(a) == 0, with_time=col.type == "timestamp")]
        empty = info
        if col.type == "text":
            return encode_text(a, empty)
        # a value the checks refused is replaced by one that encodes: its row is not kept
        valid = good & ~empty
        plain = a if valid.all() else pc.if_else(pa.array(valid), a, "0")
        if col.type == "bool":
            return [encode_bools(plain, empty)]
        if col.type == "int":
            return [encode_ints(plain, empty)]
        if col.type == "numeric":
            return [encode_numerics(plain, empty)]
        raise AssertionError(col.type)

    def _encode_row(self, rec: int, record: dict, row: dict) -> bytes:
        extra = (jsonb_field({c: record[c] for c in self.extras}) if self.extras else NULL)
        fields = []
        for c in self.present:
            try:
                fields.append(dump_value(c, row[c.name]))
            except (struct.error, ValueError, OverflowError, TypeError) as exc:
                # the row path's checks let through a value the binary format cannot carry:
                # a bug, but the error says where (the loader adds the file)
                raise EncodeError(
                    f"line {rec + 1}, column {c.name}: {row[c.name]!r} cannot be sent as {c.type}: {exc}"
                ) from None
        return self.prefix + struct.pack(">ii", 4, rec + 1) + extra + b"".join(fields)

    # -- duplicate keys ----------------------------------------------------------------------
    def remove_repeats(self, conn: psycopg.Connection, path: Path, header_len: int) -> None:
        """Rows whose key hash was seen more than once: compare them exactly (the row path's
        parsed key tuples) in file order; a true repeat becomes a reject naming the first line
        and its row, loaded already, is deleted again (same transaction). A hash collision
        keeps its row."""
        candidates: list[int] = []
        try:
            for recs in self.keys.repeats():
                candidates.extend(recs.tolist())
                if len(candidates) > SLOW_ROWS_LIMIT:
                    raise UseSqlPath(f"more than {SLOW_ROWS_LIMIT:,} rows need checking one by one")
        finally:
            self.keys.close()
        if not candidates:
            return
        e = self.entity
        candidates.sort()
        seen: dict[tuple, int] = {}
        repeats: list[int] = []
        rec = 0
        for chunk, lines in _chunks(path, header_len):
            rb = _parse(chunk, lines, self.names)
            lo = bisect.bisect_left(candidates, rec + 1)
            hi = bisect.bisect_right(candidates, rec + rb.num_rows)
            for r in candidates[lo:hi]:
                values = rb.slice(r - rec - 1, 1).to_pylist()[0]
                record = {c: values[name] for c, name in zip(self.columns, self.names, strict=True)}
                try:
                    row = validate_row(e, record, self.lookups, self.business_date, self.max_future_days)
                except RowProblem:  # cannot happen: it was loaded
                    continue
                key = tuple(row[k] for k in e.key)
                if key not in seen:
                    seen[key] = r + 1
                    continue
                repeats.append(r + 1)
                self.rejects.append((r + 1, raw_json(record), duplicate_key_message(e, key, seen[key])))
            rec += rb.num_rows
            if hi == len(candidates):
                break
        if repeats:
            table = sql.SQL("{}.{}").format(sql.Identifier(RAW_SCHEMA), sql.Identifier(e.raw_table))
            cur = conn.execute(sql.SQL("delete from {} where _load_id = %s and _line_number = any(%s)"
                                       ).format(table), (self.load_id, repeats))
            if cur.rowcount != len(repeats):
                raise AssertionError(f"deleted {cur.rowcount} repeated rows, expected {len(repeats)}")
            self.loaded -= len(repeats)




class _Sender:
    """Sends COPY data from a thread, so that Python checks the next block while the server
    stores this one. At most ``depth`` blocks wait: memory stays flat when the server is
    the slower side."""

    def __init__(self, copy: psycopg.Copy, depth: int = 3) -> None:
        self.copy = copy
        self.queue: queue.Queue[memoryview | bytes | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="tierflow-copy", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (data := self.queue.get()) is not None:
                self.copy.write(data)
        except BaseException as exc:  # handed to the main thread by send() / close()
            self.error = exc
            while self.queue.get() is not None:
                pass

    def send(self, data: memoryview | bytes) -> None:
        if self.error is not None:
            raise self.error
        if data:
            self.queue.put(data)

    def send_all(self, parts: list[memoryview | bytes]) -> None:
        for part in parts:
            self.send(part)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _chunks(path: Path, header_len: int):
    """The file after its header in blocks of about BLOCK bytes that end at a newline, each
    with the number of lines it holds. Reading here rather than in pyarrow's streaming
    reader keeps exactly one block per stage in memory (that reader reads far ahead)."""
    with open_bytes(path) as fh:
        fh.read(header_len)
        rest = b""
        while True:
            data = fh.read(BLOCK)
            if not data:
                break
            data = rest + data if rest else data
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                if len(data) > 32 * BLOCK:
                    raise UseRowPath("no newline in a long stretch of the file")
                rest = data
                continue
            rest = data[cut:]
            yield data[:cut], data.count(b"\n", 0, cut)
        if rest:
            yield rest, rest.count(b"\n") + 1


def _parse(chunk: bytes, lines: int, names: list[str]) -> pa.RecordBatch:
    """One block as a record batch of strings; a block whose records are not its lines (a
    quoted newline, a blank line) goes to the row path, which numbers such records."""
    table = pcsv.read_csv(
        pa.py_buffer(chunk),
        read_options=pcsv.ReadOptions(column_names=names, block_size=len(chunk) + 1, use_threads=False),
        parse_options=pcsv.ParseOptions(newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in names}, strings_can_be_null=False,
            quoted_strings_can_be_null=False),
    )
    if table.num_rows != lines:
        raise UseRowPath(f"{lines} lines hold {table.num_rows} records (quoted newlines or blank lines)")
    return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pydict(
        {c: pa.array([], pa.string()) for c in names})


def _stream(f: _File, copy: psycopg.Copy, chunks) -> int:
    """COPY the good rows of every block: two blocks are parsed and checked at once (in
    threads), they are committed in file order, and a thread sends while the next ones
    are checked. Returns the number of records."""
    rows_in = 0
    sender = _Sender(copy)
    try:
        sender.send(SIGNATURE)
        with ThreadPoolExecutor(2, thread_name_prefix="tierflow-check") as pool:
            pending: deque[Future[_Block]] = deque()
            for chunk, lines in chunks:
                pending.append(pool.submit(f.check_chunk, chunk, lines, rows_in + 1))
                rows_in += lines
                if len(pending) >= 2:
                    sender.send_all(f.commit(pending.popleft().result()))
            while pending:
                sender.send_all(f.commit(pending.popleft().result()))
        sender.send(TRAILER)
    finally:
        sender.close()
    return rows_in


def load_csv_binary(conn: psycopg.Connection, load: FileLoad,
                    key_sets: Callable[[Entity, str], GrowingKeySet] | None = None) -> PathResult:
    """Load one UTF-8 CSV / csv.gz file; raise UseSqlPath when another path must do it.

    Runs inside the caller's transaction (the file's), in a savepoint: a hand-back leaves
    nothing behind. ``key_sets``: the loaded keys of a referenced column (the run's, kept up to
    date by the caller with the result's ``loaded_keys``); by default fetched for this file.
    """
    if key_sets is None:
        def key_sets(entity: Entity, column: str) -> GrowingKeySet:
            return GrowingKeySet(fetch_keys(conn, entity, column))
    path, entity = load.path, load.entity
    if codecs.lookup(load.encoding).name != "utf-8":
        raise UseSqlPath(f"encoding {load.encoding}: pyarrow reads UTF-8")
    if conn.execute("show server_encoding").fetchone()[0] != "UTF8":
        raise UseSqlPath("the binary path needs a UTF8 database")
    if conn.execute("show timezone").fetchone()[0].lower() not in UTC_NAMES:
        raise UseSqlPath("the binary path needs a UTC session (naive timestamps)")
    header = read_csv_header(path, load.encoding)
    if header is None:
        raise UseSqlPath("header needs another path")
    columns, header_bytes = header
    if any(c not in columns for c in entity.required_columns):
        raise UseSqlPath("required column missing")
    started = time.perf_counter()
    f: _File | None = None
    rows_in = 0
    try:
        with conn.transaction():
            # rows to expect, for sizing: ~20 bytes a row at least, a csv.gz ~5 times smaller
            size = path.stat().st_size * (5 if path.name.lower().endswith(".gz") else 1)
            f = _File(conn, entity, columns, load.base_currency, load.business_date, load.max_future_days,
                      load.load_id, size // 20, key_sets)
            table = sql.SQL("copy {}.{} ({}) from stdin (format binary)").format(
                sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
                sql.SQL(", ").join(map(sql.Identifier, f.copy_columns)))
            chunks = _chunks(path, len(header_bytes))
            head = list(itertools.islice(chunks, 2))
            with conn.cursor() as cur, cur.copy(table) as copy:
                if len(head) < 2:  # one block: threads would cost more than they save
                    copy.write(SIGNATURE)
                    for chunk, lines in head:
                        for part in f.commit(f.check_chunk(chunk, lines, 1)):
                            copy.write(part)
                        rows_in = lines
                    copy.write(TRAILER)
                else:
                    rows_in = _stream(f, copy, itertools.chain(head, chunks))
            f.remove_repeats(conn, path, len(header_bytes))
            if f.rejects:
                copy_rejects(conn, load, sorted(f.rejects))
    except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError, OSError, EOFError) as exc:
        raise UseSqlPath(f"pyarrow could not read it: {str(exc).splitlines()[0]}") from None
    finally:
        if f is not None:  # a hand-back in mid-file: the key-hash temp files go at once
            f.keys.close()
    log.debug("%s: %d rows in %.2fs (%d checked one by one)", load.relpath, rows_in,
              time.perf_counter() - started, f.slow_rows)
    loaded_keys = {name: pa.chunked_array(pieces, pa.string()).combine_chunks()
                   for name, pieces in f.loaded_keys.items()}
    return PathResult(rows_in, f.loaded, len(f.rejects), f.extras, loaded_keys)
