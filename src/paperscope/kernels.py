"""The inner loops of a lexical query: compiled (numba) once loaded, numpy until then, the same bits.

Two loops dominate a hybrid query at a million papers (cProfile, round 10): scoring the candidate
pool exactly from the forward index (:func:`score_rows`: about 1,200 rows of about 170 entries, a
few times a query) and summing the postings the lexical pass reads (:func:`accumulate_sums`: 150,000
postings). In numpy each is a chain of gathers and temporaries (8.8 and 5.2 ms a query); compiled,
each reads its entries once. Two more place a pass's score-at-a-time threshold
(:func:`segment_ends`, :func:`counts_at`: 1.4 ms a `related` query in numpy, 0.8 ms compiled,
round 17); the compiled one writes the same segments in another order, which the threshold does
not depend on.

numba comes with umap-learn (the map needs it), but importing it and loading the compiled loops
from its cache takes about half a second, which the first query after opening a store cannot
afford (the ranking issue asks for 0.5 s in all). So the numpy loops answer until :func:`load`
has run: :func:`load_in_background` starts it on a daemon thread (``rank.Ranker`` asks for it
once a large store has answered ``rank.COMPILED_AFTER`` queries; ``paperscope serve`` loads it as
it warms up). The
two give the same bits, so which one answered is never visible: the numpy loops do the same
float operations in the same order (``np.add.reduceat``'s sum of a segment, ``np.add.at``'s
accumulation), and ``tests/unit/test_kernels.py`` compares them.

``PAPERSCOPE_KERNELS=numpy`` keeps the numpy loops (for a platform where numba misbehaves).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import numpy as np

from paperscope import pagein

__all__ = [
    "accumulate_sums",
    "counts_at",
    "load",
    "load_in_background",
    "mark",
    "numpy_only",
    "query_filter",
    "ready",
    "row_marks",
    "score_rows",
    "segment_ends",
    "segments",
]

# Rows scored first, and timed, before the rest: compiled code reading a memory map whose pages
# are not in memory takes their faults one by one; the numpy path (pagein.take) overlaps them.
HEAD_ROWS = 16
# Bytes a forward-index entry occupies (an int32 term, a float32 weight).
_ENTRY_BYTES = 8
# The query-term filter of score_rows: this many bits, a term marked by its low 16 bits (jitted.py).
FILTER_BITS = 1 << 16
# The compiled score_rows copies a warm pool's entries out (and keeps them for the next call on the
# same rows) when they are at most this many: 32 MB of copies; a hybrid pool is about 250,000.
GATHER_MAX = 1 << 22

_jit: ModuleType | None = None
_numpy_only = False  # numpy_only()
_lock = threading.Lock()
_starting = threading.Lock()  # load_in_background's
_scratch = threading.local()  # each thread's buffers for accumulate_sums and segment_ends
_loader: threading.Thread | None = None


def ready() -> bool:
    """Whether the compiled loops are loaded (queries then use them)."""
    return _jit is not None


def load() -> bool:
    """Import the compiled loops (numba; compiled on first use, then from its on-disk cache); True if loaded.

    A failure to import or compile leaves the numpy loops in use: they give the same results.
    """
    global _jit
    if _jit is not None:
        return True
    if os.environ.get("PAPERSCOPE_KERNELS", "").lower() == "numpy":
        return False
    with _lock:
        if _jit is None:
            try:
                from paperscope import jitted

                # Compile (or load from the cache) every signature a query uses now, not on the
                # first query that would need it.
                _warm(jitted)
            except Exception:  # noqa: BLE001 - any numba failure means: keep the numpy loops
                return False
            _jit = jitted
    return True


def load_in_background() -> None:
    """Start :func:`load` on a daemon thread (once); queries use the numpy loops until it is done.

    A daemon thread, so a one-query command exits without waiting for it.
    """
    global _loader
    # Not under _lock: load() holds that while it imports (half a second), and a query calling this
    # after each answer would wait for it (queries 12 on of a fresh process, 8 ms each in all).
    with _starting:
        if _jit is not None or _loader is not None:
            return
        _loader = threading.Thread(target=load, name="paperscope-kernels", daemon=True)
        _loader.start()


@contextmanager
def numpy_only() -> Iterator[None]:
    """Within the block, queries use the numpy loops even when the compiled ones are loaded (or load
    meanwhile). For comparing the two (tests, ``benchmarks/related_1m.py``); it applies to every
    thread's queries, not just this one's."""
    global _numpy_only
    saved, _numpy_only = _numpy_only, True
    try:
        yield
    finally:
        _numpy_only = saved


def _warm(jitted: ModuleType) -> None:
    # The argument types every call passes (see _read_only): one compiled version of each loop.
    indptr, terms = _read_only(np.array([0, 2], dtype=np.int64)), _read_only(np.zeros(2, dtype=np.int32))
    unit, post_rows = _read_only(np.ones(2, dtype=np.float32)), _read_only(np.zeros(2, dtype=np.int32))
    jitted.score_rows(indptr, terms, unit, np.zeros(1, np.int64), np.zeros(1), np.ones(1, np.uint64))
    offsets, g_terms, g_unit = np.array([0, 2], dtype=np.int64), np.zeros(2, np.int32), np.zeros(2, np.float32)
    jitted.gather(indptr, terms, unit, np.zeros(1, np.int64), offsets, g_terms, g_unit)
    jitted.score_gathered(offsets, g_terms, g_unit, np.zeros(1), np.ones(1, np.uint64))
    one_row = np.zeros(1, np.int64)
    jitted.accumulate_sorted(
        post_rows, unit, one_row, np.ones(1, np.int64), post_rows, unit, one_row, np.ones(1, np.int64),
        np.ones(1, np.float32), np.zeros(1, np.bool_), np.ones(1, np.bool_), np.zeros(1, np.float32), row_marks(1),
        np.zeros(2, np.int32), np.zeros(2, np.float32), np.zeros(2, np.int64), np.zeros(2, np.float32),
    )  # fmt: skip
    one, w = np.zeros(1, np.int64), np.ones(1)
    out = (np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4, np.int64), np.zeros(4))
    jitted.segment_ends(unit, unit, one, one, np.ones(1, np.int64), w, 1, 0, *out)
    jitted.counts_at(unit, one, np.ones(1, np.int64), w, 0.5, out[0][:1], out[2][:1], out[3][:1], np.zeros(1, np.int64))


def _compiled_types(indptr: np.ndarray | None, terms: np.ndarray, weights: np.ndarray) -> bool:
    """Whether a store's arrays have the types the loops were compiled for (any other would be
    compiled on the spot, seconds, inside a query: such a store keeps the numpy loops)."""
    return (indptr is None or indptr.dtype == np.int64) and terms.dtype == np.int32 and weights.dtype == np.float32


def _read_only(a: np.ndarray) -> np.ndarray:
    """A read-only plain-array view of a store array: numba compiles one version per argument type,
    and read-only (a memory-mapped file) and writeable (derived in memory) are two types. One type
    means one version to load from the cache (a tenth of a second each)."""
    view = a.view(np.ndarray)
    view.flags.writeable = False
    return view


def query_filter() -> np.ndarray:
    """An empty query-term filter for :func:`score_rows` (mark terms with :func:`mark`)."""
    return np.zeros(FILTER_BITS // 64, dtype=np.uint64)


def mark(bits: np.ndarray, ids: np.ndarray, on: bool = True) -> None:
    """Mark the terms ``ids`` in the filter ``bits`` (``on=False``: clear their words, for the next query)."""
    h = np.asarray(ids, dtype=np.int64) & (FILTER_BITS - 1)
    if on:
        np.bitwise_or.at(bits, h >> 6, np.left_shift(np.uint64(1), (h & 63).astype(np.uint64)))
    else:
        bits[h >> 6] = 0


def score_rows(
    indptr: np.ndarray,
    terms: np.ndarray,
    unit: np.ndarray,
    rows: np.ndarray,
    dense: np.ndarray,
    bits: np.ndarray,
    cache: Any = None,
) -> np.ndarray:
    """Each row's ``sum(unit[j] * dense[terms[j]])`` over its forward-index entries j (float64).

    ``dense`` is the query over the whole vocabulary (zero off the query's terms) and ``bits`` a
    filter with its terms marked (:func:`query_filter`, :func:`mark`). The first ``HEAD_ROWS`` rows are
    scored first: when reading them was slow (pages not in memory), the rest is read by the numpy
    path, whose threads take the page faults together. ``cache`` (any object that takes
    attributes, e.g. a ``threading.local``) keeps the last rows' entries for the next call on the
    same rows, in either path.
    """
    rows = np.asarray(rows, dtype=np.int64)
    jit = _jit if not _numpy_only and _compiled_types(indptr, terms, unit) else None
    if jit is not None:
        indptr, terms, unit = _read_only(indptr), _read_only(terms), _read_only(unit)
        kept = getattr(cache, "gathered", None)
        if kept is not None and len(kept[0]) == len(rows) and np.array_equal(kept[0], rows):
            return jit.score_gathered(kept[1], kept[2], kept[3], dense, bits)
    if jit is None or len(rows) <= HEAD_ROWS:
        return (
            jit.score_rows(indptr, terms, unit, rows, dense, bits)
            if jit is not None
            else _score_rows_numpy(indptr, terms, unit, rows, dense, cache)
        )
    head = rows[:HEAD_ROWS]
    t0 = time.perf_counter()
    first = jit.score_rows(indptr, terms, unit, head, dense, bits)
    seconds = time.perf_counter() - t0
    entries = int((indptr[head + 1] - indptr[head]).sum())
    cold = seconds > pagein.COLD_SECONDS_PER_BYTE * _ENTRY_BYTES * max(entries, 1)
    if cold:
        return np.concatenate([first, _score_rows_numpy(indptr, terms, unit, rows[HEAD_ROWS:], dense, cache)])
    offsets = np.concatenate(([0], np.cumsum(indptr[rows + 1] - indptr[rows])))
    if cache is None or offsets[-1] > GATHER_MAX:
        return np.concatenate([first, jit.score_rows(indptr, terms, unit, rows[HEAD_ROWS:], dense, bits)])
    # Warm: copy the rows' entries out, then score the copy. Reading the rows where they lie costs
    # as much as scoring them (1.7 and 1.0 ms a query at 100,000 papers), and query expansion
    # scores the first pass's pool again: that second call reads the copy (same values, same
    # order: the same bits). The copy's buffers are the thread's own, reused.
    g_terms, g_unit = _buffers(cache, "gather_buffers", int(offsets[-1]), (np.int32, np.float32))
    jit.gather(indptr, terms, unit, rows, offsets, g_terms, g_unit)
    cache.gathered = (rows.copy(), offsets, g_terms, g_unit)
    return jit.score_gathered(offsets, g_terms, g_unit, dense, bits)


def _buffers(cache: Any, name: str, size: int, dtypes: tuple[type, ...]) -> tuple[np.ndarray, ...]:
    """Views of ``size`` elements on the thread's buffers ``name`` in ``cache``, one per dtype (grown,
    to at least twice, when too small): fresh arrays of a query's size cost more in page faults
    than the loops that fill them."""
    buffers = getattr(cache, name, None)
    if buffers is None or len(buffers[0]) < size:
        capacity = max(size, 2 * len(buffers[0]) if buffers is not None else 0, 1 << 16)
        buffers = tuple(np.empty(capacity, dtype) for dtype in dtypes)
        setattr(cache, name, buffers)
    return tuple(buf[:size] for buf in buffers)


def _score_rows_numpy(
    indptr: np.ndarray,
    terms: np.ndarray,
    unit: np.ndarray,
    rows: np.ndarray,
    dense: np.ndarray,
    cache: Any = None,
) -> np.ndarray:
    # The rows' entries (weights, terms) are kept in ``cache`` for the next call with the same rows:
    # query expansion scores the first pass's pool again, and lexical_reference scores the same
    # 8,192 papers 128 times; gathering is most of the cost (at 1M papers 2.3 s against 7.3 s).
    last = getattr(cache, "rows", None)
    if last is not None and len(last[0]) == len(rows) and np.array_equal(last[0], rows):
        unit_at, terms_at, counts = last[1:]
    else:
        lo, hi = indptr[rows], indptr[rows + 1]
        counts = hi - lo
        idx = segments(lo, counts)
        unit_at, terms_at = pagein.take(unit, idx), pagein.take(terms, idx)
        if cache is not None:
            cache.rows = (rows.copy(), unit_at, terms_at, counts)
    contrib = unit_at * dense[terms_at]
    if not len(contrib):
        return np.zeros(len(rows), dtype=np.float64)
    # Each row's entries are consecutive: sum them in place (an empty row keeps 0).
    ends = np.cumsum(counts)
    sums = np.add.reduceat(contrib, np.minimum(ends - counts, len(contrib) - 1))
    return np.where(counts > 0, sums, 0.0)


def accumulate_sums(
    lists: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    delta: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None,
    weights: np.ndarray,
    skip: np.ndarray | None,
    acc: np.ndarray,
    seen: np.ndarray,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows met ascending, their sums): ``post_vals[j] * weights[t]`` (float32) added per row over
    the first ``take[t]`` postings from ``lo[t]`` of each term t of ``lists`` (post_rows, post_vals,
    lo, take), in that order, leaving out the postings of rows marked in ``skip``, then over
    ``delta`` (the same four, for the same terms and weights); only the rows ``allowed`` marks (a
    bool per row; None: all). ``acc`` (float32, one per row) and ``seen`` (:func:`row_marks`) are
    scratch, left cleared (also when interrupted)."""
    rows_, vals_, lo, take = lists
    # No delta: empty lists for every term (the compiled loop reads the weights of len(d_lo) terms).
    d_rows, d_vals, d_lo, d_take = delta if delta is not None else (rows_[:0], vals_[:0], lo[:0], take[:0])
    skip = skip if skip is not None else np.zeros(0, dtype=np.bool_)
    every = np.zeros(0, dtype=np.bool_)
    jit = (
        _jit
        if not _numpy_only and _compiled_types(None, rows_, vals_) and _compiled_types(None, d_rows, d_vals)
        else None
    )
    try:
        if jit is not None:
            size = int(take.sum()) + int(d_take.sum())
            b_rows, b_vals, uniq, sums = _buffers(_scratch, "sums", size, (np.int32, np.float32, np.int64, np.float32))
            m = jit.accumulate_sorted(
                _read_only(rows_), _read_only(vals_), lo, take, _read_only(d_rows), _read_only(d_vals), d_lo,
                d_take, weights, skip, every if allowed is None else allowed, acc, seen, b_rows, b_vals, uniq, sums,
            )  # fmt: skip
            return uniq[:m].copy(), sums[:m].copy()
        met = np.zeros(len(acc), dtype=np.bool_)  # (np.unique of 150,000 rows: 13 ms)
        parts = [(rows_, vals_, lo, take, skip)] + ([(d_rows, d_vals, d_lo, d_take, None)] if delta is not None else [])
        for part_rows, part_vals, part_lo, part_take, part_skip in parts:
            idx = segments(part_lo, part_take)
            rows = part_rows[idx]
            contrib = part_vals[idx] * np.repeat(weights, part_take)
            if part_skip is not None and len(part_skip):
                keep = ~part_skip[np.minimum(rows, len(part_skip) - 1)] | (rows >= len(part_skip))
                rows, contrib = rows[keep], contrib[keep]
            np.add.at(acc, rows, contrib)
            met[rows] = True
        uniq = np.flatnonzero(met)
        sums = acc[uniq]
        acc[uniq] = 0.0
        if allowed is not None:
            keep = allowed[uniq]
            uniq, sums = uniq[keep], sums[keep]
        return uniq, sums
    except BaseException:  # interrupted half way: the next query must start from zeros
        acc[:] = 0.0
        seen[:] = 0
        raise


