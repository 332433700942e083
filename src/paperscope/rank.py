"""Ranking modes: dense (the model's vectors), lexical (TF-IDF) and hybrid (a fusion of both).

Scores mean the same thing for every query. Each side's raw score (the dense cosine, the lexical
cosine) is turned into a z-score against the corpus' own score distribution: the mean and standard
deviation of that side's paper-to-paper scores over a fixed sample of paper pairs
(:class:`Reference`, computed once per open store). Hybrid ranks by
``weight * z_dense + (1 - weight) * z_lexical``; every mode's shown score is a calibrated
probability that the paper is related, ``1 / (1 + exp(-(a + b * z)))``, with (a, b) fitted per
mode on the tuning half of the shipped labels (``paperscope eval --tune``). So a score does not
depend on which other papers were candidates: a lone match keeps its score, the best hit of an
off-topic query scores low, and ``min_score`` means the same for every query.

Hybrid fuses over a candidate pool: the top ``POOL`` papers of each side (within the filter), and
for free text the best of the dense side's first ``JOINT`` by an approximate fused score, with
exact dense and lexical scores for every paper in the union (or, when the query's postings were
too many to read whole, for the best ``RESCORE`` of it by an approximate fused score). The pool size does not depend on k,
so the first 10 results are the same whether 10 or 100 are asked for. Optional query expansion
(``expand`` > 0, on by default for paper queries: related and recommend) adds ``expand`` x the
mean of the first ``EXPAND_DOCS`` fused hits (distinct papers: a near copy of one is skipped) to
both sides of the query and ranks again (pseudo-relevance feedback); free-text queries are not
expanded. A feedback paper is scored
against the query expanded by the *other* feedback papers (leave one out), and so is a near copy
of a feedback paper: scored against an expansion that holds itself, the first three hits would
score far above the fourth (0.88 against 0.32 on the bundled corpus), and a paper moving from 3rd
to 4th place would lose most of its score.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

from paperscope import index as index_lib
from paperscope import kernels, pagein, topk
from paperscope.choices import MODES
from paperscope.errors import InvalidArgument

# The same sample of pairs as the lexical half (impact.lexical_reference).
from paperscope.impact import BUDGET, REFERENCE_QUERIES, REFERENCE_TARGETS, Postings, lexical_reference
from paperscope.lexical import LexicalIndex, TermVector

# Chosen by measurement: `paperscope eval --tune` picks the weight, the expansion and the
# calibration on the tuning half of the shipped labels (docs/ranking.md).
DEFAULT_MODE = "hybrid"
HYBRID_WEIGHT = 0.7
# Dense share for free-text queries (search): a few words are a weaker lexical signal than a paper.
SEARCH_WEIGHT = 0.8
EXPANSION = 1.0
EXPAND_DOCS = 3
# (a, b) of the shown score 1 / (1 + exp(-(a + b * z))) per mode; z is the fused z-score in hybrid.
# Fitted by `evaluate.fit_calibration` on the tuning half with the bundled MiniLM store (docs/ranking.md).
CALIBRATION: dict[str, tuple[float, float]] = {
    "dense": (-2.32, 0.59),
    "lexical": (-2.53, 0.612),
    "hybrid": (-3.35, 0.909),
}
# Candidates per side, and how many of their union are scored exactly on the lexical side. At 1M
# papers (benchmarks/related_1m.py, round 16: 200 queries with exact answers to choose on, 100 fresh
# ones to report) a pool of 1,000 raised `related`'s agreement with exact scoring by 0.01-0.02 over
# 600; scoring exactly only the best RESCORE of the union by an approximate fused score (exact
# cosine, partial lexical sum) cost it 0.000-0.007 and `search` nothing, and saves most of the
# exact lexical scoring (the forward-index entries of ~2,000 rows, twice with expansion). When a
# query's postings are read whole the partial sums are exact and the whole union is scored, as on
# any store of a few thousand papers: the answers there do not change.
POOL = 1000
RESCORE = 400
# For a paper query, hybrid's dense side only proposes candidates, each then scored exactly on both
# sides: its FAISS search probes this share of the IVF lists that dense mode probes (dense mode's
# nprobe is tuned for its own recall@10). At 1M papers probing an eighth (16 of 2,000 lists) moved
# `related`'s agreement with exact scoring by at most 0.002 against a half, and scans a quarter of
# the codes (round 16; half cost `search` 0.07 in round 7): free text probes TEXT_PROBE times them.
HYBRID_PROBE = 0.125
# A free-text search's dense side probes this multiple of dense mode's IVF lists. A text query's
# vector lies farther from the papers it matches than a paper's does from its neighbours, so the
# index's recall at a fused top 10's depth is lower: at 1M papers 1.0 left 0.11 of the exact fused
# top 10 outside the pool, 2.0 left 0.04 (with JOINT; tuning half of benchmarks/related_1m.py, round 8).
# 4-bit lists (index.CODES "pq4fs") scan faster and order their rows more coarsely: at 1M papers
# search agreed with exact scoring at 0.953 / 0.963 / 0.971 / 0.977 probing 2 / 2.5 / 3 / 4 times
# the lists (200 queries; 0.935 / 0.948 / 0.952 / 0.964 on 100 fresh ones) in 10.6-14.4 ms, and
# with 8-bit lists at 2 times at 0.959 / 0.954 in 18.7-21.4 ms (benchmarks/related_1m.py, round 18).
TEXT_PROBE = 4.0
# ... for 8-bit lists (stores written from round 8 to round 17, until their next drift check).
TEXT_PROBE_SQ8 = 2.0
# Postings a free-text query's lexical pass reads (a paper query's: impact.BUDGET). A few words'
# candidates come mostly from the dense side (TEXT_PROBE, JOINT): at 1M papers `search` agreed
# with exact scoring at 0.956 / 0.959 / 0.958 / 0.959 with 10,000 / 25,000 / 50,000 / 150,000
# postings (200 queries; 0.956 / 0.954 / 0.955 / 0.955 on 100 fresh ones) and took 16.0 ms
# against 20.8 ms median at 25,000 and 150,000 (benchmarks/related_1m.py, round 17).
TEXT_BUDGET = 25_000
# For a free-text search the dense side is read to this depth, and the half pool of those rows with
# the best fused score (their cosine from FAISS with their partial lexical score from the postings
# read) joins the pool: papers good on both sides but in neither side's top ``pool``, which is
# where a few words' candidates miss (search agreement with exact scoring at 1M: 0.894 -> 0.953
# with TEXT_PROBE). Half a pool agreed as well as a whole one (0.952 on the tuning half). A paper
# query's many terms find its candidates without it: there it raised agreement by 0.008 (0.947 ->
# 0.955) for 3-9 ms more per warm query and a slower cold first query, so paper queries skip it
# (benchmarks/related_1m.py, round 8).
JOINT = 2000
# A paper whose dense z-score with a feedback paper reaches this is a near copy of it (the same
# paper under two ids): it is scored without that feedback paper, as the paper itself is. On the
# bundled corpus one pair of its 93,096 reaches it (cos 0.952); the next is at z 3.5 (cos 0.82).
COPY_Z = 4.0
# Query expansion's second pass: search FAISS and the postings again for the expanded query (True),
# or re-rank the first pass's pool only (False). Measured at 1M papers (benchmarks/related_1m.py).
EXPAND_SEARCH = False
# Below this many papers a store's own score distribution says little: the bundled corpus' is used.
MIN_REFERENCE_PAPERS = 50
# Measured on the bundled corpus (432 papers, all-MiniLM-L6-v2) by Ranker.reference().
DEFAULT_REFERENCE = (0.3047, 0.1441, 0.0156, 0.0140, 0.0062, 0.0121)
# Below this many allowed rows a filtered dense query is scored exactly over just those rows;
# above it FAISS is asked for more and more neighbours until enough pass the filter.
_BRUTE_FORCE_ROWS = 200_000
# A ranker over at least this many papers starts loading the compiled loops (paperscope.kernels) in
# the background once it has answered COMPILED_AFTER queries. Loading costs about half a second of
# CPU and saves about 10 ms a hybrid query at a million papers (benchmarks/related_1m.py): worth it
# for a process that asks many (a loop, an evaluation), not for a command that asks one, nor during
# a notebook's first few questions, which it would slow by that half second on a busy core. Below
# this size the numpy loops take a few milliseconds a query. ``paperscope serve`` loads them at start.
COMPILED_ROWS = 50_000
COMPILED_AFTER = 10
_EXACT_CHUNK = 65_536


def check_mode(mode: str | None) -> str:
    """The mode to use (``None`` means the default); ValueError naming the choices otherwise."""
    if mode is None:
        return DEFAULT_MODE
    if mode not in MODES:
        raise InvalidArgument(f"unknown ranking mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


def check_min_score(min_score: float | None) -> float | None:
    """``min_score`` as a float in [0, 1] (None: keep every hit); ValueError otherwise."""
    if min_score is None:
        return None
    if (
        isinstance(min_score, bool)
        or not isinstance(min_score, (int, float, np.floating, np.integer))
        or not 0.0 <= float(min_score) <= 1.0
    ):
        raise InvalidArgument(f"min_score must be a number in [0, 1], got {min_score!r}")
    return float(min_score)


class IndexDisagrees(Exception):
    """A lossy index's score for a row is further from the row's exact cosine than coding explains."""


@dataclass
class Query:
    """What a ranking needs: a dense vector (None when no model is needed) and a lexical vector.

    ``text`` marks a free-text query (its lexical scores are compared with titles used as queries);
    otherwise the lexical vector is built from paper rows. Both are scored by cosine.
    """

    dense: np.ndarray | None
    lexical: TermVector
    text: bool = False
    exclude: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Ranked:
    """One ranked row: the shown score (a calibrated probability), each side's raw cosine with the
    query as asked, and ``z``, the mode's z-score that the shown score calibrates (in hybrid with
    expansion, the fused z against the expanded query)."""

    row: int
    score: float
    dense: float | None
    lexical: float
    z: float


@dataclass(frozen=True)
class Reference:
    """The corpus' score distribution per side: mean and standard deviation of paper-to-paper scores."""

    dense_mean: float
    dense_std: float
    lexical_mean: float
    lexical_std: float
    # A short text's lexical cosines spread much wider than a whole paper's: free-text queries are
    # compared with the corpus' titles used as queries.
    text_mean: float
    text_std: float

    def z_dense(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.dense_mean) / self.dense_std

    def z_lexical(self, x: np.ndarray, text: bool = False) -> np.ndarray:
        """Lexical evidence: the z-score for a paper query; for free text its log, ``ln(1 + max(z, 0))``.

        A few words matching one rare term of a paper give a huge z (most papers share no term with
        a short text); the log keeps one such word from outweighing the meaning of the whole query.
        """
        if not text:
            return (np.asarray(x, dtype=np.float64) - self.lexical_mean) / self.lexical_std
        return np.log1p(np.maximum((np.asarray(x, dtype=np.float64) - self.text_mean) / self.text_std, 0.0))


