"""The fastest path for UTF-8 CSV files: parse with pyarrow, check vectorised, COPY binary.

Why: the set-based path (``bulk.py``) reads every value twice (COPY into a text staging
table, then a cast in SQL) and writes the raw table with ``insert ... select``; measured, it
reached 0.22 x psql's plain ``\\copy``. Here the file is read once, in blocks of ~2 MB cut at
newlines, parsed by pyarrow's CSV parser on the Python side; the rows that are plainly good
are checked with vectorised kernels and encoded straight into PostgreSQL's binary COPY
format, which the server stores with less work than it spends parsing CSV text. Two blocks
are parsed and checked at once in threads (the kernels release the GIL), committed in file
order, and a third thread sends the COPY data while the server (one core) stores it.

Exactly the row path's rules, by construction: the vectorised checks only *accept* values
in narrow, unambiguous shapes (``123.45``, ``2026-03-01T08:00:00``, an id found in the set
of loaded keys, ...) whose parsed value is certain. Every row with any other value (a
space at an edge, ``1e3``, ``2.0`` in an int column, a bad date, an unknown key, a future
date, a missing value, ...) goes through ``loader._validate_row`` itself, the row path's
own code, which gives the reject reason or the parsed row. So reasons and counts are the
row path's; only speed differs. Rare rows cost a Python call each; a file with very many
(``SLOW_ROWS_LIMIT``, or as many rows sharing a key hash) goes back to the set-based path,
which is faster for such files and bounds the memory they would take here.

Duplicate keys within a file, in bounded memory: each loaded row's 64-bit key hash and record
number (12 bytes) go to one of up to 256 temp files chosen by the hash's top bits, and rows
are loaded at once. At the end each file is read back alone and sorted; the rows of a
repeated hash are read again from the file and compared exactly (parsed key tuples, like the
row path) in file order: a true repeat becomes a reject naming the first line and its row is
deleted again (same transaction), so a hash collision can never reject a good row. Foreign
keys: the loaded keys are fetched once per file (one ``string_agg``, as bytes) and looked up
through sorted hashes, bucketed by their top bits, each hit confirmed by comparing the
strings.

Line numbers: record n is line n + 1. Each block's newlines are counted; if they do not
match its records (quoted newlines, blank lines), everything done is rolled back to the
savepoint and the file goes to the row path, which reports each record's first line.
Anything pyarrow refuses (wrong field count, invalid UTF-8, ...) goes to the set-based path,
which gives the exact reject or error the row path always gave.

Timestamps without an offset are read in the session's time zone; binary COPY carries UTC
instants, so this path runs only when the session's TimeZone is UTC (elsewhere: bulk.py).
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import json
import logging
import queue
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.types.datetime import DateBinaryDumper, DatetimeBinaryDumper, DatetimeNoTzBinaryDumper
from psycopg.types.numeric import DecimalBinaryDumper

from tierflow.extracts import BY_PATH, FIELD_LIMIT, Column, Entity
from tierflow.ingest.bulk import FALSE, TRUE, WHITESPACE, BulkResult, UseRowPath, _open, read_header
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

log = logging.getLogger(__name__)

BLOCK = 2 << 20  # bytes of CSV per parsed block (~40,000 order lines)
SLOW_ROWS_LIMIT = 100_000  # rows needing Python per file before the set-based path is cheaper
UTC_NAMES = {"utc", "etc/utc", "gmt", "etc/gmt", "universal", "etc/universal", "zulu", "etc/zulu",
             "uct", "etc/uct", "greenwich", "etc/greenwich", "gmt0", "etc/gmt0", "gmt+0", "gmt-0",
             "etc/gmt+0", "etc/gmt-0"}
SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"  # a field of length -1
PG_EPOCH_DAYS = 10957  # 2000-01-01 in days since 1970-01-01
_WS_CLASS = "".join(f"\\x{{{ord(c):x}}}" for c in WHITESPACE)
EDGE_SPACE = f"^[{_WS_CLASS}]|[{_WS_CLASS}]$"
NUMERIC = r"^[0-9]{1,9}(?:\.[0-9]{1,6})?$"  # <= 15 digits: exact in a float64
INT = r"^(?:0|[1-9][0-9]{0,8})$"
CURRENCY = r"^[A-Z]{3}$"
ZERO = r"^0+(?:\.0+)?$"  # zero, in the shapes NUMERIC accepts


class UseSqlPath(Exception):
    """This path cannot load the file exactly; the set-based path (or the row path) will."""


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


# -- fixed-width views and hashes of string arrays ------------------------------------------------
def _fixed(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(n x width uint8 matrix of the values' bytes, zero-padded; their byte lengths)."""
    n = len(arr)
    bufs = arr.buffers()
    offs = np.frombuffer(bufs[1], dtype=np.int32, count=n + 1, offset=arr.offset * 4)
    lens = np.diff(offs).astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None and bufs[2].size else None
    if data is None or n == 0:
        return np.zeros((n, width), dtype=np.uint8), lens
    if lens.min() == lens.max():  # ids, dates, timestamps: often all of one length
        size = int(lens[0])
        m = data[offs[0]:offs[0] + n * size].reshape(n, size)
        if size >= width:
            return m[:, :width], lens
        out = np.zeros((n, width), dtype=np.uint8)
        out[:, :size] = m
        return out, lens
    cols = np.arange(width)
    idx = offs[:-1, None].astype(np.int64) + cols[None, :]
    np.minimum(idx, data.size - 1, out=idx)
    out = data[idx]
    out[cols[None, :] >= lens[:, None]] = 0
    return out, lens


