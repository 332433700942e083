"""How much the topic map moves when the corpus grows: an 80/20 split of the bundled corpus.

    python benchmarks/map_stability.py [--store DIR]

Maps 80% of the papers, then all of them with the first map as the previous one, both ways:
keeping the fitted UMAP (the default while growth is under ``refit_growth``) and re-fitting
(``refit_growth=0``, aligned by Procrustes, topic ids matched by member overlap). Reports the
median displacement of the old papers (as a share of the layout's width) and the share of old
papers whose fine-topic id is unchanged.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import paperscope
from paperscope.map import MapParams, compute_map


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--seed", type=int, default=0, help="seed of the 80/20 split")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="ps-stab-")) / "store"
    ex = paperscope.open(store) if (store / "CURRENT").exists() else paperscope.build(None, store)
    rows = list(ex.table.columns("id", "title", "abstract", "content_hash"))
    ids = [r[0] for r in rows]
    cols = (ids, [r[1] for r in rows], [f"{r[1]}. {r[2]}" for r in rows], [r[3] for r in rows])
    vecs = np.asarray(ex.index.vectors)
    order = np.random.default_rng(args.seed).permutation(len(ids))
    old = np.sort(order[: int(0.8 * len(ids))])
    first = compute_map(*([c[i] for i in old] for c in cols), vecs[old], "old", MapParams())
    width = float(np.ptp(first.coords, axis=0).max())
    print(f"{len(old)} papers mapped first, then all {len(ids)}; layout width {width:.2f}")
    print("| path | median displacement (share of width) | p90 | fine-topic ids kept | theme ids kept | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, params in (("keep the fit, place new papers", MapParams()),
                         ("re-fit, align, match ids", MapParams(refit_growth=0.0))):
        grown = compute_map(*cols, vecs, "new", params, previous=first)
        pos = {pid: i for i, pid in enumerate(grown.ids)}
        idx = [pos[p] for p in first.ids]
        moved = np.linalg.norm(grown.coords[idx] - first.coords, axis=1) / width
        kept = [float(np.mean(grown.levels[lv][idx] == first.levels[lv])) for lv in (1, 0)]
        print(f"| {name} | {np.median(moved):.4f} | {np.percentile(moved, 90):.4f} | {kept[0]:.1%} | "
              f"{kept[1]:.1%} | {grown.stats['seconds']:.1f} |")


if __name__ == "__main__":
    main()
