"""The fastest path for UTF-8 CSV files: parse with pyarrow, check vectorised, COPY binary.

Why: the set-based path (``bulk.py``) reads every value twice (COPY into a text staging
table, then a cast in SQL) and writes the raw table with ``insert ... select``; measured, it
reached 0.22 x psql's plain ``\\copy``. Here the file is read once, by pyarrow's streaming CSV
reader in blocks of a few MB, on the Python side; the rows that are plainly good are checked
with vectorised kernels and encoded straight into PostgreSQL's binary COPY format, which the
server stores with less work than it spends parsing CSV text. While the server's COPY (one
core) stores one block, Python (the other core) parses and checks the next: psycopg's queued
writer sends from a thread.

Exactly the row path's rules, by construction: the vectorised checks only *accept* values
in narrow, unambiguous shapes (``123.45``, ``2026-03-01T08:00:00``, an id found in the set
of loaded keys, ...) whose parsed value is certain. Every row with any other value (a
space at an edge, ``1e3``, ``2.0`` in an int column, a bad date, an unknown key, a future
date, a missing value, ...) goes through ``loader._validate_row`` itself, the row path's
own code, which gives the reject reason or the parsed row. So reasons and counts are the
row path's; only speed differs. Rare rows cost a Python call each; a file with very many
(``SLOW_ROWS_LIMIT``) goes back to the set-based path, which is faster for such files.

Duplicate keys within a file: a 64-bit hash of each good row's key goes into sorted runs
(numpy), 16 bytes per row. A row whose hash was seen before is held back, not loaded; at the
end the held rows are compared exactly (parsed key tuples, like the row path) with the
first row of their hash, read again from the file, so a hash collision can never reject a
good row. Foreign keys: the loaded keys are fetched once per file and looked up through a
sorted hash array with an exact byte comparison.

Line numbers: record n is line n + 1. The reader counts the file's newlines; if they do
not match the records (quoted newlines, blank lines), everything done is rolled back to
the savepoint and the file goes to the row path, which reports each record's first line.
Anything pyarrow refuses (wrong field count, invalid UTF-8, ...) goes to the set-based path,
which gives the exact reject or error the row path always gave.

Timestamps without an offset are read in the session's time zone; binary COPY carries UTC
instants, so this path runs only when the session's TimeZone is UTC (elsewhere: bulk.py).
"""

from __future__ import annotations

import codecs
import json
import logging
import struct
import time
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter
from psycopg.types.datetime import DateBinaryDumper, DatetimeBinaryDumper, DatetimeNoTzBinaryDumper
from psycopg.types.numeric import DecimalBinaryDumper

from tierflow.ingest.bulk import FALSE, TRUE, WHITESPACE, BulkResult, _open, read_header
from tierflow.ingest.entities import BY_PATH, Column, Entity
from tierflow.settings import META_SCHEMA, RAW_SCHEMA

log = logging.getLogger(__name__)

BLOCK = 4 << 20  # bytes of CSV per parsed block: ~80,000 order lines, a few dozen MB in flight
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
NUMERIC = r"^(?P<i>[0-9]{1,14})(?:\.(?P<f>[0-9]{1,8}))?$"
INT = r"^(?:0|[1-9][0-9]{0,8})$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}$"
CURRENCY = r"^[A-Z]{3}$"


class UseSqlPath(Exception):
    """This path cannot load the file exactly; the set-based path (or the row path) will."""


@dataclass
class _Held:
    """A row whose key hash was seen before: compared exactly at the end of the file."""

    rec: int
    record: dict
    first_rec: int


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
    cols = np.arange(width)
    idx = offs[:-1, None].astype(np.int64) + cols[None, :]
    np.minimum(idx, data.size - 1, out=idx)
    out = data[idx]
    out[cols[None, :] >= lens[:, None]] = 0
    return out, lens


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