def _lengths(arr: pa.Array) -> np.ndarray:
    """Byte length of each value of a string array, from its offsets (no kernel call)."""
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    return np.diff(offs)


def _hash(arr: pa.Array, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(64-bit hash per value, its words (n x w uint64), byte lengths). Values longer than
    ``width`` hash their first ``width`` bytes (callers treat them as not found)."""
    if width is None:
        longest = int(pc.max(pc.binary_length(arr)).as_py() or 0) if len(arr) else 0
        width = max(8, -(-longest // 8) * 8)
    m, lens = _fixed(arr, width)
    words = np.ascontiguousarray(m).view("<u8")
    with np.errstate(over="ignore"):
        h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for j in range(words.shape[1]):
            h ^= words[:, j]
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
            h *= np.uint64(0x94D049BB133111EB)
            h ^= h >> np.uint64(29)
    return h, words, lens


def _key_hash(columns: list[pa.Array], hashes: list[np.ndarray | None] | None = None) -> np.ndarray:
    """One 64-bit hash per row of the values of the key columns (as text); ``hashes``: the
    ``_hash`` of a column when the caller has it already (else None)."""
    known = hashes or [None] * len(columns)
    h = known[0] if known[0] is not None else _hash(columns[0])[0]
    with np.errstate(over="ignore"):
        for col, hc in zip(columns[1:], known[1:], strict=True):
            h = h * np.uint64(0x9E3779B97F4A7C15) ^ (hc if hc is not None else _hash(col)[0])
            h ^= h >> np.uint64(29)
    return h


class KeySet:
    """The loaded values of one referenced column, for exact vectorised membership tests:
    sorted 64-bit hashes of the keys; a hash hit is confirmed by comparing the strings."""

    SMALL = 50_000  # up to this many keys, Arrow's is_in (it hashes the set on every call)

    def __init__(self, keys: pa.Array) -> None:
        self.array = keys
        self._small: set[str] | None = None
        self.size = len(keys)
        if self.size <= self.SMALL:
            return
        # hashed a slice at a time (the hash's work arrays are ~40 bytes a key), then the
        # keys themselves sorted by hash: ~25 bytes a key stay (the strings, hash, bucket start)
        h = np.empty(self.size, dtype=np.uint64)
        step = 1 << 16
        for lo in range(0, self.size, step):
            h[lo:lo + step] = _hash(keys.slice(lo, step))[0]
        order = np.argsort(h)
        self.h = h[order]
        del h
        self.array = keys.take(pa.array(order))
        del order, keys
        # where each run of keys with the same top hash bits starts: one or two keys per run,
        # so a lookup is one or two probes instead of a binary search over all keys
        bits = max(1, int(np.log2(self.size)))
        self.shift = np.uint64(64 - bits)
        bounds = np.arange(1 << bits, dtype=np.uint64) << self.shift
        self.start = np.append(np.searchsorted(self.h, bounds), self.size).astype(np.int32)

    def contains(self, values: pa.Array, h: np.ndarray | None = None) -> np.ndarray:
        """Which values are keys of the set; ``h``: their ``_hash`` when the caller has it."""
        n = len(values)
        if n == 0 or self.size == 0:
            return np.zeros(n, dtype=bool)
        if self.size <= self.SMALL:
            return pc.is_in(values, value_set=self.array).to_numpy(zero_copy_only=False)
        if h is None:
            h = _hash(values)[0]
        bucket = (h >> self.shift).astype(np.int64)
        pos, end = self.start[bucket], self.start[bucket + 1]
        found = np.zeros(n, dtype=bool)
        active = np.flatnonzero(pos < end)
        while active.size:  # the first key with the same hash in the run, if any
            match = self.h[pos[active]] == h[active]
            found[active[match]] = True
            active = active[~match]
            pos[active] += 1
            active = active[pos[active] < end[active]]
        pos_c = pos
        hit = np.flatnonzero(found)
        if hit.size == n:
            same = pc.equal(values, self.array.take(pa.array(pos)))
        else:
            same = pc.equal(values.take(pa.array(hit)), self.array.take(pa.array(pos[hit])))
        found[hit] = same.to_numpy(zero_copy_only=False)
        # another key with the same hash may follow (a collision): compare those one by one
        for i in hit[~found[hit]]:
            p = pos_c[i] + 1
            while p < self.h.size and self.h[p] == h[i]:
                if self.array[int(p)].as_py() == values[int(i)].as_py():
                    found[i] = True
                    break
                p += 1
        return found

    def __contains__(self, value: object) -> bool:
        if self.size <= self.SMALL:
            if self._small is None:
                self._small = set(self.array.to_pylist())
            return value in self._small
        return bool(self.contains(pa.array([str(value)], pa.string()))[0])


class _KeyRuns:
    """The key hashes of the rows loaded so far with their record numbers, spilled to temp
    files: memory does not grow with the file.

    Each block's (hash, record) pairs go, 12 bytes each, to one of ``parts`` temp files by
    the hash's top bits (sized so a part holds about ``PART_ROWS`` pairs). At the end of the
    file each part is read back alone and sorted: equal hashes in it are the only possible
    duplicate keys. The page cache, not the loader, holds the files."""

    PART_ROWS = 1 << 17
    DTYPE = np.dtype([("h", "<u8"), ("rec", "<i4")])

    def __init__(self, expected_rows: int) -> None:
        parts = 1
        while parts < 256 and parts * self.PART_ROWS < expected_rows:
            parts *= 2
        self.bits = parts.bit_length() - 1
        self.files: list[tempfile._TemporaryFileWrapper | None] = [None] * parts
        self.count = 0

    def add(self, h: np.ndarray, recs: np.ndarray) -> None:
        """Hashes, ordered by their top ``bits`` bits (their part), with their record numbers."""
        if h.size == 0:
            return
        pairs = np.empty(h.size, dtype=self.DTYPE)
        pairs["h"], pairs["rec"] = h, recs
        self.count += h.size
        if self.bits == 0:
            bounds = [0, h.size]
        else:
            parts = (h >> np.uint64(64 - self.bits)).astype(np.uint16)
            bounds = np.searchsorted(parts, np.arange(len(self.files) + 1)).tolist()
        for part, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            if hi > lo:
                fh = self.files[part]
                if fh is None:
                    fh = self.files[part] = tempfile.TemporaryFile(prefix="tierflow-keys-")
                fh.write(pairs[lo:hi].tobytes())

    def repeats(self) -> Iterator[np.ndarray]:
        """Per part, the records (in file order) of every hash seen more than once."""
        for part, fh in enumerate(self.files):
            if fh is None:
                continue
            fh.seek(0)
            pairs = np.frombuffer(fh.read(), dtype=self.DTYPE)
            fh.close()
            self.files[part] = None
            h = pairs["h"]
            hs = np.sort(h)  # the usual answer, "no repeats", with the cheapest sort
            if not (hs[1:] == hs[:-1]).any():
                continue
            order = np.argsort(h)
            hs = h[order]
            same = hs[1:] == hs[:-1]
            dup = np.zeros(hs.size, dtype=bool)
            dup[1:] |= same
            dup[:-1] |= same
            yield np.sort(pairs["rec"][order[dup]])

    def close(self) -> None:
        for fh in self.files:
            if fh is not None:
                fh.close()


# -- binary COPY encodings --------------------------------------------------------------------
def _binary(chunks: np.ndarray, n: int) -> pa.Array:
    """A numpy structured array of n fixed-width encoded fields, as an Arrow binary array."""
    width = chunks.dtype.itemsize
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                        pa.py_buffer(np.ascontiguousarray(chunks))])


def _nullable(is_null: np.ndarray, encoded: pa.Array) -> pa.Array:
    """Encoded fields, with the NULL field where the value was empty."""
    if not is_null.any():
        return encoded
    return pc.if_else(pa.array(is_null), pa.scalar(NULL, pa.binary()), encoded)


def _fixed_or_nullable(is_null: np.ndarray, out: np.ndarray) -> np.ndarray | pa.Array:
    """Fixed-width encoded fields as they are (joined with their neighbours by numpy), or,
    when some value is empty, as binary fields with the NULL field there."""
    if not is_null.any():
        return out
    return _nullable(is_null, _binary(out, out.size))


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
            fields.append(_binary(run[0], n))
        else:
            row = np.empty(n, dtype=[(f"f{i}", f"V{p.dtype.itemsize}") for i, p in enumerate(run)])
            for i, p in enumerate(run):
                row[f"f{i}"] = np.ascontiguousarray(p).view(f"V{p.dtype.itemsize}")
            fields.append(_binary(row, n))
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


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    mp = (m + 9) % 12
    doy = (153 * mp + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(m: np.ndarray, start: int, count: int) -> np.ndarray:
    out = np.zeros(m.shape[0], dtype=np.int64)
    for j in range(start, start + count):
        out = out * 10 + (m[:, j].astype(np.int64) - 48)
    return out


def _parse_dates(m: np.ndarray, with_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, days / seconds since 1970) of the bytes of ISO values (rows of ``m``):
    checks the month, the day of the month, hour, minute and second ranges."""
    y, mo, d = _digits(m, 0, 4), _digits(m, 5, 2), _digits(m, 8, 2)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mo, 0, 12)]
    dim = dim + ((mo == 2) & leap)
    ok = (y >= 1) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim)
    days = _days_from_civil(y, mo, d)
    if not with_time:
        return ok, days
    hh, mi, ss = _digits(m, 11, 2), _digits(m, 14, 2), _digits(m, 17, 2)
    ok &= (hh < 24) & (mi < 60) & (ss < 60)
    return ok, ((days * 24 + hh) * 60 + mi) * 60 + ss


