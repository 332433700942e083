"""What a query pays when a store's vectors are a base and a delta of rows (``paperscope.overlay``).

    python benchmarks/layered_vectors.py --store STORE [--queries 200] [--rounds 3]

STORE's live generation must hold its vectors as a base and a delta (a re-index that changed
under 10% of the rows since the last full write, ``paperscope info`` says so). One process on one
core opens its files as the Explorer does, maps them in (``Explorer.preload``'s arrays), and builds
two rankers over the same index and lexical files: one reading the vectors through the delta
(``overlay.LayeredVectors``), one over the same vectors as one array in memory (what the
generation would hold written whole). Warm hybrid ``related`` and ``search``
(``related_1m.query_makers``) run through both, ``--rounds`` times alternating; prints each one's
median and p95 and whether the top 10s are the same.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"
    import faiss
    from related_1m import query_makers

    from paperscope import impact, index, kernels, overlay, pagein
    from paperscope.rank import Ranker
    from paperscope.store import Store

    faiss.omp_set_num_threads(1)
    gen = Store(args.store).require_current()
    layered = gen.load_vectors()
    if not isinstance(layered, overlay.LayeredVectors):
        sys.exit(f"{args.store}: generation {gen.name} holds its vectors whole (no delta); nothing to compare")
    whole = np.asarray(layered)
    n, dim = whole.shape
    fidx = index.load(gen.file("index.faiss"), n, dim, gen.manifest["index"], mmap=True)
    base = gen.file(impact.BASE_FILE) if impact.BASE_FILE in gen.manifest["files"] else None
    lex, post = impact.open_index(gen.file("lexical.npz"), gen.file(impact.DERIVED_FILE), n, base)
    ref = tuple(gen.manifest["reference"]["dense"])
    rankers = {
        "base and delta": Ranker(layered, fidx, lex, post, dense_reference=ref),
        "one array": Ranker(whole, fidx, lex, post, dense_reference=ref),
    }
    kernels.load()
    pagein.populate(*overlay.parts(layered), *post.query_arrays())
    rng = np.random.default_rng(0)
    rows = rng.choice(n, size=args.queries, replace=False)
    makers = query_makers(whole, lex, rng)
    print(f"{gen.name}: {n:,} papers, {len(layered.rows):,} rows in the delta")
    print("| verb | vectors | median | p95 |")
    print("| --- | --- | --- | --- |")
    for verb, make in makers.items():
        queries = [make(int(r)) for r in rows]
        times: dict[str, list[float]] = {name: [] for name in rankers}
        tops: dict[str, list[list[int]]] = {}
        for _ in range(args.rounds):
            for name, ranker in rankers.items():
                got = []
                for q in queries:
                    t0 = time.perf_counter()
                    hits = ranker.rank(q, 10, "hybrid")
                    times[name].append(time.perf_counter() - t0)
                    got.append([h.row for h in hits])
                tops[name] = got
        for name, ts in times.items():
            median, p95 = statistics.median(ts) * 1000, float(np.percentile(ts, 95)) * 1000
            print(f"| {verb} | {name} | {median:.2f} ms | {p95:.2f} ms |")
        print(f"| {verb} | same top 10s | {tops['base and delta'] == tops['one array']} | |")


if __name__ == "__main__":
    main()