class KeySet:
    """The loaded values of one referenced column, for exact vectorised membership tests."""

    def __init__(self, keys: pa.Array) -> None:
        longest = int(pc.max(pc.binary_length(keys)).as_py() or 0) if len(keys) else 0
        self.width = max(8, -(-longest // 8) * 8)
        self.longest = longest
        h, words, lens = _hash(keys, self.width)
        order = np.argsort(h, kind="stable")
        self.h, self.words, self.lens = h[order], words[order], lens[order]

    def contains(self, values: pa.Array) -> np.ndarray:
        n = len(values)
        if n == 0 or self.h.size == 0:
            return np.zeros(n, dtype=bool)
        h, words, lens = _hash(values, self.width)
        pos = np.searchsorted(self.h, h)
        pos_c = np.minimum(pos, self.h.size - 1)
        same_hash = (self.h[pos_c] == h) & (pos < self.h.size)
        found = same_hash & (self.lens[pos_c] == lens) & (self.words[pos_c] == words).all(axis=1)
        found &= lens <= self.longest
        # another key with the same hash may follow (a collision): compare those exactly
        for i in np.flatnonzero(same_hash & ~found & (lens <= self.longest)):
            p = pos_c[i] + 1
            while p < self.h.size and self.h[p] == h[i]:
                if self.lens[p] == lens[i] and (self.words[p] == words[i]).all():
                    found[i] = True
                    break
                p += 1
        return found

    def __contains__(self, value: object) -> bool:
        return bool(self.contains(pa.array([str(value)], pa.string()))[0])


class _SeenKeys:
    """Hashes of the keys of the rows loaded so far, in sorted runs (merged as they grow)."""

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray]] = []  # (sorted hashes, first record)

    def lookup(self, h: np.ndarray) -> np.ndarray:
        """The first record with each hash, or 0 when unseen."""
        first = np.zeros(h.size, dtype=np.int64)
        for rh, rrec in self.runs:
            pos = np.minimum(np.searchsorted(rh, h), rh.size - 1)
            hit = (rh[pos] == h) & (first == 0)
            first[hit] = rrec[pos[hit]]
        return first

    def add(self, h: np.ndarray, recs: np.ndarray) -> None:
        order = np.argsort(h, kind="stable")
        self.runs.append((h[order], recs[order]))
        while len(self.runs) > 1 and self.runs[-2][0].size <= 2 * self.runs[-1][0].size:
            (h1, r1), (h2, r2) = self.runs.pop(), self.runs.pop()
            hh, rr = np.concatenate([h2, h1]), np.concatenate([r2, r1])
            order = np.argsort(hh, kind="stable")
            self.runs.append((hh[order], rr[order]))


# -- binary COPY encodings --------------------------------------------------------------------
def _binary(chunks: np.ndarray, n: int) -> pa.Array:
    """A numpy structured array of n fixed-width encoded fields, as an Arrow binary array."""
    width = chunks.dtype.itemsize
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(chunks)])
    return fixed.cast(pa.binary())


def _int4_fields(values: np.ndarray) -> pa.Array:
    out = np.empty(values.size, dtype=[("len", ">i4"), ("v", ">i4")])
    out["len"], out["v"] = 4, values
    return _binary(out, values.size)


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


def _parse_dates(arr: pa.Array, with_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, days since 1970 / microseconds since 1970) of values already matching
    the DATE / TIMESTAMP shape: checks month, day of month, hour, minute, second ranges."""
    m, _ = _fixed(arr, 19 if with_time else 10)
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
class _ValidateLookups:
    """What ``loader._validate_row`` asks of its lookups, answered from this file's key sets."""

    def __init__(self, base: str, keysets: dict[str, KeySet], first_rate: dict[str, date]) -> None:
        self.base = base
        self._keysets = keysets
        self._first_rate = first_rate

    def keys(self, entity: Entity, column: str) -> KeySet:
        return self._keysets[f"{entity.path}.{column}"]

    def has_rate(self, currency: str, on: date) -> bool:
        first = self._first_rate.get(currency)
        return first is not None and first <= on