def _dump_value(col: Column, value: object) -> bytes:
    """One parsed value (from the row path's parser) as a binary COPY field."""
    if value is None:
        return NULL
    if col.type == "text":
        data = str(value).encode("utf-8")
    elif col.type == "int":
        data = struct.pack(">i", value)
    elif col.type == "numeric":
        data = bytes(DecimalBinaryDumper(Decimal).dump(value))
    elif col.type == "date":
        data = bytes(DateBinaryDumper(date).dump(value))
    elif col.type == "timestamp":
        # the session is UTC (checked), so a naive value is a UTC instant, as the row path's
        # text COPY would read it
        dumper = DatetimeNoTzBinaryDumper if value.tzinfo is None else DatetimeBinaryDumper
        data = bytes(dumper(datetime).dump(value))
    elif col.type == "bool":
        data = b"\x01" if value else b"\x00"
    else:
        raise AssertionError(col.type)
    return struct.pack(">i", len(data)) + data


def _jsonb_field(obj: dict) -> bytes:
    data = b"\x01" + json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return struct.pack(">i", len(data)) + data


# -- the per-file loader -------------------------------------------------------------------------
class _Recorder:
    """Stands in for a key set: notes every value asked about and says it is there."""

    def __init__(self) -> None:
        self.asked: set[object] = set()

    def __contains__(self, value: object) -> bool:
        self.asked.add(value)
        return True


