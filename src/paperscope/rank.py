"""Ranking modes: dense (the model's vectors), lexical (BM25) and hybrid (a fusion of both).

Hybrid fuses over a candidate pool: the top ``POOL`` papers of each side (within the filter),
with exact dense and lexical scores for every paper in the union, each min-max scaled over the
pool, mixed as ``weight * dense + (1 - weight) * lexical``. The pool size does not depend on k,
so the first 10 results are the same whether 10 or 100 are asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from paperscope.choices import MODES
from paperscope.errors import InvalidArgument
from paperscope.lexical import LexicalIndex, TermVector

# Chosen by measurement: `paperscope eval --tune` picks the weight on the tuning half of the
# shipped labels; hybrid at that weight beats both single modes on the held-out half (README,
# "Ranking quality").
DEFAULT_MODE = "hybrid"
HYBRID_WEIGHT = 0.6
POOL = 200
# Below this many allowed rows a filtered dense query is scored exactly over just those rows;
# above it FAISS is asked for more and more neighbours until enough pass the filter.
_BRUTE_FORCE_ROWS = 200_000
_EXACT_CHUNK = 65_536


def check_mode(mode: str | None) -> str:
    """The mode to use (``None`` means the default); ValueError naming the choices otherwise."""
    if mode is None:
        return DEFAULT_MODE
    if mode not in MODES:
        raise InvalidArgument(f"unknown ranking mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


@dataclass
class Query:
    """What a ranking needs: a dense vector (None when no model is needed) and a lexical vector.

    ``text`` marks a free-text query (lexical side scored with BM25); otherwise the lexical
    vector is built from paper rows and scored by cosine.
    """

    dense: np.ndarray | None
    lexical: TermVector
    text: bool = False
    exclude: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Ranked:
    row: int
    score: float
    dense: float | None
    lexical: float


class Ranker:
    """Ranks paper rows for a Query in one of the MODES, within an optional allowed-rows mask."""

    def __init__(self, vectors: np.ndarray, index: faiss.Index, lex: LexicalIndex):
        self.vectors = vectors
        self.index = index
        self.lex = lex
        self.n = vectors.shape[0]

    # ---- the two sides -------------------------------------------------------------------
    def _mask(self, q: Query, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None and not q.exclude:
            return None
        mask = np.ones(self.n, dtype=bool) if allowed is None else allowed.copy()
        if q.exclude:
            mask[list(q.exclude)] = False
        return mask

    def dense_top(self, q: Query, m: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosines) of the m nearest allowed papers, best first.

        Exact with a flat index or a small allowed set; with IVF/HNSW, as good as the index's recall.
        """
        assert q.dense is not None  # internal: callers check the mode needs a model
        vec = np.ascontiguousarray(q.dense[None, :], dtype=np.float32)
        # Exact scoring over the allowed rows when a filter leaves few; excluding the query's own
        # papers alone is no reason to copy every vector out of the memory map.
        n_allowed = int(mask.sum()) if mask is not None else self.n
        if mask is not None and n_allowed <= _BRUTE_FORCE_ROWS and n_allowed < self.n - len(q.exclude):
            rows = np.flatnonzero(mask)
            scores = np.asarray(self.vectors[rows] @ vec[0], dtype=np.float32)
            return _top(rows, scores, m)
        fetch = min(self.n, max(m + (len(q.exclude) if mask is not None else 0), 16))
        while True:
            scores, rows = _search_one(self.index, vec, fetch)
            keep = rows[0] >= 0
            rows, scores = rows[0][keep], scores[0][keep]
            if mask is not None:
                ok = mask[rows]
                rows, scores = rows[ok], scores[ok]
            if len(rows) >= m:
                return rows[:m].astype(np.int64), scores[:m]
            if fetch >= self.n:
                break
            fetch = min(self.n, fetch * 4)  # too few passed the filter: ask FAISS for more
        # An approximate index returns only what its probed lists hold, even when asked for all n:
        # score the allowed rows exactly (in chunks) so a filter still yields k when k exist.
        allowed = np.flatnonzero(mask) if mask is not None else np.arange(self.n)
        best_rows, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        for start in range(0, len(allowed), _EXACT_CHUNK):
            part = allowed[start:start + _EXACT_CHUNK]
            part_scores = np.asarray(self.vectors[part] @ vec[0], dtype=np.float32)
            best_rows, best_scores = _top(np.concatenate([best_rows, part]),
                                          np.concatenate([best_scores, part_scores]), m)
        return best_rows.astype(np.int64), best_scores

    def lexical_scores(self, q: Query) -> np.ndarray:
        return self.lex.score_text(q.lexical) if q.text else self.lex.score_vector(q.lexical)

    # ---- modes ---------------------------------------------------------------------------
    def rank(self, q: Query, k: int, mode: str, allowed: np.ndarray | None = None,
             weight: float = HYBRID_WEIGHT) -> list[Ranked]:
        """The k best allowed rows for ``q``; fewer only when fewer rows are allowed."""
        mask = self._mask(q, allowed)
        if mode == "dense":
            rows, scores = self.dense_top(q, k, mask)
            # Only the returned rows' lexical scores: no pass over every paper in dense mode.
            lex = self.lex.score_rows(q.lexical, rows, text=q.text) if len(rows) else np.zeros(0)
            return [Ranked(int(r), float(s), float(s), float(x)) for r, s, x in zip(rows, scores, lex)]
        lex_all = self.lexical_scores(q)
        if mask is not None:
            lex_all = np.where(mask, lex_all, -np.inf)
        if mode == "lexical":
            rows, scores = _top(np.arange(self.n), lex_all, k)
            # A text query's BM25 score is 0 for papers without any query term: those are not matches.
            keep = scores > 0 if q.text else np.isfinite(scores)
            rows, scores = rows[keep], scores[keep]
            dense = self.vectors[rows] @ q.dense if q.dense is not None and len(rows) else None
            return [Ranked(int(r), float(s), None if dense is None else float(dense[i]), float(s))
                    for i, (r, s) in enumerate(zip(rows, scores))]
        if mode != "hybrid":
            raise ValueError(f"unknown ranking mode {mode!r}; use one of {', '.join(MODES)}")
        pool = max(POOL, 2 * k)
        d_rows, _ = self.dense_top(q, pool, mask)
        l_rows, l_scores = _top(np.arange(self.n), lex_all, pool)
        l_rows = l_rows[np.isfinite(l_scores)]
        rows = np.union1d(d_rows, l_rows).astype(np.int64)
        if not len(rows):
            return []
        dense = np.asarray(self.vectors[rows] @ q.dense, dtype=np.float64)
        lex = lex_all[rows].astype(np.float64)
        fused = fuse(dense, lex, weight)
        top_rows, top_scores = _top(rows, fused, k)
        where = {int(r): i for i, r in enumerate(rows)}
        return [Ranked(int(r), float(s), float(dense[where[int(r)]]), float(lex[where[int(r)]]))
                for r, s in zip(top_rows, top_scores)]


