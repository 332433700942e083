"""Reading a 1M store's memory maps: FAISS's prefetch threads, the IVF lists read ahead, rows gathered by threads.

    python benchmarks/mapped_reads.py --dir DIR [--queries 60] [--rounds 3]

DIR holds a generation's ``vectors.npy``, ``index.faiss``, ``lexical.npz``, ``lexical-impact.npz``
and ``index.json`` (the manifest's index block): for example the ``--keep`` directory of
``benchmarks/related_1m.py --store``. On one thread:

* warm: the median time of one search (k = 601, the index's own ``nprobe``) for ``--queries`` stored
  vectors, the index mapped as FAISS leaves it (``OnDiskInvertedLists`` starts ``prefetch_nthread``
  threads per search) and as ``index.load(..., mmap=True)`` leaves it (none), alternating rounds;
* cold: ``--rounds`` fresh processes each drop DIR's files from the page cache and time one
  search: with FAISS's prefetch threads, without them, and without them after
  ``index.MappedLists.read_ahead`` (alternating);
* rows: the same for gathering 1,200 random papers' lexical entries (terms and weights, the
  forward index) and vectors, as a hybrid query's pool does: plain indexing against
  ``pagein.take``, cold (fresh processes) and warm (median of 200 in one process).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from paperscope import impact, index, overlay, pagein
from paperscope.lexical import advise_random
from paperscope.store import read_vectors

K = 601


def open_mapped(d: Path, faiss_default: bool) -> tuple[faiss.Index, np.ndarray]:
    info = json.loads((d / "index.json").read_text())
    vectors = read_vectors(d)  # vectors.npy, or a base and a delta
    idx = index.load(d / "index.faiss", *vectors.shape, info, mmap=True)
    if faiss_default:
        faiss.downcast_InvertedLists(faiss.extract_index_ivf(idx).invlists).prefetch_nthread = 32
    return idx, vectors


def warm(d: Path, queries: int) -> None:
    faiss.omp_set_num_threads(1)
    rows = np.random.default_rng(0).choice(1_000_000, queries, replace=False)
    times: dict[str, list[float]] = {"FAISS default (32 prefetch threads)": [], "index.load (none)": []}
    for _ in range(2):
        for name in times:
            idx, vectors = open_mapped(d, name.startswith("FAISS"))
            q = np.ascontiguousarray(vectors[rows % len(vectors)], dtype=np.float32)
            for i in range(len(q)):
                idx.search(q[i : i + 1], K)  # pages touched once in this process
            for i in range(len(q)):
                t0 = time.perf_counter()
                idx.search(q[i : i + 1], K)
                times[name].append(time.perf_counter() - t0)
    for name, ts in times.items():
        print(f"warm search, {name}: median {1000 * statistics.median(ts):.2f} ms over {len(ts)}")


def cold(d: Path, how: str, seed: int) -> float:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from first_query import drop_page_cache

    faiss.omp_set_num_threads(1)
    idx, vectors = open_mapped(d, how == "faiss")
    q = np.ascontiguousarray(vectors[np.random.default_rng(seed).integers(len(vectors))][None, :], dtype=np.float32)
    drop_page_cache(d)
    t0 = time.perf_counter()
    if how == "ahead":
        lists = index.MappedLists.of(idx)
        assert lists is not None
        lists.read_ahead(q, faiss.extract_index_ivf(idx).nprobe)
    idx.search(q, K)
    return time.perf_counter() - t0


def gather_rows(d: Path, threaded: bool, seeds: range) -> list[float]:
    """Seconds to gather 1,200 random papers' forward-index entries and vectors, once per seed."""
    vectors = read_vectors(d)
    advise_random(*overlay.parts(vectors))  # as VectorIndex opens it (impact.open_index advises the lexical maps)
    _, post = impact.open_index(d / "lexical.npz", d / impact.DERIVED_FILE, len(vectors))
    take = pagein.take if threaded else (lambda source, i: source[i])
    times = []
    for seed in seeds:
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), 1200, replace=False))
        lo, hi = np.asarray(post.indptr[rows]), np.asarray(post.indptr[rows + 1])
        at = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)])
        t0 = time.perf_counter()
        take(post.unit, at), take(post.terms, at), take(np.asarray(vectors), rows)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--cold", choices=["faiss", "plain", "ahead", "rows", "rows-threads"], default=None, help=argparse.SUPPRESS
    )
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.cold in ("rows", "rows-threads"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from first_query import drop_page_cache

        drop_page_cache(args.dir)
        print(f"COLD {gather_rows(args.dir, args.cold == 'rows-threads', range(args.seed, args.seed + 1))[0]}")
        return
    if args.cold:
        print(f"COLD {cold(args.dir, args.cold, args.seed)}")
        return
    warm(args.dir, args.queries)
    for threaded in (False, True, False, True):
        gather_rows(args.dir, threaded, range(100, 300))  # pages touched once in this process
        ts = gather_rows(args.dir, threaded, range(100, 300))
        label = "pagein.take" if threaded else "plain indexing"
        print(f"warm gather of 1,200 rows, {label}: median {1000 * statistics.median(ts):.2f} ms")
    found: dict[str, list[float]] = {"faiss": [], "plain": [], "ahead": [], "rows": [], "rows-threads": []}
    for r in range(args.rounds):
        for how in found:
            cmd = [sys.executable, __file__, "--dir", str(args.dir), "--cold", how, "--seed", str(r)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            found[how].append(float(out.split("COLD ")[1]))
    labels = {
        "faiss": "cold first search, FAISS's 32 prefetch threads",
        "plain": "cold first search, no prefetch threads",
        "ahead": "cold first search, with MappedLists.read_ahead",
        "rows": "cold gather of 1,200 rows, plain indexing",
        "rows-threads": "cold gather of 1,200 rows, pagein.take",
    }
    for how, ts in found.items():
        print(f"{labels[how]}: " + ", ".join(f"{t:.3f}" for t in ts) + " s")


if __name__ == "__main__":
    main()
