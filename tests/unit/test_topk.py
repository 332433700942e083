"""paperscope.topk: the sampled choices give what a full partition or sort gives, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from paperscope import topk


def _scores(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    if kind == "skewed":  # most scores small, a few large: a lexical pass's partial sums
        return (rng.random(n) ** 3).astype(np.float32)
    if kind == "ties":  # a handful of values: the m-th is tied with many
        return rng.integers(0, 5, n).astype(np.float32)
    if kind == "strided":  # the sampled scores high, the others low: the sample's bound misleads
        scores = rng.random(n).astype(np.float32)
        scores[:: topk.SAMPLE_STEP] += 2.0
        return scores
    return np.sort(rng.random(n)).astype(np.float32)  # ascending: the sample's bound at one end


@pytest.mark.parametrize("kind", ["skewed", "ties", "sorted", "strided"])
def test_best_and_top_are_those_of_a_full_sort(kind: str) -> None:
    rng = np.random.default_rng(3)
    sampled = 0
    for _ in range(60):
        n, m = int(rng.integers(1, 60_000)), int(rng.integers(1, 1500))
        scores = _scores(rng, n, kind)
        rows = rng.permutation(n).astype(np.int64) * 7
        sampled += n > topk.SAMPLED * m
        order = np.lexsort((rows, -scores))  # score descending, then row: the reference order
        mth = scores[order[min(m, n) - 1]]
        want_best = rows if m >= n else rows[scores >= mth]
        assert np.array_equal(np.sort(topk.best(rows, scores, m)), np.sort(want_best))
        got_rows, got_scores = topk.top(rows, scores, m)
        assert np.array_equal(got_rows, rows[order[:m]]) and np.array_equal(got_scores, scores[order[:m]])
    assert sampled >= 20  # the sampled path ran, not only the full partition


def test_crossing_is_that_of_a_full_sort() -> None:
    rng = np.random.default_rng(4)
    sampled = 0
    for trial in range(300):
        k = int(rng.integers(1, 30_000))
        values = rng.random(k) ** 3 if trial % 2 else rng.integers(0, 50, k).astype(np.float64)
        sizes = rng.choice([1, 2, 4, 8, 16, 512], size=k).astype(np.int64)
        if trial % 3 == 0:  # the sampled items large and first: their scaled sizes overstate the rest
            sizes[:: topk.SAMPLE_STEP], values[:: topk.SAMPLE_STEP] = 512, values[:: topk.SAMPLE_STEP] + 100
            sizes[sizes != 512] = 1
        budget = int(rng.integers(1, 2 * int(sizes.sum()) + 2))
        sampled += k > topk.SAMPLED * topk.SAMPLE_STEP and budget <= sizes.sum()
        order = np.argsort(-values, kind="stable")
        reached = np.flatnonzero(np.cumsum(sizes[order]) >= budget)
        want = float(values[order[reached[0]]]) if len(reached) else None
        assert topk.crossing(values, sizes, budget) == want
    assert sampled >= 50
