"""Topic quality and wall time: paperscope's map vs. BERTopic with its defaults, on the same embeddings.

    python benchmarks/topics.py [--store DIR] [--bertopic-runs 3]

Builds the bundled corpus with the pinned model if the store is empty, then, side by side in
one run: per labelled theme (src/paperscope/data/labels/themes.csv), precision, recall and F1
of the best-matching topic at any level, the number of topics, the share of papers in an
outlier topic or flagged low-confidence, and wall time. BERTopic gets the store's vectors
(``embeddings=``) and otherwise its defaults (its UMAP is unseeded, so each run differs:
several runs are reported as a median).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

import paperscope
from paperscope.corpus.normalize import normalise_title
from paperscope.map import MapParams
from paperscope.map.quality import best_topics

THEMES = ("mup", "peft", "diffusion")


def labels() -> dict[str, str]:
    path = resources.files("paperscope") / "data" / "labels" / "themes.csv"
    with path.open(encoding="utf-8") as fh:
        return {normalise_title(r["title"]): r["theme"] for r in csv.DictReader(fh)}


def compare(ex: paperscope.Explorer, bertopic_runs: int = 3, map_runs: int = 2) -> tuple[list[tuple], dict]:
    """Side by side on ``ex``'s vectors: (rows of (method, wall s, per-theme quality, topics, loose share), themes).

    Also used by benchmarks/run_all.py.
    """
    lab = labels()
    rows = list(ex.table.columns("id", "title", "abstract"))
    themes = [lab.get(normalise_title(r[1])) for r in rows]
    docs = [f"{r[1]}. {r[2]}" for r in rows]
    vectors = np.asarray(ex.index.vectors)

    results: list[tuple[str, float, dict, int, float]] = []
    for run in range(map_runs):  # the first run includes numba's JIT compilation
        t0 = time.perf_counter()
        tm = ex.topic_map(Path(tempfile.mkdtemp()), params=MapParams(), refit=True)
        wall = time.perf_counter() - t0
        results.append(
            (
                f"paperscope map (run {run + 1}, incl. render)",
                wall,
                best_topics(themes, tm.levels),
                tm.stats["topics"]["topic"] + tm.stats["topics"]["theme"],
                tm.low_confidence / len(tm),
            )
        )

    from bertopic import BERTopic

    for run in range(bertopic_runs):
        t0 = time.perf_counter()
        model = BERTopic()
        topics, _ = model.fit_transform(docs, embeddings=vectors)
        wall = time.perf_counter() - t0
        topics = np.asarray(topics)
        # Outliers (-1) are not a topic: give each its own label so they never match a theme.
        levels = [np.where(topics >= 0, topics, -1 - np.arange(len(topics)))]
        bt = best_topics(themes, levels)
        results.append(
            (f"BERTopic defaults (run {run + 1})", wall, bt, int(len(set(topics) - {-1})), float((topics < 0).mean()))
        )
    return results, {"papers": len(rows), "themes": themes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--bertopic-runs", type=int, default=3)
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="ps-topics-")) / "store"
    ex = paperscope.open(store) if (store / "CURRENT").exists() else paperscope.build(None, store)
    results, info = compare(ex, args.bertopic_runs)
    bt_scores = [q for name, _, q, _, _ in results if name.startswith("BERTopic")]

    print(f"{info['papers']} papers; themes: " + ", ".join(f"{t} {bt_scores[0][t].papers}" for t in THEMES))
    print(
        "| method | wall s | topics | outlier / low-conf. | "
        + " | ".join(f"{t} P / R / F1" for t in THEMES)
        + " | mean F1 (3) | mean F1 (all themes) |"
    )
    print("|" + " --- |" * (6 + len(THEMES)))
    for name, wall, q, n_topics, loose in results:
        cells = " | ".join(f"{q[t].precision:.2f} / {q[t].recall:.2f} / {q[t].f1:.2f}" for t in THEMES)
        print(
            f"| {name} | {wall:.1f} | {n_topics} | {loose:.0%} | {cells} | "
            f"{np.mean([q[t].f1 for t in THEMES]):.3f} | {np.mean([m.f1 for m in q.values()]):.3f} |"
        )
    med = {t: statistics.median(b[t].f1 for b in bt_scores) for t in THEMES}
    print("BERTopic median F1: " + ", ".join(f"{t} {v:.2f}" for t, v in med.items()))


if __name__ == "__main__":
    main()