def calibrated(mode: str, z: np.ndarray, calibration: dict[str, tuple[float, float]] | None = None) -> np.ndarray:
    """The shown score for z-scores of ``mode``: a probability in (0, 1), increasing with z."""
    a, b = (calibration or CALIBRATION)[mode]
    return 1.0 / (1.0 + np.exp(-(a + b * np.asarray(z, dtype=np.float64))))


def default_text_probe(index: faiss.Index) -> float:
    """The multiple of dense mode's IVF lists a free-text search probes in this index: ``TEXT_PROBE``,
    or ``TEXT_PROBE_SQ8`` for 8-bit lists."""
    return TEXT_PROBE_SQ8 if index_lib.list_codes(index) == "sq8" else TEXT_PROBE


class Ranker:
    """Ranks paper rows for a Query in one of the MODES, within an optional allowed-rows mask.

    ``postings`` are the lexical index's derived arrays (:class:`~paperscope.impact.Postings`,
    memory-mapped from the generation); without them they are derived in memory. ``budget`` is
    the number of postings one lexical pass may read (:meth:`Postings.candidates`), ``text_budget``
    that of a free-text query's hybrid pass (``TEXT_BUDGET``);
    ``expand_search`` whether query expansion searches again or re-ranks the first pool;
    ``pool`` how many candidates hybrid takes from each side; ``probe`` the share of an IVF
    index's lists hybrid's dense side probes for a paper query (``HYBRID_PROBE``); ``joint`` how deep
    a free-text query's dense side is read for candidates good on both sides (``JOINT``; 0: not); ``text_probe`` the
    multiple of those lists a free-text search probes (default ``TEXT_PROBE``, ``TEXT_PROBE_SQ8``
    for an index of 8-bit lists); ``rescore`` how many rows of
    a pool whose lexical pass was cut short are scored exactly on the lexical side (``RESCORE``; 0:
    all); ``dense_reference`` the (mean, std) :func:`dense_reference` recorded when the generation
    was written.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        index: faiss.Index,
        lex: LexicalIndex,
        postings: Postings | None = None,
        *,
        budget: int = BUDGET,
        text_budget: int = TEXT_BUDGET,
        expand_search: bool = EXPAND_SEARCH,
        pool: int = POOL,
        probe: float = HYBRID_PROBE,
        joint: int = JOINT,
        text_probe: float | None = None,
        dense_reference: tuple[float, float] | None = None,
        rescore: int = RESCORE,
    ):
        # a plain array over the same memory: np.memmap's indexing costs ~0.2 ms a call (a base with
        # a delta of rows, overlay.LayeredVectors, is kept as it is: an array of it is a copy)
        self.vectors = np.asarray(vectors) if isinstance(vectors, np.ndarray) else vectors
        self.index = index
        self.lex = lex
        self.postings = postings if postings is not None else Postings.build(lex, reference=False)
        self.budget = budget
        self.text_budget = text_budget
        self.expand_search = expand_search
        self._lossy = index_lib.lossy(index)
        self._refine = index_lib.refine_depth(index)
        text_probe = default_text_probe(index) if text_probe is None else text_probe
        if pool < 1 or not 0.0 < probe <= 1.0 or joint < 0 or text_probe <= 0.0 or rescore < 0:
            raise InvalidArgument(
                f"pool must be >= 1, probe in (0, 1], joint >= 0, text_probe > 0 and rescore >= 0, "
                f"got {pool}, {probe}, {joint}, {text_probe}, {rescore}"
            )
        self.pool = pool
        self.probe = probe
        self.joint = joint
        self.rescore = rescore
        self.text_probe = text_probe
        self.n = vectors.shape[0]
        self._answered = 0
        self._dense_reference = dense_reference
        self._reference: Reference | None = None
        # where a memory-mapped IVF index's lists lie, to read them ahead on a cold page cache
        self._lists: index_lib.MappedLists | None | bool = False
        self._ivf = faiss.try_extract_index_ivf(index)  # None for flat and HNSW indexes
        # the last pool's rows and vectors, per thread (query expansion scores that pool again)
        self._pool = threading.local()

    def reference(self) -> Reference:
        """The corpus' score distributions (:class:`Reference`), from a fixed sample of paper pairs.

        Dense: :func:`dense_reference`, recorded in the manifest when the generation was written
        (given as ``dense_reference``), or computed here. Lexical: computed when the generation
        was written (:func:`paperscope.impact.lexical_reference`), or here for an index without
        it. A store of fewer than ``MIN_REFERENCE_PAPERS`` papers uses ``DEFAULT_REFERENCE``, the bundled corpus'.
        """
        if self._reference is None and self.n < MIN_REFERENCE_PAPERS:
            self._reference = Reference(*DEFAULT_REFERENCE)
        if self._reference is None:
            dense = self._dense_reference or dense_reference(self.vectors)
            lexical = self.postings.reference or lexical_reference(self.lex, self.postings)
            self._reference = Reference(*dense, *lexical)
        return self._reference

    # ---- the two sides -------------------------------------------------------------------
    def _mask(self, q: Query, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None and not q.exclude:
            return None
        mask = np.ones(self.n, dtype=bool) if allowed is None else allowed.copy()
        if q.exclude:
            mask[list(q.exclude)] = False
        return mask

    def dense_top(
        self, q: Query, m: int, mask: np.ndarray | None, probe: float = 1.0, *, exact: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosines) of the m nearest allowed papers, best first.

        Exact with a flat index or a small allowed set; with IVF/HNSW, as good as the index's recall.
        ``probe`` scales an IVF index's ``nprobe`` (< 1: fewer lists, > 1: more). From a lossy
        index (coded lists) the found rows are scored again from the vectors (at least
        ``index.refine_depth`` of them), unless ``exact`` is False: hybrid's candidates, which it
        scores exactly itself, keep FAISS's order and scores.
        """
        assert q.dense is not None  # internal: callers check the mode needs a model
        vec = np.ascontiguousarray(q.dense[None, :], dtype=np.float32)
        # Exact scoring over the allowed rows when a filter leaves few; excluding the query's own
        # papers alone is no reason to copy every vector out of the memory map.
        n_allowed = int(np.count_nonzero(mask)) if mask is not None else self.n  # (sum: 0.27 ms at 1M)
        if mask is not None and n_allowed <= _BRUTE_FORCE_ROWS and n_allowed < self.n - len(q.exclude):
            rows = np.flatnonzero(mask)
            scores = np.asarray(self.vectors[rows] @ vec[0], dtype=np.float32)
            return topk.top(rows, scores, m)
        refine = exact and self._lossy
        fetch = min(self.n, max(m + (len(q.exclude) if mask is not None else 0), 16, self._refine if refine else 0))
        ivf = self._ivf
        while True:
            scores, rows = _search_one(self.index, vec, fetch, probe, self._mapped_lists())
            keep = rows[0] >= 0
            # Fewer than asked for: the probed lists hold no more. Asking for more rows cannot help;
            # probing more lists does (a pool of 600 from an index tuned to nprobe 2 of lists of 500
            # rows scanned all 1M vectors exactly below, 0.6 s a query, before this).
            lists_exhausted = not keep.all()
            rows, scores = rows[0][keep], scores[0][keep]
            if refine and len(rows):
                rows, scores = self._rescored(rows, scores, vec[0])
            if mask is not None:
                ok = mask[rows]
                rows, scores = rows[ok], scores[ok]
            if len(rows) >= m:
                return rows[:m].astype(np.int64), scores[:m]
            if lists_exhausted and ivf is not None and round(ivf.nprobe * probe) < ivf.nlist:
                probe = min(probe * 4, ivf.nlist / ivf.nprobe)
                continue
            if fetch >= self.n:
                break
            fetch = min(self.n, fetch * 4)  # too few passed the filter: ask FAISS for more
        # An approximate index returns only what its probed lists hold, even when asked for all n:
        # score the allowed rows exactly (in chunks) so a filter still yields k when k exist.
        allowed = np.flatnonzero(mask) if mask is not None else np.arange(self.n)
        return self._dense_exact_top(q, allowed, m)

    def _rescored(self, rows: np.ndarray, approx: np.ndarray, vec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rows from a lossy index with their exact cosines, best first; IndexDisagrees if FAISS's
        scores are further from them than coding explains (a damaged index file)."""
        scores = np.asarray(pagein.take(self.vectors, rows) @ vec, dtype=np.float32)
        # (a non-finite stored vector is left to the per-answer check, which names vectors.npy)
        off = np.abs(scores - approx)
        if (off > index_lib.LOSSY_TOLERANCE).any():
            raise IndexDisagrees(float(np.nanmax(off)))
        order = np.lexsort((rows, -scores))
        return rows[order], scores[order]

    def _mapped_lists(self) -> index_lib.MappedLists | None:
        if self._lists is False:
            self._lists = index_lib.MappedLists.of(self.index)
        return self._lists or None

    def _dense_exact_top(self, q: Query, allowed: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        assert q.dense is not None
        vec = np.asarray(q.dense, dtype=np.float32)
        best_rows, best_scores = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        for start in range(0, len(allowed), _EXACT_CHUNK):
            part = allowed[start : start + _EXACT_CHUNK]
            part_scores = np.asarray(self.vectors[part] @ vec, dtype=np.float32)
            best_rows, best_scores = topk.top(
                np.concatenate([best_rows, part]), np.concatenate([best_scores, part_scores]), m
            )
        return best_rows.astype(np.int64), best_scores

    def lexical_scores(self, q: Query) -> np.ndarray:
        """Exact lexical score of every paper (the whole postings of the query's terms)."""
        return self.postings.score_all(q.lexical)

    def lexical_rows(self, q: Query, rows: np.ndarray) -> np.ndarray:
        """Exact lexical scores of these rows (from the forward index)."""
        return self.postings.score_rows(q.lexical, rows)

    def lexical_top(self, q: Query, m: int, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, exact lexical scores) of about the m best allowed papers, best first.

        Candidates come from the impact-ordered postings within the budget, then are scored
        exactly; exact when the query's postings fit in the budget. A filter that leaves fewer
        candidates than asked for falls back to scoring every allowed paper.
        """
        rows, exhaustive = self.postings.candidates(q.lexical, max(m, self.pool), mask, self.budget)
        # Too few candidates: score every allowed paper (a paper query fills k with zero-score papers,
        # as it always has; a text query's zero scores are dropped by the caller).
        if len(rows) < m and not (exhaustive and q.text):
            allowed = np.flatnonzero(mask) if mask is not None else np.arange(self.n)
            if len(allowed) > _BRUTE_FORCE_ROWS:
                return topk.top(allowed, self.lexical_scores(q)[allowed], m)
            rows = allowed
        return topk.top(rows, self.lexical_rows(q, rows), m)

    # ---- modes ---------------------------------------------------------------------------
    def rank(
        self,
        q: Query,
        k: int,
        mode: str,
        allowed: np.ndarray | None = None,
        weight: float = HYBRID_WEIGHT,
        *,
        expand: float | None = None,
        calibration: dict[str, tuple[float, float]] | None = None,
    ) -> list[Ranked]:
        """The k best allowed rows for ``q``; fewer only when fewer rows are allowed (or, in lexical
        mode, contain a query term). Scores are calibrated probabilities (see the module docstring)."""
        hits = self._rank(q, k, mode, allowed, weight, expand=expand, calibration=calibration)
        self._answered += 1
        if self._answered >= COMPILED_AFTER and self.n >= COMPILED_ROWS:
            kernels.load_in_background()  # after an answer, never before one; once per process
        return hits

    def _rank(
        self,
        q: Query,
        k: int,
        mode: str,
        allowed: np.ndarray | None,
        weight: float,
        *,
        expand: float | None,
        calibration: dict[str, tuple[float, float]] | None,
    ) -> list[Ranked]:
        if not 0.0 <= weight <= 1.0:
            raise InvalidArgument(f"hybrid weight must be in [0, 1], got {weight}")
        mask = self._mask(q, allowed)
        ref = self.reference()
        if mode == "dense":
            rows, scores = self.dense_top(q, k, mask)
            # Only the returned rows' lexical scores: no pass over every paper in dense mode.
            lex = self.lexical_rows(q, rows)
            z = ref.z_dense(scores)
            shown = calibrated("dense", z, calibration)
            return [
                Ranked(int(r), float(p), float(s), float(x), float(zz))
                for r, p, s, x, zz in zip(rows, shown, scores, lex, z)
            ]
        if mode == "lexical":
            rows, scores = self.lexical_top(q, k, mask)
            # A text query's lexical score is 0 for papers without any query term: those are not matches.
            if q.text:
                rows, scores = rows[scores > 0], scores[scores > 0]
            return self._lexical_hits(q, rows, scores, ref, calibration)
        if mode != "hybrid":
            raise InvalidArgument(f"unknown ranking mode {mode!r}; use one of {', '.join(MODES)}")
        expand = self._expansion(q, expand)
        if expand > 0:
            # Feedback comes from the best matches in the whole store (never the filter's): a paper's
            # score must not depend on which other papers a filter lets through.
            fmask = mask if allowed is None else self._mask(q, None)
            (first, *_), seen = self._hybrid(q, 2 * EXPAND_DOCS, fmask, weight, ref)
            fb = self.feedback(first, ref)
            wide = self.expanded(q, fb, expand) if len(fb) else q
            # The expanded query's candidates: its own pool, plus the first pass's (scored again).
            extra = seen[mask[seen]] if mask is not None else seen

            def expanded_top(depth: int) -> tuple[np.ndarray, np.ndarray]:
                (rows, fused, _, _), _ = self._hybrid(wide, depth, mask, weight, ref, extra, search=self.expand_search)
                return rows, fused

            rows, fused = self._expanded_top(q, fb, expand, expanded_top, k, mask, weight, ref)
            # Each side's shown score stays the similarity to what was asked, not to the expansion.
            dense = np.asarray(self.vectors[rows] @ q.dense, dtype=np.float64) if len(rows) else np.zeros(0)
            lex = self.lexical_rows(q, rows)
        else:
            (rows, fused, dense, lex), _ = self._hybrid(q, k, mask, weight, ref)
        shown = calibrated("hybrid", fused, calibration)
        return [
            Ranked(int(r), float(p), float(d), float(x), float(z))
            for r, p, d, x, z in zip(rows, shown, dense, lex, fused)
        ]

    def rank_exact(
        self,
        q: Query,
        k: int,
        mode: str = "hybrid",
        allowed: np.ndarray | None = None,
        weight: float = HYBRID_WEIGHT,
        *,
        expand: float | None = None,
    ) -> list[Ranked]:
        """What :meth:`rank` approximates, by exhaustive scoring: every paper's exact dense cosine
        (no FAISS) and exact lexical score (whole postings), fused over all allowed papers (no pool).

        For measuring the fast path (tests, benchmarks/related_1m.py); linear in the store's size.
        """
        mask = self._mask(q, allowed)
        ref = self.reference()

        def fused_all(query: Query, m: np.ndarray | None, kk: int) -> tuple[np.ndarray, np.ndarray]:
            lex = self.lexical_scores(query)
            if mode == "lexical":
                z = np.where(lex > 0, lex, -np.inf) if query.text else lex
            else:
                dense = self._dense_all(query)
                z = dense if mode == "dense" else fuse(ref.z_dense(dense), ref.z_lexical(lex, query.text), weight)
            if m is not None:
                z = np.where(m, z, -np.inf)
            rows, top = topk.top(np.arange(self.n), z, kk)
            keep = np.isfinite(top)
            return rows[keep], top[keep]

        expand = self._expansion(q, expand) if mode == "hybrid" else 0.0
        if expand > 0:
            feedback = self.feedback(fused_all(q, self._mask(q, None), 2 * EXPAND_DOCS)[0], ref)
            wide = self.expanded(q, feedback, expand) if len(feedback) else q
            rows, top = self._expanded_top(
                q, feedback, expand, lambda depth: fused_all(wide, mask, depth), k, mask, weight, ref
            )
        else:
            rows, top = fused_all(q, mask, k)
        lex = self.lexical_rows(q, rows)
        dense = np.asarray(self.vectors[rows] @ q.dense, dtype=np.float64) if q.dense is not None else None
        z = {
            "hybrid": top,
            "dense": ref.z_dense(top),
            "lexical": ref.z_lexical(top, q.text),
        }[mode]
        shown = calibrated(mode, z)
        return [
            Ranked(int(r), float(p), None if dense is None else float(dense[i]), float(lex[i]), float(z[i]))
            for i, (r, p) in enumerate(zip(rows, shown))
        ]

    def _dense_all(self, q: Query) -> np.ndarray:
        assert q.dense is not None
        vec = np.asarray(q.dense, dtype=np.float32)
        out = np.empty(self.n, dtype=np.float64)
        for start in range(0, self.n, _EXACT_CHUNK):
            out[start : start + _EXACT_CHUNK] = np.asarray(self.vectors[start : start + _EXACT_CHUNK]) @ vec
        return out

    @staticmethod
    def _expansion(q: Query, expand: float | None) -> float:
        # Expansion is tuned on paper queries; a free-text query is never expanded (its first hits
        # are the least certain, and feedback would lift an off-topic query's scores).
        return (0.0 if q.text else EXPANSION) if expand is None else expand

    def _lexical_hits(
        self,
        q: Query,
        rows: np.ndarray,
        scores: np.ndarray,
        ref: Reference,
        calibration: dict[str, tuple[float, float]] | None,
    ) -> list[Ranked]:
        dense = self.vectors[rows] @ q.dense if q.dense is not None and len(rows) else None
        z = ref.z_lexical(scores, q.text)
        shown = calibrated("lexical", z, calibration)
        return [
            Ranked(int(r), float(p), None if dense is None else float(dense[i]), float(s), float(z[i]))
            for i, (r, p, s) in enumerate(zip(rows, shown, scores))
        ]

    def feedback(self, ranked: np.ndarray, ref: Reference) -> np.ndarray:
        """The first ``EXPAND_DOCS`` of these rows (best first) that are distinct papers: a row that is
        a near copy (dense z >= ``COPY_Z``) of one taken before is skipped, so that one paper under
        two ids does not fill two of the expansion's places."""
        taken: list[int] = []
        for row in ranked.tolist():
            if len(taken) == EXPAND_DOCS:
                break
            if taken:
                sims = np.asarray(self.vectors[taken], dtype=np.float64) @ np.asarray(
                    self.vectors[row], dtype=np.float64
                )
                if (ref.z_dense(sims) >= COPY_Z).any():
                    continue
            taken.append(row)
        return np.asarray(taken, dtype=np.int64)

    def _expanded_top(
        self,
        q: Query,
        feedback: np.ndarray,
        beta: float,
        expanded_top: Callable[[int], tuple[np.ndarray, np.ndarray]],
        k: int,
        mask: np.ndarray | None,
        weight: float,
        ref: Reference,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best after :meth:`_leave_one_out`, from ``expanded_top(depth)`` (the best ``depth``
        rows of the expanded ranking, fused z descending), read deeper until they are final.

        Rescoring a feedback paper's near copies without it lowers them (as a rule); when that
        leaves the k-th below the last row read, an unread row (scored at most that in the
        expanded ranking) may beat it. Where near copies abound (tight clusters), reading only
        k + feedback rows made the first ten of k=10 and k=20 differ (in nearly every query of
        benchmarks/related_1m.py's synthetic store).
        """
        depth = k + len(feedback)
        while True:
            rows, fused = expanded_top(depth)
            top_rows, top_fused = self._leave_one_out(q, feedback, beta, rows, fused, k, mask, weight, ref)
            if len(rows) < depth or not len(feedback) or (len(top_fused) >= k and top_fused[k - 1] >= fused[-1]):
                return top_rows, top_fused
            depth *= 4

    def _leave_one_out(
        self,
        q: Query,
        feedback: np.ndarray,
        beta: float,
        rows: np.ndarray,
        fused: np.ndarray,
        k: int,
        mask: np.ndarray | None,
        weight: float,
        ref: Reference,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best of ``rows`` (fused z against the expanded query) once every allowed feedback
        paper, and every row that is a near copy of one (dense z >= ``COPY_Z``), is scored instead
        against ``q`` expanded by the feedback papers that are neither itself nor a copy of it (or
        by none): an expansion never holds the paper it scores, under its own or another id.

        ``rows`` must be the best ``k + len(feedback)`` of the expanded ranking, so that k rows
        that are not feedback papers are among them.
        """
        if not len(feedback):
            return rows[:k], fused[:k]
        fb = feedback[mask[feedback]] if mask is not None else feedback
        cand = np.unique(np.concatenate([rows, fb]).astype(np.int64))
        sims = np.asarray(self.vectors[cand], dtype=np.float64) @ np.asarray(self.vectors[feedback], dtype=np.float64).T
        held = (ref.z_dense(sims) >= COPY_Z) | (cand[:, None] == feedback[None, :])
        redo = held.any(axis=1)
        scores = dict(zip(rows.tolist(), fused.tolist()))
        # one expansion per distinct set of feedback papers left out (at most 2 ** EXPAND_DOCS)
        for pattern in {tuple(h) for h in held[redo]}:
            left = np.asarray(pattern)
            these = cand[redo & (held == left).all(axis=1)]
            others = feedback[~left]
            loo = self.expanded(q, others, beta) if len(others) else q
            assert loo.dense is not None
            dense = np.asarray(self.vectors[these] @ loo.dense, dtype=np.float64)
            z = fuse(ref.z_dense(dense), ref.z_lexical(self.lexical_rows(loo, these), q.text), weight)
            scores.update(zip(these.tolist(), z.tolist()))
        keys = np.fromiter(scores, dtype=np.int64, count=len(scores))
        return topk.top(keys, np.fromiter(scores.values(), dtype=np.float64, count=len(scores)), k)

    def _hybrid(
        self,
        q: Query,
        k: int,
        mask: np.ndarray | None,
        weight: float,
        ref: Reference,
        extra: np.ndarray | None = None,
        *,
        search: bool = True,
    ) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
        """((rows, fused z, dense cosines, lexical scores) of the k best in the candidate pool, the pool).

        The pool: the top ``self.pool`` of each side (dense from FAISS, lexical from the postings'
        candidates) and ``extra`` rows; every row in it is scored exactly on both sides, or, when
        the lexical pass was cut short, its best ``self.rescore`` by an approximate fused score
        (and the pool handed back is those). Without ``search`` (and with at least that many
        ``extra`` rows), the pool is ``extra`` alone.
        """
        pool = max(self.pool, 2 * k)
        parts = [] if extra is None else [extra]
        # a first pass that scored only its best ``rescore`` hands on that many
        enough = min(pool, max(self.rescore, k)) if self.rescore else pool
        searched = search or extra is None or len(extra) < enough
        exhaustive = True
        if searched:
            # A free-text query's few words are weak lexical evidence: its dense candidates matter more.
            probe = self.text_probe if q.text else self.probe
            drows, dcos = self.dense_top(q, max(pool, self.joint if q.text else 0), mask, probe, exact=False)
            budget = self.text_budget if q.text else self.budget
            lrows, partial, exhaustive = self.postings.partial(q.lexical, mask, budget)
            parts.append(drows[:pool])
            parts.append(topk.best(lrows, partial, pool))
            if len(drows) > pool:
                # The deep dense rows by fused score, their lexical side from the partial sums (a
                # lower bound; exact when exhaustive, and 0 for a row no posting read reached).
                at = np.minimum(np.searchsorted(lrows, drows), max(len(lrows) - 1, 0))
                lex_part = np.where(lrows[at] == drows, partial[at], 0.0) if len(lrows) else np.zeros(len(drows))
                joint = fuse(ref.z_dense(dcos), ref.z_lexical(lex_part, q.text), weight)
                parts.append(topk.best(drows, joint, max(1, pool // 2)))
        rows = np.unique(np.concatenate(parts).astype(np.int64))
        if not len(rows):
            empty = np.zeros(0)
            return (rows, empty, empty, empty), rows
        vectors = self._pool_vectors(rows)
        dense = np.asarray(vectors @ q.dense, dtype=np.float64)
        if searched and not exhaustive and self.rescore and len(rows) > max(self.rescore, k):
            # Only the best ``rescore`` of the pool by an approximate fused score (exact cosine, the
            # lexical partial sum: a lower bound) are scored exactly on the lexical side. With the
            # postings read whole the partial sums are exact: nothing to approximate.
            at = np.minimum(np.searchsorted(lrows, rows), max(len(lrows) - 1, 0))
            lex_part = np.where(lrows[at] == rows, partial[at], 0.0) if len(lrows) else np.zeros(len(rows))
            approx = fuse(ref.z_dense(dense), ref.z_lexical(lex_part, q.text), weight)
            keep = approx >= topk.mth_best(approx, max(self.rescore, k))  # rows tied with the last stay in
            rows, dense, vectors = rows[keep], dense[keep], vectors[keep]
        self._pool.last = (rows, vectors)
        lex = self.lexical_rows(q, rows)
        fused = fuse(ref.z_dense(dense), ref.z_lexical(lex, q.text), weight)
        top_rows, top_fused = topk.top(rows, fused, k)
        where = np.searchsorted(rows, top_rows)  # rows is sorted (unique)
        return (top_rows, top_fused, dense[where], lex[where]), rows

    def _pool_vectors(self, rows: np.ndarray) -> np.ndarray:
        """The vectors of these rows (ascending): those of the last pool this thread scored when they
        are its rows (query expansion's second pass: 400 rows not gathered again), else gathered."""
        last = getattr(self._pool, "last", None)
        if last is not None and len(last[0]) == len(rows) and np.array_equal(last[0], rows):
            return last[1]
        return pagein.take(self.vectors, rows)

    def expanded(self, q: Query, rows: np.ndarray, beta: float) -> Query:
        """Pseudo-relevance feedback: ``beta`` x the mean of these papers added to both sides of ``q``."""
        assert q.dense is not None
        dense = q.dense.astype(np.float64) + beta * np.asarray(self.vectors[rows], dtype=np.float64).mean(axis=0)
        dense /= max(float(np.linalg.norm(dense)), 1e-12)
        fb = self.lex.rows_vector([int(r) for r in rows])
        ids = np.concatenate([q.lexical.ids, fb.ids])
        vals = np.concatenate([q.lexical.values.astype(np.float64), beta * fb.values.astype(np.float64)])
        uniq, inverse = np.unique(ids, return_inverse=True)
        summed = np.bincount(inverse, weights=vals, minlength=len(uniq))
        # keep the expanded lexical query at unit length so its cosines stay on the reference scale
        summed /= max(float(np.linalg.norm(summed)), 1e-12)
        return Query(dense.astype(np.float32), TermVector(uniq, summed.astype(np.float32)), q.text, q.exclude)


def dense_reference(vectors: np.ndarray) -> tuple[float, float]:
    """(mean, standard deviation) of the dense cosines of a fixed sample of paper pairs.

    Query rows evenly spaced over the store (at most 64) against every paper of a small store, or
    8,192 targets in eight runs of consecutive rows spread over a large one. Computed when a
    generation is written and recorded in its manifest: on a cold 1M store, reading the sample at
    the first query took 0.16-0.19 s of it.
    """
    n = vectors.shape[0]
    qrows = np.unique(np.linspace(0, n - 1, min(n, REFERENCE_QUERIES)).astype(np.int64))
    if n <= REFERENCE_TARGETS:
        targets = np.arange(n, dtype=np.int64)
    else:
        # Eight runs of consecutive rows spread over the store: at a million papers, 8,192 rows
        # read as eight sequential runs, not 8,192 scattered pages of the memory map.
        run = REFERENCE_TARGETS // 8
        firsts = np.linspace(0, n - run, 8).astype(np.int64)
        targets = np.unique((firsts[:, None] + np.arange(run)[None, :]).ravel())
    tv = np.asarray(vectors[targets], dtype=np.float32)
    qv = np.asarray(vectors[qrows], dtype=np.float32)
    sims = (qv @ tv.T).astype(np.float64)
    dv = sims[qrows[:, None] != targets[None, :]]
    return float(dv.mean()), max(float(dv.std()), 1e-6)


def _search_one(
    index: faiss.Index,
    vec: np.ndarray,
    k: int,
    probe: float = 1.0,
    lists: index_lib.MappedLists | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS search of one vector on one OpenMP thread (this thread only; restored after).

    Measured in issue 4: with the default 2 threads, single queries were 5-12x slower. ``probe``
    scales an IVF index's ``nprobe`` (at least one list, at most all); other index types ignore it.
    ``lists``: the index's mapped lists, read ahead while searches are slow.
    """
    ivf = faiss.try_extract_index_ivf(index) if probe != 1.0 or lists is not None else None
    nprobe = min(ivf.nlist, max(1, round(ivf.nprobe * probe))) if ivf is not None else 0
    params = faiss.SearchParametersIVF(nprobe=nprobe) if ivf is not None and probe != 1.0 else None
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        if lists is None or not nprobe:
            return index.search(vec, k, params=params)
        lists.read_ahead(vec, nprobe)
        t0 = time.perf_counter()
        found = index.search(vec, k, params=params)
        lists.searched(time.perf_counter() - t0, nprobe)
        return found
    finally:
        faiss.omp_set_num_threads(before)


def fuse(z_dense: np.ndarray, z_lexical: np.ndarray, weight: float) -> np.ndarray:
    """Weighted sum of the two sides' corpus z-scores; ``weight`` is the dense share, in [0, 1].

    The result of one row does not depend on the other candidates (unlike min-max over a pool).
    """
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgument(f"hybrid weight must be in [0, 1], got {weight}")
    return weight * np.asarray(z_dense, dtype=np.float64) + (1.0 - weight) * np.asarray(z_lexical, dtype=np.float64)
