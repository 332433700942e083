"""Shown `related` scores by rank over a store's papers: is there a cliff after the feedback papers?

    python benchmarks/score_by_rank.py [--store STORE] [--every 4]

Asks ``related`` (k=10, the default ranking) for every ``--every``-th paper of the store (default:
the bundled corpus indexed into a temporary store) and prints the mean shown score at each rank
and the mean drop from each rank to the next. Query expansion builds its query from the first
three hits; a drop between ranks 3 and 4 far above its neighbours means the feedback papers are
scored against an expansion that holds themselves. Then, on the held-out queries of the shipped
labels, the mean shown score of hits 1-3 and 4-10 beside the share of them that are relevant, and
the expected calibration error of the first 10 hits (five score bins; the computation of
``evaluate.reliability``, written out here so that older checkouts, which lack it, are measured
the same way). Public API only: ``PYTHONPATH=OTHER/src`` measures another checkout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import paperscope
from paperscope import evaluate as ev


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--every", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "store"
            paperscope.build(None, store)
        with paperscope.open(store) as ex:
            ids = [p.id for p in ex.papers()][:: args.every]
            scores = np.array([[h.score for h in ex.related(pid, k=10)] for pid in ids])
            shown, relevant = [], []
            for labels in ev.shipped_labels():
                for title, row, rel in ev.resolve(ex, labels):
                    if rel and ev.is_held_out(title):
                        ranked = ex.rank(ex.related_query(row), 10, "hybrid")
                        shown.append([r.score for r in ranked])
                        relevant.append([r.row in rel for r in ranked])
    mean = scores.mean(axis=0)
    drop = (scores[:, :-1] - scores[:, 1:]).mean(axis=0)
    print(f"{len(ids)} queries")
    print("| rank | " + " | ".join(str(r) for r in range(1, 11)) + " |")
    print("| --- |" + " --- |" * 10)
    print("| mean shown score | " + " | ".join(f"{x:.3f}" for x in mean) + " |")
    print("| mean drop to the next rank | " + " | ".join(f"{x:.3f}" for x in drop) + " | |")
    s, y = np.array(shown, dtype=np.float64), np.array(relevant, dtype=np.float64)
    flat_s, flat_y = s.ravel(), y.ravel()
    edges = np.linspace(0.0, 1.0, 6)
    which = np.clip(np.searchsorted(edges, flat_s, side="right") - 1, 0, 4)
    ece = sum(
        (which == b).mean() * abs(flat_s[which == b].mean() - flat_y[which == b].mean())
        for b in range(5)
        if (which == b).any()
    )
    groups = {"1-3": slice(0, 3), "4-10": slice(3, 10)}
    for name, part in groups.items():
        print(f"held-out hits {name}: mean shown score {s[:, part].mean():.3f}, share relevant {y[:, part].mean():.3f}")
    print(f"held-out queries {len(s)}: expected calibration error {ece:.3f}")
    result = {"queries": len(ids), "mean": mean.tolist(), "drop": drop.tolist(), "held_out_ece": float(ece)}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
