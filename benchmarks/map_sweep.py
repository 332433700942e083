"""Clustering candidates for the topic map, compared by best-topic F1 over seeds (docs/topic-map.md, round 3).

    python benchmarks/map_sweep.py --store DIR [--store DIR2] --seeds 1-5 [--cache DIR]

Fits the 10-d clustering space (the map's features and UMAP, as ``compute_map`` makes it) once per
store and seed, caches it, and scores each candidate on it: k-means with several topic counts,
HDBSCAN, Ward agglomerative topics, and themes by c-TF-IDF similarity instead of Ward. With the
committed parameters it gives the same F1 as ``map_stability.py --seeds`` (the 2-D layout, which
this skips, plays no part in the topics). Judge candidates by the mean and the worst over all themes,
on every store, on the tuning seeds only.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from map_stability import theme_labels
from sklearn.cluster import HDBSCAN, AgglomerativeClustering
from sklearn.feature_extraction.text import CountVectorizer

import paperscope
from paperscope.map import MapParams, cluster, features, project
from paperscope.map.quality import best_topics
from paperscope.map.terms import terms

Clusterer = Callable[[np.ndarray, int, np.ndarray], tuple[np.ndarray, np.ndarray]]


def seed_list(text: str) -> list[int]:
    """'1-5' or '6,7,8' as a list of seeds."""
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def clustering_space(store: Path, seed: int, cache: Path) -> tuple[np.ndarray, list[str], list[str | None]]:
    """The 10-d UMAP space compute_map clusters in (default MapParams), the texts and the theme labels."""
    ex = paperscope.open(store)
    _, titles, texts, _, vecs = ex.map_inputs()
    p = MapParams(seed=seed)
    path = cache / f"{store.name}-{seed}-{p.key}.npy"
    if path.exists():
        space = np.load(path)
    else:
        lexical = features.lexical_features(texts, texts, p.lexical_dims, seed)
        joint = features.joint_features(np.asarray(vecs, dtype=np.float32), lexical, p.lexical_weight)
        space = project.fit(joint, n_components=p.cluster_dims, n_neighbors=p.n_neighbors, min_dist=0.0, seed=seed)
        np.save(path, space)
    return space, list(texts), theme_labels(list(titles))


def _by_centres(space: np.ndarray, labels: np.ndarray, themes_per: float) -> tuple[np.ndarray, np.ndarray]:
    """Every paper to its nearest cluster centre (noise included), themes by the map's Ward merge."""
    centres = np.array([space[labels == k].mean(0) for k in np.unique(labels[labels >= 0])], dtype=np.float32)
    fine, _ = cluster.assign(space, centres)
    parents = cluster.merge_topics(centres, np.bincount(fine, minlength=len(centres)), round(len(centres) / themes_per))
    return fine, parents[fine]


def kmeans(fine_k: int, coarse_k: int) -> Clusterer:
    def run(space: np.ndarray, seed: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centres, parents = cluster.fit_topics(space, fine_k, coarse_k, seed)
        fine, _ = cluster.assign(space, centres)
        return fine, parents[fine]

    return run


def hdbscan(min_size: int) -> Clusterer:
    return lambda space, seed, counts: _by_centres(space, HDBSCAN(min_cluster_size=min_size).fit_predict(space), 2.5)


def ward_points(k: int) -> Clusterer:
    return lambda space, seed, counts: _by_centres(
        space, AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(space), 2.5
    )


def kmeans_ctfidf_themes(fine_k: int, coarse_k: int, linkage: str) -> Clusterer:
    """k-means topics; themes by cosine similarity of the topics' c-TF-IDF vectors."""

    def run(space: np.ndarray, seed: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        centres, _ = cluster.fit_topics(space, fine_k, fine_k, seed)
        fine, _ = cluster.assign(space, centres)
        member = sp.csr_matrix((np.ones(len(fine)), (fine, np.arange(len(fine)))), shape=(fine_k, len(fine)))
        m = np.asarray((member @ counts).todense())
        w = m / np.maximum(m.sum(1, keepdims=True), 1) * np.log(1 + m.sum(1).mean() / np.maximum(m.sum(0), 1))
        w /= np.maximum(np.linalg.norm(w, axis=1, keepdims=True), 1e-12)
        agg = AgglomerativeClustering(n_clusters=coarse_k, metric="precomputed", linkage=linkage)
        parents = agg.fit_predict(1 - w @ w.T)
        return fine, parents[fine]

    return run


def candidates(n: int) -> dict[str, Clusterer]:
    out: dict[str, Clusterer] = {}
    for factor in (1.2, 1.6, 1.8, 2.0):
        k = round(factor * math.sqrt(n))
        out[f"k-means {factor}*sqrt(n) = {k}, {round(k / 2.5)} themes"] = kmeans(k, round(k / 2.5))
    for size in (4, 6, 8):
        out[f"HDBSCAN min_cluster_size {size}"] = hdbscan(size)
    out["Ward agglomerative, 37 topics"] = ward_points(37)
    out["k-means 37, themes by c-TF-IDF (average)"] = kmeans_ctfidf_themes(37, 15, "average")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, action="append", required=True, help="repeat for several stores")
    ap.add_argument("--seeds", default="1-5")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "paperscope-map-sweep")
    ap.add_argument("--only", default=None, help="run only the candidates whose name contains this")
    args = ap.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    seeds = seed_list(args.seeds)
    print("| candidate | store | all themes mean / worst | diffusion | mup | peft | largest theme |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for store in args.store:
        spaces = [clustering_space(store, s, args.cache) for s in seeds]
        texts, themes = spaces[0][1], spaces[0][2]
        counts = CountVectorizer(analyzer=terms, min_df=2).fit_transform(texts).astype(np.float64)
        for name, run in candidates(len(texts)).items():
            if args.only and args.only not in name:
                continue
            per: dict[str, list[float]] = {}
            all_mean, largest = [], []
            for seed, (space, _, _) in zip(seeds, spaces):
                fine, coarse = run(space, seed, counts)
                q = best_topics(themes, [coarse, fine])
                for t, m in q.items():
                    per.setdefault(t, []).append(m.f1)
                all_mean.append(float(np.mean([m.f1 for m in q.values()])))
                largest.append(float(np.bincount(coarse).max() / len(coarse)))
            cells = [f"{np.mean(per[t]):.2f} / {min(per[t]):.2f}" for t in ("diffusion", "mup", "peft")]
            print(
                f"| {name} | {store.name} | {np.mean(all_mean):.3f} / {min(all_mean):.3f} | "
                + " | ".join(cells)
                + f" | {np.mean(largest):.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
