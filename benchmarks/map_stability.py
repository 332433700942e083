"""How much the topic map moves: as the corpus grows (80/20 split), and across seeds (``--seeds``).

    python benchmarks/map_stability.py [--store DIR]                 # growth: keep the fit vs re-fit
    python benchmarks/map_stability.py --seeds 1-5 [--store DIR]     # best-topic F1 per theme over seeds

Growth: maps 80% of the papers, then all of them with the first map as the previous one, both
ways: keeping the fitted UMAP (the default while growth is under ``refit_growth``) and re-fitting
(``refit_growth=0``, aligned by Procrustes, topic ids matched by member overlap). Reports the
median displacement of the old papers (as a share of the layout's width) and the share of old
papers whose fine-topic id is unchanged.

Seeds: fits the map once per seed and prints, per labelled theme (data/labels/themes.csv), the
mean and the worst best-topic F1 over the seeds, the mean over all themes, and the share of
papers in the largest coarse theme. ``--before`` uses the parameters the map had before the
labels work (n_neighbors 15, sqrt(n) fine topics, 8 themes); the merge rule is always today's.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np

import paperscope
from paperscope.corpus.normalize import normalise_title
from paperscope.map import MapParams, compute_map
from paperscope.map.quality import best_topics


def _seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def theme_labels(titles: list[str]) -> list[str | None]:
    """The hand label of each title (None when unlabelled)."""
    path = resources.files("paperscope") / "data" / "labels" / "themes.csv"
    with path.open(encoding="utf-8") as fh:
        lab = {normalise_title(r["title"]): r["theme"] for r in csv.DictReader(fh)}
    return [lab.get(normalise_title(t)) for t in titles]


def seed_sweep(ex: paperscope.Explorer, seeds: list[int], before: bool) -> None:
    ids, titles, texts, hashes, vecs = ex.map_inputs()
    themes = theme_labels(titles)
    per: dict[str, list[float]] = {}
    largest, all_mean = [], []
    for seed in seeds:
        params = (
            MapParams(seed=seed, n_neighbors=15, fine_topics=round(len(ids) ** 0.5), coarse_topics=8)
            if before
            else MapParams(seed=seed)
        )
        tm = compute_map(ids, titles, texts, hashes, vecs, f"seed{seed}", params)
        q = best_topics(themes, tm.levels)
        for theme, m in q.items():
            per.setdefault(theme, []).append(m.f1)
        all_mean.append(float(np.mean([m.f1 for m in q.values()])))
        largest.append(float(np.bincount(tm.levels[0]).max() / len(tm)))
        print(
            f"seed {seed}: "
            + ", ".join(f"{t} {m.f1:.2f}" for t, m in sorted(q.items()))
            + f"; largest theme {largest[-1]:.0%}; {tm.stats['seconds']:.0f}s",
            flush=True,
        )
    print(f"\n{'before' if before else 'current'} parameters, seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} fits)")
    print("| theme | papers | mean F1 | worst F1 |")
    print("| --- | --- | --- | --- |")
    counts = {t: sum(1 for x in themes if x == t) for t in per}
    for theme, f1s in sorted(per.items()):
        print(f"| {theme} | {counts[theme]} | {np.mean(f1s):.2f} | {min(f1s):.2f} |")
    print(f"| all themes (mean) | | {np.mean(all_mean):.3f} | {min(all_mean):.3f} |")
    print(f"| largest coarse theme (share of papers) | | {np.mean(largest):.0%} | {max(largest):.0%} |")


def growth(ex: paperscope.Explorer, split_seed: int) -> None:
    ids, titles, texts, hashes, vecs = ex.map_inputs()
    cols = (ids, titles, texts, hashes)
    order = np.random.default_rng(split_seed).permutation(len(ids))
    old = np.sort(order[: int(0.8 * len(ids))])
    first = compute_map(*([c[i] for i in old] for c in cols), vecs[old], "old", MapParams())
    width = float(np.ptp(first.coords, axis=0).max())
    print(f"{len(old)} papers mapped first, then all {len(ids)}; layout width {width:.2f}")
    print("| path | median displacement (share of width) | p90 | fine-topic ids kept | theme ids kept | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, params in (
        ("keep the fit, place new papers", MapParams()),
        ("re-fit, align, match ids", MapParams(refit_growth=0.0)),
    ):
        grown = compute_map(*cols, vecs, "new", params, previous=first)
        pos = {pid: i for i, pid in enumerate(grown.ids)}
        idx = [pos[p] for p in first.ids]
        moved = np.linalg.norm(grown.coords[idx] - first.coords, axis=1) / width
        kept = [float(np.mean(grown.levels[lv][idx] == first.levels[lv])) for lv in (1, 0)]
        print(
            f"| {name} | {np.median(moved):.4f} | {np.percentile(moved, 90):.4f} | {kept[0]:.1%} | "
            f"{kept[1]:.1%} | {grown.stats['seconds']:.1f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the 80/20 split")
    ap.add_argument("--seeds", default=None, help="seed sweep instead: '1-5' or '6,7,8'")
    ap.add_argument("--before", action="store_true", help="with --seeds: the parameters before the labels work")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="ps-stab-")) / "store"
    ex = paperscope.open(store) if (store / "CURRENT").exists() else paperscope.build(None, store)
    if args.seeds:
        seed_sweep(ex, _seeds(args.seeds), args.before)
    else:
        growth(ex, args.seed)


if __name__ == "__main__":
    main()