class _File:
    def __init__(self, conn: psycopg.Connection, entity: Entity, columns: list[str], base: str,
                 business_date: date, max_future_days: int, load_id: int) -> None:
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
        self.seen = _SeenKeys()
        self.held: list[_Held] = []
        self.rejects: list[tuple[int, str, str]] = []
        self.slow_rows = 0
        self.loaded = 0
        # the fields every row starts with: field count, _load_id, _business_date, _extra
        # (null unless the file has unknown columns)
        self.nfields = 4 + len(self.present)
        self.prefix = (struct.pack(">h", self.nfields) + struct.pack(">iq", 8, load_id)
                       + struct.pack(">ii", 4, business_date.toordinal() - date(2000, 1, 1).toordinal()))
        self.copy_columns = ["_load_id", "_business_date", "_line_number", "_extra",
                             *(c.name for c in self.present)]

    # -- checks ----------------------------------------------------------------------------
    def _fast(self, col: Column, a: pa.Array, n: int) -> tuple[np.ndarray, object]:
        """(which values are certainly good as they are, what encoding needs of them)."""
        empty = pc.equal(a, "").to_numpy(zero_copy_only=False)
        ok = empty & (not col.required)
        e = self.entity
        fk = next((f for f in e.foreign_keys if f.column == col.name), None)
        if fk is not None:
            return ok | self.keysets[f"{fk.entity}.{fk.ref_column}"].contains(a), empty
        if col.type == "text":
            upper = col.name == e.currency_column or (e.path == "erp/fx_rates" and col.name == "currency")
            if upper:
                good = pc.match_substring_regex(a, CURRENCY)
            elif col.allowed is not None:
                good = pc.is_in(a, value_set=pa.array(list(col.allowed), pa.string()))
            else:
                good = pc.invert(pc.match_substring_regex(a, EDGE_SPACE))
                return ok | (good.to_numpy(zero_copy_only=False) & ~empty), empty
            return ok | good.to_numpy(zero_copy_only=False), empty
        if col.type == "bool":
            good = pc.is_in(a, value_set=pa.array(list(TRUE + FALSE), pa.string()))
            return ok | good.to_numpy(zero_copy_only=False), empty
        if col.type == "int":
            good = pc.match_substring_regex(a, INT).to_numpy(zero_copy_only=False)
            return ok | good, empty
        if col.type == "numeric":
            parts = pc.extract_regex(a, NUMERIC)
            return ok | parts.is_valid().to_numpy(zero_copy_only=False), parts
        if col.type in ("date", "timestamp"):
            with_time = col.type == "timestamp"
            shape = pc.match_substring_regex(a, TIMESTAMP if with_time else DATE).to_numpy(
                zero_copy_only=False)
            idx = np.flatnonzero(shape)
            value = np.zeros(n, dtype=np.int64)
            good = np.zeros(n, dtype=bool)
            if idx.size:
                valid, v = _parse_dates(a.take(pa.array(idx)), with_time)
                good[idx], value[idx] = valid, v
            return ok | good, value
        raise AssertionError(col.type)

    def batch(self, rb: pa.RecordBatch, first_rec: int) -> bytes:
        """Check one block; return the binary COPY rows of its good rows."""
        n = rb.num_rows
        e = self.entity
        ok = np.ones(n, dtype=bool)
        info: dict[str, object] = {}
        for col in self.present:
            good, info[col.name] = self._fast(col, rb.column(self.pos[col.name]), n)
            ok &= good
        # rows dated too far after the extract date, or in a currency with no rate yet
        ev = e.event_date_column
        if ev in self.pos:
            days = info[ev] if e.column(ev).type == "date" else info[ev] // 86400
            ok &= ~(days > self.limit_days)
        if e.currency_column:
            ok &= self._currency_ok(rb, info)
        recs = first_rec + np.arange(n, dtype=np.int64)
        # rows not certainly good: the row path's own checks, one by one
        slow = np.flatnonzero(~ok)
        slow_rows: list[tuple[int, dict, dict]] = []
        if slow.size:
            self.slow_rows += slow.size
            if self.slow_rows > SLOW_ROWS_LIMIT:
                raise UseSqlPath(f"more than {SLOW_ROWS_LIMIT:,} rows need checking one by one")
            taken = rb.take(pa.array(slow)).to_pylist()
            for i, rec_values in zip(slow, taken, strict=True):
                record = {c: rec_values[name] for c, name in zip(self.columns, self.names, strict=True)}
                row = self._validate(int(recs[i]), record)
                if row is not None:
                    slow_rows.append((int(recs[i]), record, row))
        # duplicate keys among the good rows, by hash; repeats are held for an exact check
        good_idx = np.flatnonzero(ok)
        key_parts = [pc.take(rb.column(self.pos[k]), pa.array(good_idx)) for k in e.key]
        keys = key_parts[0] if len(key_parts) == 1 else pc.binary_join_element_wise(*key_parts, "\x00")
        slow_keys = pa.array(["\x00".join(_canonical(row[k]) for k in e.key) for _, _, row in slow_rows],
                             pa.string())
        all_keys = pa.concat_arrays([keys.cast(pa.string()), slow_keys]) if slow_rows else keys
        all_recs = np.concatenate([recs[good_idx], np.array([r for r, _, _ in slow_rows], np.int64)])
        keep = self._first_seen(all_keys, all_recs, rb, good_idx, slow_rows)
        fast_keep = good_idx[keep[:good_idx.size]]
        out = self._encode(rb, info, fast_keep, recs)
        rows = [self._encode_row(rec, record, row)
                for (rec, record, row), k in zip(slow_rows, keep[good_idx.size:], strict=True) if k]
        self.loaded += fast_keep.size + len(rows)
        return out + b"".join(rows)

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

    def _validate(self, rec: int, record: dict) -> dict | None:
        from tierflow.ingest.loader import RowProblem, _raw_json, _validate_row  # loader imports us

        try:
            return _validate_row(self.entity, record, self.lookups, self.business_date,
                                 self.max_future_days)
        except RowProblem as exc:
            self.rejects.append((rec + 1, _raw_json(record), str(exc)))
            return None

    def _first_seen(self, keys: pa.Array, recs: np.ndarray, rb: pa.RecordBatch, good_idx: np.ndarray,
                    slow_rows: list) -> np.ndarray:
        """Which of these rows' key hashes were not seen before; hold back the others."""
        keep = np.ones(recs.size, dtype=bool)
        if recs.size == 0:
            return keep
        h, _, _ = _hash(keys)
        order = np.lexsort((recs, h))  # by hash, then file order
        hs, rs = h[order], recs[order]
        group_first = np.ones(hs.size, dtype=bool)
        group_first[1:] = hs[1:] != hs[:-1]
        first_rec = np.maximum.accumulate(np.where(group_first, np.arange(hs.size), 0))
        first_in_batch = rs[first_rec]
        earlier = self.seen.lookup(hs)
        first_of = np.where(earlier > 0, earlier, first_in_batch)
        repeat = (earlier > 0) | ~group_first
        self.seen.add(hs[group_first & (earlier == 0)], rs[group_first & (earlier == 0)])
        for j in np.flatnonzero(repeat):
            i = order[j]
            keep[i] = False
            if i < good_idx.size:
                values = rb.slice(int(good_idx[i]), 1).to_pylist()[0]
                record = {c: values[name] for c, name in zip(self.columns, self.names, strict=True)}
            else:
                record = slow_rows[i - good_idx.size][1]
            self.held.append(_Held(int(recs[i]), record, int(first_of[j])))
        return keep

    def _encode(self, rb: pa.RecordBatch, info: dict, idx: np.ndarray, recs: np.ndarray) -> bytes:
        k = idx.size
        if k == 0:
            return b""
        take = pa.array(idx)
        fields: list[object] = [pa.scalar(self.prefix, pa.binary())]
        fields.append(_int4_fields((recs[idx] + 1).astype(np.int32)))
        if self.extras:
            rows = rb.select([self.pos[c] for c in self.extras]).take(take).to_pylist()
            fields.append(pa.array([_jsonb_field(dict(zip(self.extras, r.values(), strict=True)))
                                    for r in rows], pa.binary()))
        else:
            fields.append(pa.scalar(NULL, pa.binary()))
        for col in self.present:
            a = rb.column(self.pos[col.name]).take(take)
            fields.append(self._encode_column(col, a, info[col.name], idx))
        joined = pc.binary_join_element_wise(*fields, pa.scalar(b"", pa.binary()))
        bufs = joined.buffers()
        offs = np.frombuffer(bufs[1], dtype=np.int32, count=k + 1, offset=joined.offset * 4)
        return bytes(memoryview(bufs[2])[offs[0]:offs[-1]])

    def _encode_column(self, col: Column, a: pa.Array, info: object, idx: np.ndarray) -> pa.Array:
        empty = pc.equal(a, "")
        null = pa.scalar(NULL, pa.binary())
        if col.type == "text":
            if col.allowed is not None:
                a = pc.utf8_lower(a)
            lens = pc.binary_length(a).to_numpy(zero_copy_only=False).astype(">i4")
            prefix = _binary(lens, len(a))
            return pc.if_else(empty, null, pc.binary_join_element_wise(prefix, a.cast(pa.binary()), b""))
        if col.type == "bool":
            true = pc.is_in(a, value_set=pa.array(list(TRUE), pa.string())).to_numpy(zero_copy_only=False)
            out = np.empty(len(a), dtype=[("len", ">i4"), ("v", "u1")])
            out["len"], out["v"] = 1, true
            return pc.if_else(empty, null, _binary(out, len(a)))
        if col.type == "int":
            values = pc.cast(pc.if_else(empty, "0", a), pa.int32()).to_numpy(zero_copy_only=False)
            return pc.if_else(empty, null, _int4_fields(values))
        if col.type == "numeric":
            parts = info.take(pa.array(idx))
            ip = pc.cast(pc.if_else(empty, "0", parts.field("i")), pa.int64()).to_numpy(zero_copy_only=False)
            frac = parts.field("f")
            dscale = pc.utf8_length(frac).to_numpy(zero_copy_only=False)
            fp = pc.cast(pc.utf8_rpad(frac, 8, "0"), pa.int64()).to_numpy(zero_copy_only=False)
            out = np.zeros(len(a), dtype=[("len", ">i4"), ("nd", ">i2"), ("w", ">i2"), ("sign", ">u2"),
                                          ("ds", ">i2"), ("g", ">i2", (6,))])
            out["len"], out["nd"], out["w"], out["ds"] = 20, 6, 3, dscale
            out["g"] = np.stack([ip // 10**12 % 10**4, ip // 10**8 % 10**4, ip // 10**4 % 10**4,
                                 ip % 10**4, fp // 10**4, fp % 10**4], axis=1)
            return pc.if_else(empty, null, _binary(out, len(a)))
        if col.type == "date":
            out = np.empty(len(a), dtype=[("len", ">i4"), ("v", ">i4")])
            out["len"], out["v"] = 4, info[idx] - PG_EPOCH_DAYS
            return pc.if_else(empty, null, _binary(out, len(a)))
        if col.type == "timestamp":
            out = np.empty(len(a), dtype=[("len", ">i4"), ("v", ">i8")])
            out["len"], out["v"] = 8, (info[idx] - PG_EPOCH_DAYS * 86400) * 1_000_000
            return pc.if_else(empty, null, _binary(out, len(a)))
        raise AssertionError(col.type)

    def _encode_row(self, rec: int, record: dict, row: dict) -> bytes:
        extra = (_jsonb_field({c: record[c] for c in self.extras}) if self.extras else NULL)
        return (self.prefix + struct.pack(">ii", 4, rec + 1) + extra
                + b"".join(_dump_value(c, row[c.name]) for c in self.present))

    # -- held-back repeats ---------------------------------------------------------------------
    def resolve_held(self, path: Path, header_len: int) -> bytes:
        """Compare the held rows exactly with earlier rows of the same key hash (the row path's
        parsed key tuples); reject true duplicates, return the others as COPY rows."""
        if not self.held:
            return b""
        from tierflow.ingest.loader import RowProblem, _validate_row

        e = self.entity
        firsts = {h.first_rec for h in self.held}
        seen: dict[tuple, int] = {}
        with _CountingReader(path, header_len) as fh:
            rec = 0
            for rb in _reader(fh, self.names):
                for r in sorted(r for r in firsts if rec < r <= rec + rb.num_rows):
                    values = rb.slice(r - rec - 1, 1).to_pylist()[0]
                    record = {c: values[name] for c, name in zip(self.columns, self.names, strict=True)}
                    try:
                        row = _validate_row(e, record, self.lookups, self.business_date,
                                            self.max_future_days)
                    except RowProblem:  # cannot happen: it was loaded
                        continue
                    seen.setdefault(tuple(row[k] for k in e.key), r + 1)
                rec += rb.num_rows
        out: list[bytes] = []
        for held in sorted(self.held, key=lambda h: h.rec):
            row = self._validate(held.rec, held.record)
            if row is None:  # cannot happen: it passed before; _validate recorded why anyway
                continue
            key = tuple(row[k] for k in e.key)
            if key in seen:
                self.rejects.append((
                    held.rec + 1, _raw_json_of(held.record),
                    f"duplicate key ({', '.join(e.key)}) = {key if len(key) > 1 else key[0]!r} "
                    f"also on line {seen[key]} of this file",
                ))
                continue
            seen[key] = held.rec + 1
            out.append(self._encode_row(held.rec, held.record, row))
            self.loaded += 1
        return b"".join(out)


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
    """The distinct loaded values of a referenced column, streamed through COPY."""
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(sql.SQL(
        "copy (select distinct {} from {}.{} where {} is not null) to stdout (format csv)"
    ).format(sql.Identifier(column), sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
             sql.Identifier(column))) as copy:
        for data in copy:
            buf += data
    if not buf:
        return KeySet(pa.array([], pa.string()))
    table = pcsv.read_csv(
        pa.BufferReader(pa.py_buffer(bytes(buf))),
        read_options=pcsv.ReadOptions(column_names=["k"]),
        parse_options=pcsv.ParseOptions(newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={"k": pa.string()}, strings_can_be_null=False,
                                            quoted_strings_can_be_null=False),
    )
    return KeySet(table.column("k").combine_chunks())


class _CountingReader:
    """The file after its header, for pyarrow, counting newlines as they pass."""

    def __init__(self, path: Path, header_len: int) -> None:
        self.fh = _open(path)
        self.fh.read(header_len)
        self.lines = 0
        self.last = b"\n"
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        if data:
            self.lines += data.count(b"\n")
            self.last = data[-1:]
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self.fh.close()

    def data_lines(self) -> int:
        return self.lines + (self.last != b"\n")

    def __enter__(self) -> _CountingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reader(fh: _CountingReader, names: list[str], include: list[str] | None = None):
    return pcsv.open_csv(
        pa.PythonFile(fh, mode="r"),
        read_options=pcsv.ReadOptions(column_names=names, block_size=BLOCK, use_threads=False),
        parse_options=pcsv.ParseOptions(newlines_in_values=False),
        convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in names}, strings_can_be_null=False,
            quoted_strings_can_be_null=False, include_columns=include),
    )


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
    from tierflow.ingest.bulk import UseRowPath

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
    rows_in = 0
    try:
        with conn.transaction():
            f = _File(conn, entity, columns, base_currency, business_date, max_future_days, load_id)
            table = sql.SQL("copy {}.{} ({}) from stdin (format binary)").format(
                sql.Identifier(RAW_SCHEMA), sql.Identifier(entity.raw_table),
                sql.SQL(", ").join(map(sql.Identifier, f.copy_columns)))
            with conn.cursor() as cur, _CountingReader(path, len(header_bytes)) as fh:
                with cur.copy(table, writer=QueuedLibpqWriter(cur)) as copy:
                    copy.write(SIGNATURE)
                    for rb in _reader(fh, f.names):
                        data = f.batch(rb, rows_in + 1)
                        rows_in += rb.num_rows
                        if data:
                            copy.write(data)
                    copy.write(TRAILER)
                lines = fh.data_lines()
            if rows_in != lines:
                raise UseRowPath(
                    f"{lines} data lines hold {rows_in} records (quoted newlines or blank lines)")
            held = f.resolve_held(path, len(header_bytes))
            if held:
                with conn.cursor() as cur, cur.copy(table) as copy:
                    copy.write(SIGNATURE + held + TRAILER)
            if f.rejects:
                with conn.cursor() as cur, cur.copy(sql.SQL(
                    "copy {}.rejects (load_id, file_path, entity, business_date, line_number, raw_record,"
                    " reason) from stdin"
                ).format(sql.Identifier(META_SCHEMA))) as copy:
                    for line, raw, reason in sorted(f.rejects):
                        copy.write_row([load_id, relpath, entity.path, business_date, line, raw, reason])
    except (pa.ArrowInvalid, pa.ArrowException, UnicodeDecodeError, OSError, EOFError) as exc:
        raise UseSqlPath(f"pyarrow could not read it: {str(exc).splitlines()[0]}") from None
    log.debug("%s: %d rows in %.2fs (%d checked one by one)", relpath, rows_in,
              time.perf_counter() - started, f.slow_rows)
    return BulkResult(rows_in, f.loaded, len(f.rejects), f.extras)
