"""Two levels of topics: fine topics by k-means, coarse themes by Ward linkage of their centroids.

Every paper belongs to one topic at every level (no outlier bucket). A paper is
*low-confidence* when its nearest fine centroid is barely nearer than the second nearest
(margin below ``LOW_MARGIN``); the map reports how many there are instead of hiding them.
k-means on the reduced space scales to millions of papers, and the coarse level only ever
clusters the k fine centroids, so it is cheap at any size.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans

LOW_MARGIN = 0.1
# Fine topics per sqrt(papers): see auto_sizes.
FINE_PER_SQRT_N = 1.8


def auto_sizes(n: int, fine: int | None, coarse: int | None) -> tuple[int, int]:
    """Default topic counts: about 1.8 sqrt(n) fine topics and 2.5 times fewer coarse ones.

    1.8 sqrt(n) (37 for the bundled 432 papers; was 1.2 sqrt(n) = 25) was chosen on seeds 1-5 from
    factors 1.2-2.1, on stores embedded by two backends (torch, onnx-int8): every factor from 1.6 to
    2.1 beat 1.2 on the mean F1 over all labelled themes on both, 1.8 sits in the middle of that
    plateau. Checked on seeds 6-10: docs/topic-map.md, benchmarks/map_stability.py --seeds.
    """
    f = fine if fine is not None else max(2, min(200, round(FINE_PER_SQRT_N * math.sqrt(n))))
    f = max(2, min(f, n))
    c = coarse if coarse is not None else max(2, round(f / 2.5))
    return f, max(1, min(c, f))


def fit_topics(
    space: np.ndarray, fine_k: int, coarse_k: int, seed: int, init: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Fine centroids (fine_k, d) and, per fine topic, its coarse parent (fine_k,).

    ``init`` (fine_k, d) starts k-means from given centres (a previous map's topics) instead of
    ten k-means++ restarts.
    """
    if init is not None and init.shape == (fine_k, space.shape[1]):
        km = KMeans(n_clusters=fine_k, init=init, n_init=1, random_state=seed).fit(space)
    else:
        km = KMeans(n_clusters=fine_k, n_init=10, random_state=seed).fit(space)
    centroids = km.cluster_centers_.astype(np.float32)
    if coarse_k >= fine_k:
        return centroids, np.arange(fine_k, dtype=np.int32)
    sizes = np.bincount(km.labels_, minlength=fine_k)
    return centroids, merge_topics(centroids, sizes, coarse_k)


def merge_topics(centroids: np.ndarray, sizes: np.ndarray, k: int) -> np.ndarray:
    """Group fine topics into ``k`` themes by Ward's rule on the topics *as clusters*: parent per topic.

    Each step merges the two groups whose union raises the within-group sum of squares least,
    ``na nb / (na + nb) |ca - cb|^2``. Counting each topic with its papers (scikit-learn's Ward on
    the centroids counts every topic as one point) keeps big topics from being swallowed into one
    grab-bag theme: on the bundled corpus the largest theme fell from 23% to 18% of the papers.
    """
    n = len(centroids)
    if k >= n:
        return np.arange(n, dtype=np.int32)
    c = centroids.astype(np.float64).copy()
    w = np.maximum(sizes.astype(np.float64), 1.0)
    alive = np.ones(n, dtype=bool)
    group = np.arange(n)
    cost = np.full((n, n), np.inf)
    for a in range(n):
        cost[a, a + 1 :] = w[a] * w[a + 1 :] / (w[a] + w[a + 1 :]) * ((c[a + 1 :] - c[a]) ** 2).sum(1)
    for _ in range(n - k):
        a, b = np.unravel_index(int(np.argmin(cost)), cost.shape)  # a < b: the upper triangle only
        c[a] = (w[a] * c[a] + w[b] * c[b]) / (w[a] + w[b])
        w[a] += w[b]
        alive[b] = False
        group[group == b] = a
        cost[b, :] = np.inf
        cost[:, b] = np.inf
        others = np.flatnonzero(alive)
        others = others[others != a]
        d = w[a] * w[others] / (w[a] + w[others]) * ((c[others] - c[a]) ** 2).sum(1)
        lo, hi = np.minimum(a, others), np.maximum(a, others)
        cost[lo, hi] = d
    _, parents = np.unique(group, return_inverse=True)  # number themes 0..k-1 by their first topic
    return parents.astype(np.int32)


def assign(space: np.ndarray, centroids: np.ndarray, chunk: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Nearest fine topic per point and its margin ``1 - d1/d2`` (0 = a tie, 1 = on the centroid).

    Works in chunks so memory stays at chunk x k distances, whatever the corpus size.
    """
    nearest = np.empty(len(space), dtype=np.int32)
    margin = np.empty(len(space), dtype=np.float32)
    for start in range(0, len(space), chunk):
        part = space[start : start + chunk]
        d = np.sqrt(((part[:, None, :] - centroids[None, :, :]) ** 2).sum(-1))
        order = np.argsort(d, axis=1)
        rows = np.arange(len(d))
        d1 = d[rows, order[:, 0]]
        d2 = d[rows, order[:, 1]] if centroids.shape[0] > 1 else d1 + 1.0
        nearest[start : start + chunk] = order[:, 0]
        margin[start : start + chunk] = np.where(d2 > 0, 1.0 - d1 / np.maximum(d2, 1e-12), 1.0)
    return nearest, margin


def match_ids(old: np.ndarray, new: np.ndarray, next_id: int) -> dict[int, int]:
    """Map each new cluster label to an id: the old topic id whose members it mostly holds, else a fresh one.

    ``old`` and ``new`` are labels of the same papers (those in both maps; -1 in ``old`` for
    papers that were not in the old map). A match is one-to-one (Hungarian on overlap counts)
    and kept only when more than half of the new cluster's old papers came from that topic.
    """
    known = old >= 0
    new_labels = np.unique(new)
    old_labels = np.unique(old[known])
    mapping: dict[int, int] = {}
    if len(old_labels):
        overlap = np.zeros((len(new_labels), len(old_labels)), dtype=np.int64)
        ni = {v: i for i, v in enumerate(new_labels)}
        oi = {v: i for i, v in enumerate(old_labels)}
        for a, b in zip(new[known], old[known]):
            overlap[ni[a], oi[b]] += 1
        rows, cols = linear_sum_assignment(-overlap)
        for r, c in zip(rows, cols):
            held = overlap[r].sum()
            if held and overlap[r, c] * 2 > held:
                mapping[int(new_labels[r])] = int(old_labels[c])
    for label in new_labels:
        if int(label) not in mapping:
            mapping[int(label)] = next_id
            next_id += 1
    return mapping