class _ValidateLookups:
    """What ``loader._validate_row`` asks of its lookups, answered from this file's key sets."""

    def __init__(self, base: str, keysets: dict[str, object], first_rate: dict[str, date]) -> None:
        self.base = base
        self._keysets = keysets
        self._first_rate = first_rate

    def keys(self, entity: Entity, column: str) -> object:
        return self._keysets[f"{entity.path}.{column}"]

    def has_rate(self, currency: str, on: date) -> bool:
        first = self._first_rate.get(currency)
        return first is not None and first <= on


class _File:
    def __init__(self, conn: psycopg.Connection, entity: Entity, columns: list[str], base: str,
                 business_date: date, max_future_days: int, load_id: int, expected_rows: int) -> None:
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
        self.keysets: dict[str, KeySet] = {}
        for fk in entity.foreign_keys:
            if fk.column in self.pos:
                self.keysets[f"{fk.entity}.{fk.ref_column}"] = _fetch_keys(conn, BY_PATH[fk.entity],
                                                                           fk.ref_column)
        self.first_rate: dict[str, date] = {}
        if entity.currency_column:
            self.first_rate = dict(conn.execute(sql.SQL(
                "select currency, min(rate_date) from {}.erp__fx_rates group by currency"
            ).format(sql.Identifier(RAW_SCHEMA))).fetchall())
        self.lookups = _ValidateLookups(base, self.keysets, self.first_rate)
        self.keys = _KeyRuns(expected_rows)
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
    def _fast(self, col: Column, a: pa.Array, n: int, hashes: dict[str, np.ndarray] | None = None
              ) -> tuple[np.ndarray, object]:
        """(which values are certainly good as they are, what their encoding needs); ``hashes``
        receives the ``_hash`` of a foreign-key column of a large key set (the key hash reuses it)."""
        empty = _lengths(a) == 0
        ok = empty & (not col.required)
        e = self.entity
        fk = next((f for f in e.foreign_keys if f.column == col.name), None)
        if fk is not None:
            keyset = self.keysets[f"{fk.entity}.{fk.ref_column}"]
            h = None
            if hashes is not None and keyset.size > KeySet.SMALL and n:
                h = hashes[col.name] = _hash(a)[0]
            return ok | keyset.contains(a, h), empty
        if col.type in ("date", "timestamp"):
            return self._fast_date(a, n, ok, col.type == "timestamp")
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
            good = pc.is_in(a, value_set=pa.array(list(TRUE + FALSE), pa.string()))
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
    def _fast_date(a: pa.Array, n: int, ok: np.ndarray, with_time: bool) -> tuple[np.ndarray, object]:
        """ISO dates / timestamps of the one plain shape, checked and parsed on their bytes."""
        size = 19 if with_time else 10
        m, lens = _fixed(a, size)
        digit = (m >= 48) & (m <= 57)
        good = (lens == size) & digit[:, [0, 1, 2, 3, 5, 6, 8, 9]].all(axis=1)
        good &= (m[:, 4] == 45) & (m[:, 7] == 45)  # 2026-03-01
        if with_time:  # T08:00:00 or " 08:00:00"
            good &= digit[:, [11, 12, 14, 15, 17, 18]].all(axis=1) & (m[:, 13] == 58) & (m[:, 16] == 58)
            good &= (m[:, 10] == 84) | (m[:, 10] == 32)
        valid, value = _parse_dates(m, with_time)
        return ok | (good & valid), np.where(good & valid, value, 0)

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
        for col in self.present:
            good[col.name], info[col.name] = self._fast(col, rb.column(self.pos[col.name]), n, hashes)
            ok &= good[col.name]
        # values no path loads (too long, a NUL byte), in any column, the unknown ones too
        for i in range(rb.num_columns):
            a = rb.column(i)
            if n and int(_lengths(a).max()) > FIELD_LIMIT:
                ok &= _lengths(a) <= FIELD_LIMIT
            if nul:
                ok &= ~pc.match_substring(a, "\x00").to_numpy(zero_copy_only=False)
        for earlier, later in e.ordered_dates:
            if earlier in self.pos and later in self.pos:
                both = ((_lengths(rb.column(self.pos[earlier])) > 0)
                        & (_lengths(rb.column(self.pos[later])) > 0))
                ok &= ~(both & (self._days(later, info) < self._days(earlier, info)))
        # rows dated too far after the extract date, or in a currency with no rate yet
        ev = e.event_date_column
        if ev in self.pos:
            days = info[ev] if e.column(ev).type == "date" else info[ev] // 86400
            ok &= ~(days > self.limit_days)
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

    def _days(self, name: str, info: dict[str, object]) -> np.ndarray:
        """Days since 1970 of a date or timestamp column's plainly good values (0 elsewhere)."""
        return info[name] if self.entity.column(name).type == "date" else info[name] // 86400

    def _answered_lookups(self, records: list[dict]) -> _ValidateLookups:
        """Lookups for ``_validate_row`` on these records whose key-set answers were fetched
        in one vectorised call per set: the row path's checks run twice, once to learn which
        keys they ask about (answering "found" to get past every key check), once for real."""
        from tierflow.ingest.loader import RowProblem, _validate_row

        large = {name: ks for name, ks in self.keysets.items() if ks.size > KeySet.SMALL}
        if not large or len(records) < 4:
            return self.lookups
        asked = {name: _Recorder() for name in large}
        probe = _ValidateLookups(self.base, {**self.keysets, **asked}, self.first_rate)
        for record in records:
            try:
                _validate_row(self.entity, record, probe, self.business_date, self.max_future_days)
            except RowProblem:
                pass
        answered: dict[str, object] = dict(self.keysets)
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
        from tierflow.ingest.loader import RowProblem, _raw_json, _validate_row  # loader imports us

        try:
            return _validate_row(self.entity, record, lookups or self.lookups, self.business_date,
                                 self.max_future_days), None
        except RowProblem as exc:
            return None, (rec + 1, _raw_json(record), str(exc))

    def _key_hashes(self, rb: pa.RecordBatch, ok: np.ndarray, slow_rows: list,
                    hashes: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(positions in the block of the rows that passed, their key hashes), in the order of
        the parts ``_KeyRuns`` spills them to (the hash's top bits). Done here, in the checking
        threads, to spare the ordered commit."""
        e = self.entity
        fast_idx = np.flatnonzero(ok)
        idx = np.concatenate([fast_idx, np.array([i for i, _, _ in slow_rows], dtype=np.int64)])
        if idx.size == 0:
            return idx, np.zeros(0, dtype=np.uint64)
        known = [(hashes or {}).get(k) for k in e.key]
        h = _key_hash([rb.column(self.pos[k]) for k in e.key], known)[fast_idx]
        if slow_rows:
            slow = [pa.array([_canonical(row[k]) for _, _, row in slow_rows], pa.string()) for k in e.key]
            h = np.concatenate([h, _key_hash(slow)])
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
            pieces.append(pa.array([_jsonb_field(dict(zip(self.extras, r.values(), strict=True)))
                                    for r in rows], pa.binary()))
        for col in self.present:
            a = rb.column(self.pos[col.name])
            pieces.extend(self._encode_column(col, a, good[col.name], info[col.name], n))
        return _join_pieces(pieces, n)

    def _encode_column(self, col: Column, a: pa.Array, good: np.ndarray, info: object, n: int
                       ) -> list[np.ndarray | pa.Array]:
        """The column's encoded fields as pieces for ``_join_pieces``: a numpy array of n
        fixed-width fields, or a binary array (a NULL somewhere, text of varying length)."""
        empty = info if col.type not in ("date", "timestamp") else None
        if col.type in ("date", "timestamp"):
            is_null = _lengths(a) == 0
            if col.type == "date":
                out = np.empty(n, dtype=[("len", ">i4"), ("v", ">i4")])
                out["len"], out["v"] = 4, info - PG_EPOCH_DAYS
            else:
                out = np.empty(n, dtype=[("len", ">i4"), ("v", ">i8")])
                out["len"], out["v"] = 8, (info - PG_EPOCH_DAYS * 86400) * 1_000_000
            return [_fixed_or_nullable(is_null, out)]
        is_null = empty
        if col.type == "text":
            lens = _lengths(a).astype(">i4")
            if not is_null.any():
                width = int(lens[0]) if n else 0
                if n and width and (lens == width).all():  # ids of one length: fixed width
                    bufs = a.buffers()
                    start = int(np.frombuffer(bufs[1], dtype=np.int32, count=1, offset=a.offset * 4)[0])
                    data = np.frombuffer(bufs[2], dtype=np.uint8)[start:start + n * width]
                    return [lens, data.view(f"V{width}")]
                return [lens, a.cast(pa.binary())]
            encoded = pc.binary_join_element_wise(_binary(lens, n), a.cast(pa.binary()), b"")
            return [_nullable(is_null, encoded)]
        # a value the checks refused is replaced by one that encodes: its row is not kept
        valid = good & ~empty
        plain = a if valid.all() else pc.if_else(pa.array(valid), a, "0")
        if col.type == "bool":
            true = pc.is_in(plain, value_set=pa.array(list(TRUE), pa.string())).to_numpy(zero_copy_only=False)
            out = np.empty(n, dtype=[("len", ">i4"), ("v", "u1")])
            out["len"], out["v"] = 1, true
            return [_fixed_or_nullable(is_null, out)]
        if col.type == "int":
            out = np.empty(n, dtype=[("len", ">i4"), ("v", ">i4")])
            out["len"], out["v"] = 4, pc.cast(plain, pa.int32()).to_numpy(zero_copy_only=False)
            return [_fixed_or_nullable(is_null, out)]
        if col.type == "numeric":
            # at most 15 significant digits: the nearest float64 times 10^6, rounded, is the
            # exact value in millionths (the error stays below 0.25)
            floats = pc.cast(plain, pa.float64()).to_numpy(zero_copy_only=False)
            units = np.rint(floats * 1e6).astype(np.int64)
            ip, fp = units // 10**6, units % 10**6
            dot = pc.find_substring(plain, ".").to_numpy(zero_copy_only=False)
            # base-10000 digit groups of weights 2, 1, 0, -1, -2; the block sends only the
            # window of groups that some value needs (a smaller stream: 1..40 is one group,
            # 999.99 two); the server strips leading and trailing zero groups anyway. Values
            # that are not sent (refused or empty) are "0" here: they widen nothing.
            groups = (lambda: ip // 10**8, lambda: ip // 10**4 % 10**4, lambda: ip % 10**4,
                      lambda: fp // 100, lambda: fp % 100 * 100)
            top = int(ip.max()) if n else 0
            if top:
                first = 0 if top >= 10**8 else 1 if top >= 10**4 else 2
            else:
                first = 3 if n and int(fp.max()) >= 100 else 4
            if (fp % 100).any():
                last = 5
            elif fp.any():
                last = 4
            else:
                last = next((k + 1 for k in (2, 1, 0) if groups[k]().any()), first)
            last = max(last, first)
            out = np.empty(n, dtype=[("len", ">i4"), ("nd", ">i2"), ("w", ">i2"), ("sign", ">u2"),
                                     ("ds", ">i2"), ("g", ">i2", (last - first,))])
            out["len"], out["nd"], out["w"], out["sign"] = 8 + 2 * (last - first), last - first, 2 - first, 0
            out["ds"] = np.where(dot < 0, 0, _lengths(plain) - dot - 1)
            g = out["g"]
            for k in range(first, last):
                g[:, k - first] = groups[k]()
            return [_fixed_or_nullable(is_null, out)]
        raise AssertionError(col.type)

    def _encode_row(self, rec: int, record: dict, row: dict) -> bytes:
        extra = (_jsonb_field({c: record[c] for c in self.extras}) if self.extras else NULL)
        fields = []
        for c in self.present:
            try:
                fields.append(_dump_value(c, row[c.name]))
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
        from tierflow.ingest.loader import RowProblem, _validate_row

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
                    row = _validate_row(e, record, self.lookups, self.business_date, self.max_future_days)
                except RowProblem:  # cannot happen: it was loaded
                    continue
                key = tuple(row[k] for k in e.key)
                if key not in seen:
                    seen[key] = r + 1
                    continue
                repeats.append(r + 1)
                self.rejects.append((
                    r + 1, _raw_json_of(record),
                    f"duplicate key ({', '.join(e.key)}) = {key if len(key) > 1 else key[0]!r} "
                    f"also on line {seen[key]} of this file",
                ))
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


def _raw_json_of(record: dict) -> str:
    from tierflow.ingest.loader import _raw_json

    return _raw_json(record)


def _canonical(value: object) -> str:
    """A parsed key value as the fast path's text of it (ids as stripped, ints and dates as
    Python prints them); only used for hashing."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)


def _fetch_keys(conn: psycopg.Connection, entity: Entity, column: str) -> KeySet:
    """The loaded values of a referenced column (repeats are harmless), as one string: a
    million keys arrive in 0.15 s where a row per key takes seconds."""
    col = sql.Identifier(column)
    table = sql.SQL("{}.{}").format(sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table))
    # as bytes (a binary bytea result): no Python str of every key, no copy into Arrow
    with conn.cursor(binary=True) as cur:
        joined, clash = cur.execute(sql.SQL(
            "select convert_to(string_agg({c}, chr(31)), 'UTF8'),"
            " coalesce(bool_or(strpos({c}, chr(31)) > 0), false) from {t} where {c} is not null"
        ).format(c=col, t=table)).fetchone()
    if joined is None:
        return KeySet(pa.array([], pa.string()))
    if not clash:
        one = pa.BinaryArray.from_buffers(pa.binary(), 1, [
            None, pa.py_buffer(np.array([0, len(joined)], dtype=np.int32)), pa.py_buffer(joined)])
        keys = pc.split_pattern(one, b"\x1f").flatten().cast(pa.string())
        del one, joined
        return KeySet(keys)
    # a key holds the separator: the slower way, as an array
    (keys,) = conn.execute(sql.SQL("select array_agg({c}) from {t} where {c} is not null").format(
        c=col, t=table)).fetchone()
    return KeySet(pa.array(keys, pa.string()))


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
    with _open(path) as fh:
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


