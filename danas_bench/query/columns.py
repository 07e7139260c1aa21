"""Arrow columns as numpy arrays, read from their buffers: every pyarrow -> numpy conversion
(``to_numpy``, ``__array__``) imports pandas when it is installed, a quarter of a second of a cold open.
Used by the query API's column store and by the live overlay."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NP_TYPES = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def _np_chunk(a: pa.Array) -> np.ndarray:
    """One primitive Arrow array as numpy, read from its buffers (nulls as nan).

    Straight from the buffers because every pyarrow -> numpy conversion (``to_numpy``, ``__array__``)
    imports pandas when it is installed: a quarter of a second of a cold open.
    """
    np_type = _NP_TYPES.get(a.type)
    if np_type is None:
        raise TypeError(f"no numpy view for Arrow type {a.type}")
    n, off = len(a), a.offset
    bufs = a.buffers()
    out = np.frombuffer(bufs[1], dtype=np_type, count=n + off)[off:] if n else np.zeros(0, np_type)
    if a.null_count:
        valid = np.unpackbits(np.frombuffer(bufs[0], np.uint8), bitorder="little")[off : off + n].astype(bool)
        out = out.astype(np.float64)
        out[~valid] = np.nan
    return out


def _np(col, dtype=None) -> np.ndarray:
    """A primitive (chunked) Arrow column as one numpy array (nulls as nan)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [_np_chunk(c) for c in chunks]
    out = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0))
    return out.astype(dtype, copy=False) if dtype is not None else out


def _take(table: pa.Table, idx: np.ndarray) -> pa.Table:
    """``table.take`` of a numpy index array (wrapped as Arrow without pyarrow's pandas check)."""
    idx = np.ascontiguousarray(idx, dtype=np.int64)
    return table.take(pa.Array.from_buffers(pa.int64(), len(idx), [None, pa.py_buffer(idx)]))


def _np_lists(col, width: int) -> np.ndarray:
    """A list<float> (chunked) column whose lists all hold ``width`` values -> (rows, width) float64;
    ValueError when the lengths differ."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = []
    for c in chunks:
        if len(c) == 0:
            continue
        lengths = np.diff(_np_chunk(c.offsets))
        if c.null_count or (lengths != width).any():
            raise ValueError(sorted(set(lengths.tolist())))
        parts.append(_np(c.flatten(), np.float64).reshape(len(c), width))
    return np.concatenate(parts) if parts else np.zeros((0, width))
