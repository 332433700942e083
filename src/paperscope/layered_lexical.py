"""The lexical forward index as a shared base and a delta of rows: :class:`LayeredRows`.

The forward index holds each paper's terms (ids into the sorted vocabulary), their counts and
title counts (``lexical.npz``) and their unit TF-IDF weights (``lexical-impact.npz``). A term new
to the store shifts the id of every term sorted after it, so a re-index that changed 1% of the
papers wrote every row again: 3.3 GB at a million papers, the largest write of such a run. While
the postings are a base and a delta (:mod:`paperscope.impact`), a generation instead holds:

* ``lexical-forward.npz``: a hard link to the ``lexical.npz`` of the last generation that wrote the
  forward index whole (the *base*), and ``lexical-forward-unit.npz``: one to that generation's
  ``lexical-impact.npz``, whose ``unit`` array holds the base rows' weights (the idf is carried
  unchanged between whole writes, so a base row's weights are still its weights);
* in its own ``lexical.npz``: the vocabulary, the document frequencies, each term's id in the base
  (``forward_to_base``) and the rows tokenised since the base (the *delta*; every row past the
  base's count is among them) in this vocabulary's ids; in its ``lexical-impact.npz``, their weights.

A base row's terms are read in the base's ids and mapped into this vocabulary's. The map is
increasing (both vocabularies are sorted), so a row's entries stay in term order: every score
sums the same values in the same order as over a forward index written whole, to the same bits.
A paperscope from before this finds no ``indptr`` in ``lexical.npz`` and refuses the generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

__all__ = ["ENABLED", "FIELDS", "FORWARD_FILE", "FORWARD_UNIT_FILE", "KEYS", "Entries", "LayeredRows", "ranges"]

FORWARD_FILE = "lexical-forward.npz"
FORWARD_UNIT_FILE = "lexical-forward-unit.npz"
# The keys of a lexical.npz whose rows are a base and a delta (besides the vocabulary, df and version).
KEYS = ("forward_meta", "forward_to_base", "delta_rows", "delta_indptr", "delta_terms", "delta_counts", "delta_titles")
# Off: every generation writes its forward index whole, as before (kept to measure against).
ENABLED = True
# The per-entry arrays of a forward index, as Entries names them.
FIELDS = ("terms", "counts", "titles", "unit")


class Entries(NamedTuple):
    """The forward-index entries of some rows, row after row: each row's count of entries, then per
    entry its term (this vocabulary's id), count, title count and unit weight."""

    sizes: np.ndarray
    terms: np.ndarray
    counts: np.ndarray
    titles: np.ndarray
    unit: np.ndarray


def ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])`` without a Python loop."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    before = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return np.repeat(np.asarray(starts, dtype=np.int64) - before, lengths) + np.arange(total, dtype=np.int64)


@dataclass
class LayeredRows:
    """The forward index of ``n`` rows: a base (a whole forward index's arrays, in its own term ids)
    with the rows ``rows`` replaced or appended by a delta (in this vocabulary's ids). Read-only."""

    n: int
    base_indptr: np.ndarray  # int64, the base's rows + 1
    base_terms: np.ndarray  # int32, the base's term ids
    base_counts: np.ndarray  # int32
    base_titles: np.ndarray  # int32
    base_unit: np.ndarray  # float32
    base_vocab: int  # terms in the base's vocabulary
    to_base: np.ndarray  # int32 per term id here: its id in the base (-1: not there)
    rows: np.ndarray  # int64, ascending: the delta's rows
    indptr: np.ndarray  # int64, len(rows) + 1: the delta's entries
    terms: np.ndarray  # int32, this vocabulary's ids
    counts: np.ndarray  # int32
    titles: np.ndarray  # int32
    unit: np.ndarray  # float32
    # one bit per row, set for the delta's (n / 8 bytes: a query's lookups stay in the cache, where a
    # position per row, 4 MB at a million papers, cost a cache miss per looked-up row)
    bits: np.ndarray = field(init=False, repr=False)
    from_base: np.ndarray = field(init=False, repr=False)  # per base term id: its id here (-1: dropped)

    def __post_init__(self) -> None:
        self.rows = np.asarray(self.rows, dtype=np.int64)
        member = np.zeros(self.n, dtype=bool)
        member[self.rows] = True
        self.bits = np.packbits(member, bitorder="little")
        to_base = np.asarray(self.to_base)
        self.from_base = np.full(self.base_vocab, -1, dtype=np.int32)
        has = np.flatnonzero(to_base >= 0)
        self.from_base[to_base[has]] = has

    @property
    def base_n(self) -> int:
        return len(self.base_indptr) - 1

    def delta_positions(self, rows: np.ndarray) -> np.ndarray:
        """Each row's place in the delta, -1 for a row read from the base."""
        rows = np.asarray(rows, dtype=np.int64)
        hit = ((self.bits[rows >> 3] >> (rows & 7).astype(np.uint8)) & 1).astype(bool)
        at = np.full(len(rows), -1, dtype=np.int64)
        if hit.any():
            at[hit] = np.searchsorted(self.rows, rows[hit])
        return at

    def _bounds(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in the delta, first entry, entries) of each row: in the delta's arrays or the base's."""
        p = self.delta_positions(rows)
        d = p >= 0
        lo = np.empty(len(rows), dtype=np.int64)
        hi = np.empty(len(rows), dtype=np.int64)
        at, b = p[d], rows[~d]  # a row past the base is in the delta
        lo[d], hi[d] = self.indptr[at], self.indptr[at + 1]
        lo[~d], hi[~d] = self.base_indptr[b], self.base_indptr[b + 1]
        return d, lo, hi - lo

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        """Entries per row of ``rows``."""
        return self._bounds(np.asarray(rows, dtype=np.int64).reshape(-1))[2]

    def gather(self, rows: np.ndarray, fields: tuple[str, ...] = FIELDS) -> Entries:
        """The entries of ``rows`` (any order, repeats allowed), row after row, terms in this
        vocabulary's ids; of ``fields`` only (the others empty)."""
        d, lo, sizes = self._bounds(np.asarray(rows, dtype=np.int64).reshape(-1))
        idx = ranges(lo, sizes)
        in_delta = np.repeat(d, sizes)
        di, bi = idx[in_delta], idx[~in_delta]
        out = {}
        for name in FIELDS:
            if name not in fields:
                out[name] = np.zeros(0, dtype=np.float32 if name == "unit" else np.int32)
                continue
            mine, base = getattr(self, name), getattr(self, f"base_{name}")
            col = np.empty(len(idx), dtype=mine.dtype)
            col[in_delta] = mine[di]
            col[~in_delta] = self.from_base[base[bi]] if name == "terms" else base[bi]
            out[name] = col
        return Entries(sizes, **out)

    def arrays(self) -> list[np.ndarray]:
        """The arrays a query reads (for :func:`paperscope.pagein.populate`): terms and weights, not counts."""
        return [
            self.base_indptr,
            self.base_terms,
            self.base_unit,
            self.to_base,
            self.rows,
            self.indptr,
            self.terms,
            self.unit,
        ]
