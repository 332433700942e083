"""The 1M-vector index benchmark (not a unit test): build time, peak memory, size, recall, latency.

    nice -n 10 python benchmarks/index_1m.py            # 1M x 384, auto type + flat baseline
    python benchmarks/index_1m.py --n 200000 --types auto,flat,hnsw

Vectors are clustered synthetic unit vectors (tests/synthetic.py: each cluster a centre plus
a few directions of variation, nearest-neighbour cosine ~0.78), written in chunks to a .npy
file and memory-mapped, as the store does. Each index type is built in a fresh subprocess so
its peak RSS is its own (RSS includes the memory-mapped vector pages it touched).

Recall@10 is paperscope's own build-time figure (index.build: 500 stored vectors as queries,
self excluded, against an exact chunked scan). Latency is one query at a time (k=11, as
``related`` asks), warm (after 20 warm-up queries), with FAISS on 1 thread and on all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def generate(path: Path, n: int, dim: int, seed: int) -> float:
    from synthetic import clustered_chunks

    t0 = time.perf_counter()
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    at = 0
    for block in clustered_chunks(n, dim, seed=seed):
        out[at : at + block.shape[0]] = block
        at += block.shape[0]
    out.flush()
    del out
    return time.perf_counter() - t0


def latency_ms(idx: object, vectors: np.ndarray, rows: np.ndarray, threads: int) -> dict[str, float]:
    import faiss

    faiss.omp_set_num_threads(threads)
    times = []
    for i, row in enumerate(rows):
        q = np.ascontiguousarray(vectors[row : row + 1], dtype=np.float32)
        t0 = time.perf_counter()
        idx.search(q, 11)  # type: ignore[attr-defined]
        if i >= 20:  # warm-up: first touches of lists / pages
            times.append((time.perf_counter() - t0) * 1000)
    return {"median": float(np.median(times)), "p95": float(np.percentile(times, 95)), "queries": len(times)}


def one_type(vec_path: Path, kind: str | None, out_dir: Path, latency_queries: int) -> dict[str, object]:
    """Runs in its own process: build, save, reload (as the Explorer does), time queries."""
    import faiss

    from paperscope import index

    vectors = np.load(vec_path, mmap_mode="r")
    t0 = time.perf_counter()
    built, info = index.build(vectors, kind)
    wall = time.perf_counter() - t0
    path = out_dir / f"{info['type']}.faiss"
    index.save(built, path)
    del built
    loaded = index.load(path, vectors.shape[0], vectors.shape[1], info)
    rows = np.random.default_rng(1).choice(vectors.shape[0], size=latency_queries + 20, replace=False)
    cores = os.cpu_count() or 1
    result = {
        "type": info["type"],
        "chosen_by": info["chosen_by"],
        "params": info["params"],
        "recall_at_10": info["recall_at_10"],
        "recall_queries": info["recall_queries"],
        "build_s": info["build_seconds"],
        "tuning_s": info["recall_seconds"],
        "build_total_s": round(wall, 1),
        "size_mb": round(path.stat().st_size / 2**20, 1),
        "latency_1thread_ms": latency_ms(loaded, vectors, rows, 1),
        f"latency_{cores}threads_ms": latency_ms(loaded, vectors, rows, cores),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "faiss": faiss.__version__,
    }
    path.unlink()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--types", default="auto,flat", help="comma list of auto, flat, ivf, hnsw")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--child", nargs=3, metavar=("VECTORS", "TYPE", "OUTDIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        vec, kind, out = args.child
        print(json.dumps(one_type(Path(vec), None if kind == "auto" else kind, Path(out), args.latency_queries)))
        return

    from paperscope.index import choose_type

    with tempfile.TemporaryDirectory(prefix="paperscope-1m-") as tmp:
        vec = Path(tmp) / "vectors.npy"
        gen_s = generate(vec, args.n, args.dim, args.seed)
        print(
            f"generated {args.n} x {args.dim} clustered unit vectors in {gen_s:.1f}s "
            f"({vec.stat().st_size / 2**30:.2f} GiB); size rule picks: {choose_type(args.n)}",
            flush=True,
        )
        rows = []
        for kind in args.types.split(","):
            t0 = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--latency-queries",
                    str(args.latency_queries),
                    "--child",
                    str(vec),
                    kind,
                    tmp,
                ],
                capture_output=True,
                text=True,
                env=os.environ,
            )
            if done.returncode != 0:
                sys.exit(f"{kind}: failed\n{done.stderr[-2000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            r["asked"], r["process_s"] = kind, round(time.perf_counter() - t0, 1)
            rows.append(r)
            print(json.dumps(r), flush=True)

    cores = os.cpu_count() or 1
    print(
        f"\nmachine: {platform.machine()}, {cores} cores, python {platform.python_version()}, "
        f"faiss {rows[0]['faiss'] if rows else '?'}; {args.n} x {args.dim} clustered vectors"
    )
    print(
        "| index (asked) | params | build s | recall@10 | size MB | peak RSS GB | "
        f"1-thread median / p95 ms | {cores}-thread median / p95 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        one, many = r["latency_1thread_ms"], r[f"latency_{cores}threads_ms"]
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        print(
            f"| {r['type']} ({r['asked']}) | {params} | {r['build_s']:.1f} (+{r['tuning_s']:.1f} tuning) | "
            f"{r['recall_at_10']:.3f} | {r['size_mb']:.0f} | {r['peak_rss_gb']:.2f} | "
            f"{one['median']:.2f} / {one['p95']:.2f} | {many['median']:.2f} / {many['p95']:.2f} |"
        )


if __name__ == "__main__":
    main()
