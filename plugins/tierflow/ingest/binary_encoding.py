"""PostgreSQL's binary COPY format: the stream's frame, and each column type's fields.

The binary path checks a block's values, then encodes a whole column at a time here with
numpy (fixed-width fields laid side by side) or Arrow (text, and columns with a NULL). The
vectorised encoders take only values the checks accepted in one plain shape (an int of at
most 9 digits, a number of at most 9 + 6 digits, an ISO date read on its bytes); ``dump_value``
encodes one parsed value from the row contract, for the rows checked one by one. Field
layouts: https://www.postgresql.org/docs/current/sql-copy.html (binary format) and the
types' ``*send`` functions.
"""

from __future__ import annotations

import json
import struct
from datetime import date, datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg.types.datetime import DateBinaryDumper, DatetimeBinaryDumper, DatetimeNoTzBinaryDumper
from psycopg.types.numeric import DecimalBinaryDumper

from tierflow.extracts import Column
from tierflow.ingest.arrow_views import byte_lengths
from tierflow.ingest.row_contract import TRUE_WORDS

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"  # a field of length -1
PG_EPOCH_DAYS = 10957  # 2000-01-01 in days since 1970-01-01


def binary_array(chunks: np.ndarray, n: int) -> pa.Array:
    """A numpy structured array of n fixed-width encoded fields, as an Arrow binary array."""
    width = chunks.dtype.itemsize
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.BinaryArray.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                        pa.py_buffer(np.ascontiguousarray(chunks))])


def nullable(is_null: np.ndarray, encoded: pa.Array) -> pa.Array:
    """Encoded fields, with the NULL field where the value was empty."""
    if not is_null.any():
        return encoded
    return pc.if_else(pa.array(is_null), pa.scalar(NULL, pa.binary()), encoded)


def fixed_or_nullable(is_null: np.ndarray, out: np.ndarray) -> np.ndarray | pa.Array:
    """Fixed-width encoded fields as they are (joined with their neighbours by numpy), or,
    when some value is empty, as binary fields with the NULL field there."""
    if not is_null.any():
        return out
    return nullable(is_null, binary_array(out, out.size))


def encode_dates(value: np.ndarray, is_null: np.ndarray, with_time: bool) -> np.ndarray | pa.Array:
    """Dates (days since 1970) or timestamps (seconds since 1970, UTC) as date / timestamptz
    fields; the NULL field where ``is_null``."""
    n = value.size
    if not with_time:
        out = np.empty(n, dtype=[("len", ">i4"), ("v", ">i4")])
        out["len"], out["v"] = 4, value - PG_EPOCH_DAYS
    else:
        out = np.empty(n, dtype=[("len", ">i4"), ("v", ">i8")])
        out["len"], out["v"] = 8, (value - PG_EPOCH_DAYS * 86400) * 1_000_000
    return fixed_or_nullable(is_null, out)


def encode_text(a: pa.Array, is_null: np.ndarray) -> list[np.ndarray | pa.Array]:
    """Text fields, as pieces: values of one length (ids) as fixed-width numpy fields, others
    as their length and bytes, a column with a NULL as one binary array."""
    n = len(a)
    lens = byte_lengths(a).astype(">i4")
    if not is_null.any():
        width = int(lens[0]) if n else 0
        if n and width and (lens == width).all():  # ids of one length: fixed width
            bufs = a.buffers()
            start = int(np.frombuffer(bufs[1], dtype=np.int32, count=1, offset=a.offset * 4)[0])
            data = np.frombuffer(bufs[2], dtype=np.uint8)[start:start + n * width]
            return [lens, data.view(f"V{width}")]
        return [lens, a.cast(pa.binary())]
    encoded = pc.binary_join_element_wise(binary_array(lens, n), a.cast(pa.binary()), b"")
    return [nullable(is_null, encoded)]


def encode_bools(plain: pa.Array, is_null: np.ndarray) -> np.ndarray | pa.Array:
    """Bool words (TRUE_WORDS / FALSE_WORDS as written) as boolean fields."""
    true = pc.is_in(plain, value_set=pa.array(list(TRUE_WORDS), pa.string())).to_numpy(zero_copy_only=False)
    out = np.empty(len(plain), dtype=[("len", ">i4"), ("v", "u1")])
    out["len"], out["v"] = 1, true
    return fixed_or_nullable(is_null, out)


def encode_ints(plain: pa.Array, is_null: np.ndarray) -> np.ndarray | pa.Array:
    """Ints of at most 9 digits as int4 fields."""
    out = np.empty(len(plain), dtype=[("len", ">i4"), ("v", ">i4")])
    out["len"], out["v"] = 4, pc.cast(plain, pa.int32()).to_numpy(zero_copy_only=False)
    return fixed_or_nullable(is_null, out)


def encode_numerics(plain: pa.Array, is_null: np.ndarray) -> np.ndarray | pa.Array:
    """Plain decimals of at most 9 + 6 digits as numeric fields, with their display scale."""
    n = len(plain)
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
    out["ds"] = np.where(dot < 0, 0, byte_lengths(plain) - dot - 1)
    g = out["g"]
    for k in range(first, last):
        g[:, k - first] = groups[k]()
    return fixed_or_nullable(is_null, out)


def days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
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


def parse_iso_dates(m: np.ndarray, with_time: bool) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, days / seconds since 1970) of the bytes of ISO values (rows of ``m``):
    checks the month, the day of the month, hour, minute and second ranges."""
    y, mo, d = _digits(m, 0, 4), _digits(m, 5, 2), _digits(m, 8, 2)
    leap = ((y % 4 == 0) & (y % 100 != 0)) | (y % 400 == 0)
    dim = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[np.clip(mo, 0, 12)]
    dim = dim + ((mo == 2) & leap)
    ok = (y >= 1) & (mo >= 1) & (mo <= 12) & (d >= 1) & (d <= dim)
    days = days_from_civil(y, mo, d)
    if not with_time:
        return ok, days
    hh, mi, ss = _digits(m, 11, 2), _digits(m, 14, 2), _digits(m, 17, 2)
    ok &= (hh < 24) & (mi < 60) & (ss < 60)
    return ok, ((days * 24 + hh) * 60 + mi) * 60 + ss


def parse_utc_offsets(m: np.ndarray, lens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which values end as ``fromisoformat`` reads them without doubt, their offset east of
    UTC in seconds) for the bytes of timestamps (rows of ``m``, at least 25 wide; ``lens``:
    byte lengths): nothing after the seconds (19 bytes: no offset), ``Z`` (20), or ``+HH:MM``
    / ``-HH:MM`` (25) with an hour below 16 and a minute below 60 (PostgreSQL's range, the row
    contract's). Other endings (``+0800``, ``+08``, ``z``, a fraction, seconds in the offset)
    are not accepted here."""
    digit = (m[:, 20:25] >= 48) & (m[:, 20:25] <= 57)
    hh, mi = _digits(m, 20, 2), _digits(m, 23, 2)
    signed = (lens == 25) & ((m[:, 19] == 43) | (m[:, 19] == 45)) & (m[:, 22] == 58)
    signed &= digit[:, [0, 1, 3, 4]].all(axis=1) & (hh < 16) & (mi < 60)
    ok = (lens == 19) | ((lens == 20) & (m[:, 19] == 90)) | signed
    east = np.where(signed, np.where(m[:, 19] == 45, -1, 1) * (hh * 3600 + mi * 60), 0)
    return ok, east


def dump_value(col: Column, value: object) -> bytes:
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


def jsonb_field(obj: dict) -> bytes:
    data = b"\x01" + json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return struct.pack(">i", len(data)) + data
