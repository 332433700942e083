"""Impact-ordered postings: the lexical side's query structure, derived from ``lexical.npz`` at build.

``lexical.npz`` holds term counts (what a build carries between generations); everything a query
needs that is a function of those counts is derived once, when the generation is written, into
``lexical-impact.npz`` (uncompressed, so every array is memory-mapped on open, never read whole):

* ``idf`` and ``unit``: the TF-IDF weights of every (paper, term) entry, rows L2-normalised
  (:meth:`paperscope.lexical.LexicalIndex.unit`), in the forward (row by row) order;
* ``post_rows`` / ``post_vals``: the inverted index, grouped by term (``post_starts``), and within
  a term sorted by weight, highest first (impact order);
* ``reference``: the lexical half of the corpus' score distribution (:func:`lexical_reference`),
  which calibration needs and which costs 128 passes over the postings to compute;
* ``marks``: every ``MARK_STRIDE``-th impact of each long list and its last (:func:`_marks`), from
  which a pass places its threshold without reading the lists' heads.

A query then never sums whole postings lists. :meth:`Postings.candidates` reads the postings
with the highest contributions (the query's weight times the posting's impact) across the query's
lists, down to one threshold (score-at-a-time, :func:`_score_at_a_time`): every posting of the
heavy terms (rare terms: short lists), and only the impact-ordered head of the light ones
(common terms: long lists, small weights), at most ``budget`` postings in all. The candidates it
returns are then scored exactly (:meth:`Postings.score_rows`, from the forward index), so a score
is never approximate; only which papers are looked at is. When the query's postings fit in the
budget (every query on a small store) the candidates are exactly the lexical top.

A re-run that carried most rows does not derive the file again: it carries the previous idf and
merges the re-tokenised rows' weights and postings into the previous lists (:func:`merge`). Each
time the rows changed since the last check pass ``IDF_CHECK`` (10%) of the papers, the carried
idf is compared with the one this generation's counts give (:func:`idf_drift`: the cosine of
sampled rows' weight vectors under the two). Everything is derived again, under the fresh idf,
only when that 1st-percentile cosine falls below ``IDF_MIN_COSINE``; otherwise the idf is kept and
the count starts again. ``idf_basis`` in the file records the papers the idf was computed on and
the rows changed since the last check (or since it was computed).

A small edit does not rewrite the postings either (:func:`delta`): the postings of the last full
derivation stay in place as the *base* (``lexical-base.npz``, a hard link to the file that wrote
them, shared by every generation since), and ``lexical-impact.npz`` holds only the postings of the
rows tokenised since (the *delta*, impact-ordered, at most ``DELTA_MAX`` of the rows) with the map
from this vocabulary's term ids to the base's. A query reads both: a base posting of a row in the
delta is skipped (its row was re-tokenised; its own postings are in the delta). At the idf check, or
past ``DELTA_MAX``, the delta is merged into the base's lists (:func:`rebase`): a new base. While the
postings are a delta, the forward index and its weights are one too (:mod:`paperscope.layered_lexical`,
written by :mod:`paperscope.lexical_delta`; ``unit`` then holds the forward delta's weights only, in a
file of ``LAYERED_FORMAT_VERSION``); whenever the postings are written whole, so are they.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paperscope import kernels, layered_lexical, topk
from paperscope.errors import DamagedError
from paperscope.layered_lexical import FORWARD_FILE, LayeredRows
from paperscope.lexical import (
    Carry,
    LexicalIndex,
    PageReleaser,
    TermVector,
    Vocab,
    advise_random,
    mmap_npz,
    release_pages,
    runs_of,
    unit_weights,
)

__all__ = [
    "BASE_FILE",
    "DERIVED_FILE",
    "Delta",
    "Derived",
    "Postings",
    "delta",
    "derive",
    "idf_drift",
    "lexical_reference",
    "merge",
    "mmap_npz",
    "forward_files",
    "open_index",
    "rebase",
]

DERIVED_FILE = "lexical-impact.npz"
# The base postings of a generation whose derived file holds a delta: a hard link to the derived
# file of the generation that wrote them (whose unit and idf arrays are not read from it).
BASE_FILE = "lexical-base.npz"
FORMAT_VERSION = 1
# A derived file holding a delta over a base (format 1 readers refuse it as damaged, not misread).
DELTA_FORMAT_VERSION = 2
# A delta whose forward index is a delta too (paperscope.layered_lexical): ``unit`` holds the weights
# of the forward delta's entries only.
LAYERED_FORMAT_VERSION = 3
# Rows in the delta (tokenised since the base was written) above this share of the papers: the
# next re-run merges them into a new base instead (a query reads every posting of the delta's
# terms that the budget allows beside the base's; measured at 1M papers: docs/performance.md).
DELTA_MAX = 0.1
# Postings read per query pass (measured with benchmarks/related_1m.py: the agreement with exact
# hybrid scoring against the time per query at 1M papers; chosen again in round 16, when the
# postings read became the score-at-a-time choice of _score_at_a_time; docs/ranking.md).
BUDGET = 150_000
# Segments per budget that place the threshold of a pass (_score_at_a_time): at 1M papers 64 gave
# `related` 0.966 agreement with exact hybrid at 200,000 postings, 256 gave 0.972 (benchmarks/RESULTS.md, "Round 16").
SAT_SAMPLES = 256
# Every MARK_STRIDE-th impact of each list longer than this, and its last, are stored apart
# (``marks``, :func:`_marks`): a pass places its threshold from them (_score_at_a_time) and reads
# no list head past its first MARK_STRIDE postings but the ones it sums. Read from the lists
# themselves, that placing touched every page of every query term's head on a cold store (round
# 16: the first query after a cold open went from 0.41 to 0.74-1.01 s at 1M papers).
MARK_STRIDE = 512
REFERENCE_QUERIES = 64
REFERENCE_TARGETS = 8192
# The idf is carried between generations (only a new term gets one, from this generation's counts):
# carried weights make a 1% edit's derivation a merge of postings instead of a re-sort of all of
# them. Each time the rows re-tokenised, added or removed since the last check (or since the idf was
# computed) exceed this share of the papers, the carried idf is checked against the one this
# generation's counts give (idf_drift); everything is derived again only when it drifted.
IDF_CHECK = 0.1
# Rows (evenly spaced) whose weight vectors the idf check compares under the two idfs.
IDF_SAMPLE = 4096
# The check derives everything again when the 1st percentile of those rows' cosines (each row's unit
# weights under the carried idf against under this generation's) falls below this. A row at cosine
# c moved by an angle acos(c) (0.045 rad at 0.999): its cosine with any other row moves by at most
# sqrt(2 - 2c) per side (0.045), in practice a small part of that. Same-distribution edits stay far
# above it (benchmarks/idf_drift.py); a term that became common while carrying the idf it got as a
# rare one, or a corpus that grew several times, fall below it.
IDF_MIN_COSINE = 0.999
# Postings sorted per block when deriving (bounds the sort's memory).
CHUNK = 1 << 24


def _argsort_ties_in_order(key: np.ndarray) -> np.ndarray:
    """``np.argsort(key, kind="stable")``, from numpy's vectorised (unstable) sort.

    On 16M 64-bit keys here the stable sort took 2.8 s and the unstable one 1.3 s. Equal keys
    (the same term at the same weight in several rows) are then put back in position order, as
    the stable sort leaves them; there are few, so that costs little.
    """
    order = np.argsort(key)
    ranked = key[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if len(tied):
        members = np.union1d(tied, tied + 1)  # positions in sorted order, each in a run of equal keys
        group = np.cumsum(np.concatenate(([True], ranked[members[1:]] != ranked[members[:-1]])))
        moved = order[members]
        order[members] = moved[np.lexsort((moved, group))]
    return order


@dataclass
class Delta:
    """The postings of the rows tokenised since the base postings were written (see :func:`delta`)."""

    base_n: int  # papers of the base postings (every row from there on is a member)
    members: np.ndarray  # int32, ascending: the rows whose postings are here, not in the base
    to_base: np.ndarray  # int32 per term id of this generation: its id in the base postings, -1 when none
    starts: np.ndarray  # int64, len vocab + 1
    rows: np.ndarray  # int32, impact order within a term
    vals: np.ndarray  # float32, parallel to rows, descending within a term
    marks: np.ndarray | None = None  # _marks(starts, vals), None in a file written before them
    stale: np.ndarray = field(init=False, repr=False)  # per base row: a member (its base postings are skipped)

    def __post_init__(self) -> None:
        members = np.asarray(self.members)
        self.stale = np.zeros(self.base_n, dtype=np.bool_)
        self.stale[members[members < self.base_n]] = True


@dataclass
class Postings:
    """The derived arrays of one lexical index (see the module docstring); memory-mapped when opened.

    With a ``delta``, ``post_starts`` / ``post_rows`` / ``post_vals`` are the base's (indexed by
    the base's term ids): a term's postings are its base list without the delta's rows, and its
    delta list. :meth:`term_postings` gives that merged list.
    """

    n: int
    indptr: np.ndarray  # forward index: row r's entries are indptr[r]:indptr[r + 1] of terms / unit
    terms: np.ndarray
    unit: np.ndarray  # float32 unit-row TF-IDF weight of every entry (with ``layers``: of the forward delta's)
    idf: np.ndarray
    post_starts: np.ndarray  # int64, len vocab + 1
    post_rows: np.ndarray  # int32, impact order within a term
    post_vals: np.ndarray  # float32, parallel to post_rows, descending within a term
    reference: tuple[float, float, float, float] | None = None  # lexical mean, std; text mean, std
    # term ids in sorted order when the vocabulary is not stored sorted (empty: it is)
    vocab_order: np.ndarray | None = None
    # (papers when the idf was computed, rows re-tokenised, added or removed since the last idf check
    # or, before the first, since it was computed): see IDF_CHECK
    idf_basis: tuple[int, int] | None = None
    delta: Delta | None = None
    # _marks of the post_* lists (the base's, with a delta); None in a file written before them
    marks: np.ndarray | None = None
    # the forward index as a base and a delta (paperscope.layered_lexical): indptr, terms and unit
    # above are then empty
    layers: LayeredRows | None = None
    _scratch: threading.local = field(default_factory=threading.local, repr=False, compare=False)
    _base_scratch: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    # ---- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, lex: LexicalIndex, *, reference: bool = True) -> Postings:
        """Derive the arrays from a lexical index (in memory); ``reference`` also samples the score distribution."""
        unit, idf = lex.unit(), lex.idf()
        terms, indptr = np.asarray(lex.terms), np.asarray(lex.indptr)
        vocab = len(idf)
        starts = np.zeros(vocab + 1, dtype=np.int64)
        np.cumsum(np.bincount(terms, minlength=vocab), out=starts[1:])
        post_rows = np.empty(len(terms), dtype=np.int32)
        post_vals = np.empty(len(terms), dtype=np.float32)
        # Blocks of terms holding about CHUNK postings each (bounded memory at a million papers). In a
        # block, one sort of a 64-bit key: term in the high half, the complement of the weight's
        # float bits in the low half (a positive float32 orders as its bits): weight descending, ties by row.
        bounds = [0]
        while bounds[-1] < vocab:
            a = bounds[-1]
            bounds.append(min(vocab, max(a + 1, int(np.searchsorted(starts, starts[a] + CHUNK, side="right")) - 1)))
        # Each entry's block, once, in the smallest integer type (a byte up to 255 blocks): finding a
        # block's entries is then one pass over bytes instead of two comparisons of every term id.
        kind = np.min_scalar_type(len(bounds))
        block = np.repeat(np.arange(len(bounds) - 1, dtype=kind), np.diff(bounds))[terms]
        for i, (a, b) in enumerate(itertools.pairwise(bounds)):
            pos = np.flatnonzero(block == i)
            bits = unit[pos].view(np.uint32).astype(np.uint64)
            key = ((terms[pos] - a).astype(np.uint64) << np.uint64(32)) | (np.uint64(0xFFFFFFFF) - bits)
            order = _argsort_ties_in_order(key)
            # Each entry's row by binary search while the positions are ascending (the searches walk
            # indptr in order: 5x faster than after the sort), then put in impact order.
            post_rows[starts[a] : starts[b]] = (np.searchsorted(indptr, pos, side="right") - 1)[order]
            pos = pos[order]
            post_vals[starts[a] : starts[b]] = unit[pos]
        del block
        post = cls(lex.n, indptr, terms, unit, idf, starts, post_rows, post_vals)
        post.marks = _marks(starts, post_vals)
        post.vocab_order = _vocab_order(lex)
        if reference:
            post.reference = lexical_reference(lex, post)
        return post

    def save(self, path: Path) -> None:
        """Write the derived arrays (uncompressed, so :func:`open_index` can memory-map them).

        With a delta, the base postings are not written: they stay in the base file.
        """
        common = {
            "idf": self.idf,
            "unit": self.unit,
            "reference": np.array(self.reference if self.reference is not None else [], dtype=np.float64),
            "vocab_order": self.vocab_order if self.vocab_order is not None else np.zeros(0, dtype=np.int32),
            "idf_basis": np.array(self.idf_basis or (self.n, 0), dtype=np.int64),
            "mark_stride": np.array([MARK_STRIDE], dtype=np.int64),
        }
        d = self.delta
        with open(path, "wb") as fh:  # a file object: np.savez must not append ".npz" to the name
            if d is None:
                meta = np.array([FORMAT_VERSION, self.n, len(self.terms), len(self.idf)], dtype=np.int64)
                np.savez(
                    fh,
                    meta=meta,
                    post_starts=self.post_starts,
                    post_rows=self.post_rows,
                    post_vals=self.post_vals,
                    marks=self.marks if self.marks is not None else _marks(self.post_starts, self.post_vals),
                    **common,
                )
            else:
                # with its forward index layered, ``unit`` is the forward delta's (paperscope.layered_lexical)
                fmt, entries = (
                    (DELTA_FORMAT_VERSION, len(self.terms))
                    if self.layers is None
                    else (LAYERED_FORMAT_VERSION, len(self.unit))
                )
                meta = np.array([fmt, self.n, entries, len(self.idf)], dtype=np.int64)
                base = np.array([d.base_n, len(self.post_rows), len(self.post_starts) - 1], dtype=np.int64)
                np.savez(
                    fh,
                    meta=meta,
                    base_meta=base,
                    delta_members=d.members,
                    delta_to_base=d.to_base,
                    delta_starts=d.starts,
                    delta_rows=d.rows,
                    delta_vals=d.vals,
                    delta_marks=d.marks if d.marks is not None else _marks(d.starts, d.vals),
                    **common,
                )

    def query_arrays(self) -> list[np.ndarray]:
        """The arrays a query reads (the forward index, the weights, the postings, their marks and the
        delta's): what :meth:`paperscope.explorer.Explorer.preload` maps in up front."""
        arrays = [self.indptr, self.terms, self.unit, self.idf, self.post_starts, self.post_rows, self.post_vals]
        arrays += [a for a in (self.marks, self.vocab_order) if a is not None]
        arrays += self.layers.arrays() if self.layers is not None else []
        d = self.delta
        if d is not None:
            arrays += [d.members, d.to_base, d.starts, d.rows, d.vals]
            arrays += [d.marks] if d.marks is not None else []
        return arrays

    def term_postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, weights) of one term's postings, impact order (weight descending, ties by row)."""
        d = self.delta
        if d is None:
            lo, hi = int(self.post_starts[term]), int(self.post_starts[term + 1])
            return np.asarray(self.post_rows[lo:hi]), np.asarray(self.post_vals[lo:hi])
        rows, vals = np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32)
        b = int(d.to_base[term])
        if b >= 0:
            lo, hi = int(self.post_starts[b]), int(self.post_starts[b + 1])
            rows, vals = np.asarray(self.post_rows[lo:hi]), np.asarray(self.post_vals[lo:hi])
            keep = ~_stale(d, rows)
            rows, vals = rows[keep], vals[keep]
        lo, hi = int(d.starts[term]), int(d.starts[term + 1])
        rows, vals = np.concatenate((rows, d.rows[lo:hi])), np.concatenate((vals, d.vals[lo:hi]))
        order = np.lexsort((rows, -vals.astype(np.float64)))
        return rows[order], vals[order]

    # ---- queries -------------------------------------------------------------------------
    def score_all(self, query: TermVector) -> np.ndarray:
        """Exact cosine of every paper with ``query``, summing the whole postings of its terms."""
        if not query.nnz:
            return np.zeros(self.n, dtype=np.float64)
        d = self.delta
        if d is None:
            return _sum_lists(self.post_starts, self.post_rows, self.post_vals, query.ids, query.values, self.n)
        base_ids = d.to_base[query.ids]
        has = base_ids >= 0
        scores = _sum_lists(self.post_starts, self.post_rows, self.post_vals, base_ids[has], query.values[has], self.n)
        scores[: len(d.stale)][d.stale] = 0.0  # those rows' own postings are the delta's
        return scores + _sum_lists(d.starts, d.rows, d.vals, query.ids, query.values, self.n)

    def score_rows(self, query: TermVector, rows: np.ndarray) -> np.ndarray:
        """Exact cosine of these rows with ``query``, read from the forward index (query ids sorted)."""
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or not query.nnz:
            return np.zeros(len(rows), dtype=np.float64)
        L = self.layers
        if L is None:
            forward = (self.indptr, self.terms, self.unit)
            return _score_part(forward, len(self.idf), rows, query.ids, query.values, self._scratch)
        # Rows of the delta from its arrays; the others from the base's, with the query in the base's term ids.
        at = L.delta_positions(rows)
        in_delta = at >= 0
        delta_rows = at[in_delta].astype(np.int64)
        base = (L.base_indptr, L.base_terms, L.base_unit)
        if not len(delta_rows):  # most calls: the delta holds a few % of the rows
            return _score_part(base, L.base_vocab, rows, *self._base_query(query), self._base_scratch)
        out = np.empty(len(rows), dtype=np.float64)
        mine = (L.indptr, L.terms, L.unit)
        out[in_delta] = _score_part(mine, len(self.idf), delta_rows, query.ids, query.values, self._scratch)
        if len(delta_rows) < len(rows):
            base_rows = rows[~in_delta]
            out[~in_delta] = _score_part(base, L.base_vocab, base_rows, *self._base_query(query), self._base_scratch)
        return out

    def _base_query(self, query: TermVector) -> tuple[np.ndarray, np.ndarray]:
        """(ids, values) of ``query``'s terms that the forward base has, in its term ids; the last
        query's kept per thread (a query scores its pool several times)."""
        last = getattr(self._base_scratch, "query", None)
        if last is not None and last[0] is query.ids and last[1] is query.values:
            return last[2], last[3]
        assert self.layers is not None
        ids = self.layers.to_base[query.ids]
        has = ids >= 0
        self._base_scratch.query = (query.ids, query.values, ids[has], query.values[has])
        return ids[has], query.values[has]

    def _row_scratch(self) -> tuple[np.ndarray, np.ndarray]:
        acc = getattr(self._scratch, "acc", None)
        if acc is None or len(acc) != self.n:
            acc = self._scratch.acc = np.zeros(self.n, dtype=np.float32)
            self._scratch.seen = kernels.row_marks(self.n)
        return acc, self._scratch.seen

    def candidates(
        self, query: TermVector, m: int, mask: np.ndarray | None = None, budget: int = BUDGET
    ) -> tuple[np.ndarray, bool]:
        """(rows, exhaustive): about the m best rows for ``query`` (within ``mask``), from at most ``budget`` postings.

        The rows of :meth:`partial` with the m best partial scores (not sorted); rows tied with the
        m-th stay in, so the choice does not depend on sort order.
        """
        uniq, sums, exhaustive = self.partial(query, mask, budget)
        if m < len(uniq):
            part = np.argpartition(-sums, m - 1)[:m]
            uniq = uniq[np.flatnonzero(sums >= sums[part].min())]
        return uniq, exhaustive

    def partial(
        self, query: TermVector, mask: np.ndarray | None = None, budget: int = BUDGET
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """(rows, partial scores, exhaustive) of every allowed row met in at most ``budget`` postings.

        Rows ascending. The postings read are those that add the most to a score: every posting
        whose contribution (query weight x impact) is above one threshold, placed so that about
        ``budget`` postings pass it (:func:`_score_at_a_time`; each impact-ordered list is read to
        where its contributions fall to it). A row's partial score is the sum over the postings
        read, so at most its exact score; ``exhaustive`` is True when every posting of every positive term was
        read, and then the partial scores are the exact scores (a row not met scores 0). Negative
        query weights (``recommend``'s negative papers) only lower scores: they are left to the
        exact scoring of the candidates.
        """
        empty = np.zeros(0, dtype=np.int64)
        pos = query.values > 0
        ids, qv = query.ids[pos], query.values[pos].astype(np.float32)
        if not len(ids):
            return empty, np.zeros(0, dtype=np.float32), True
        d = self.delta
        if d is None:
            lo = self.post_starts[ids]
            lengths = self.post_starts[ids + 1] - lo
        else:
            base_ids = d.to_base[ids]
            has = base_ids >= 0
            lo = np.where(has, self.post_starts[np.maximum(base_ids, 0)], 0)
            lengths = np.where(has, self.post_starts[np.maximum(base_ids, 0) + 1] - lo, 0)
            d_lo = d.starts[ids]
            d_lengths = d.starts[ids + 1] - d_lo
        total = lengths if d is None else lengths + d_lengths
        exhaustive = int(total.sum()) <= budget
        if d is None:
            parts = [_Lists(self.post_vals, lo, lengths, self.marks, lo // MARK_STRIDE + ids)]
            take = total if exhaustive else _score_at_a_time(parts, qv, budget)[0]
        elif exhaustive:
            b_take, d_take = lengths, d_lengths
        else:
            # Both parts of a list are impact-ordered: each is read to the same threshold (the
            # delta's rows' base postings are skipped below, so a row is counted once).
            parts = [
                _Lists(self.post_vals, lo, lengths, self.marks, lo // MARK_STRIDE + np.maximum(base_ids, 0)),
                _Lists(d.vals, d_lo, d_lengths, d.marks, d_lo // MARK_STRIDE + ids),
            ]
            b_take, d_take = _score_at_a_time(parts, qv, budget)
        # Sum per row in a per-thread accumulator over all rows (float32, postings in read order),
        # marking the rows met (both left cleared for the next query); the allowed rows handed back.
        acc, seen = self._row_scratch()
        if d is None:
            uniq, sums = kernels.accumulate_sums(
                (self.post_rows, self.post_vals, lo, take), None, qv, None, acc, seen, mask
            )
        else:
            uniq, sums = kernels.accumulate_sums(
                (self.post_rows, self.post_vals, lo, b_take),
                (d.rows, d.vals, d_lo, d_take),
                qv,
                d.stale,
                acc,
                seen,
                mask,
            )
        return uniq.astype(np.int64, copy=False), sums, exhaustive


def _score_part(
    forward: tuple[np.ndarray, np.ndarray, np.ndarray],
    vocab: int,
    rows: np.ndarray,
    ids: np.ndarray,
    values: np.ndarray,
    scratch: threading.local,
) -> np.ndarray:
    """Each row's dot product with the query (``ids`` into the term ids of the forward index's
    (indptr, terms, unit), of a vocabulary of ``vocab`` terms; ``values``): the query over that vocabulary and a filter of its terms, in the
    thread's ``scratch`` arrays (cleared after), so one lookup per entry instead of a binary search."""
    indptr, terms, unit = forward
    dense = getattr(scratch, "q", None)
    if dense is None or len(dense) != vocab:
        dense = scratch.q = np.zeros(vocab, dtype=np.float64)
        scratch.bits = kernels.query_filter()
    bits = scratch.bits
    dense[ids] = values
    kernels.mark(bits, ids)
    try:
        return kernels.score_rows(indptr, terms, unit, rows, dense, bits, scratch)
    finally:
        dense[ids] = 0.0
        kernels.mark(bits, ids, on=False)


def _marks(starts: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """The impacts a pass places its threshold from, beyond the first ``MARK_STRIDE`` of a list.

    For each list longer than S = ``MARK_STRIDE`` (``starts``: offsets; ``vals``: impacts, each
    list descending), the impact at positions S - 1, 2S - 1, ... and at its last posting: mark k
    of list t, the impact at min((k + 1) S, length) - 1, is at ``starts[t] // S + t + k``. That
    slot is computed from the list's offset alone, so a pass reads no other index; the slots of
    two lists never overlap (a list of length L holds at most ceil(L / S) of them, and its next
    list's first is past them). About entries / S + vocabulary floats: 21 MB beside the 2.5 GB
    of postings at 1M papers.
    """
    S = MARK_STRIDE
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.diff(starts)
    out = np.zeros(int(starts[-1]) // S + len(lengths) + 1, dtype=np.float32)
    long = np.flatnonzero(lengths > S)
    count = -(-lengths[long] // S)
    term = np.repeat(long, count)
    k = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    out[starts[term] // S + term + k] = np.asarray(vals)[starts[term] + np.minimum((k + 1) * S, lengths[term]) - 1]
    return out


@dataclass
class _Lists:
    """The impact-ordered lists of a pass's query terms in one part (the base or a delta)."""

    vals: np.ndarray  # the part's impacts
    lo: np.ndarray  # each term's first posting in vals
    lengths: np.ndarray  # its postings
    marks: np.ndarray | None  # the part's _marks (None: read the lists themselves)
    slots: np.ndarray  # each term's first slot in marks (lo // MARK_STRIDE + its term id in the part)


def _score_at_a_time(parts: list[_Lists], weights: np.ndarray, budget: int) -> list[np.ndarray]:
    """How many postings to read from the head of each list: about ``budget`` in all, those whose
    contribution (the term's query weight x the posting's impact) is highest. ``parts`` holds the
    impact-ordered lists of the query terms in each part (a base and a delta of the same terms).

    The greedy choice for partial sums: the most score per posting read (score-at-a-time
    traversal of impact-ordered postings). The lists' heads (no list is read past ``budget``) are
    cut into segments, doubling in length up to ``budget // SAT_SAMPLES`` postings (the stride),
    then of that length (:func:`kernels.segment_ends`); a segment's last posting is its smallest.
    Taking segments from the highest last contribution down, the threshold is that of the segment
    at which the budget is reached. Every posting at or above it is counted exactly (a binary
    search per list inside the one segment where the list crosses it, :func:`kernels.counts_at`);
    the postings of the segments that straddle it (and the ties at it), whose contributions lie
    close to it, then share what the budget leaves after the segments wholly above it, in
    proportion to their counts.

    With a part's marks (:func:`_marks`; a stride of at least ``MARK_STRIDE``) the stride is a
    multiple of ``MARK_STRIDE`` and a head longer than the budget ends at one, so every segment end
    past a list's first ``MARK_STRIDE`` postings is a mark: the only postings read are those
    first ones and the few of the binary search. The choice is the one the lists themselves give
    under the same stride.
    """
    w = np.asarray(weights, dtype=np.float64)
    base_stride = max(1, budget // SAT_SAMPLES)
    heads, segs = [], []
    for i, part in enumerate(parts):
        marked = part.marks is not None and base_stride >= MARK_STRIDE
        stride = MARK_STRIDE * (base_stride // MARK_STRIDE) if marked else base_stride
        limit = budget // MARK_STRIDE * MARK_STRIDE if marked else budget
        head = np.where(part.lengths <= budget, part.lengths, limit).astype(np.int64)
        heads.append(head)
        segs.append(
            kernels.segment_ends(
                part.vals, part.marks, part.lo, part.slots, head, w, stride, MARK_STRIDE if marked else 0, i
            )
        )
    c = np.concatenate([s[3] for s in segs])
    if not len(c):
        return [np.zeros(len(p.lo), dtype=np.int64) for p in parts]
    n = np.concatenate([s[1] for s in segs])
    # (segments tied at it sort in any order: the threshold, on which all below depends, is the same)
    threshold = topk.crossing(c, n, budget)
    if threshold is None:  # every head fits
        return heads
    takes, certain = [], []
    for part, head, seg in zip(parts, heads, segs):
        term, size, _, contrib = seg
        sure = contrib > threshold  # segments wholly above the threshold
        certain.append(np.bincount(term[sure], weights=size[sure], minlength=len(part.lo)).astype(np.int64))
        takes.append(kernels.counts_at(part.vals, part.lo, head, w, threshold, seg))
    extra = [t - s for t, s in zip(takes, certain)]
    spare = budget - sum(int(s.sum()) for s in certain)
    pending = sum(int(e.sum()) for e in extra)
    if pending > spare:
        # shares by cumulative rounding: they sum to what is left, a list of one or two near the
        # threshold is not rounded down to nothing
        flat = np.concatenate(extra)
        shares = np.diff(np.cumsum(flat) * spare // pending, prepend=0)
        splits = np.cumsum([len(e) for e in extra])[:-1]
        return [s + part for s, part in zip(certain, np.split(shares, splits))]
    return takes


def _stale(d: Delta, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` (base rows) have their postings in the delta instead."""
    rows = np.asarray(rows)
    out = np.zeros(len(rows), dtype=np.bool_)
    inside = rows < len(d.stale)
    out[inside] = d.stale[rows[inside]]
    return out


def _sum_lists(
    starts: np.ndarray, rows: np.ndarray, vals: np.ndarray, ids: np.ndarray, weights: np.ndarray, n: int
) -> np.ndarray:
    """Per row, the sum over the whole lists ``ids`` of ``vals`` times the list's weight (float64)."""
    lo, hi = starts[ids], starts[ids + 1]
    idx = kernels.segments(lo, hi - lo)
    w = vals[idx].astype(np.float64) * np.repeat(np.asarray(weights, dtype=np.float64), hi - lo)
    return np.bincount(rows[idx], weights=w, minlength=n)[:n]


def _vocab_order(lex: LexicalIndex) -> np.ndarray:
    """Empty when the vocabulary is sorted (``Vocab.id_of`` bisects it as it is); else the sorting permutation."""
    vocab = lex.vocab
    if isinstance(vocab, Vocab):
        if vocab.is_sorted():
            return np.zeros(0, dtype=np.int32)
        words = [vocab[i] for i in range(len(vocab))]
    else:
        words = list(vocab)
        if all(a < b for a, b in zip(words, words[1:])):
            return np.zeros(0, dtype=np.int32)
    # sorted as the UTF-8 bytes Vocab.id_of compares
    return np.array(sorted(range(len(words)), key=lambda i: words[i].encode("utf-8", "surrogatepass")), dtype=np.int32)


def lexical_reference(lex: LexicalIndex, post: Postings) -> tuple[float, float, float, float]:
    """The lexical half of the corpus' score distribution: (mean, std) paper to paper, (mean, std) title to paper.

    Query rows are evenly spaced over the store (at most 64); each is scored against every other
    paper (at most ``REFERENCE_TARGETS``, evenly spaced), once as a paper (its unit row) and once
    with its title as free text (from the stored title counts). An index without title counts
    (tokenizer 1) uses the paper-to-paper figures for both.
    """
    n = lex.n
    qrows = np.unique(np.linspace(0, n - 1, min(n, REFERENCE_QUERIES)).astype(np.int64))
    # Above REFERENCE_TARGETS papers each query is scored against that many evenly spaced papers
    # instead of all of them: the same distribution, and a cost that does not grow with the store
    # (whole postings of common terms are long: 128 passes took minutes at a million papers).
    targets = np.unique(np.linspace(0, n - 1, REFERENCE_TARGETS).astype(np.int64)) if n > REFERENCE_TARGETS else None
    lx, tx = [], []
    for r in qrows.tolist():
        if targets is None:
            lx.append(np.delete(post.score_all(lex.rows_vector([r])), r))
            tx.append(np.delete(post.score_all(lex.title_vector(r)), r))
        else:
            # The same targets every time (the query's own row dropped after): score_rows then reads
            # their entries once and scores its copy of them (the same bits) in the 127 calls after.
            # Scoring "every target but this row" read 1.7M scattered entries per call (2.2 s at 1M).
            others = targets != r
            lx.append(post.score_rows(lex.rows_vector([r]), targets)[others])
            tx.append(post.score_rows(lex.title_vector(r), targets)[others])
    lv, xv = np.concatenate(lx), np.concatenate(tx)
    if not xv.any():
        xv = lv
    return (float(lv.mean()), max(float(lv.std()), 1e-6), float(xv.mean()), max(float(xv.std()), 1e-6))


@dataclass(frozen=True)
class Derived:
    """How :func:`derive` wrote ``lexical-impact.npz``: ``how`` is ``"linked"``, ``"delta"`` (over the
    base postings), ``"merged"`` (under the carried idf) or ``"derived"``; ``idf_check`` the record
    of the idf check when one ran (:func:`idf_drift`)."""

    how: str
    idf_check: dict[str, Any] | None = None
    delta_rows: int | None = None  # with "delta": the rows whose postings the delta holds
    forward_rows: int | None = None  # the rows of a forward index held as a delta (paperscope.layered_lexical)


def derive(
    lexical_path: Path,
    out: Path,
    previous: tuple[Path, Path] | None = None,
    carry: Carry | None = None,
    *,
    previous_base: Path | None = None,
    base_out: Path | None = None,
    previous_rows: LayeredRows | None = None,
) -> Derived:
    """Write ``lexical-impact.npz`` for ``lexical.npz`` (see the module docstring); returns how.

    ``previous`` is the previous generation's (lexical.npz, lexical-impact.npz), ``previous_base``
    its base postings file when its derived file holds a delta. When the build carried that
    lexical.npz as a hard link (no title or abstract changed), its derived file is linked too
    (minutes at 1M papers), and its base. When it carried most rows (``carry``, from
    :func:`paperscope.lexical.build_for_generation`): with ``base_out`` (where the base file goes),
    the postings stay where they are and only a delta is written (:func:`delta`); else, or when
    the delta cannot be used, the previous weights and postings are carried under the previous
    idf and only the re-tokenised rows are weighted and merged in (:func:`merge`), unless the idf
    check that runs every ``IDF_CHECK`` of rows changed finds the idf drifted. Else everything is
    derived.
    """
    check = None
    if previous is not None:
        prev_lexical, prev_derived = previous
        same = prev_derived.is_file() and prev_lexical.is_file() and os.path.samefile(lexical_path, prev_lexical)
        if same and (previous_base is None or base_out is not None):
            rows = None
            if previous_base is not None and base_out is not None:
                os.link(previous_base, base_out)
                rows = len(mmap_npz(prev_derived)["delta_members"])
            os.link(prev_derived, out)
            return Derived("linked", delta_rows=rows)
        if carry is not None and prev_derived.is_file():
            if base_out is not None:
                found = delta(prev_lexical, prev_derived, previous_base, lexical_path, carry)
                if found is not None:
                    post, base = found
                    post.save(out)
                    os.link(base, base_out)
                    assert post.delta is not None
                    return Derived("delta", delta_rows=len(post.delta.members))
            if previous_base is None:
                post, check = merge(prev_lexical, prev_derived, lexical_path, carry)
            else:
                post, check = rebase(prev_lexical, prev_derived, lexical_path, carry, previous_base, previous_rows)
            if post is not None:
                post.save(out)
                return Derived("merged", check)
    Postings.build(LexicalIndex.load(lexical_path)).save(out)
    return Derived("derived", check)


def merge(
    prev_lexical: Path, prev_derived: Path, lexical_path: Path, carry: Carry
) -> tuple[Postings | None, dict[str, Any] | None]:
    """The derived arrays of ``lexical_path`` from the previous generation's, under its idf, and
    the record of the idf check when one ran.

    A carried row has the same terms, counts and (carried) idf, so the same unit weights: they are
    copied. Only the rows tokenised afresh are weighted (a term new to the store gets the idf of
    its count now) and their postings merged into the carried ones, list by list in impact
    order (a fresh entry tied with a carried one goes after it). Once the rows changed since the
    last check pass ``IDF_CHECK`` of the papers, the carried idf is compared with this generation's
    (:func:`idf_drift`): kept (and the count restarted) unless it drifted. The arrays are None when
    it drifted or the carry is not one this merge follows (rows reordered, vocabulary not stored
    sorted): the caller derives everything.
    """
    old = _open_previous(prev_lexical, prev_derived)
    lex = LexicalIndex.open(lexical_path, len(carry.mapping))
    n, mapping, o2n = lex.n, carry.mapping, carry.old_to_new
    carried = np.flatnonzero(mapping >= 0)
    sources = mapping[carried]
    if old is None or len(o2n) != len(old.idf) or (len(sources) > 1 and not (np.diff(sources) > 0).all()):
        return None, None
    basis_n, since = old.idf_basis or (old.n, 0)
    since += max(n, old.n) - len(carried)  # rows tokenised afresh or gone (an edit counts once)
    fresh = np.flatnonzero(mapping < 0)
    terms = np.asarray(lex.terms)
    indptr = np.asarray(lex.indptr)
    f_pos = kernels.segments(indptr[fresh], np.diff(indptr)[fresh])
    f_terms = terms[f_pos]
    idf = _carried_idf(lex, old.idf, o2n, f_terms)
    starts, check, since = _starts_and_check(lex, idf, since, basis_n)
    if starts is None:
        return None, check
    unit, f_indptr, f_unit = _carried_unit(lex, old.unit, old.indptr, mapping, fresh, idf, f_pos, f_terms)
    # Postings: the carried lists without the rows gone, the fresh entries merged in.
    f_rows = np.repeat(fresh, np.diff(f_indptr))
    f_order = np.lexsort((f_rows, np.uint32(0xFFFFFFFF) - f_unit.view(np.uint32), f_terms))
    f_terms, f_rows, f_unit = f_terms[f_order], f_rows[f_order], f_unit[f_order]
    new_row = np.full(old.n, -1, dtype=np.int64)
    new_row[sources] = carried
    post_rows, post_vals = _merge_lists(
        (old.post_starts, old.post_rows, old.post_vals), o2n, new_row, starts, (f_terms, f_rows, f_unit)
    )
    post = Postings(n, indptr, terms, unit, idf, starts, post_rows, post_vals)
    post.vocab_order = np.zeros(0, dtype=np.int32)
    post.idf_basis = (basis_n, since)
    lex.attach_weights(unit, idf)
    post.reference = lexical_reference(lex, post)
    return post, check


def _merge_lists(
    old: tuple[np.ndarray, np.ndarray, np.ndarray],
    o2n: np.ndarray,
    new_row: np.ndarray,
    starts: np.ndarray,
    fresh: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, weights) of the merged postings: the ``old`` lists (starts, rows, weights; by old term
    id, impact order) without the rows ``new_row`` maps to -1 (the others renumbered through it),
    each under its term's id here (``o2n``, ascending over the kept terms: both vocabularies are
    sorted), and the ``fresh`` entries (terms, rows, weights; sorted by term, weight descending,
    row) merged in, each after the carried postings of a weight >= its own. ``starts``: the merged
    lists' offsets (this generation's document frequencies)."""
    old_starts, old_rows, old_vals = old
    f_terms, f_rows, f_unit = fresh
    vocab = len(starts) - 1
    same_rows = bool(np.array_equal(new_row[new_row >= 0], np.flatnonzero(new_row >= 0)))
    gone = new_row < 0
    # Each previous term's first id here at or after it (dropped terms have no carried posting).
    kept = o2n >= 0
    o2n_mono = np.maximum.accumulate(np.where(kept, o2n, -1)) if len(o2n) else o2n
    post_rows = np.empty(int(starts[-1]), dtype=np.int32)
    post_vals = np.empty(int(starts[-1]), dtype=np.float32)
    a = 0
    while a < vocab:
        b = min(vocab, max(a + 1, int(np.searchsorted(starts, starts[a] + CHUNK, side="right")) - 1))
        ta, tb = (int(x) for x in np.searchsorted(o2n_mono, [a, b], side="left"))
        lo, hi = int(old_starts[ta]), int(old_starts[tb])
        raw = old_rows[lo:hi]
        if same_rows:
            keep = ~gone[raw]
            rows = raw[keep]
        else:
            rows = new_row[raw]
            keep = rows >= 0
            rows = rows[keep]
        vals = old_vals[lo:hi][keep]
        # Each previous term's carried segment in ``rows``: the postings kept before its start.
        seg = np.concatenate(([0], np.cumsum(keep)))[np.asarray(old_starts[ta : tb + 1]) - lo]
        # Where each fresh posting goes among the carried ones: its term's carried segment (vals
        # descending), after every carried posting of a weight >= its own. A binary search per
        # fresh posting, all at once: no key over the carried postings is built.
        fa, fb = (int(x) for x in np.searchsorted(f_terms, [a, b], side="left"))
        k = np.searchsorted(o2n_mono[ta:tb], f_terms[fa:fb], side="left")
        left = seg[k]
        has_old = np.zeros(fb - fa, dtype=bool)
        if tb > ta:  # the fresh posting's term has carried postings (else its segment is empty)
            has_old = (k < tb - ta) & (o2n_mono[ta:tb][np.minimum(k, tb - ta - 1)] == f_terms[fa:fb])
        right = np.where(has_old, seg[np.minimum(k + 1, tb - ta)], left)
        fv = f_unit[fa:fb]
        while True:
            active = left < right
            if not active.any():
                break
            mid = (left + right) // 2
            after = active & (vals[np.minimum(mid, max(len(vals) - 1, 0))] >= fv)
            left = np.where(after, mid + 1, left)
            right = np.where(active & ~after, mid, right)
        at = left + np.arange(fb - fa)
        size = len(rows) + fb - fa
        if size != starts[b] - starts[a]:
            raise ValueError(f"internal: postings of terms {a}..{b}: {size} merged, {starts[b] - starts[a]} counted")
        is_fresh = np.zeros(size, dtype=bool)
        is_fresh[at] = True
        seg_rows, seg_vals = post_rows[starts[a] : starts[b]], post_vals[starts[a] : starts[b]]
        seg_rows[at], seg_vals[at] = f_rows[fa:fb], f_unit[fa:fb]
        seg_rows[~is_fresh], seg_vals[~is_fresh] = rows, vals
        release_pages(old_rows)
        a = b
    return post_rows, post_vals


def _starts_and_check(
    lex: LexicalIndex, idf: np.ndarray, since: int, basis_n: int
) -> tuple[np.ndarray | None, dict[str, Any] | None, int]:
    """(this generation's postings offsets, the idf check's record when one ran, the rows changed
    since it). The offsets are None when the check found the carried ``idf`` drifted."""
    terms, n, vocab = np.asarray(lex.terms), lex.n, len(lex.vocab)
    # Postings per term (its document frequencies: a row holds a term once).
    starts = np.zeros(vocab + 1, dtype=np.int64)
    for lo in range(0, len(terms), CHUNK):
        starts[1:] += np.bincount(terms[lo : lo + CHUNK], minlength=vocab)
        release_pages(terms)
    check = None
    if since > IDF_CHECK * max(n, 1):
        check = idf_drift(lex, idf, starts[1:].copy())
        check.update(rows_since_check=since, computed_at=basis_n, papers=n)
        if check["decision"] != "kept":
            return None, check, since
        since = 0
    np.cumsum(starts, out=starts)
    return starts, check, since


def _carried_idf(lex: LexicalIndex, old_idf: np.ndarray, o2n: np.ndarray, f_terms: np.ndarray) -> np.ndarray:
    return carried_idf(lex.vocab, lex.n, lex.phrase_weight, old_idf, o2n, f_terms)


def carried_idf(
    vocab_terms: Sequence[str], n: int, phrase_weight: float, old_idf: np.ndarray, o2n: np.ndarray, f_terms: np.ndarray
) -> np.ndarray:
    """The idf carried for every term still used, from this generation's counts for a new term
    (``f_terms``: the term of every entry of the rows tokenised afresh; ``vocab_terms`` this
    generation's vocabulary, of ``n`` papers)."""
    vocab = len(vocab_terms)
    idf = np.empty(vocab, dtype=np.float32)
    kept = o2n >= 0
    idf[o2n[kept]] = old_idf[kept]
    new_term = np.ones(vocab, dtype=bool)
    new_term[o2n[kept]] = False
    new_ids = np.flatnonzero(new_term)
    if len(new_ids):
        df = np.bincount(f_terms, minlength=vocab)[new_ids].astype(np.float64)
        fresh_idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
        if phrase_weight != 1.0:
            fresh_idf[[" " in vocab_terms[int(t)] for t in new_ids]] *= phrase_weight
        idf[new_ids] = fresh_idf.astype(np.float32)
    return idf


def _carried_unit(
    lex: LexicalIndex,
    old_unit: np.ndarray,
    old_indptr: np.ndarray | None,
    mapping: np.ndarray,
    fresh: np.ndarray,
    idf: np.ndarray,
    f_pos: np.ndarray,
    f_terms: np.ndarray,
    layered: LayeredRows | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit weights of every entry, the fresh rows' CSR offsets, their weights): carried rows'
    copied (runs of consecutive rows are slices; a block of rows at a time through ``layered``
    when the previous rows are a base and a delta), the fresh rows' (entries ``f_pos``) computed."""
    indptr = np.asarray(lex.indptr)
    carried = np.flatnonzero(mapping >= 0)
    unit = np.empty(len(lex.terms), dtype=np.float32)
    if layered is not None:
        released = PageReleaser(layered.base_unit)
        for start in range(0, len(carried), 65_536):
            block = carried[start : start + 65_536]
            part = layered.gather(mapping[block], ("unit",)).unit
            unit[kernels.segments(indptr[block], np.diff(indptr)[block])] = part
            released.read(part.nbytes)
    else:
        released = PageReleaser(old_unit)
        for first, last in runs_of(carried, mapping[carried]):
            a, b = int(old_indptr[mapping[first]]), int(old_indptr[mapping[last] + 1])
            unit[int(indptr[first]) : int(indptr[first]) + b - a] = old_unit[a:b]
            released.read(4 * (b - a))  # read once: do not keep the previous file resident (peak RSS)
    f_indptr = np.concatenate(([0], np.cumsum(np.diff(indptr)[fresh])))
    f_unit = unit_weights(
        f_indptr, f_terms, np.asarray(lex.counts)[f_pos], np.asarray(lex.title_counts)[f_pos], idf, lex.title_boost
    )
    unit[f_pos] = f_unit
    return unit, f_indptr, f_unit


def rebase(
    prev_lexical: Path,
    prev_derived: Path,
    lexical_path: Path,
    carry: Carry,
    prev_base: Path | None = None,
    prev_rows: LayeredRows | None = None,
) -> tuple[Postings | None, dict[str, Any] | None]:
    """As :func:`merge` (the carried idf, the idf check when due), when the previous derived file
    holds a delta over ``prev_base``: a new base. The weights are carried and computed as there;
    the base's lists, without the rows in the delta or tokenised now, are merged with those rows'
    postings (:func:`_merge_lists`), or, when rows were renumbered or removed, sorted afresh. None
    when the idf drifted or the previous file is not one this follows: the caller derives everything."""
    try:
        d = mmap_npz(prev_derived)
        old_idf, old_unit, basis = d["idf"], d["unit"], d["idf_basis"]
        old_n = int(d["meta"][1])
        # previous rows as a base and a delta: read through prev_rows (its weights too)
        old_indptr = mmap_npz(prev_lexical)["indptr"] if prev_rows is None else None
        if len(d["vocab_order"]) or (old_indptr is not None and len(old_indptr) != old_n + 1):
            return None, None
        before, base = None, None
        if int(d["meta"][0]) in (DELTA_FORMAT_VERSION, LAYERED_FORMAT_VERSION) and prev_base is not None:
            b = mmap_npz(prev_base)
            base = (b["post_starts"], b["post_rows"], b["post_vals"])
            before = delta_of(d)
    except (OSError, KeyError, ValueError, IndexError):
        return None, None
    lex = LexicalIndex.open(lexical_path, len(carry.mapping))
    n, mapping, o2n = lex.n, carry.mapping, carry.old_to_new
    if len(o2n) != len(old_idf):
        return None, None
    carried = np.flatnonzero(mapping >= 0)
    basis_n, since = (int(basis[0]), int(basis[1])) if basis.shape == (2,) else (old_n, 0)
    since += max(n, old_n) - len(carried)
    fresh = np.flatnonzero(mapping < 0)
    terms, indptr = np.asarray(lex.terms), np.asarray(lex.indptr)
    vocab = len(lex.vocab)
    f_pos = kernels.segments(indptr[fresh], np.diff(indptr)[fresh])
    idf = _carried_idf(lex, old_idf, o2n, terms[f_pos])
    starts, check, since = _starts_and_check(lex, idf, since, basis_n)
    if starts is None:
        return None, check
    unit, _, _ = _carried_unit(lex, old_unit, old_indptr, mapping, fresh, idf, f_pos, terms[f_pos], prev_rows)
    same_rows = n >= old_n and bool(np.array_equal(mapping[carried], carried))
    if before is not None and base is not None and same_rows:
        members = np.union1d(before.members, fresh)
        m_terms, m_rows, m_unit = _entries_of(members, indptr, terms, unit)
        to_base = map_to_base(before.to_base, o2n, vocab)
        base_o2n = np.full(len(base[0]) - 1, -1, dtype=np.int64)
        has = np.flatnonzero(to_base >= 0)
        base_o2n[to_base[has]] = has
        new_row = np.arange(before.base_n, dtype=np.int64)
        new_row[members[members < before.base_n]] = -1  # their postings come from this generation's rows
        post_rows, post_vals = _merge_lists(base, base_o2n, new_row, starts, (m_terms, m_rows, m_unit))
        post = Postings(n, indptr, terms, unit, idf, starts, post_rows, post_vals)
        post.vocab_order = np.zeros(0, dtype=np.int32)
        lex.attach_weights(unit, idf)
        post.reference = lexical_reference(lex, post)
    else:
        lex.attach_weights(unit, idf)
        post = Postings.build(lex)
    post.idf_basis = (basis_n, since)
    return post, check


def delta_of(d: dict[str, np.ndarray]) -> Delta:
    """The delta a derived file of ``DELTA_FORMAT_VERSION`` holds (its memory-mapped arrays)."""
    return Delta(
        int(d["base_meta"][0]),
        d["delta_members"],
        d["delta_to_base"],
        d["delta_starts"],
        d["delta_rows"],
        d["delta_vals"],
    )


def _entries_of(
    rows: np.ndarray, indptr: np.ndarray, terms: np.ndarray, unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(terms, rows, weights) of every entry of ``rows`` (ascending), sorted by term, weight
    descending, then row: the order of a postings list."""
    sizes = np.diff(indptr)[rows]
    pos = kernels.segments(indptr[rows], sizes)
    e_terms, e_unit = terms[pos], unit[pos]
    e_rows = np.repeat(rows, sizes).astype(np.int32)
    order = np.lexsort((e_rows, np.uint32(0xFFFFFFFF) - e_unit.view(np.uint32), e_terms))
    return e_terms[order], e_rows[order], e_unit[order]


def map_to_base(prev_to_base: np.ndarray, o2n: np.ndarray, vocab: int) -> np.ndarray:
    """Each term id of this generation's vocabulary in the base's (-1: not there), through the
    previous generation's ids (``o2n``) and their base ids (``prev_to_base``)."""
    to_base = np.full(vocab, -1, dtype=np.int32)
    kept = o2n >= 0
    to_base[o2n[kept]] = np.asarray(prev_to_base)[kept]
    return to_base


def delta(
    prev_lexical: Path, prev_derived: Path, prev_base: Path | None, lexical_path: Path, carry: Carry
) -> tuple[Postings, Path] | None:
    """(the derived arrays of ``lexical_path`` as a delta over the base postings, the base's file), or None.

    The base is the previous generation's (its own postings, or the base it read). The delta holds
    the postings of every row tokenised since the base was written: the previous delta's rows and
    this run's, weighted under the carried idf as :func:`merge` weights them. None (the caller
    merges, or derives everything) when rows were renumbered or removed, when the idf check is due
    (``IDF_CHECK``), when the delta would pass ``DELTA_MAX`` of the rows, or when the previous
    files are not ones this follows.
    """
    try:
        d = mmap_npz(prev_derived)
        meta = d["meta"]
        fmt, old_n = int(meta[0]), int(meta[1])
        if len(d["vocab_order"]):
            return None
        if fmt == FORMAT_VERSION:
            base_path, base, before = prev_derived, d, None
        elif fmt == DELTA_FORMAT_VERSION and prev_base is not None:
            base_path, base, before = prev_base, mmap_npz(prev_base), delta_of(d)
        else:
            return None
        if stored_marks(base, "marks", base["post_starts"], Path(base_path)) is None:
            return None  # a base written before the marks: this run writes a new one, with them
        old_idf, old_unit, basis = d["idf"], d["unit"], d["idf_basis"]
        base_starts, base_rows, base_vals = base["post_starts"], base["post_rows"], base["post_vals"]
        base_n = int(base["meta"][1])
        old_indptr = mmap_npz(prev_lexical)["indptr"]
    except (OSError, KeyError, ValueError, IndexError):
        return None
    lex = LexicalIndex.open(lexical_path, len(carry.mapping))
    n, mapping, o2n = lex.n, carry.mapping, carry.old_to_new
    carried = np.flatnonzero(mapping >= 0)
    if n < old_n or len(o2n) != len(old_idf) or len(old_indptr) != old_n + 1:
        return None
    if not np.array_equal(mapping[carried], carried):  # rows renumbered: the base's rows would be wrong
        return None
    basis_n, since = (int(basis[0]), int(basis[1])) if basis.shape == (2,) else (old_n, 0)
    since += n - len(carried)  # rows tokenised afresh or added (an edit counts once)
    if since > IDF_CHECK * max(n, 1):
        return None
    fresh = np.flatnonzero(mapping < 0)
    members = np.union1d(before.members if before is not None else np.zeros(0, dtype=np.int64), fresh)
    if len(members) > DELTA_MAX * max(n, 1):
        return None
    terms, indptr = np.asarray(lex.terms), np.asarray(lex.indptr)
    vocab = len(lex.vocab)
    f_pos = kernels.segments(indptr[fresh], np.diff(indptr)[fresh])
    idf = _carried_idf(lex, old_idf, o2n, terms[f_pos])
    unit, _, _ = _carried_unit(lex, old_unit, old_indptr, mapping, fresh, idf, f_pos, terms[f_pos])
    # The delta's postings: every entry of its rows, in impact order per term (ties by row).
    m_terms, m_rows, m_unit = _entries_of(members, indptr, terms, unit)
    starts = np.zeros(vocab + 1, dtype=np.int64)
    np.cumsum(np.bincount(m_terms, minlength=vocab), out=starts[1:])
    # This vocabulary's term ids in the base's: through the previous generation's ids.
    prev_to_base = before.to_base if before is not None else np.arange(len(old_idf), dtype=np.int32)
    post = Postings(n, indptr, terms, unit, idf, base_starts, base_rows, base_vals)
    post.delta = Delta(base_n, members.astype(np.int32), map_to_base(prev_to_base, o2n, vocab), starts, m_rows, m_unit)
    post.vocab_order = np.zeros(0, dtype=np.int32)
    post.idf_basis = (basis_n, since)
    lex.attach_weights(unit, idf)
    post.reference = lexical_reference(lex, post)
    return post, Path(base_path)


def idf_drift(lex: LexicalIndex, idf: np.ndarray, df: np.ndarray) -> dict[str, Any]:
    """How far the carried ``idf`` is from the one ``lex``'s document frequencies ``df`` give.

    The fresh idf is :meth:`LexicalIndex.idf`'s of this generation (what a full derivation would
    use). On ``IDF_SAMPLE`` evenly spaced rows (rows without terms left out), each row's unit
    weights are computed under both, and their cosine taken: 1 when the idf change leaves the row's
    direction alone. ``decision`` is "kept" when the 1st percentile of those cosines is at least
    ``IDF_MIN_COSINE``, else "refreshed". Deterministic: no random sample, no clock in the decision.
    """
    t0 = time.perf_counter()
    n = lex.n
    fresh = np.log((1.0 + n) / (1.0 + df.astype(np.float64))) + 1.0
    if lex.phrase_weight != 1.0:
        fresh[_phrases(lex)] *= lex.phrase_weight
    fresh = fresh.astype(np.float32)
    indptr = np.asarray(lex.indptr)
    rows = np.unique(np.linspace(0, n - 1, min(n, IDF_SAMPLE)).astype(np.int64)) if n else np.zeros(0, np.int64)
    sizes = np.diff(indptr)[rows]
    rows, sizes = rows[sizes > 0], sizes[sizes > 0]
    pos = kernels.segments(indptr[rows], sizes)
    s_indptr = np.concatenate(([0], np.cumsum(sizes)))
    s_terms = np.asarray(lex.terms)[pos]
    counts, titles = np.asarray(lex.counts)[pos], np.asarray(lex.title_counts)[pos]
    carried = unit_weights(s_indptr, s_terms, counts, titles, idf, lex.title_boost)
    now = unit_weights(s_indptr, s_terms, counts, titles, fresh, lex.title_boost)
    owner = np.repeat(np.arange(len(rows)), sizes)
    cosine = np.bincount(owner, weights=carried.astype(np.float64) * now, minlength=len(rows))
    p1 = float(np.percentile(cosine, 1)) if len(cosine) else 1.0
    return {
        "decision": "kept" if p1 >= IDF_MIN_COSINE else "refreshed",
        "row_cosine_p1": round(p1, 6),
        "row_cosine_min": round(float(cosine.min()), 6) if len(cosine) else 1.0,
        "min_cosine": IDF_MIN_COSINE,
        "sample_rows": int(len(rows)),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _phrases(lex: LexicalIndex) -> np.ndarray:
    """Which vocabulary terms are bigrams (hold a space); from the UTF-8 bytes of a mapped vocabulary."""
    vocab = lex.vocab
    if isinstance(vocab, Vocab):
        at = np.flatnonzero(np.asarray(vocab.data) == ord(" "))
        mask = np.zeros(len(vocab), dtype=bool)
        mask[np.searchsorted(np.asarray(vocab.offsets), at, side="right") - 1] = True
        return mask
    return np.fromiter((" " in t for t in vocab), dtype=bool, count=len(vocab))


def _open_previous(prev_lexical: Path, prev_derived: Path) -> Postings | None:
    """The previous generation's derived arrays (memory-mapped), None when a merge cannot use them."""
    try:
        d = mmap_npz(prev_derived)
        meta = d["meta"]
        if int(meta[0]) != FORMAT_VERSION or len(d["vocab_order"]):
            return None  # another format, or a vocabulary not stored sorted
        ip = mmap_npz(prev_lexical)["indptr"]
        n = int(meta[1])
        if len(ip) != n + 1 or int(ip[-1]) != int(meta[2]) or len(d["unit"]) != int(meta[2]):
            return None
        post = Postings(
            n, ip, np.zeros(0, dtype=np.int32), d["unit"], d["idf"], d["post_starts"], d["post_rows"], d["post_vals"]
        )
        basis = d.get("idf_basis")
        post.idf_basis = (int(basis[0]), int(basis[1])) if basis is not None and basis.shape == (2,) else None
        return post
    except (OSError, KeyError, ValueError):
        return None


def open_index(
    lexical_path: Path,
    derived_path: Path,
    n: int,
    base_path: Path | None = None,
    forward: tuple[Path, Path] | None = None,
) -> tuple[LexicalIndex, Postings]:
    """The lexical index and its postings for queries, both memory-mapped: O(1) work on open.

    ``base_path`` is the generation's base postings file (``BASE_FILE``), read when the derived
    file holds a delta; ``forward`` its forward base files (:mod:`paperscope.layered_lexical`),
    read when ``lexical.npz`` holds a delta of rows. The build checked the arrays; the checks here
    are those that cost nothing (lengths, format, rows); ``paperscope verify`` checks every byte
    against the manifest.
    """
    d = mmap_npz(derived_path)
    z = mmap_npz(lexical_path)
    layered = "forward_meta" in z
    lex = open_layered(z, d, lexical_path, derived_path, n, forward) if layered else LexicalIndex.open(lexical_path, n)
    meta = d.get("meta")
    is_delta = (
        meta is not None and meta.shape == (4,) and int(meta[0]) in (DELTA_FORMAT_VERSION, LAYERED_FORMAT_VERSION)
    )
    need = ("idf", "unit", "reference", "vocab_order")
    need += _DELTA_KEYS if is_delta else ("post_starts", "post_rows", "post_vals")
    entries = len(lex.layers.terms) if lex.layers is not None else len(lex.terms)
    ok = (
        meta is not None
        and all(k in d for k in need)
        and meta.shape == (4,)
        and int(meta[0]) == (LAYERED_FORMAT_VERSION if layered else int(meta[0]))
        and int(meta[0]) in ((LAYERED_FORMAT_VERSION,) if layered else (FORMAT_VERSION, DELTA_FORMAT_VERSION))
        and int(meta[1]) == n
        and int(meta[2]) == entries == len(d["unit"])
        and int(meta[3]) == len(lex.vocab) == len(d["idf"])
        and d["reference"].shape in ((0,), (4,))
        and len(d["vocab_order"]) in (0, len(d["idf"]))
    )
    if ok and not is_delta:
        ok = len(d["post_rows"]) == len(d["post_vals"]) == int(meta[2]) and len(d["post_starts"]) == int(meta[3]) + 1
    if ok and is_delta:
        ok = (
            len(d["delta_to_base"]) == int(meta[3])
            and len(d["delta_starts"]) == int(meta[3]) + 1
            and len(d["delta_rows"]) == len(d["delta_vals"]) == int(d["delta_starts"][-1])
            and d["base_meta"].shape == (3,)
            and 0 <= int(d["base_meta"][0]) <= n
            and len(d["delta_members"]) <= n
        )
    if not ok:
        raise DamagedError(derived_path, f"damaged (does not match lexical.npz: {n} rows, {entries} entries)")
    lex.attach_weights(d["unit"] if lex.layers is None else None, d["idf"])
    if len(d["vocab_order"]):
        assert isinstance(lex.vocab, Vocab)
        lex.vocab.order = d["vocab_order"]
    ref = d["reference"]
    reference = tuple(float(x) for x in ref) if len(ref) == 4 else None
    if not is_delta:
        post_arrays = (d["post_starts"], d["post_rows"], d["post_vals"])
        delta_part = None
    else:
        post_arrays, delta_part, base_marks = _open_base(d, base_path, derived_path)
    # Queries read scattered rows and postings: no read-ahead on a cold page (see advise_random).
    forward_arrays = lex.layers.arrays() if lex.layers is not None else [lex.indptr, lex.terms, lex.title_counts]
    advise_random(*d.values(), *post_arrays, *forward_arrays)
    post = Postings(n, lex.indptr, lex.terms, d["unit"], d["idf"], *post_arrays, reference)  # type: ignore[arg-type]
    post.layers = lex.layers
    post.delta = delta_part
    post.marks = stored_marks(d, "marks", post.post_starts, derived_path) if delta_part is None else base_marks
    return lex, post


def forward_files(directory: Path, files: dict[str, Any]) -> tuple[Path, Path] | None:
    """A generation's forward base files (:mod:`paperscope.layered_lexical`), None when it has none
    (``files``: its manifest's record of them)."""
    names = (layered_lexical.FORWARD_FILE, layered_lexical.FORWARD_UNIT_FILE)
    return (directory / names[0], directory / names[1]) if all(f in files for f in names) else None


def open_layered(
    z: dict[str, np.ndarray],
    d: dict[str, np.ndarray],
    lexical_path: Path,
    derived_path: Path,
    n: int,
    forward: tuple[Path, Path] | None,
) -> LexicalIndex:
    """A ``lexical.npz`` holding a delta of rows (``z``), with its forward base: O(1) checks, as
    :meth:`LexicalIndex.open` makes them."""
    need = ("vocab_utf8", "vocab_offsets", "tokenizer_version", *layered_lexical.KEYS)
    if not all(k in z for k in need):
        raise DamagedError(lexical_path, "damaged (not a lexical index of this version)")
    # (files beside it when not named: the generation's own)
    fpath, upath = forward or (
        lexical_path.parent / FORWARD_FILE,
        lexical_path.parent / layered_lexical.FORWARD_UNIT_FILE,
    )
    if not fpath.is_file() or not upath.is_file():
        raise DamagedError(lexical_path, f"damaged (holds a delta of rows, and the generation has no {FORWARD_FILE})")
    try:
        fz, fu = mmap_npz(fpath), mmap_npz(upath)
        b_ip, b_terms = fz["indptr"], fz["terms"]
        base_ok = len(b_ip) == int(z["forward_meta"][1]) + 1 and int(b_ip[-1]) == len(b_terms) == len(
            fz["counts"]
        ) == len(fz["title_counts"]) == len(fu["unit"])
        base = (b_ip, b_terms, fz["counts"], fz["title_counts"], fu["unit"], len(fz["vocab_offsets"]) - 1)
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise DamagedError(fpath, f"damaged ({type(e).__name__}: {e})") from None
    if not base_ok:
        raise DamagedError(fpath, f"damaged (does not match the base {lexical_path.name} records)")
    meta, ip, rows = z["forward_meta"], z["delta_indptr"], z["delta_rows"]
    vocab = len(z["vocab_offsets"]) - 1
    ok = (
        meta.shape == (2,)
        and int(meta[0]) == n
        and int(meta[1]) <= n
        and len(z["forward_to_base"]) == vocab
        and len(ip) == len(rows) + 1
        and (not len(rows) or (int(rows[0]) >= 0 and int(rows[-1]) < n))
        and n - int(meta[1]) <= len(rows)
        and int(ip[-1]) == len(z["delta_terms"]) == len(z["delta_counts"]) == len(z["delta_titles"]) == len(d["unit"])
    )
    if not ok:
        raise DamagedError(lexical_path, f"inconsistent lexical index (rows {int(meta[0])}, expected {n})")
    b_ip, b_terms, b_counts, b_titles, b_unit, b_vocab = base
    layers = LayeredRows(
        n, b_ip, b_terms, b_counts, b_titles, b_unit, b_vocab, z["forward_to_base"], rows, ip,
        z["delta_terms"], z["delta_counts"], z["delta_titles"], d["unit"],
    )  # fmt: skip
    empty = np.zeros(0, dtype=np.int32)
    return LexicalIndex(
        Vocab(z["vocab_utf8"], z["vocab_offsets"]),
        np.zeros(1, dtype=np.int64),
        empty,
        empty,
        empty,
        version=int(z["tokenizer_version"]),
        layers=layers,
    )


def stored_marks(d: dict[str, np.ndarray], key: str, starts: np.ndarray, path: Path) -> np.ndarray | None:
    """The file's :func:`_marks` of the lists at ``starts``; None when it has none (written before
    them) or they were written for another ``MARK_STRIDE`` (the lists are read instead)."""
    marks, stride = d.get(key), d.get("mark_stride")
    if marks is None or stride is None or stride.shape != (1,) or int(stride[0]) != MARK_STRIDE:
        return None
    if len(marks) != int(starts[-1]) // MARK_STRIDE + len(starts):
        raise DamagedError(path, f"damaged ({key}: {len(marks)} values for {len(starts) - 1} lists)")
    return marks


_DELTA_KEYS = ("base_meta", "delta_members", "delta_to_base", "delta_starts", "delta_rows", "delta_vals")


def _open_base(
    d: dict[str, np.ndarray], base_path: Path | None, derived_path: Path
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], Delta, np.ndarray | None]:
    """The base postings a delta file names (checked against its record of them), the delta, and
    the base's marks (None when it has none)."""
    if base_path is None:
        raise DamagedError(derived_path, f"damaged (holds a delta, and the generation has no {BASE_FILE})")
    try:
        base = mmap_npz(base_path)
        arrays = (base["post_starts"], base["post_rows"], base["post_vals"])
        base_n, entries, vocab = (int(x) for x in d["base_meta"])
        ok = (
            int(base["meta"][1]) == base_n
            and len(arrays[1]) == len(arrays[2]) == entries
            and len(arrays[0]) == vocab + 1
            and int(arrays[0][-1]) == entries
        )
    except (OSError, KeyError, ValueError, IndexError) as e:
        raise DamagedError(base_path, f"damaged ({type(e).__name__}: {e})") from None
    if not ok:
        raise DamagedError(base_path, f"damaged (does not match the base {derived_path.name} records)")
    part = Delta(base_n, d["delta_members"], d["delta_to_base"], d["delta_starts"], d["delta_rows"], d["delta_vals"])
    part.marks = stored_marks(d, "delta_marks", part.starts, derived_path)
    return arrays, part, stored_marks(base, "marks", arrays[0], base_path)
