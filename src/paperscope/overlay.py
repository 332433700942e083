"""A generation's vectors as a shared base file and a small delta of rows: :class:`LayeredVectors`.

A re-index that changed 1% of the papers used to write the whole ``vectors.npy`` again (1 GB at
a million papers, every run). Instead, while the rows changed since the last full write stay under
:data:`DELTA_MAX` of the papers, a generation holds:

* ``vectors-base.npy`` in place of ``vectors.npy``: a hard link to the last full file (the *base*,
  shared by every generation since), which may have fewer rows than the generation (papers
  appended since are in the delta). Under another name so that a paperscope from before deltas
  refuses the generation (no ``vectors.npy``) instead of answering from the base alone;
* ``vectors-delta.npy`` (float32, ``(m, dim)``) and ``vectors-delta-rows.npy`` (int64, ascending):
  the vectors of the ``m`` rows written since the base, every row past the base's count among them.

A reader sees one ``(n, dim)`` array: :class:`LayeredVectors` answers the indexing a query does
(a row, a slice, an array of rows) from the delta where a row is in it and from the base elsewhere.
The rows it looks up are few per query; :meth:`LayeredVectors.__array__` (the map, exports) copies
the whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BASE_FILE", "DELTA_FILE", "DELTA_MAX", "DELTA_ROWS_FILE", "LAYERED", "LayeredVectors", "parts"]

BASE_FILE = "vectors-base.npy"
DELTA_FILE = "vectors-delta.npy"
DELTA_ROWS_FILE = "vectors-delta-rows.npy"
LAYERED = (BASE_FILE, DELTA_FILE, DELTA_ROWS_FILE)  # the files of a generation's vectors with a delta
# A delta holding more rows than this share of the papers is written out whole as a new base: a
# query's lookups in it stay cheap, and a reader's copy of the whole (the map) stays one pass.
DELTA_MAX = 0.10


class LayeredVectors:
    """``base`` (memory-mapped) with the rows ``rows`` replaced or appended by ``delta``: an ``(n, dim)`` array.

    Read-only. Indexing returns what indexing an array returns: ``v[i]`` a row, ``v[a:b]`` and
    ``v[rows]`` (``rows`` of any shape, negative rows counted from the end) copies.
    """

    def __init__(self, base: np.ndarray, delta: np.ndarray, rows: np.ndarray, n: int):
        # plain arrays over the maps: np.memmap's own indexing costs about 0.1 ms a call, and a
        # query indexes the vectors some twenty times
        self.base, self.delta, self.rows = np.asarray(base), np.asarray(delta), np.asarray(rows, dtype=np.int64)
        self.shape: tuple[int, int] = (n, int(base.shape[1]))
        self.dtype = base.dtype
        self.ndim = 2
        self.itemsize = base.itemsize
        self.nbytes = n * self.shape[1] * self.itemsize
        # each row's place in the delta, -1 for a base row: one gather per lookup (4 bytes a row)
        self.pos = np.full(n, -1, dtype=np.int32)
        self.pos[self.rows] = np.arange(len(self.rows), dtype=np.int32)

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, index: Any) -> np.ndarray:
        """The rows at ``index`` (an integer array of any shape), shape ``index.shape + (dim,)``."""
        index = np.asarray(index)
        if not index.size and index.dtype.kind not in "iu":  # v[[]], as numpy takes it
            index = index.astype(np.int64)
        flat = index.reshape(-1)
        at = self.pos[flat]  # numpy's own bounds check, and negative rows counted from the end
        if self.base.shape[0] < self.shape[0] and flat.size and flat.min() < 0:
            flat = flat + np.where(flat < 0, self.shape[0], 0)  # counted from the end of n, not of the base
        if at.max(initial=-1) < 0:  # no row of the delta (most lookups: it holds a few % of the rows)
            out = self.base[flat]
        else:
            hit = at >= 0
            out = self.base[np.where(hit, 0, flat)]  # rows past the base are all in the delta
            out[hit] = self.delta[at[hit]]
        return out.reshape(*index.shape, self.shape[1])

    def __getitem__(self, key: Any) -> np.ndarray:
        n = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(self.pos[key]) if -n <= key < n else -2
            if i == -2:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self.delta[i] if i >= 0 else self.base[key + n if key < 0 else key]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            if step != 1:
                return self.take(np.arange(start, stop, step))
            out = np.empty((max(0, stop - start), self.shape[1]), dtype=self.dtype)
            inside = min(stop, self.base.shape[0])
            if inside > start:
                out[: inside - start] = self.base[start:inside]
            lo, hi = np.searchsorted(self.rows, [start, stop])
            if hi > lo:
                out[self.rows[lo:hi] - start] = self.delta[lo:hi]
            return out
        if isinstance(key, tuple):
            rows = self[key[0]]
            return rows[(slice(None), *key[1:])] if np.ndim(key[0]) else rows[key[1:]]
        key = np.asarray(key)
        if key.dtype == bool:
            return self.take(np.flatnonzero(key))
        return self.take(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[0 : self.shape[0]]
        return out if dtype is None else out.astype(dtype, copy=False)


def parts(vectors: Any) -> list[np.ndarray]:
    """The arrays that hold ``vectors`` (the base and the delta of a :class:`LayeredVectors`, or itself)."""
    if isinstance(vectors, LayeredVectors):
        return [vectors.base, vectors.delta, vectors.rows]
    return [vectors]
