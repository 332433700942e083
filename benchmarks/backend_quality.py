"""Ranking quality of two stores of the same corpus built with two backends, on the held-out labels.

    python benchmarks/backend_quality.py --base TORCH_STORE --new DEFAULT_STORE

For each shipped label set (themes.csv, queries.json) and each mode (dense, hybrid): held-out
nDCG@10 and MAP of each store with its bootstrap 95% interval (as `paperscope eval --baselines`
gives them), and the paired difference new - base with a paired bootstrap interval (the same
queries resampled for both: an interval that holds 0 is no measurable difference). Also the
share of related top-10s the two stores have in common, per mode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import paperscope
from paperscope.baselines import bootstrap

MODES = ("dense", "hybrid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="store built with the reference backend (torch)")
    ap.add_argument("--new", type=Path, required=True, help="store built with the new backend")
    args = ap.parse_args()
    with paperscope.open(args.base) as base, paperscope.open(args.new) as new:
        names = base.info()["model"]["backend"], new.info()["model"]["backend"]
        results = base.evaluate(modes=MODES), new.evaluate(modes=MODES)
        print(f"held-out queries, bootstrap 95% intervals; {names[0]} = {args.base}, {names[1]} = {args.new}")
        print(f"| labels | mode | metric | {names[0]} | {names[1]} | {names[1]} - {names[0]} (paired) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for rb, rn in zip(*results):
            label = rb.labels.rsplit("/", 1)[-1]
            for mode in MODES:
                pb, pn = np.array(rb.per_query_held[mode]), np.array(rn.per_query_held[mode])
                for col, metric in ((2, "nDCG@10"), (3, "MAP")):
                    diff = bootstrap(pn[:, col] - pb[:, col])
                    print(
                        f"| {label} ({len(pb)}) | {mode} | {metric} | {bootstrap(pb[:, col])} | "
                        f"{bootstrap(pn[:, col])} | {diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] |"
                    )
        ids = [p.id for p in base.papers()]
        for mode in MODES:
            overlap = [
                len(
                    {h.paper.id for h in base.related(i, k=10, mode=mode)}
                    & {h.paper.id for h in new.related(i, k=10, mode=mode)}
                )
                / 10
                for i in ids
            ]
            print(f"related top-10 shared, {mode}: {np.mean(overlap):.3f} over {len(ids)} papers")


if __name__ == "__main__":
    main()
