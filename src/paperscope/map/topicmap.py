"""Stage 4 of the pipeline: a 2-D map of the corpus with topics at two levels.

``compute_map`` is a pure function of the papers, their vectors, the parameters and the
previous map (if any); the store saves and loads its result, the renderers draw it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from paperscope import overlay
from paperscope.choices import MAP_MAX_FIT
from paperscope.errors import InvalidArgument
from paperscope.lexical import release_pages
from paperscope.map import cluster, features, frames, labels, project
from paperscope.map.frames import MapView, Members
from paperscope.map.levels import LEVELS

# Topics are labelled from at most this many papers (a fixed sample, the same on every run).
LABEL_SAMPLE = 20_000
STEPS = ("features", "clustering space", "layout", "labels")  # what compute_map reports to ``step``


MAX_SEED = 2**32 - 1
MIN_PAPERS = 4  # UMAP and two topics need a few points; fewer is one clear error, before any work


@dataclass(frozen=True)
class MapParams:
    """Everything that decides a map. Stored beside it; a change means a fresh fit."""

    seed: int = 42
    # 30 over 15: chosen on seeds 1-5 (best-topic F1 over all labelled themes), reported on seeds 6-10.
    n_neighbors: int = 30
    min_dist: float = 0.1
    cluster_dims: int = 10
    lexical_dims: int = 100
    lexical_weight: float = 2.0  # chosen on the theme labels: benchmarks/topics.py, README
    fine_topics: int | None = None
    coarse_topics: int | None = None
    # Re-fit from scratch once papers added since the last fit exceed this share of the fitted set.
    refit_growth: float = 0.5
    # UMAP and k-means are fitted on at most this many papers (a fixed sample); the rest are
    # placed among their nearest fitted papers. Fitting UMAP on millions of points is neither needed nor cheap.
    max_fit: int = MAP_MAX_FIT

    def __post_init__(self) -> None:
        checks = [
            (
                isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed <= MAX_SEED,
                f"seed must be an integer in [0, {MAX_SEED}] (numpy's and scikit-learn's range)",
            ),
            (self.n_neighbors >= 2, "n_neighbors must be at least 2"),
            (0.0 <= self.min_dist <= 1.0, "min_dist must be in [0, 1]"),
            (self.cluster_dims >= 2, "cluster_dims must be at least 2"),
            (self.lexical_dims >= 1, "lexical_dims must be at least 1"),
            (self.lexical_weight >= 0, "lexical_weight must be non-negative"),
            (self.fine_topics is None or self.fine_topics >= 2, "fine_topics must be at least 2"),
            (self.coarse_topics is None or self.coarse_topics >= 1, "coarse_topics must be at least 1"),
            (self.refit_growth >= 0, "refit_growth must be non-negative"),
            (self.max_fit >= 10, "max_fit must be at least 10"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidArgument(f"map parameters: {message}")

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Topic:
    """One topic: ``level`` 0 is a coarse theme, 1 a fine topic (whose ``parent`` is its theme)."""

    id: int
    level: int
    label: str
    keywords: list[str]
    size: int
    parent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "level": self.level,
            "level_name": LEVELS[self.level],
            "label": self.label,
            "keywords": self.keywords,
            "size": self.size,
            "parent": self.parent,
        }


@dataclass(repr=False)
class TopicMap:
    """A computed map: per paper (in ``ids`` order) 2-D coordinates and a topic per level."""

    generation: str
    params: MapParams
    ids: list[str]
    titles: list[str]
    hashes: list[str]
    coords: np.ndarray  # (n, 2) float32
    levels: list[np.ndarray]  # per level, (n,) int32 topic ids
    margin: np.ndarray  # (n,) float32, 1 - d1/d2 to the fine centroids
    base: np.ndarray  # (n,) bool: the papers UMAP was fitted on
    centroids: np.ndarray  # (k, d) fine-topic centroids in the clustering space
    centroid_ids: np.ndarray  # (k,) fine topic id of each centroid
    topics: list[Topic]
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def low_confidence(self) -> int:
        """Papers whose fine topic is nearly a tie with the next one (margin < cluster.LOW_MARGIN)."""
        return int((self.margin < cluster.LOW_MARGIN).sum())

    def topic(self, level: int, topic_id: int) -> Topic:
        for t in self.topics:
            if t.level == level and t.id == topic_id:
                return t
        raise KeyError(f"no topic {topic_id} at level {level}")

    def members(self, level: int | Topic, topic_id: int | None = None) -> Members:
        """Ids of the papers in one topic, in map order: ``members(topic)`` or ``members(level, id)``.

        The list also shows as a table in Jupyter, has ``to_pandas()`` and ``view()`` (the map of those papers).
        """
        if isinstance(level, Topic):
            level, topic_id = level.level, level.id
        return Members(self, np.flatnonzero(self.levels[level] == topic_id))

    def to_pandas(self) -> Any:
        """One row per paper: id, title, x, y, theme and topic ids and labels, margin, low_confidence."""
        return frames.map_frame(self)

    def topics_to_pandas(self) -> Any:
        """One row per topic (themes first): level, id, label, keywords, size, parent, three example titles."""
        return frames.topics_frame(self)

    def view(self, topic: Topic | None = None, height: int = 620) -> MapView:
        """The interactive map inline in a notebook; with ``topic``, only its papers."""
        rows = None if topic is None else np.flatnonzero(self.levels[topic.level] == topic.id)
        return MapView(self, rows, height)

    def __repr__(self) -> str:
        # The dataclass repr printed every coordinate (110 KB for 432 papers).
        return frames.summary(self)

    def _repr_html_(self) -> str:
        return frames.summary_html(self) + frames.iframe(frames.page_html(self))

    def find(self, words: str, level: int = 1) -> Topic:
        """The topic at ``level`` whose label or keywords mention ``words`` most prominently."""
        from paperscope.map.terms import fold

        w = fold(words)
        ranked = [
            (next((i for i, k in enumerate(t.keywords) if w in fold(k)), 99), -t.size, t.id, t)
            for t in self.topics
            if t.level == level
        ]
        best = min(ranked, key=lambda r: r[:3])
        if best[0] == 99:
            raise KeyError(f"no topic at level {level} mentions {words!r}")
        return best[3]


def compute_map(
    ids: Sequence[str],
    titles: Sequence[str],
    texts: Sequence[str],
    hashes: Sequence[str],
    vectors: np.ndarray | overlay.LayeredVectors,
    generation: str,
    params: MapParams,
    previous: TopicMap | None = None,
    step: Callable[[str], None] | None = None,
) -> TopicMap:
    """Project, cluster and label the papers; keep the previous map's layout and topic ids where possible.

    With a previous map made with the same parameters whose fitted papers are all still
    present and unchanged, the same UMAP is rebuilt by re-fitting on exactly those papers
    (deterministic), and only new papers are placed (among their nearest fitted papers) and assigned to the
    existing topics: old papers keep their coordinates and topics exactly. Otherwise the
    map is fitted afresh, aligned to the previous layout (Procrustes) and topic ids are
    carried over where a new topic mostly holds an old topic's papers. ``step(name)`` is called as
    each of the STEPS begins (for a progress bar).
    """
    step = step or (lambda name: None)
    t0 = time.perf_counter()
    n = len(ids)
    # Not copied: read in pieces by features.joint_features (a memory map, or a base and a delta).
    if len(vectors) != n or not (len(titles) == len(texts) == len(hashes) == n):
        raise ValueError("compute_map: ids, titles, texts, hashes and vectors must have one entry per paper")
    if n < MIN_PAPERS:
        raise InvalidArgument(f"a map needs at least {MIN_PAPERS} papers, the store has {n}; index more papers first")
    row = {pid: i for i, pid in enumerate(ids)}
    prev_row = {pid: i for i, pid in enumerate(previous.ids)} if previous is not None else {}
    reuse = previous is not None and _can_reuse(previous, params, row, hashes)
    if reuse:
        assert previous is not None
        base_idx = np.array([row[previous.ids[i]] for i in np.flatnonzero(previous.base)], dtype=np.int64)
    else:
        base_idx = fit_sample(ids, params.max_fit)
    is_base = np.zeros(n, dtype=bool)
    is_base[base_idx] = True
    # Papers to place: new ones when the old fit is kept, else all outside the sample.
    new_idx = np.array([i for i in range(n) if not is_base[i] and not (reuse and ids[i] in prev_row)], dtype=np.int64)

    texts_arr = list(texts)
    step("features")
    lexical = features.lexical_features([texts_arr[i] for i in base_idx], texts_arr, params.lexical_dims, params.seed)
    joint = features.joint_features(vectors, lexical, params.lexical_weight)
    release_pages(*overlay.parts(vectors))  # read once: a mapped file's pages need not stay in this process
    step("clustering space")
    # One neighbour search serves both projections: placed papers sit among their nearest fitted ones.
    near = (
        project.neighbours(joint[base_idx], joint[new_idx], params.n_neighbors, params.seed) if len(new_idx) else None
    )
    space_base = project.fit(
        joint[base_idx],
        n_components=min(params.cluster_dims, max(2, len(base_idx) - 2)),
        n_neighbors=params.n_neighbors,
        min_dist=0.0,
        seed=params.seed,
    )
    space_new = project.place(space_base, near) if near is not None else None
    # A fresh fit after a previous map starts the layout from the old positions (new papers at
    # the mean of their nearest old papers), so the picture changes no more than it must.
    warm = previous is not None and not reuse
    xy_init = _warm_layout(joint, base_idx, ids, previous, prev_row) if warm else None
    step("layout")
    xy_base = project.fit(
        joint[base_idx],
        n_components=2,
        n_neighbors=params.n_neighbors,
        min_dist=params.min_dist,
        seed=params.seed,
        init=xy_init,
    )
    xy_new = project.place(xy_base, near) if near is not None else None

    coords = np.zeros((n, 2), dtype=np.float32)
    fine = np.full(n, -1, dtype=np.int32)
    margin = np.zeros(n, dtype=np.float32)
    coords[base_idx] = xy_base
    if reuse:
        assert previous is not None
        centroids, centroid_ids = previous.centroids, previous.centroid_ids
        parent_of = {t.id: t.parent for t in previous.topics if t.level == 1}
        for i in range(n):  # every old paper, fitted or placed before, stays as it was
            j = prev_row.get(ids[i])
            if j is not None:
                coords[i], fine[i], margin[i] = previous.coords[j], previous.levels[1][j], previous.margin[j]
        if len(new_idx):
            coords[new_idx] = xy_new
            pos, m = cluster.assign(space_new, centroids)
            fine[new_idx], margin[new_idx] = centroid_ids[pos], m
        coarse = np.array([parent_of[int(f)] for f in fine], dtype=np.int32)
    else:
        fine_k, coarse_k = cluster.auto_sizes(n, params.fine_topics, params.coarse_topics)
        # Never more topics than distinct points: identical papers are one topic, not a split of ties.
        distinct = len(np.unique(np.round(joint[base_idx], 5), axis=0))  # before UMAP, which spreads ties
        fine_k, coarse_k = min(fine_k, distinct), min(coarse_k, distinct)
        init = _warm_centroids(space_base, base_idx, ids, previous, prev_row, fine_k) if warm else None
        centroids, parents = cluster.fit_topics(space_base, fine_k, coarse_k, params.seed, init=init)
        space = np.zeros((n, space_base.shape[1]), dtype=np.float32)
        space[base_idx] = space_base
        if len(new_idx):
            coords[new_idx] = xy_new
            space[new_idx] = space_new
        pos, margin = cluster.assign(space, centroids)
        centroid_ids = np.arange(len(centroids), dtype=np.int32)
        fine, coarse = pos.astype(np.int32), parents[pos].astype(np.int32)
        if previous is not None:
            common = [(i, prev_row[pid]) for i, pid in enumerate(ids) if pid in prev_row]
            old_fine = np.full(n, -1, dtype=np.int32)
            old_coarse = np.full(n, -1, dtype=np.int32)
            for i, j in common:
                old_fine[i], old_coarse[i] = previous.levels[1][j], previous.levels[0][j]
            fmap = cluster.match_ids(old_fine, fine, int(previous.levels[1].max()) + 1)
            cmap = cluster.match_ids(old_coarse, coarse, int(previous.levels[0].max()) + 1)
            fine = np.array([fmap[int(f)] for f in fine], dtype=np.int32)
            coarse = np.array([cmap[int(c)] for c in coarse], dtype=np.int32)
            centroid_ids = np.array([fmap[int(c)] for c in centroid_ids], dtype=np.int32)
            if len(common) >= 3:
                coords = _align(coords, np.array([i for i, _ in common]), previous.coords[[j for _, j in common]])
        parent_of = {int(f): int(c) for f, c in zip(fine, coarse)}

    step("labels")
    # Labels are c-TF-IDF over a topic's texts: a fixed sample of LABEL_SAMPLE papers (about a
    # hundred per topic at the most topics) names a topic as well as all of its papers do, and
    # labelling reads each text several times in Python (about 10 s per 1,000 papers, busy).
    # Sizes still count every paper. Below LABEL_SAMPLE papers the sample is every paper.
    sample = fit_sample(ids, LABEL_SAMPLE)
    # A topic with no paper in the sample (possible after a re-assignment) is named from its own papers.
    unnamed = np.setdiff1d(fine, fine[sample])
    if len(unnamed):
        sample = np.union1d(sample, np.flatnonzero(np.isin(fine, unnamed)))
    topics = _label([texts_arr[i] for i in sample], [coarse[sample], fine[sample]], parent_of, sizes=[coarse, fine])
    stats = {
        "seconds": round(time.perf_counter() - t0, 3),
        "papers": n,
        "fitted_on": int(is_base.sum()),
        "placed": int(len(new_idx)),
        "reused_fit": bool(reuse),
        "topics": {
            LEVELS[0]: len({t.id for t in topics if t.level == 0}),
            LEVELS[1]: len({t.id for t in topics if t.level == 1}),
        },
    }
    tm = TopicMap(
        generation=generation,
        params=params,
        ids=list(ids),
        titles=list(titles),
        hashes=list(hashes),
        coords=coords,
        levels=[coarse, fine],
        margin=margin,
        base=is_base,
        centroids=centroids,
        centroid_ids=centroid_ids,
        topics=topics,
        stats=stats,
    )
    tm.stats["low_confidence"] = tm.low_confidence
    return tm


def fit_sample(ids: Sequence[str], max_fit: int) -> np.ndarray:
    """All rows, or the ``max_fit`` rows whose id hashes lowest: a sample that is the same on every run."""
    if len(ids) <= max_fit:
        return np.arange(len(ids), dtype=np.int64)
    keys = [hashlib.sha256(pid.encode()).digest()[:8] for pid in ids]
    return np.sort(np.argsort(np.array(keys, dtype="S8"), kind="stable")[:max_fit]).astype(np.int64)


def _can_reuse(previous: TopicMap, params: MapParams, row: dict[str, int], hashes: Sequence[str]) -> bool:
    if previous.params != params:
        return False
    base_ids = [previous.ids[i] for i in np.flatnonzero(previous.base)]
    if any(
        pid not in row or hashes[row[pid]] != previous.hashes[i]
        for pid, i in zip(base_ids, np.flatnonzero(previous.base))
    ):
        return False
    old_ids = set(previous.ids)
    added = sum(1 for pid in row if pid not in old_ids)
    placed_before = len(previous.ids) - len(base_ids)
    return added + placed_before <= params.refit_growth * len(base_ids)


def _warm_layout(
    joint: np.ndarray,
    base_idx: np.ndarray,
    ids: Sequence[str],
    previous: TopicMap | None,
    prev_row: dict[str, int],
    neighbours: int = 5,
) -> np.ndarray | None:
    """Initial 2-D positions for the fitted papers: old ones where they were, new ones among their neighbours."""
    if previous is None:
        return None
    old = np.array([i for i in base_idx if ids[i] in prev_row], dtype=np.int64)
    if len(old) < neighbours + 1:
        return None
    old_xy = previous.coords[[prev_row[ids[i]] for i in old]].astype(np.float64)
    init = np.zeros((len(base_idx), 2), dtype=np.float64)
    for k, i in enumerate(base_idx):
        j = prev_row.get(ids[i])
        if j is not None:
            init[k] = previous.coords[j]
    fresh = [k for k, i in enumerate(base_idx) if ids[i] not in prev_row]
    for start in range(0, len(fresh), 4096):
        part = fresh[start : start + 4096]
        sims = joint[base_idx[part]] @ joint[old].T
        near = np.argsort(-sims, axis=1)[:, :neighbours]
        init[part] = old_xy[near].mean(axis=1)
    # UMAP needs distinct starting points; a tiny seeded jitter separates exact ties.
    init += np.random.default_rng(0).normal(scale=1e-4 * (np.ptp(init, axis=0).max() or 1.0), size=init.shape)
    return init


def _warm_centroids(
    space: np.ndarray,
    base_idx: np.ndarray,
    ids: Sequence[str],
    previous: TopicMap | None,
    prev_row: dict[str, int],
    k: int,
) -> np.ndarray | None:
    """k-means starting centres: the old topics' centres in the new space, largest first, then far points."""
    if previous is None:
        return None
    old_topic = np.array([previous.levels[1][prev_row[ids[i]]] if ids[i] in prev_row else -1 for i in base_idx])
    labels, counts = np.unique(old_topic[old_topic >= 0], return_counts=True)
    order = labels[np.argsort(-counts, kind="stable")][:k]
    centres = [space[old_topic == t].mean(axis=0) for t in order]
    while len(centres) < k:  # more topics than before: add the point farthest from every centre
        d = np.min(((space[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        centres.append(space[int(np.argmax(d))])
    return np.array(centres, dtype=np.float32)


def _align(coords: np.ndarray, idx: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate, reflect, scale and shift ``coords`` so the shared papers land near their old places."""
    src = coords[idx].astype(np.float64)
    mu_s, mu_t = src.mean(0), target.mean(0)
    a, b = src - mu_s, target.astype(np.float64) - mu_t
    u, s, vt = np.linalg.svd(a.T @ b)
    rot = u @ vt
    scale = s.sum() / max((a**2).sum(), 1e-12)
    return ((coords - mu_s) @ rot * scale + mu_t).astype(np.float32)


def _label(
    texts: list[str], levels: list[np.ndarray], parent_of: dict[int, int], sizes: list[np.ndarray]
) -> list[Topic]:
    """Label each topic of both levels from ``texts`` (assigned by ``levels``); ``sizes`` assigns every paper."""
    labeller = labels.Labeller(texts)  # corpus-wide written forms and acronyms, shared by both levels
    named: list[dict[int, tuple[str, list[str]]]] = []
    for level, assigned in enumerate(levels):
        # A theme spans several topics: two phrases name it better than one.
        found = labels.label_topics(texts, assigned, n=8, labeller=labeller, phrases=2 if level == 0 else 1)
        named.append(labels.unique(found, texts, assigned, labeller))
    fine_sizes = {int(k): int(v) for k, v in zip(*np.unique(sizes[1], return_counts=True))}
    named[0] = labels.adopt_child_labels(named[0], named[1], parent_of, fine_sizes)
    topics: list[Topic] = []
    for level, assigned in enumerate(sizes):
        counts = dict(zip(*(x.tolist() for x in np.unique(assigned, return_counts=True))))
        for tid in sorted(named[level]):
            label, words = named[level][tid]
            topics.append(
                Topic(
                    id=tid,
                    level=level,
                    label=label,
                    keywords=words,
                    size=int(counts.get(tid, 0)),
                    parent=parent_of.get(tid) if level == 1 else None,
                )
            )
    return topics


def to_record(tm: TopicMap) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A map as JSON-ready metadata plus plain arrays (no pickle: strings are fixed-width unicode)."""
    meta = {
        "generation": tm.generation,
        "params": asdict(tm.params),
        "params_key": tm.params.key,
        "topics": [t.to_dict() for t in tm.topics],
        "stats": tm.stats,
    }
    arrays = {
        "ids": np.array(tm.ids, dtype=str),
        "titles": np.array(tm.titles, dtype=str),
        "hashes": np.array(tm.hashes, dtype=str),
        "coords": tm.coords,
        "coarse": tm.levels[0],
        "fine": tm.levels[1],
        "margin": tm.margin,
        "base": tm.base,
        "centroids": tm.centroids,
        "centroid_ids": tm.centroid_ids,
    }
    return meta, arrays


def from_record(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> TopicMap:
    """Inverse of :func:`to_record`; raises KeyError/ValueError/TypeError on a malformed record."""
    n = len(arrays["ids"])
    coords = np.asarray(arrays["coords"], dtype=np.float32)
    if coords.shape != (n, 2) or not np.isfinite(coords).all():
        raise ValueError(f"coords has shape {coords.shape}, expected ({n}, 2) finite values")
    for name in ("titles", "hashes", "coarse", "fine", "margin", "base"):
        if len(arrays[name]) != n:
            raise ValueError(f"{name} has {len(arrays[name])} entries, expected {n}")
    topics = [
        Topic(
            id=int(t["id"]),
            level=int(t["level"]),
            label=str(t["label"]),
            keywords=[str(k) for k in t["keywords"]],
            size=int(t["size"]),
            parent=None if t.get("parent") is None else int(t["parent"]),
        )
        for t in meta["topics"]
    ]
    return TopicMap(
        generation=str(meta["generation"]),
        params=MapParams(**meta["params"]),
        ids=[str(x) for x in arrays["ids"]],
        titles=[str(x) for x in arrays["titles"]],
        hashes=[str(x) for x in arrays["hashes"]],
        coords=coords,
        levels=[np.asarray(arrays["coarse"], dtype=np.int32), np.asarray(arrays["fine"], dtype=np.int32)],
        margin=np.asarray(arrays["margin"], dtype=np.float32),
        base=np.asarray(arrays["base"], dtype=bool),
        centroids=np.asarray(arrays["centroids"], dtype=np.float32),
        centroid_ids=np.asarray(arrays["centroid_ids"], dtype=np.int32),
        topics=topics,
        stats=dict(meta.get("stats", {})),
    )