def load_csv_fast(
    conn: psycopg.Connection,
    path: Path,
    relpath: str,
    entity: Entity,
    business_date: date,
    load_id: int,
    encoding: str,
    base_currency: str,
    max_future_days: int,
) -> BulkResult:
    """Load one UTF-8 CSV / csv.gz file; raise UseSqlPath when another path must do it.

    Runs inside the caller's transaction (the file's), in a savepoint: a hand-back leaves
    nothing behind.
    """
    if codecs.lookup(encoding).name != "utf-8":
        raise UseSqlPath(f"encoding {encoding}: pyarrow reads UTF-8")
    if conn.execute("show server_encoding").fetchone()[0] != "UTF8":
        raise UseSqlPath("the binary path needs a UTF8 database")
    if conn.execute("show timezone").fetchone()[0].lower() not in UTC_NAMES:
        raise UseSqlPath("the binary path needs a UTC session (naive timestamps)")
    header = read_header(path, encoding)
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
            f = _File(conn, entity, columns, base_currency, business_date, max_future_days, load_id,
                      size // 20)
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
                with conn.cursor() as cur, cur.copy(sql.SQL(
                    "copy {}.rejects (load_id, file_path, entity, business_date, line_number, raw_record,"
                    " reason) from stdin"
                ).format(sql.Identifier(META_SCHEMA))) as copy:
                    for line, raw, reason in sorted(f.rejects):
                        copy.write_row([load_id, relpath, entity.path, business_date, line, raw, reason])
    except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError, OSError, EOFError) as exc:
        raise UseSqlPath(f"pyarrow could not read it: {str(exc).splitlines()[0]}") from None
    finally:
        if f is not None:  # a hand-back in mid-file: the key-hash temp files go at once
            f.keys.close()
    log.debug("%s: %d rows in %.2fs (%d checked one by one)", relpath, rows_in,
              time.perf_counter() - started, f.slow_rows)
    return BulkResult(rows_in, f.loaded, len(f.rejects), f.extras)
