"""Would an 8-bit scalar-quantised IVF speed up the dense side at 1M? A side measurement, not built.

    python benchmarks/ivf_sq8.py --dir DIR [--queries 60] [--nprobe 32 64 128]

DIR holds a generation's ``vectors.npy``, ``index.faiss`` and ``index.json`` (the manifest's index
block): for example the ``--keep`` directory of ``benchmarks/related_1m.py --store``. The script
reuses that IVF-Flat index's centroids for an ``IndexIVFScalarQuantizer`` (QT_8bit, one byte per
dimension instead of four), adds every vector, and for ``--queries`` stored vectors used as
queries (themselves excluded) times on one thread: each index's search for 300 candidates, then
exact re-scoring of them from ``vectors.npy`` (as the ranker scores its pool), against exact
search. Prints the median CPU time per query and recall@10 / recall@200 per ``nprobe``, twice
(the second round with the pages warm).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import faiss
import numpy as np

from paperscope import index

CANDIDATES = 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--nprobe", type=int, nargs="*", default=[32, 64, 128])
    args = ap.parse_args()
    info = json.loads((args.dir / "index.json").read_text())
    vectors = np.load(args.dir / "vectors.npy", mmap_mode="r")
    n, dim = vectors.shape
    loaded = index.load(args.dir / "index.faiss", n, dim, info)
    flat = faiss.downcast_index(loaded)  # keep `loaded`: it owns the C++ object
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(flat.quantizer.reconstruct_n(0, flat.nlist))
    sq8 = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, flat.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sq8.by_residual = False
    rng = np.random.default_rng(0)
    sample = np.ascontiguousarray(vectors[np.sort(rng.choice(n, min(n, 80_000), replace=False))], dtype=np.float32)
    t0 = time.perf_counter()
    sq8.train(sample)
    for start in range(0, n, 65_536):
        sq8.add(np.ascontiguousarray(vectors[start : start + 65_536], dtype=np.float32))
    print(f"IVF-SQ8 trained and filled in {time.perf_counter() - t0:.1f} s ({flat.nlist} lists, {n:,} vectors)")
    faiss.omp_set_num_threads(1)
    rows = rng.choice(n, args.queries, replace=False)
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    sims = np.empty((len(rows), n), dtype=np.float32)
    for start in range(0, n, 65_536):
        sims[:, start : start + 65_536] = queries @ np.asarray(vectors[start : start + 65_536]).T
    sims[np.arange(len(rows)), rows] = -np.inf
    truth = np.argsort(-sims, axis=1)[:, :200]

    def run(idx: faiss.Index, nprobe: int) -> tuple[float, float, float]:
        idx.nprobe = nprobe
        cpu, r10, r200 = [], [], []
        for i, row in enumerate(rows):
            c0 = time.process_time()
            _, found = idx.search(queries[i : i + 1], CANDIDATES + 1)
            cand = np.sort(found[0][(found[0] >= 0) & (found[0] != row)])
            top = cand[np.argsort(-(np.asarray(vectors[cand]) @ queries[i]))[:200]]
            cpu.append(time.process_time() - c0)
            r10.append(len(set(top[:10].tolist()) & set(truth[i, :10].tolist())) / 10)
            r200.append(len(set(top.tolist()) & set(truth[i].tolist())) / 200)
        return statistics.median(cpu) * 1000, float(np.mean(r10)), float(np.mean(r200))

    print("| round | nprobe | index | median CPU per query | recall@10 | recall@200 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rnd in (1, 2):
        for nprobe in args.nprobe:
            for name, idx in (("IVF-Flat", flat), ("IVF-SQ8", sq8)):
                ms, r10, r200 = run(idx, nprobe)
                print(f"| {rnd} | {nprobe} | {name} | {ms:.2f} ms | {r10:.3f} | {r200:.3f} |", flush=True)


if __name__ == "__main__":
    main()
