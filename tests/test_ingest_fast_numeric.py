"""The fast path's binary numeric encoding sends only the digit groups a block needs.

Why: a numeric in binary COPY is 8 header bytes plus 2 bytes per base-10000 digit group; the
fast path picks, per block, the window of groups (weights 2 .. -2) that some value of the block
uses, so small values make a smaller stream. The server must still read every value exactly,
with its display scale: each block below goes through a real binary COPY and is read back.
"""

from __future__ import annotations

import struct

import numpy as np
import psycopg
import pyarrow as pa
import pytest
from tierflow.extracts import Column
from tierflow.ingest import binary_path as fast

COL = Column("amount", "numeric")


def encode(values: list[str]) -> tuple[list[bytes], int]:
    """The block's encoded fields (one per value) and the encoding's field width."""
    a = pa.array(values, pa.string())
    empty = np.array([v == "" for v in values])
    good = pa.compute.match_substring_regex(a, fast.NUMERIC).to_numpy(zero_copy_only=False) | empty
    (piece,) = fast._File._encode_column(None, COL, a, good, empty, len(values))
    if isinstance(piece, np.ndarray):  # fixed width, no NULL
        return [piece[i].tobytes() for i in range(len(values))], piece.dtype.itemsize
    return [piece[i].as_py() for i in range(len(values))], 0


def copy_back(url: str, fields: list[bytes]) -> list[str | None]:
    """COPY the fields (one column) into a table in binary and read them back as text."""
    stream = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    stream += b"".join(struct.pack(">h", 1) + f for f in fields) + struct.pack(">h", -1)
    with psycopg.connect(url) as conn:
        conn.execute("create temp table t (n serial, amount numeric)")
        with conn.cursor().copy("copy t (amount) from stdin (format binary)") as copy:
            copy.write(stream)
        return [r[0] for r in conn.execute("select amount::text from t order by n")]


@pytest.mark.parametrize(("values", "width"), [
    # 1..40: one group (weight 0): 4 length + 8 header + 2 = 14 bytes (was 22 with five groups)
    (["1", "40", "7", "0"], 14),
    # 999.99: groups [999, 9900] (weights 0, -1): 4 + 8 + 2 * 2 = 16 bytes
    (["999.99", "1.25", "0.50", "12"], 16),
    # only zeros: no group at all, 4 + 8 = 12 bytes; the display scale stays (0.000 has 3)
    (["0", "0.000", "0.0"], 12),
    # 0.000001 needs the last group (weight -2), 123456789 the first (weight 2): all five, 22
    (["0.000001", "123456789", "999999999.999999", "5"], 22),
    # 10000 is groups [1, 0] (weights 1, 0), 0.0001 is [1] at weight -1: window 1..-1, 4+8+6
    (["10000", "0.0001", "3.14159"], 0),  # 3.14159 needs weight -2 too: window 1..-2, 20 bytes
])
def test_numeric_window_reads_back_exactly(warehouse_url: str, values: list[str], width: int) -> None:
    fields, got_width = encode(values)
    if width:
        assert got_width == width
    else:
        assert got_width == 4 + 8 + 2 * 4  # weights 1, 0, -1, -2
    assert copy_back(warehouse_url, fields) == values


def test_numeric_window_with_nulls_and_refused_values(warehouse_url: str) -> None:
    """A NULL (empty value) is the NULL field; a value the checks refused ("12x", "-5") is
    encoded as a harmless 0 (its row is dropped by the caller) and does not widen the window:
    the window is [40] alone, so the other fields are 14 bytes."""
    fields, width = encode(["40", "", "12x", "-5", "3"])
    assert width == 0  # a NULL makes the column a binary array, not a fixed-width one
    assert fields[1] == fast.NULL
    assert [len(f) for i, f in enumerate(fields) if i != 1] == [14, 14, 14, 14]
    assert copy_back(warehouse_url, fields) == ["40", None, "0", "0", "3"]
