"""Warm ``related`` ranking at 1M papers (not a unit test): dense and hybrid, median per query.

    nice -n 5 python benchmarks/related_1m.py [--n 1000000] [--terms 60] [--queries 200] [--hybrid-queries 20]

No real 1M-paper store can be embedded here (a day of CPU), so this builds the parts that
``Explorer.related`` ranks with: clustered synthetic unit vectors (tests/synthetic.py, as
benchmarks/index_1m.py), paperscope's own FAISS index for that size (``index.build``: IVF with
tuned nprobe), and a synthetic lexical index (``--terms`` distinct terms per paper drawn from
a Zipf law over a 200k-term vocabulary, like abstracts). It times ``Ranker.rank`` exactly as
``related`` calls it (query from a stored row, self excluded, k=10). The SQLite lookups
``related`` adds (id -> row, 10 rows -> papers) are indexed point queries, not included.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def synthetic_lexical(n: int, terms: int, vocab: int, seed: int):
    from paperscope.lexical import LexicalIndex

    rng = np.random.default_rng(seed)
    indptr = np.arange(n + 1, dtype=np.int64) * terms
    ids = np.empty(n * terms, dtype=np.int32)
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        block = (rng.zipf(1.2, size=(m, terms)) - 1) % vocab
        block.sort(axis=1)
        ids[start * terms : (start + m) * terms] = block.ravel()
    counts = np.ones(n * terms, dtype=np.int32)
    words = np.array([f"t{i}" for i in range(vocab)], dtype=np.str_)
    return LexicalIndex(words, indptr, ids, counts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--terms", type=int, default=60)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--hybrid-queries", type=int, default=20, help="hybrid is slow at 1M: fewer queries")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ps-related1m-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    from index_1m import generate

    from paperscope import index
    from paperscope.rank import Query, Ranker

    path = tmp / "vectors.npy"
    print(f"vectors: {generate(path, args.n, args.dim, 0):.0f} s", flush=True)
    vectors = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    built, info = index.build(vectors, None)
    print(
        f"index {info['type']} {info['params']} recall@10 {info['recall_at_10']}: {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    t0 = time.perf_counter()
    lex = synthetic_lexical(args.n, args.terms, 200_000, 1)
    lex.unit(), lex.weights()
    print(f"lexical index ({len(lex.terms)} entries) and BM25 weights: {time.perf_counter() - t0:.0f} s", flush=True)
    ranker = Ranker(vectors, built, lex)
    rows = np.random.default_rng(2).choice(args.n, size=args.queries + 10, replace=False)
    for mode in ("dense", "hybrid"):
        times = []
        for i, r in enumerate(rows if mode == "dense" else rows[: args.hybrid_queries + 10]):
            t0 = time.perf_counter()
            q = Query(
                dense=np.asarray(vectors[r], dtype=np.float32),
                lexical=lex.rows_vector([int(r)]),
                exclude=frozenset([int(r)]),
            )
            ranker.rank(q, 10, mode)
            if i >= 10:
                times.append(time.perf_counter() - t0)
        print(
            f"| related ranking at {args.n:,} papers, {mode} | {statistics.median(times) * 1000:.2f} ms median, "
            f"p95 {np.percentile(times, 95) * 1000:.2f} ms | {len(times)} warm queries |",
            flush=True,
        )


if __name__ == "__main__":
    main()