def _search_one(index: faiss.Index, vec: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search of one vector on one OpenMP thread (this thread only; restored after).

    Measured in issue 4: with the default 2 threads, single queries were 5-12x slower.
    """
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(vec, k)
    finally:
        faiss.omp_set_num_threads(before)


def minmax(x: np.ndarray) -> np.ndarray:
    """Scale to [0, 1] over the pool; a constant side contributes nothing to the ordering."""
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi - lo <= 1e-12 else (x - lo) / (hi - lo)


def fuse(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """Weighted sum of min-max scaled scores; ``weight`` is the dense share, in [0, 1]."""
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgument(f"hybrid weight must be in [0, 1], got {weight}")
    return weight * minmax(dense) + (1.0 - weight) * minmax(lexical)


def _top(rows: np.ndarray, scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """The m best (rows, scores), score descending, ties broken by row so results are deterministic."""
    if m < len(scores):
        part = np.argpartition(-scores, m - 1)[:m]
        # include every row tied with the m-th score so the row tie-break is exact
        cutoff = scores[part].min()
        part = np.flatnonzero(scores >= cutoff)
    else:
        part = np.arange(len(scores))
    order = part[np.lexsort((rows[part], -scores[part]))][:m]
    return rows[order].astype(np.int64), scores[order]
