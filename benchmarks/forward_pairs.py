"""Warm hybrid ``related`` and ``search`` with the lexical rows layered against the same rows written whole.

    OMP_NUM_THREADS=1 python benchmarks/forward_pairs.py --store STORE [--queries 220] [--rounds 2]

STORE's live generation must hold its lexical rows as a base and a delta (``paperscope.layered_lexical``:
a store re-indexed after a small edit). In one process, on one thread, with the query files mapped up
front (``Explorer.preload``): the rows as the store holds them, and the same rows written whole
(``LexicalIndex.whole``) to ``.npy`` files in a scratch directory beside the store and memory-mapped
from there, as a store's own files are (3.4 GB at a million papers; removed after). Each query (a random paper's
``related`` query, and a ``search`` made of its title terms and its vector) is asked of both, in
alternating order, ``--rounds`` times; the answers must be identical. Prints the median and p95 of
each and the median per-query ratio (layered / whole).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from paperscope import kernels, pagein  # noqa: E402
from paperscope.explorer import Explorer  # noqa: E402
from paperscope.lexical import LexicalIndex  # noqa: E402
from paperscope.rank import Query  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--queries", type=int, default=220)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warm", type=int, default=30, help="queries asked of both first, untimed")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    ex = Explorer(args.store)
    ranker = ex.ranker
    ex.preload()
    lex_layered, post_layered = ranker.lex, ranker.postings
    if lex_layered.layers is None:
        raise SystemExit(f"{args.store}: the live generation's lexical rows are written whole, not layered")
    t0 = time.perf_counter()
    whole = lex_layered.whole()
    scratch = Path(tempfile.mkdtemp(prefix=".forward-pairs-", dir=Path(args.store).resolve().parent))
    try:
        mapped = {}
        for name, array in (("indptr", whole.indptr), ("terms", whole.terms), ("unit", whole.unit())):
            np.save(scratch / f"{name}.npy", array)
            mapped[name] = np.load(scratch / f"{name}.npy", mmap_mode="r")
    finally:
        shutil.rmtree(scratch)  # the maps stay valid
    del whole
    lex_whole = LexicalIndex(lex_layered.vocab, mapped["indptr"], mapped["terms"], *[np.zeros(0, np.int32)] * 2)
    lex_whole.attach_weights(mapped["unit"], lex_layered.idf())
    pagein.populate(*mapped.values())
    print(f"rows written whole and mapped: {time.perf_counter() - t0:.1f} s")
    post_whole = dataclasses.replace(
        post_layered,
        indptr=mapped["indptr"],
        terms=mapped["terms"],
        unit=mapped["unit"],
        layers=None,
        _scratch=threading.local(),
        _base_scratch=threading.local(),
    )
    post_whole.delta, post_whole.marks = post_layered.delta, post_layered.marks
    kernels.load_in_background()
    time.sleep(5)  # the compiled loops loaded, as in a server up for a while
    rng = np.random.default_rng(11)
    rows = rng.choice(ranker.n, args.warm + args.queries, replace=False)
    related = [ex.related_query(int(r)) for r in rows]
    search = [Query(dense=q.dense, lexical=lex_layered.title_vector(int(r)), text=True) for q, r in zip(related, rows)]
    ways = {"layered": (lex_layered, post_layered), "whole": (lex_whole, post_whole)}
    for verb, queries in (("related", related), ("search", search)):
        for q in queries[: args.warm]:
            for lex, post in ways.values():
                ranker.lex, ranker.postings = lex, post
                ranker.rank(q, 10, "hybrid")
        times: dict[str, list[float]] = {w: [] for w in ways}
        same = asked = 0
        for rnd in range(args.rounds):
            for i, q in enumerate(queries[args.warm :]):
                order = list(ways) if (i + rnd) % 2 == 0 else list(ways)[::-1]
                got = {}
                for w in order:
                    ranker.lex, ranker.postings = ways[w]
                    t = time.perf_counter()
                    got[w] = ranker.rank(q, 10, "hybrid")
                    times[w].append(time.perf_counter() - t)
                same += got["layered"] == got["whole"]
                asked += 1
        ratio = np.array(times["layered"]) / np.array(times["whole"])
        for w, v in times.items():
            v = sorted(v)
            print(f"{verb} {w}: median {1e3 * statistics.median(v):.2f} ms, p95 {1e3 * v[int(0.95 * len(v))]:.2f} ms")
        q1, q3 = np.percentile(ratio, [25, 75])
        print(
            f"{verb} per-query ratio layered/whole: median {np.median(ratio):.3f} (quartiles {q1:.3f}-{q3:.3f});"
            f" identical answers {same}/{asked}"
        )
    ranker.lex, ranker.postings = lex_layered, post_layered
    ex.close()


if __name__ == "__main__":
    main()
