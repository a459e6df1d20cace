"""Views of Arrow string arrays as numpy arrays, without a copy or a kernel call.

The binary path's checks, its key hashing and its encoders all read a column's values as
bytes: their lengths from the offsets buffer, or a fixed-width matrix of their first bytes.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def fixed_width(arr: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
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


def byte_lengths(arr: pa.Array) -> np.ndarray:
    """Byte length of each value of a string array, from its offsets (no kernel call)."""
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    return np.diff(offs)
