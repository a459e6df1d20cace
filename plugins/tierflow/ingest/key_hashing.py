"""64-bit hashes of string values, and the structures the binary path builds on them.

``KeySet``: the loaded values of a referenced column, for exact vectorised membership tests
(foreign keys); ``GrowingKeySet``: the same for a whole run, grown as files load. ``KeyRuns``:
the key hashes of the rows a file has loaded so far, spilled to temp files, to find duplicate
keys in bounded memory. A hash only ever narrows the search: every hit is confirmed by
comparing the values themselves, so a collision cannot change what is loaded or rejected.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from datetime import date, datetime

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from tierflow.extracts import Entity
from tierflow.ingest.arrow_views import fixed_width
from tierflow.settings import RAW_SCHEMA


def hash_strings(arr: pa.Array, width: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(64-bit hash per value, its words (n x w uint64), byte lengths). A value's hash is its
    own, whatever else the array holds: only the 8-byte words it fills are mixed in, not the
    zero words up to ``width`` (the longest value's, by default), so a key hashed in a block
    with a longer value, or in another file's key set, hashes alike. Values longer than
    ``width`` hash their first ``width`` bytes (callers treat them as not found)."""
    if width is None:
        longest = int(pc.max(pc.binary_length(arr)).as_py() or 0) if len(arr) else 0
        width = max(8, -(-longest // 8) * 8)
    m, lens = fixed_width(arr, width)
    words = np.ascontiguousarray(m).view("<u8")
    filled = np.maximum(-(-lens // 8), 1)  # the words a value fills (an empty one: one zero word)
    with np.errstate(over="ignore"):
        h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for j in range(words.shape[1]):
            mixed = h ^ words[:, j]
            mixed *= np.uint64(0xBF58476D1CE4E5B9)
            mixed ^= mixed >> np.uint64(31)
            mixed *= np.uint64(0x94D049BB133111EB)
            mixed ^= mixed >> np.uint64(29)
            live = filled > j
            h = mixed if live.all() else np.where(live, mixed, h)
    return h, words, lens


def key_hash(columns: list[pa.Array], hashes: list[np.ndarray | None] | None = None) -> np.ndarray:
    """One 64-bit hash per row of the values of the key columns (as text); ``hashes``: the
    ``hash_strings`` of a column when the caller has it already (else None)."""
    known = hashes or [None] * len(columns)
    h = known[0] if known[0] is not None else hash_strings(columns[0])[0]
    with np.errstate(over="ignore"):
        for col, hc in zip(columns[1:], known[1:], strict=True):
            h = h * np.uint64(0x9E3779B97F4A7C15) ^ (hc if hc is not None else hash_strings(col)[0])
            h ^= h >> np.uint64(29)
    return h


class KeySet:
    """The loaded values of one referenced column, for exact vectorised membership tests:
    sorted 64-bit hashes of the keys; a hash hit is confirmed by comparing the strings."""

    SMALL = 50_000  # up to this many keys, Arrow's is_in (it hashes the set on every call)

    def __init__(self, keys: pa.Array, hashed: bool = False) -> None:
        """``hashed``: sorted hashes however few the keys (for callers that have the values'
        hashes already: no set hashed again on every call)."""
        self.array = keys
        self._small: set[str] | None = None
        self.size = len(keys)
        self.hashed = self.size > 0 and (hashed or self.size > self.SMALL)
        if not self.hashed:
            return
        # hashed a slice at a time (the hash's work arrays are ~40 bytes a key), then the
        # keys themselves sorted by hash: ~25 bytes a key stay (the strings, hash, bucket start)
        h = np.empty(self.size, dtype=np.uint64)
        step = 1 << 16
        for lo in range(0, self.size, step):
            h[lo:lo + step] = hash_strings(keys.slice(lo, step))[0]
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
        """Which values are keys of the set; ``h``: their ``hash_strings`` when the caller has it."""
        n = len(values)
        if n == 0 or self.size == 0:
            return np.zeros(n, dtype=bool)
        if not self.hashed:
            return pc.is_in(values, value_set=self.array).to_numpy(zero_copy_only=False)
        if h is None:
            h = hash_strings(values)[0]
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


class GrowingKeySet:
    """The loaded values of one referenced column for a whole ingest run, growing as files
    load: ``KeySet``s of decreasing size, the newest keys in the smallest. A new piece is
    merged with the last set while that set is at most twice its size (a binary counter), so
    each set is more than twice the next: a lookup asks at most log2(n) sets, and adding n keys
    a day at a time hashes and sorts each key O(log n) times in all, where fetching and sorting
    every loaded key again for each file cost the whole history per file (the order keys, for
    every day's order lines of a first night). Exact: the keys loaded, no more."""

    def __init__(self, keys: pa.Array) -> None:
        # every part hashed: the caller hashes the values it asks about once for all parts
        self.parts: list[KeySet] = [KeySet(keys, hashed=True)]

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def add(self, keys: pa.Array) -> None:
        if not len(keys):
            return
        while self.parts and self.parts[-1].size <= 2 * len(keys):
            keys = pa.concat_arrays([self.parts.pop().array, keys])
        self.parts.append(KeySet(keys, hashed=True))

    def contains(self, values: pa.Array, h: np.ndarray | None = None) -> np.ndarray:
        """As ``KeySet.contains`` (``h``: the values' ``hash_strings``, when the caller has it)."""
        found = np.zeros(len(values), dtype=bool)
        if h is None and len(values) and self.size:
            h = hash_strings(values)[0]
        for part in self.parts:
            found |= part.contains(values, h)
        return found

    def __contains__(self, value: object) -> bool:
        return any(value in part for part in self.parts)


def fetch_keys(conn: psycopg.Connection, entity: Entity, column: str) -> pa.Array:
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
        return pa.array([], pa.string())
    if not clash:
        one = pa.BinaryArray.from_buffers(pa.binary(), 1, [
            None, pa.py_buffer(np.array([0, len(joined)], dtype=np.int32)), pa.py_buffer(joined)])
        return pc.split_pattern(one, b"\x1f").flatten().cast(pa.string())
    # a key holds the separator: the slower way, as an array
    (keys,) = conn.execute(sql.SQL("select array_agg({c}) from {t} where {c} is not null").format(
        c=col, t=table)).fetchone()
    return pa.array(keys, pa.string())


class KeyRuns:
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


def canonical_text(value: object) -> str:
    """A parsed key value as the fast path's text of it (ids as stripped, ints and dates as
    Python prints them); only used for hashing."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    return str(value)
