"""UMAP, seeded, so one store and one set of parameters always give the same coordinates.

umap-learn is deterministic when ``random_state`` is set (it then runs single-threaded).
A fitted UMAP object can only be saved with pickle, which the store never uses; instead a
map records which papers it was fitted on, and a later run re-fits on exactly those papers
(same vectors, same seed: the same model) and places the other papers among their nearest fitted ones.

Placing is not UMAP's ``transform``: at 100,000 papers ``transform`` of the 50,000 outside the
fitted sample took longer than both fits together, and at a million it would take hours on two
cores. A placed paper goes to the weighted mean of its ``n_neighbors`` nearest fitted papers in
the joint feature space (FAISS: exact below ``EXACT_PAIRS``, IVF above), weighted as UMAP weights
a neighbourhood (``exp(-(d - d_nearest) / mean spread)``): that is also where ``transform``
starts each point before its few refining epochs. docs/topic-map.md has the figures.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np

from paperscope.errors import InvalidArgument

# Above this many (fitted x placed) pairs the nearest fitted papers come from an IVF index
# (nprobe 16 of ~4 sqrt(n) lists) instead of an exact search: 2e9 pairs of 484-d is ~30 s.
EXACT_PAIRS = 2_000_000_000
SEARCH_CHUNK = 65_536


@dataclass(frozen=True)
class Neighbours:
    """For each placed paper, its nearest fitted papers (rows into the fitted set) and their weights."""

    rows: np.ndarray  # (m, k) int64
    weights: np.ndarray  # (m, k) float32, each row sums to 1


def neighbours(base: np.ndarray, rest: np.ndarray, k: int, seed: int) -> Neighbours:
    """The ``k`` nearest rows of ``base`` to each row of ``rest`` (unit vectors, cosine), with UMAP-style weights."""
    import faiss  # the store's ANN library; imported here so the map stays importable without it loaded

    base = np.ascontiguousarray(base, dtype=np.float32)
    k = max(1, min(k, len(base)))
    if len(base) * len(rest) <= EXACT_PAIRS:
        index = faiss.IndexFlatIP(base.shape[1])
    else:
        nlist = max(1, min(int(4 * np.sqrt(len(base))), len(base) // 39))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(base.shape[1]), base.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.train(base)
        index.nprobe = min(16, nlist)
    index.add(base)
    rows = np.empty((len(rest), k), dtype=np.int64)
    sims = np.empty((len(rest), k), dtype=np.float32)
    for start in range(0, len(rest), SEARCH_CHUNK):
        part = np.ascontiguousarray(rest[start : start + SEARCH_CHUNK], dtype=np.float32)
        sims[start : start + len(part)], rows[start : start + len(part)] = index.search(part, k)
    # An IVF probe can come back short (-1): such a slot gets no weight; a paper with no neighbour
    # at all (possible in principle) is searched again exactly.
    lost = np.flatnonzero((rows < 0).all(axis=1))
    if len(lost):
        exact = faiss.IndexFlatIP(base.shape[1])
        exact.add(base)
        sims[lost], rows[lost] = exact.search(np.ascontiguousarray(rest[lost], dtype=np.float32), k)
    missing = rows < 0
    rows[missing] = 0
    dist = np.maximum(1.0 - sims, 0.0)
    dist[missing] = np.inf
    rho = dist.min(axis=1, keepdims=True)
    finite = np.where(missing, np.nan, dist - rho)
    spread = np.nan_to_num(np.nanmean(finite, axis=1, keepdims=True), nan=0.0)
    weights = np.exp(-(dist - rho) / np.maximum(spread, 1e-6))
    weights[missing] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)
    return Neighbours(rows, weights.astype(np.float32))


def place(embedding: np.ndarray, near: Neighbours) -> np.ndarray:
    """Positions for the placed papers: the weighted mean of their neighbours' positions in ``embedding``."""
    out = np.zeros((len(near.rows), embedding.shape[1]), dtype=np.float32)
    for start in range(0, len(out), SEARCH_CHUNK):
        r, w = near.rows[start : start + SEARCH_CHUNK], near.weights[start : start + SEARCH_CHUNK]
        out[start : start + len(r)] = np.einsum("mk,mkd->md", w, embedding[r])
    return out


def fit(
    base: np.ndarray,
    *,
    n_components: int,
    n_neighbors: int,
    min_dist: float,
    seed: int,
    init: np.ndarray | None = None,
) -> np.ndarray:
    """Fit UMAP on ``base`` and return its embedding (place other papers with :func:`place`).

    ``init`` gives starting positions (n_base, n_components), e.g. a previous layout.
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "paperscope-numba"))
    import umap  # heavy (numba): imported only when a map is made

    n = base.shape[0]
    if n < 4:
        raise InvalidArgument(f"a map needs at least 4 papers, the store has {n}")
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state": that is the point.
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*k >= N.*")
        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(n_neighbors, n - 1),
            min_dist=min_dist,
            metric="cosine",
            random_state=seed,
            init=init if init is not None else ("spectral" if n > n_components + 1 else "random"),
        )
        return reducer.fit_transform(base).astype(np.float32)
