"""IVF list codes at 1M vectors: 4-bit fast-scan lists ("pq4fs") against 8-bit lists ("sq8").

    python benchmarks/ivf_codes.py --dir DIR [--queries 100] [--noise 0.06] [--multiples 1 2 4]
        [--write DIR2]

DIR holds a generation's vectors (``vectors.npy``, or a base and a delta): for example the ``--keep`` directory of
``benchmarks/related_1m.py --store``. For each of ``index.IVF_CODES`` the script builds the index
as ``paperscope index`` does (``index.build(vectors, "ivf", codes=...)``: the same seeded k-means
centroids for both, nprobe tuned to ``index.TARGET_RECALL``) and reports its build time, file
size, tuned nprobe and recall@10, the time to load it (``index.load(..., mmap=True)``, as a store
opens it) with the file dropped from the page cache and then warm, and, on one thread, a free-text
search's dense side: ``--queries`` stored vectors plus Gaussian noise of ``--noise`` per dimension
(renormalised; a text's vector lies farther from its papers than a paper's does), each searched
for ``rank.JOINT`` rows at ``--multiples`` of the tuned nprobe. For each: the median time of a
search, and the share of the exact top 100 (brute force over all vectors) among the rows found.
For the build's codes it then runs the drift check a re-run would (``index.drift_check``) after
three 1% edits that changed no vector, and prints its recall and coding figures.

``--write DIR2`` also writes the pq4fs index as ``DIR2/index.faiss`` and ``index.json``, with hard
links to DIR's other query files and exact caches, so that ``benchmarks/related_1m.py --keep DIR2``
measures the same store with it (DIR2 on DIR's file system).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from paperscope import index, rank
from paperscope.store import read_vectors

TOP = 100


def main() -> None:
    from first_query import drop_page_cache  # a sibling script: benchmarks/ is on sys.path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--noise", type=float, default=0.06)
    ap.add_argument("--multiples", type=float, nargs="*", default=[1.0, 2.0, 4.0])
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    vectors = read_vectors(args.dir)  # vectors.npy, or a base and a delta
    n, dim = vectors.shape
    rng = np.random.default_rng(7)
    rows = np.sort(rng.choice(n, args.queries, replace=False))
    queries = np.asarray(vectors[rows], dtype=np.float32) + rng.normal(0, args.noise, (len(rows), dim)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    sims = np.empty((len(rows), n), dtype=np.float32)
    for start in range(0, n, 65_536):
        sims[:, start : start + 65_536] = queries @ np.asarray(vectors[start : start + 65_536], dtype=np.float32).T
    truth = np.argpartition(-sims, TOP, axis=1)[:, :TOP]
    del sims
    print(f"{n:,} vectors of {dim} dimensions; {len(rows)} queries (noise {args.noise}); rows asked: {rank.JOINT}")
    print()
    print(
        "| codes | build | file | tuned nprobe, recall@10 | load cold / warm | nprobe | search median | exact top 100 found |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(dir=args.dir.parent) as scratch:
        for codes in index.IVF_CODES:
            t0 = time.perf_counter()
            built, info = index.build(vectors, "ivf", codes=codes)
            seconds = time.perf_counter() - t0
            path = Path(scratch) / codes / "index.faiss"
            path.parent.mkdir()
            index.save(built, path)
            del built
            loads = []
            for cold in (True, False):
                if cold:
                    drop_page_cache(path.parent)
                t0 = time.perf_counter()
                idx = index.load(path, n, dim, info, mmap=True)
                loads.append(time.perf_counter() - t0)
            ivf = faiss.extract_index_ivf(idx)
            tuned = ivf.nprobe
            faiss.omp_set_num_threads(1)
            for multiple in args.multiples:
                nprobe = min(ivf.nlist, round(tuned * multiple))
                params = faiss.SearchParametersIVF(nprobe=nprobe)
                idx.search(queries[:5], rank.JOINT, params=params)  # warm the lists
                times, found = [], []
                for i in range(len(rows)):
                    t0 = time.perf_counter()
                    _, got = idx.search(queries[i : i + 1], rank.JOINT, params=params)
                    times.append(time.perf_counter() - t0)
                    found.append(len(np.intersect1d(got[0], truth[i])) / TOP)
                print(
                    f"| {codes} | {seconds:.1f} s | {path.stat().st_size / 1e6:.0f} MB | {tuned}, {info['recall_at_10']:.3f} "
                    f"| {loads[0]:.3f} / {loads[1]:.3f} s | {nprobe} | {1e3 * statistics.median(times):.2f} ms "
                    f"| {np.mean(found):.3f} |",
                    flush=True,
                )
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            if codes == index.CODES:
                checks(idx, info, vectors)
            if args.write is not None and codes == index.CODES:
                write(args.dir, args.write, path, info)
            del idx


def checks(idx: faiss.Index, info: dict[str, object], vectors: np.ndarray) -> None:
    """The drift check a re-run makes (``index.drift_check``) after three 1% edits that changed no
    vector (1% of the rows drawn with seeds 0-2): how far its estimates fall from the build's."""
    n = vectors.shape[0]
    for seed in range(3):
        changed = np.sort(np.random.default_rng(seed).choice(n, max(1, n // 100), replace=False))
        record = index.drift_check(idx, info, vectors, changed)
        print(
            f"drift check, {len(changed):,} rows drawn with seed {seed}: recall@10 {record.get('recall_at_10')} "
            f"(build: {info['recall_at_10']}), rows coded further than {record.get('code_error')}: "
            f"{record.get('miscoded')}, decision {record['decision']} {record['reasons']}",
            flush=True,
        )


def write(src: Path, dst: Path, path: Path, info: dict[str, object]) -> None:
    """DST: this index and its block, hard links to SRC's other query files and exact caches."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("index.faiss", "index.json") and f.is_file() and not (dst / f.name).exists():
            os.link(f, dst / f.name)
    shutil.move(path, dst / "index.faiss")
    (dst / "index.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