def row_marks(n: int) -> np.ndarray:
    """The cleared ``seen`` scratch of :func:`accumulate_sums` for n rows: a bit per row."""
    return np.zeros((n + 63) // 64, dtype=np.uint64)


def segments(lo: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Positions lo[i], lo[i] + 1, ..., lo[i] + counts[i] - 1 for every i, concatenated."""
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    shift = lo - np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.repeat(shift, counts) + np.arange(total, dtype=np.int64)


def segment_ends(
    vals: np.ndarray,
    marks: np.ndarray | None,
    lo: np.ndarray,
    slots: np.ndarray,
    head: np.ndarray,
    weights: np.ndarray,
    stride: int,
    mark_stride: int,
    part: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(list, size, last position, contribution) of every segment of the impact-ordered lists t at
    ``vals[lo[t]:]``, cut for a score-at-a-time pass (``impact._score_at_a_time``): ends doubling
    up to the largest power of two at most ``stride``, then every ``stride``, up to ``head[t]``.
    A segment's contribution is its last impact (its smallest) times the list's weight; with
    ``mark_stride`` (> 0) an impact at position p >= mark_stride is read from ``marks[slots[t] + p
    // mark_stride]`` (``impact._marks``) instead of the list. The compiled loop gives the same
    segments, list by list (in the thread's buffers for ``part``, valid until its next call for
    that part); the numpy one gives each list's doubling segments first."""
    w = np.asarray(weights, dtype=np.float64)
    head = np.asarray(head, dtype=np.int64)
    jit = _jit if not _numpy_only and vals.dtype == np.float32 else None
    if jit is not None:
        top = 1 << (int(stride).bit_length() - 1)
        bound = (top.bit_length() + 2) * len(lo) + int(np.maximum(head - top, 0).sum()) // stride
        # one set of buffers per part of a pass: its segments are used after the next part's are cut
        term, size, last, contrib = _buffers(_scratch, f"segments{part}", bound, (np.int64, np.int64, np.int64, float))
        m = marks if marks is not None and mark_stride > 0 else vals[:0]
        k = jit.segment_ends(
            _read_only(vals), _read_only(m), lo, slots, head, w, int(stride), int(mark_stride) if len(m) else 0,
            term, size, last, contrib,
        )  # fmt: skip
        return term[:k], size[:k], last[:k], contrib[:k]
    # segment ends: doubling up to the stride (a short list, a rare term's, is cut finely at its
    # head, where its contributions fall fastest), then every stride up to the head
    doubling = (1 << np.arange(int(stride).bit_length())).astype(np.int64)
    ends = np.minimum(doubling[None, :], head[:, None])
    starts = np.concatenate([np.zeros((len(lo), 1), dtype=np.int64), ends[:, :-1]], axis=1)
    live = ends > starts
    term = np.nonzero(live)[0]
    first, last = starts[live], ends[live] - 1
    # then segments of the stride, only the lists that reach past it (the common terms')
    longer = np.flatnonzero(head > doubling[-1])
    count = -(-(head[longer] - doubling[-1]) // stride)
    if len(longer):
        rep = np.repeat(longer, count)
        k = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        lin_first = doubling[-1] + k * stride
        term = np.concatenate([term, rep])
        first = np.concatenate([first, lin_first])
        last = np.concatenate([last, np.minimum(lin_first + stride, head[rep]) - 1])
    if marks is None or mark_stride <= 0:
        impacts = vals[lo[term] + last]
    else:
        impacts = np.empty(len(last), dtype=vals.dtype)
        near = last < mark_stride
        impacts[near] = vals[lo[term[near]] + last[near]]
        impacts[~near] = marks[slots[term[~near]] + last[~near] // mark_stride]
    return term, last - first + 1, last, impacts.astype(np.float64) * w[term]


def counts_at(
    vals: np.ndarray,
    lo: np.ndarray,
    head: np.ndarray,
    weights: np.ndarray,
    threshold: float,
    segments_: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> np.ndarray:
    """Per list t, how many of its first ``head[t]`` postings contribute at least ``threshold``
    (impact x weight; the lists are impact-ordered): a binary search per list, all lists at once,
    between its segments (:func:`segment_ends`) that end at or above the threshold and the first
    that ends below it, so inside one segment."""
    w = np.asarray(weights, dtype=np.float64)
    term, _, last, contrib = segments_
    jit = _jit if not _numpy_only and vals.dtype == np.float32 else None
    if jit is not None:
        take = np.empty(len(lo), dtype=np.int64)
        jit.counts_at(
            _read_only(vals), lo, np.asarray(head, dtype=np.int64), w, float(threshold), term, last, contrib, take
        )
        return take
    a, b = np.zeros(len(head), dtype=np.int64), np.asarray(head, dtype=np.int64).copy()
    up = contrib >= threshold
    np.maximum.at(a, term[up], last[up] + 1)
    np.minimum.at(b, term[~up], last[~up] + 1)
    active = np.flatnonzero(a < b)
    while len(active):
        mid = (a[active] + b[active]) // 2
        v = vals[lo[active] + mid].astype(np.float64) * w[active]
        above = v >= threshold
        a[active[above]] = mid[above] + 1
        b[active[~above]] = mid[~above]
        active = active[a[active] < b[active]]
    return a
