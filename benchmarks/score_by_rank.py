"""Shown `related` scores by rank over a store's papers: is there a cliff after the feedback papers?

    python benchmarks/score_by_rank.py [--store STORE] [--every 4]

Asks ``related`` (k=10, the default ranking) for every ``--every``-th paper of the store (default:
the bundled corpus indexed into a temporary store) and prints the mean shown score at each rank
and the mean drop from each rank to the next. Query expansion builds its query from the first
three hits; a drop between ranks 3 and 4 far above its neighbours means the feedback papers are
scored against an expansion that holds themselves. Public API only: ``PYTHONPATH=OTHER/src``
measures another checkout.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import paperscope


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
    mean = scores.mean(axis=0)
    drop = (scores[:, :-1] - scores[:, 1:]).mean(axis=0)
    print(f"{len(ids)} queries")
    print("| rank | " + " | ".join(str(r) for r in range(1, 11)) + " |")
    print("| --- |" + " --- |" * 10)
    print("| mean shown score | " + " | ".join(f"{x:.3f}" for x in mean) + " |")
    print("| mean drop to the next rank | " + " | ".join(f"{x:.3f}" for x in drop) + " | |")
    print("RESULT " + json.dumps({"queries": len(ids), "mean": mean.tolist(), "drop": drop.tolist()}))


if __name__ == "__main__":
    main()
