"""A 1M-paper store: does it open and answer within this machine's memory? (a benchmark, not a unit test)

    nice -n 5 python benchmarks/resources_1m.py                 # builds in a temp dir, removes it after
    python benchmarks/resources_1m.py --n 200000 --keep /tmp/s200k

Embedding a million abstracts is out of reach here, so the generation is assembled directly,
in the store's own format, and committed with ``Store.commit`` (sha256 per file, sealed
manifest): clustered synthetic unit vectors (tests/synthetic.py), one SQLite row per paper
with a ~600-character synthetic abstract, BM25 counts of 40 terms per paper over a 50k-word
vocabulary, and the index the size rule picks (IVF at 1M, tuned by ``index.build``).

Each measurement runs in a fresh process and reports its own peak RSS (VmHWM):
open (Explorer()), open + one ``related`` per ranking mode, 50 warm ``related`` (hybrid),
a lexical ``search``, and ``paperscope verify`` (sha256 of every file).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

WORDS = 50_000
TERMS_PER_PAPER = 40


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build_store(store: Path, n: int, dim: int, seed: int) -> dict[str, float]:
    from synthetic import clustered_chunks

    from paperscope import __version__, index
    from paperscope.corpus.normalize import normalise_title
    from paperscope.lexical import TOKENIZER_VERSION, LexicalIndex
    from paperscope.paper import Paper
    from paperscope.store import PAPER_COLUMNS, PAPERS_DDL, SCHEMA_VERSION, Store, now, paper_values

    times: dict[str, float] = {}
    st = Store(store)
    with st.writer():
        name, tmp = st.new_generation()
        t0 = time.perf_counter()
        out = np.lib.format.open_memmap(tmp / "vectors.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        at = 0
        for block in clustered_chunks(n, dim, seed=seed):
            out[at : at + len(block)] = block
            at += len(block)
        out.flush()
        del out
        times["vectors_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        vocab = np.array([f"w{i:05d}" for i in range(WORDS)])
        con = sqlite3.connect(tmp / "papers.sqlite")
        con.executescript(PAPERS_DDL)
        cols = ", ".join(PAPER_COLUMNS)
        filler = "synthetic abstract text about models, data and experiments; " * 10
        for start in range(0, n, 50_000):
            rows = []
            for i in range(start, min(n, start + 50_000)):
                title = f"Synthetic paper {i} on topic {i % 1000}"
                p = Paper(id=f"s{i}", title=title, abstract=f"{i} {filler}", sources=("synthetic",))
                rows.append((i, *paper_values(p), normalise_title(title), f"{i:016x}"))
            con.executemany(
                f"INSERT INTO papers (row, {cols}, norm_title, content_hash) "
                f"VALUES (?, {', '.join('?' * len(PAPER_COLUMNS))}, ?, ?)",
                rows,
            )
        con.commit()
        con.close()
        times["sqlite_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        indptr = np.arange(n + 1, dtype=np.int64) * TERMS_PER_PAPER
        terms = np.sort(rng.integers(0, WORDS, size=(n, TERMS_PER_PAPER), dtype=np.int32), axis=1)
        # Unique terms per row are not needed by BM25 (repeats just add), so keep them as drawn.
        lex = LexicalIndex(vocab, indptr, terms.reshape(-1), np.ones(n * TERMS_PER_PAPER, dtype=np.int32))
        lex.save(tmp / "lexical.npz")
        del lex, terms
        times["lexical_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        vectors = np.load(tmp / "vectors.npy", mmap_mode="r", allow_pickle=False)
        built, info = index.build(vectors, None)
        index.save(built, tmp / "index.faiss")
        del built, vectors
        times["index_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "paperscope_version": __version__,
            "created_at": now(),
            "previous_generation": None,
            "model": {"name": "synthetic", "fingerprint": "synthetic-1m", "dimension": dim, "lock": None},
            "index": info,
            "lexical": {"scoring": "tfidf-sublinear-cosine", "tokenizer_version": TOKENIZER_VERSION},
            "counts": {"papers": n},
            "inputs": [],
            "build": {"synthetic": True},
        }
        st.commit(name, tmp, manifest)
        times["commit_sha256_s"] = time.perf_counter() - t0
    return {k: round(v, 1) for k, v in times.items()}


def measure(store: Path, what: str) -> dict[str, object]:
    """Runs in a fresh process: one measurement and its peak RSS."""
    t0 = time.perf_counter()
    if what == "verify":
        from paperscope.store import Store
        from paperscope.verify import verify

        ok = verify(Store(store)).ok
        return {"what": what, "ok": ok, "seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": round(_rss_mb())}
    from paperscope.explorer import Explorer

    ex = Explorer(store)
    opened = time.perf_counter() - t0
    out: dict[str, object] = {"what": what, "open_s": round(opened, 2), "rss_after_open_mb": round(_rss_mb())}
    n = len(ex)
    rng = np.random.default_rng(7)
    if what == "related-modes":
        for mode in ("hybrid", "dense", "lexical"):
            t = time.perf_counter()
            hits = ex.related(f"s{int(rng.integers(n))}", k=10, mode=mode)
            out[f"first_{mode}_s"] = round(time.perf_counter() - t, 3)
            assert len(hits) == 10
    elif what == "related-warm":
        ex.related("s0", k=10)
        times = []
        for _ in range(50):
            t = time.perf_counter()
            ex.related(f"s{int(rng.integers(n))}", k=10)
            times.append(time.perf_counter() - t)
        out["warm_hybrid_median_ms"] = round(1000 * float(np.median(times)), 1)
        out["warm_hybrid_p95_ms"] = round(1000 * float(np.percentile(times, 95)), 1)
    elif what == "search-lexical":
        t = time.perf_counter()
        hits = ex.search("w00017 w04242 w31337", k=10, mode="lexical")
        out["search_lexical_s"] = round(time.perf_counter() - t, 3)
        out["hits"] = len(hits)
    out["peak_rss_mb"] = round(_rss_mb())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="build the store here and keep it")
    ap.add_argument("--child", nargs=2, metavar=("STORE", "WHAT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1])))
        return
    tmp = None if args.keep else Path(tempfile.mkdtemp(prefix="paperscope-res-"))
    store = args.keep or (tmp / "store")  # type: ignore[operator]
    try:
        t0 = time.perf_counter()
        if not (store / "CURRENT").exists():
            print(
                json.dumps(
                    {
                        "built": args.n,
                        **build_store(store, args.n, args.dim, args.seed),
                        "total_s": round(time.perf_counter() - t0, 1),
                    }
                ),
                flush=True,
            )
        sizes = {p.name: round(p.stat().st_size / 2**20) for p in (store / "generations").glob("*/*") if p.is_file()}
        print(json.dumps({"file_mb": sizes}), flush=True)
        for what in ("open", "related-modes", "related-warm", "search-lexical", "verify"):
            done = subprocess.run(
                [sys.executable, __file__, "--child", str(store), what], capture_output=True, text=True, env=os.environ
            )
            print(done.stdout.strip() or f"{what}: failed: {done.stderr[-800:]}", flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
