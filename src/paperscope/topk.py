"""Choosing the best of many scores: the m best rows, and where a budget of postings runs out.

A query at a million papers picks its candidates from arrays far larger than what it keeps: the
~115,000 rows a paper query's lexical pass meets, for a pool of 1,000; the ~18,000 segments of
the lists it reads, for one threshold. A full partition or sort of those took 1.0 and 0.7 ms of a
query (``benchmarks/related_1m.py``, round 22). Each choice here is made among the scores at or
above a bound that a sample of them places (every ``SAMPLE_STEP``-th), when enough of them pass
it; what they choose is what the full partition or sort chooses, ties included.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best", "crossing", "mth_best", "top"]

# Arrays longer than SAMPLED times what is chosen are sampled first: every SAMPLE_STEP-th score,
# whose (2 m / SAMPLE_STEP + 8)-th best is the bound (about twice m scores pass it).
SAMPLED = 16
SAMPLE_STEP = 16


def mth_best(scores: np.ndarray, m: int) -> float:
    """The m-th highest of ``scores`` (1 <= m <= len(scores); no NaN)."""
    within = scores
    if len(scores) > SAMPLED * m:
        sample = scores[::SAMPLE_STEP]
        depth = min(len(sample) - 1, 2 * m // SAMPLE_STEP + 8)
        bound = np.partition(sample, len(sample) - 1 - depth)[len(sample) - 1 - depth]
        above = scores[scores >= bound]
        # every score at or above the m-th passes a bound below it: the m-th is the same
        within = above if len(above) >= m else scores
    return within[np.argpartition(within, len(within) - m)[len(within) - m]]


def best(rows: np.ndarray, scores: np.ndarray, m: int) -> np.ndarray:
    """The rows with the m best scores, unordered; rows tied with the m-th stay in (no dependence on order)."""
    if m >= len(rows):
        return rows
    return rows[np.flatnonzero(scores >= mth_best(scores, m))]


def top(rows: np.ndarray, scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m best (rows, scores), score descending, ties broken by row so results are deterministic."""
    if m < len(scores):
        # every row tied with the m-th score, so that the tie-break by row is exact
        part = np.flatnonzero(scores >= mth_best(scores, m))
    else:
        part = np.arange(len(scores))
    order = part[np.lexsort((rows[part], -scores[part]))][:m]
    return rows[order].astype(np.int64), scores[order]


def crossing(values: np.ndarray, sizes: np.ndarray, budget: int) -> float | None:
    """The value at which ``sizes``, taken from the highest value down, add up to ``budget``: the
    value of the item whose size makes the running total reach it (None when the total stays below).

    Items tied at it may be taken in any order: the value is the same. The items at or above a
    bound that every ``SAMPLE_STEP``-th item places (where their sizes, scaled, reach twice the
    budget) are the only ones sorted, when their sizes reach the budget: the crossing lies among them.
    """
    order = None
    if len(values) > SAMPLED * SAMPLE_STEP:
        sample = np.argsort(-values[::SAMPLE_STEP])
        reach = np.cumsum(sizes[::SAMPLE_STEP][sample]) * SAMPLE_STEP
        at = int(np.searchsorted(reach, 2 * budget))
        if at < len(sample):
            keep = np.flatnonzero(values >= values[::SAMPLE_STEP][sample[at]])
            if int(sizes[keep].sum()) >= budget:
                order = keep[np.argsort(-values[keep])]
    if order is None:
        # numpy's default sort is several times its stable one (0.2 against 1.3 ms for 20,000 items)
        order = np.argsort(-values)
    cut = int(np.searchsorted(np.cumsum(sizes[order]), budget))
    return float(values[order[cut]]) if cut < len(order) else None
