"""The compiled loops behind :mod:`paperscope.kernels` (numba); imported only by :func:`kernels.load`.

Importing numba and loading these functions from numba's on-disk cache takes about half a second
here (compiling them the first time, a few seconds), so nothing imports this module on the way to
a first query: :mod:`paperscope.kernels` loads it in the background once a large store has been
queried. Every function gives the same bits as its numpy counterpart in :mod:`paperscope.kernels`
(the same operations in the same order); ``tests/unit/test_kernels.py`` compares them.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["accumulate_sorted", "counts_at", "gather", "score_gathered", "score_rows", "segment_ends"]

# numpy's pairwise summation works on blocks of this many values (numpy/_core/src/umath/loops_utils.h.src).
_BLOCK = 128
# A query's terms are marked in a filter of 2**16 bits (8 KB, in the first-level cache) by their
# low 16 bits: kernels.FILTER_BITS, which sets them.
_FILTER_MASK = (1 << 16) - 1


@numba.njit(cache=True, nogil=True, inline="always")
def _block_sum(buf: np.ndarray, lo: int, n: int) -> float:
    """numpy's pairwise sum of ``buf[lo:lo + n]`` for n <= 128: eight running sums, then the rest."""
    if n < 8:
        s = 0.0
        for i in range(lo, lo + n):
            s += buf[i]
        return s
    r0, r1, r2, r3 = buf[lo], buf[lo + 1], buf[lo + 2], buf[lo + 3]
    r4, r5, r6, r7 = buf[lo + 4], buf[lo + 5], buf[lo + 6], buf[lo + 7]
    i = 8
    while i < n - (n % 8):
        r0 += buf[lo + i]
        r1 += buf[lo + i + 1]
        r2 += buf[lo + i + 2]
        r3 += buf[lo + i + 3]
        r4 += buf[lo + i + 4]
        r5 += buf[lo + i + 5]
        r6 += buf[lo + i + 6]
        r7 += buf[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += buf[lo + i]
        i += 1
    return res


@numba.njit(cache=True, nogil=True)
def _pairwise(buf: np.ndarray, lo: int, n: int, work: np.ndarray, vals: np.ndarray) -> float:
    """numpy's pairwise sum of ``buf[lo:lo + n]``, its recursion unrolled onto a stack.

    (numba cannot cache a recursive function: loading one from the cache fails to link.) A range
    over 128 values is the sum of its halves, the first half's length rounded down to a multiple
    of 8, left + right: ``work`` holds ranges to sum and "add the last two" marks, ``vals`` sums.
    """
    if n <= _BLOCK:
        return _block_sum(buf, lo, n)
    top, nv = 1, 0
    work[0, 0], work[0, 1], work[0, 2] = lo, n, 0
    while top:
        top -= 1
        a, m, add = work[top, 0], work[top, 1], work[top, 2]
        if add:
            nv -= 1
            vals[nv - 1] = vals[nv - 1] + vals[nv]
        elif m <= _BLOCK:
            vals[nv] = _block_sum(buf, a, m)
            nv += 1
        else:
            half = m // 2
            half -= half % 8
            work[top, 0], work[top, 1], work[top, 2] = 0, 0, 1
            work[top + 1, 0], work[top + 1, 1], work[top + 1, 2] = a + half, m - half, 0
            work[top + 2, 0], work[top + 2, 1], work[top + 2, 2] = a, half, 0
            top += 3
    return vals[0]


@numba.njit(cache=True, nogil=True)
def _score_segments(
    starts: np.ndarray, ends: np.ndarray, terms: np.ndarray, unit: np.ndarray, dense: np.ndarray, bits: np.ndarray
) -> np.ndarray:
    """For each i, ``sum(unit[j] * dense[terms[j]])`` over j in [starts[i], ends[i]), as ``reduceat`` sums it."""
    out = np.zeros(len(starts), dtype=np.float64)
    buf = np.empty(4096, dtype=np.float64)
    work = np.empty((256, 3), dtype=np.int64)
    vals = np.empty(128, dtype=np.float64)
    for i in range(len(starts)):
        a, b = starts[i], ends[i]
        if b == a:
            continue
        if b - a > len(buf):
            buf = np.empty(2 * (b - a), dtype=np.float64)
        for j in range(a, b):
            t = terms[j]
            h = t & _FILTER_MASK
            if bits[h >> 6] & (np.uint64(1) << np.uint64(h & 63)):
                buf[j - a] = np.float64(unit[j]) * dense[t]
            else:
                buf[j - a] = 0.0
        out[i] = buf[0] + _pairwise(buf, 1, b - a - 1, work, vals)
    return out


@numba.njit(cache=True, nogil=True)
def score_rows(
    indptr: np.ndarray, terms: np.ndarray, unit: np.ndarray, rows: np.ndarray, dense: np.ndarray, bits: np.ndarray
) -> np.ndarray:
    """Each row's sum of ``unit[j] * dense[terms[j]]`` over its entries, as numpy's ``reduceat`` sums it.

    ``bits`` is a filter of the query's terms (bit h of word h // 64 set for h = t's low 16 bits,
    for every term t whose ``dense`` weight is not zero): most of a row's terms are not in the query,
    and the filter (8 KB) is cheaper to read than ``dense`` (8 bytes a term, megabytes). A term the
    filter passes that is not in the query reads its 0.0 from ``dense``; one it stops contributes
    +0.0: either way what numpy adds. ``reduceat`` sums a segment as its first value plus numpy's
    pairwise sum of the rest.
    """
    return _score_segments(indptr[rows], indptr[rows + 1], terms, unit, dense, bits)


@numba.njit(cache=True, nogil=True)
def gather(
    indptr: np.ndarray,
    terms: np.ndarray,
    unit: np.ndarray,
    rows: np.ndarray,
    offsets: np.ndarray,
    g_terms: np.ndarray,
    g_unit: np.ndarray,
) -> None:
    """Copy the rows' entries into ``g_terms`` / ``g_unit``, one row after another (row i's at
    ``offsets[i]:offsets[i + 1]``)."""
    for i in range(len(rows)):
        a = indptr[rows[i]]
        o = offsets[i]
        for j in range(offsets[i + 1] - o):
            g_terms[o + j] = terms[a + j]
            g_unit[o + j] = unit[a + j]


@numba.njit(cache=True, nogil=True)
def score_gathered(
    offsets: np.ndarray, g_terms: np.ndarray, g_unit: np.ndarray, dense: np.ndarray, bits: np.ndarray
) -> np.ndarray:
    """:func:`score_rows` of rows whose entries :func:`gather` copied out: the same sums, the same bits."""
    return _score_segments(offsets[:-1], offsets[1:], g_terms, g_unit, dense, bits)


# Rows per bucket of accumulate_sorted (2**15: a bucket's float32 sums, 128 KB, stay in the
# second-level cache while its postings are added; 2**14 to 2**18 timed alike at 1M rows).
_BUCKET_SHIFT = 15
# The index of a 64-bit word's lowest set bit, from a de Bruijn multiply (numba has no ctz).
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.zeros(64, dtype=np.int64)
for _i in range(64):
    _LOWEST_BIT[(((1 << _i) * int(_DEBRUIJN)) & ((1 << 64) - 1)) >> 58] = _i


@numba.njit(cache=True, nogil=True)
def accumulate_sorted(
    post_rows: np.ndarray,
    post_vals: np.ndarray,
    lo: np.ndarray,
    take: np.ndarray,
    d_rows: np.ndarray,
    d_vals: np.ndarray,
    d_lo: np.ndarray,
    d_take: np.ndarray,
    weights: np.ndarray,
    skip: np.ndarray,
    allowed: np.ndarray,
    acc: np.ndarray,
    seen: np.ndarray,
    b_rows: np.ndarray,
    b_vals: np.ndarray,
    out_rows: np.ndarray,
    out_sums: np.ndarray,
) -> int:
    """kernels.accumulate_sums: ``post_vals[j] * weights[t]`` (float32) summed per row over the
    first ``take[t]`` postings from ``lo[t]`` of each term t in turn (``np.add.at``'s order), a
    posting of a row marked in ``skip`` left out, then over the second part's lists (``d_*``);
    the rows met that ``allowed`` marks (all when it is empty) written ascending to ``out_rows`` with
    their sums in ``out_sums``; returns how many.
    ``acc`` (float32 per row) and ``seen`` (a bit per row) are left cleared.

    Adding straight into ``acc`` is a random access into megabytes per posting (at 1M rows, 4 MB
    of sums and 1 MB of marks: 150,000 postings took 3 ms). So the contributions are first
    written out by bucket of ``2**_BUCKET_SHIFT`` rows (``b_rows`` / ``b_vals``: a few sequential
    streams), then added bucket by bucket into a part of ``acc`` that fits in the cache; a row's
    contributions keep their order (each row lies in one bucket). The rows met are read off the
    marks bucket by bucket, ascending: no sort.
    """
    n = len(acc)
    buckets = (n >> _BUCKET_SHIFT) + 1
    ends = np.zeros(buckets + 1, dtype=np.int64)
    for t in range(len(lo)):
        for j in range(lo[t], lo[t] + take[t]):
            ends[(post_rows[j] >> _BUCKET_SHIFT) + 1] += 1
    for t in range(len(d_lo)):
        for j in range(d_lo[t], d_lo[t] + d_take[t]):
            ends[(d_rows[j] >> _BUCKET_SHIFT) + 1] += 1
    for b in range(buckets):
        ends[b + 1] += ends[b]
    fill = ends[:-1].copy()
    n_skip = len(skip)
    for t in range(len(lo)):
        w = weights[t]
        for j in range(lo[t], lo[t] + take[t]):
            r = post_rows[j]
            if r < n_skip and skip[r]:
                continue
            b = r >> _BUCKET_SHIFT
            f = fill[b]
            b_rows[f] = r
            b_vals[f] = post_vals[j] * w
            fill[b] = f + 1
    for t in range(len(d_lo)):
        w = weights[t]
        for j in range(d_lo[t], d_lo[t] + d_take[t]):
            r = d_rows[j]
            b = r >> _BUCKET_SHIFT
            f = fill[b]
            b_rows[f] = r
            b_vals[f] = d_vals[j] * w
            fill[b] = f + 1
    # Each bucket's sums and marks in the first 2**_BUCKET_SHIFT slots of acc and seen, read off
    # and cleared before the next bucket: the same small region every time, kept in the cache.
    m = 0
    one = np.uint64(1)
    every = len(allowed) == 0
    for b in range(buckets):
        base = b << _BUCKET_SHIFT
        for f in range(ends[b], fill[b]):
            i = b_rows[f] - base
            acc[i] += b_vals[f]
            seen[i >> 6] |= one << np.uint64(i & 63)
        for k in range((min(n - base, 1 << _BUCKET_SHIFT) + 63) >> 6):
            x = seen[k]
            while x:
                low = x & (~x + one)
                i = k * 64 + _LOWEST_BIT[(low * _DEBRUIJN) >> np.uint64(58)]
                if every or allowed[base + i]:
                    out_rows[m] = base + i
                    out_sums[m] = acc[i]
                    m += 1
                acc[i] = 0.0
                x ^= low
            seen[k] = 0
    return m


@numba.njit(cache=True, nogil=True)
def segment_ends(
    vals: np.ndarray,
    marks: np.ndarray,
    lo: np.ndarray,
    slots: np.ndarray,
    head: np.ndarray,
    weights: np.ndarray,
    stride: int,
    mark_stride: int,
    term: np.ndarray,
    size: np.ndarray,
    last: np.ndarray,
    contrib: np.ndarray,
) -> int:
    """kernels.segment_ends: each list's segments (doubling up to the largest power of two <=
    ``stride``, then ``stride`` long, up to ``head[t]``) written to ``term`` / ``size`` / ``last`` /
    ``contrib``, list by list; returns how many. ``mark_stride`` 0: every impact read from ``vals``.
    Whole strides past the doubling read consecutive marks (a slot counter: a division per segment
    made this loop twice numpy's time). The doubling and the last partial segment write theirs
    inline, twice: a shared ``inline="always"`` helper took 0.25 ms a call against 0.045 here."""
    top = 1
    while top * 2 <= stride:
        top *= 2
    step = stride // mark_stride if mark_stride > 0 else 0
    k = 0
    for t in range(len(lo)):
        h = head[t]
        w = weights[t]
        prev = 0
        e = 1
        while e <= top:
            end = min(e, h)
            if end > prev:
                p = end - 1
                if mark_stride > 0 and p >= mark_stride:
                    v = marks[slots[t] + p // mark_stride]
                else:
                    v = vals[lo[t] + p]
                term[k] = t
                size[k] = end - prev
                last[k] = p
                contrib[k] = np.float64(v) * w
                k += 1
                prev = end
            e *= 2
        f = top
        if mark_stride > 0:
            # top and stride are multiples of mark_stride: each whole stride ends on a mark
            slot = slots[t] + (top + stride) // mark_stride - 1
            while f + stride <= h:
                term[k] = t
                size[k] = stride
                last[k] = f + stride - 1
                contrib[k] = np.float64(marks[slot]) * w
                slot += step
                k += 1
                f += stride
        while f < h:
            end = min(f + stride, h)
            p = end - 1
            if mark_stride > 0 and p >= mark_stride:
                v = marks[slots[t] + p // mark_stride]
            else:
                v = vals[lo[t] + p]
            term[k] = t
            size[k] = end - f
            last[k] = p
            contrib[k] = np.float64(v) * w
            k += 1
            f += stride
    return k


@numba.njit(cache=True, nogil=True)
def counts_at(
    vals: np.ndarray,
    lo: np.ndarray,
    head: np.ndarray,
    weights: np.ndarray,
    threshold: float,
    term: np.ndarray,
    last: np.ndarray,
    contrib: np.ndarray,
    take: np.ndarray,
) -> None:
    """kernels.counts_at: ``take[t]``, the postings of list t whose contribution is at least
    ``threshold``, by a binary search between its segments that end at or above it and the first
    that ends below it."""
    lower = np.zeros(len(lo), dtype=np.int64)
    upper = head.copy()
    for k in range(len(term)):
        t = term[k]
        if contrib[k] >= threshold:
            if last[k] + 1 > lower[t]:
                lower[t] = last[k] + 1
        elif last[k] + 1 < upper[t]:
            upper[t] = last[k] + 1
    for t in range(len(lo)):
        a, b = lower[t], upper[t]
        while a < b:
            mid = (a + b) // 2
            if np.float64(vals[lo[t] + mid]) * weights[t] >= threshold:
                a = mid + 1
            else:
                b = mid
        take[t] = a
