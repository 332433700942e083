"""Would an 8-bit scalar-quantised IVF speed up the dense side at 1M? (Round 6; built in round 8.)

    python benchmarks/ivf_sq8.py --dir DIR [--queries 60] [--nprobe 32 64 128]
    python benchmarks/ivf_sq8.py --dir DIR --write DIR2

``--write DIR2`` instead makes DIR's index as ``index.build`` makes one since round 8 (residuals
in 8 bits, ranges widened by ``index.SQ_MARGIN``), on DIR's IVF centroids and with its nprobe, and
writes DIR2: that ``index.faiss`` and ``index.json``, and hard links to DIR's other query files and
exact caches, so that ``benchmarks/related_1m.py --keep DIR2`` measures the same store with the
new index (DIR2 on DIR's file system).

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
from typing import Any

import faiss
import numpy as np

from paperscope import index, overlay
from paperscope.store import read_vectors

CANDIDATES = 300


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--nprobe", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--write", type=Path, default=None, help="write DIR with the store's 8-bit index here")
    args = ap.parse_args()
    info = json.loads((args.dir / "index.json").read_text())
    vectors = read_vectors(args.dir)  # vectors.npy, or a base and a delta
    n, dim = vectors.shape
    loaded = index.load(args.dir / "index.faiss", n, dim, info)
    flat = faiss.downcast_index(loaded)  # keep `loaded`: it owns the C++ object
    if args.write is not None:
        write(args.dir, args.write, flat, vectors, info)
        return
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


def write(src: Path, dst: Path, flat: faiss.Index, vectors: np.ndarray, info: dict[str, Any]) -> None:
    """DIR with the index ``index.build`` makes since round 8, on the same centroids (see the docstring)."""
    n, dim = vectors.shape
    quantizer = faiss.IndexFlatIP(dim)
    quantizer.add(flat.quantizer.reconstruct_n(0, flat.nlist))
    sq8 = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, flat.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
    )
    sq8.sq.rangestat, sq8.sq.rangestat_arg = faiss.ScalarQuantizer.RS_minmax, index.SQ_MARGIN
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    sq8.train(np.ascontiguousarray(vectors[np.sort(rng.choice(n, min(n, 80_000), replace=False))], dtype=np.float32))
    for start in range(0, n, 65_536):
        sq8.add(np.ascontiguousarray(vectors[start : start + 65_536], dtype=np.float32))
    sq8.nprobe = flat.nprobe
    print(f"IVF-SQ8 (store settings) trained and filled in {time.perf_counter() - t0:.1f} s")
    dst.mkdir(parents=True, exist_ok=True)
    for name in (
        *overlay.LAYERED,
        "vectors.npy",
        "lexical.npz",
        "lexical-impact.npz",
        "exact-related.json",
        "exact-search.json",
    ):
        if (src / name).exists():
            (dst / name).unlink(missing_ok=True)
            (dst / name).hardlink_to(src / name)
    index.save(sq8, dst / "index.faiss")
    params = {**(info.get("params") or {}), "codes": "sq8"}
    (dst / "index.json").write_text(json.dumps({**info, "faiss": type(sq8).__name__, "params": params}))
    rows = np.sort(rng.choice(n, min(n, index.RECALL_QUERIES), replace=False))
    truth = index.exact_neighbours(vectors, rows, index.RECALL_K)
    print(
        f"recall@10 at nprobe {sq8.nprobe} (exact re-scoring of index.REFINE): IVF-SQ8 "
        f"{index.recall(sq8, vectors, rows, truth):.4f}, IVF-Flat {index.recall(flat, vectors, rows, truth):.4f}"
    )
    scores, found = sq8.search(np.ascontiguousarray(vectors[rows[:50]], dtype=np.float32), 600)
    exact = np.einsum("qd,qkd->qk", np.asarray(vectors[rows[:50]]), np.asarray(vectors)[found])
    off = np.abs(scores - exact)
    print(
        f"coding error of the scores (50 queries x 600): median {np.median(off):.5f}, max {off.max():.5f}; "
        f"index.faiss {(dst / 'index.faiss').stat().st_size / 1e6:.0f} MB (was {(src / 'index.faiss').stat().st_size / 1e6:.0f} MB)"
    )


if __name__ == "__main__":
    main()
