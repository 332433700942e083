"""Warm hybrid ``related`` and ``search`` at 1M papers on one core: latency, agreement with exact scoring, open.

    nice -n 5 python benchmarks/related_1m.py [--n 1000000] [--queries 200] [--exact-queries 50] [--budget B]
        [--text-budget B] [--grid-text-budget B ...]
        [--pool P] [--probe S] [--joint J] [--text-probe T] [--grid B ...] [--grid-pool P ...]
        [--rescore R] [--seed S] [--grid-probe S ...] [--grid-joint J ...] [--grid-text-probe T ...]
        [--grid-rescore R ...] [--grid-expand] [--preload-rounds R]
    nice -n 5 python benchmarks/related_1m.py --store STORE --keep DIR [...]   # a real store's live generation

With ``--store`` the files are those of a store built by ``paperscope index`` (hard-linked into
``--keep DIR``, which must be on the same file system): for example the 1M-paper store of
``benchmarks/scale_run.py --n 1000000`` (generated arXiv-style text, static backend). Otherwise:

Embedding a real 1M-paper store with the default backend would take a day of CPU here, so by
default this builds the files of a generation that the query path reads, in a temporary directory:

* ``vectors.npy``: clustered synthetic unit vectors (tests/synthetic.py, as benchmarks/index_1m.py),
  and ``index.faiss``: paperscope's own FAISS index for that size (``index.build``: IVF, tuned nprobe);
* ``lexical.npz``: a synthetic lexical index shaped like the bundled corpus' (measured there: 170
  distinct terms per paper, 85% of them once, 13 in the title): each paper draws 200 terms, 60%
  from a Zipf law over a 1M-term vocabulary (the words every field uses) and 40% from a Zipf law
  over its own topic's terms (its vector cluster's: lexical and dense agree on topics, as in real
  text), the first 15 topic draws being its title;
* ``lexical-impact.npz``: what ``paperscope index`` derives from it (``impact.derive``, timed).

Then a fresh child process on one core (OMP/MKL/OpenBLAS threads 1, ``faiss.omp_set_num_threads(1)``), opens the files as ``Explorer`` does (vectors memory-mapped,
``index.load``, ``impact.open_index``), times the first query (with the four files dropped from
the page cache first, unless ``--warm-first``; search's first query follows related's) and then
warm queries for ``related``
(the paper's vector and terms, itself excluded, k=10, query expansion on: ``Ranker.rank`` as
``Explorer.related`` calls it) and ``search`` (a few of a paper's title terms as text, and its
vector plus noise standing in for the embedded text: the model's time to embed the text is not
included), and compares each top 10 with ``Ranker.rank_exact`` (the same fusion with every
paper scored exactly on both sides: no FAISS, whole postings, no candidate pool). Agreement is also
given for the first and the second half of those queries apart: settings compared with
``--grid*`` are chosen on the first half and reported on the second (or chosen on all of them
and reported on fresh queries drawn with another ``--seed``: round 16). The SQLite
lookups ``related`` adds (id -> row, 10 rows -> papers) are indexed point queries, not included.
Warm queries run with the compiled loops (``paperscope.kernels``, loaded before them: a ranker
loads them in the background after its first ``rank.COMPILED_AFTER`` queries), then
the same queries again with the numpy loops (``kernels.numpy_only``): the baseline in the same run,
whose top 10s must be identical.
Peak RSS is the child's VmHWM after the timed queries (memory-mapped pages it touched included).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

DRAWS, TITLE_DRAWS, TOPIC_SHARE = 200, 15, 0.4
# (and lexical-base.npz, the base postings, when lexical-impact.npz holds a delta)
QUERY_FILES = (
    "index.faiss",
    "vectors.npy",
    "lexical-impact.npz",
    "lexical.npz",
    "lexical-base.npz",
    # in place of vectors.npy when the store's vectors are a base and a delta (paperscope.overlay)
    "vectors-base.npy",
    "vectors-delta.npy",
    "vectors-delta-rows.npy",
    # beside lexical.npz when its rows are a base and a delta (paperscope.layered_lexical)
    "lexical-forward.npz",
    "lexical-forward-unit.npz",
)
VECTOR_FILES = ("vectors.npy", "vectors-base.npy", "vectors-delta.npy", "vectors-delta-rows.npy")
# The exact ranking is kept to this depth: agreement is on its first 10, "within 20" on all of it.
EXACT_DEPTH = 20
# What the cached exact top 10s were computed with; change it when rank_exact's fusion changes.
FUSION = "feedback papers scored leave-one-out, read deeper until final, top 20 with z (round 13)"


def term(i: int) -> str:
    """Synthetic term i: letters and digits that the tokenizer keeps as one term, sorted by i."""
    return f"t{i:07d}x"


def synthetic_lexical(n: int, vocab: int, seed: int, path: Path) -> int:
    """Write a synthetic ``lexical.npz`` for n papers (see the module docstring); returns its entries."""
    from paperscope.lexical import LexicalIndex

    clusters = max(1, int(np.sqrt(n)))
    sizes = np.full(clusters, n // clusters)
    sizes[: n % clusters] += 1
    cluster_of = np.repeat(np.arange(clusters), sizes)
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, vocab, size=clusters)
    topic_n = int(DRAWS * TOPIC_SHARE)
    indptr = np.zeros(n + 1, dtype=np.int64)
    terms_parts, counts_parts, title_parts = [], [], []
    step = 50_000
    for start in range(0, n, step):
        m = min(step, n - start)
        common = (rng.zipf(1.15, size=(m, DRAWS - topic_n)) - 1) % vocab
        topic = (offsets[cluster_of[start : start + m], None] + 7 * (rng.zipf(1.3, size=(m, topic_n)) - 1)) % vocab
        draws = np.concatenate([topic, common], axis=1).astype(np.int64)
        rowid = np.repeat(np.arange(m, dtype=np.int64), DRAWS)
        keys = np.sort(rowid * vocab + draws.ravel())
        uniq, counts = np.unique(keys, return_counts=True)
        title_keys = np.unique(np.arange(m, dtype=np.int64)[:, None] * vocab + draws[:, :TITLE_DRAWS])
        in_title = np.isin(uniq, title_keys)
        rows = uniq // vocab
        indptr[start + 1 : start + m + 1] = indptr[start] + np.cumsum(np.bincount(rows, minlength=m))
        terms_parts.append((uniq % vocab).astype(np.int32))
        counts_parts.append(counts.astype(np.int32))
        title_parts.append(in_title.astype(np.int32))
    lex = LexicalIndex(
        [term(i) for i in range(vocab)],
        indptr,
        np.concatenate(terms_parts),
        np.concatenate(counts_parts),
        np.concatenate(title_parts),
    )
    lex.save(path)
    return len(lex.terms)


def build(args: argparse.Namespace, tmp: Path) -> dict[str, float]:
    from index_1m import generate

    from paperscope import impact, index

    out: dict[str, float] = {}
    path = tmp / "vectors.npy"
    out["vectors_s"] = generate(path, args.n, args.dim, 0)
    print(f"vectors: {out['vectors_s']:.0f} s", flush=True)
    vectors = np.load(path, mmap_mode="r")
    t0 = time.perf_counter()
    built, info = index.build(vectors, None)
    index.save(built, tmp / "index.faiss")
    (tmp / "index.json").write_text(json.dumps(info))
    del built
    print(f"index {info['type']} {info['params']} recall@10 {info['recall_at_10']}: {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    entries = synthetic_lexical(args.n, args.vocab, 1, tmp / "lexical.npz")
    print(f"lexical.npz: {entries:,} entries ({entries / args.n:.0f} per paper), {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    impact.derive(tmp / "lexical.npz", tmp / impact.DERIVED_FILE)
    out["derive_s"] = time.perf_counter() - t0
    print(f"impact.derive (build time, once per generation): {out['derive_s']:.0f} s", flush=True)
    return out


def one_core() -> None:
    """One thread for FAISS and BLAS (the environment's OMP/MKL/OpenBLAS variables are set by the parent).

    Not pinned to a CPU: on a shared machine a pinned process waits for that CPU's other jobs.
    """
    import faiss

    faiss.omp_set_num_threads(1)


def vm_mb(field: str = "VmHWM") -> float:
    """A memory figure of this process from /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def query_makers(vectors: np.ndarray, lex: Any, rng: np.random.Generator) -> dict[str, Callable[[int], Any]]:
    """Paper row -> Query, per verb: ``related`` (the paper's vector and terms, itself excluded) and
    ``search`` (a few of its title terms as text, and its vector plus noise for the embedded text)."""
    from paperscope.rank import Query

    dim = vectors.shape[1]

    def related_q(r: int) -> Query:
        return Query(dense=np.array(vectors[r], dtype=np.float32), lexical=lex.rows_vector([r]), exclude=frozenset([r]))

    def search_q(r: int) -> Query:
        e = lex.entries([r], ("terms", "titles"))  # (a layered index's own rows are only its delta)
        titled = e.terms[e.titles > 0]
        words = " ".join(lex.vocab[int(t)] for t in titled[: 3 + r % 4])
        noisy = np.array(vectors[r], dtype=np.float32) + rng.standard_normal(dim).astype(np.float32) * 0.035
        return Query(dense=noisy / np.linalg.norm(noisy), lexical=lex.text_vector(words), text=True)

    return {"related": related_q, "search": search_q}


def measure(args: argparse.Namespace, tmp: Path) -> None:
    """The child: open, first query, warm queries, agreement; prints one JSON line."""
    one_core()
    t0 = time.perf_counter()
    import faiss  # noqa: F401
    from first_query import drop_page_cache

    from paperscope import impact, index, kernels, overlay
    from paperscope.lexical import advise_random
    from paperscope.rank import EXPAND_SEARCH, Query, Ranker, default_text_probe, dense_reference
    from paperscope.store import read_vectors

    imports = time.perf_counter() - t0
    info = json.loads((tmp / "index.json").read_text())
    # What `paperscope index` records in the manifest when it writes the generation (Explorer passes it).
    dense_ref = dense_reference(read_vectors(tmp))
    if not args.warm_first:
        # The first query after open with nothing of the files in the page cache, as after a reboot
        # or on a machine short of memory.
        drop_page_cache(tmp)
    t0 = time.perf_counter()
    vectors = read_vectors(tmp)  # vectors.npy, or a base and a delta
    advise_random(*overlay.parts(vectors))  # as VectorIndex opens it
    n, dim = vectors.shape
    fidx = index.load(tmp / "index.faiss", n, dim, info, mmap=True)  # as VectorIndex opens it
    t_faiss = time.perf_counter() - t0
    # the ranker's own default for this index's codes (rank.TEXT_PROBE, or TEXT_PROBE_SQ8 for 8-bit lists)
    args.text_probe = default_text_probe(fidx) if args.text_probe is None else args.text_probe
    t1 = time.perf_counter()
    base = tmp / impact.BASE_FILE  # a generation whose postings are a delta over a base
    lex, post = impact.open_index(tmp / "lexical.npz", tmp / impact.DERIVED_FILE, n, base if base.exists() else None)
    ranker = Ranker(
        vectors,
        fidx,
        lex,
        post,
        budget=args.budget,
        text_budget=args.text_budget,
        pool=args.pool,
        probe=args.probe,
        joint=args.joint,
        text_probe=args.text_probe,
        dense_reference=dense_ref,
        rescore=args.rescore,
    )
    t_lex = time.perf_counter() - t1
    opened = time.perf_counter() - t0
    rng = np.random.default_rng(args.seed)
    rows = rng.choice(n, size=args.queries + 1, replace=False)

    makers = query_makers(vectors, lex, rng)
    result: dict[str, object] = {
        "papers": n,
        "open_s": opened,
        "open_faiss_s": t_faiss,
        "open_lexical_s": t_lex,
        "imports_s": imports,
    }
    first = {}
    for verb, make in makers.items():
        t0 = time.perf_counter()
        ranker.rank(make(int(rows[0])), 10, "hybrid")
        first[verb] = time.perf_counter() - t0
    result["first_query_s"] = first
    queries = {verb: [make(int(r)) for r in rows[1:]] for verb, make in makers.items()}
    # Warm: the memory-mapped files in the page cache, as in a server that has been up a while
    # (read once with plain reads; on a machine short of memory the kernel may evict them again).
    t0 = time.perf_counter()
    for name in QUERY_FILES:
        if not (tmp / name).exists():
            continue
        with open(tmp / name, "rb") as fh:
            while fh.read(1 << 24):
                pass
    result["page_cache_warm_s"] = time.perf_counter() - t0
    # The compiled loops: a ranker loads them in the background after rank.COMPILED_AFTER queries; a
    # process that has been up a while has them. Loaded here, before the warm queries (time reported).
    t0 = time.perf_counter()
    result["compiled"] = kernels.load()
    result["compiled_wait_s"] = time.perf_counter() - t0

    def timed(rk: Ranker, qs: list[Query]) -> tuple[dict[str, float], list[list[int]]]:
        times, cpu, tops = [], [], []
        for q in qs:
            t0, c0 = time.perf_counter(), time.process_time()
            ranked = rk.rank(q, 10, "hybrid")
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            tops.append([r.row for r in ranked])
        stats = {"median_ms": statistics.median(times) * 1000, "p95_ms": float(np.percentile(times, 95)) * 1000}
        # CPU time: on a shared machine, wall time mostly measures waiting for a core
        stats |= {"cpu_median_ms": statistics.median(cpu) * 1000, "cpu_p95_ms": float(np.percentile(cpu, 95)) * 1000}
        return {**stats, "queries": len(times)}, tops

    # The default settings first, then every combination of the grids' values.
    default = (
        args.budget,
        EXPAND_SEARCH,
        args.pool,
        args.probe,
        args.joint,
        args.text_probe,
        args.rescore,
        args.text_budget,
    )
    configs = [default] + [
        c
        for c in itertools.product(
            dict.fromkeys([args.budget, *args.grid]),
            (EXPAND_SEARCH, not EXPAND_SEARCH) if args.grid_expand else (EXPAND_SEARCH,),
            dict.fromkeys([args.pool, *args.grid_pool]),
            dict.fromkeys([args.probe, *args.grid_probe]),
            dict.fromkeys([args.joint, *args.grid_joint]),
            dict.fromkeys([args.text_probe, *args.grid_text_probe]),
            dict.fromkeys([args.rescore, *args.grid_rescore]),
            dict.fromkeys([args.text_budget, *args.grid_text_budget]),
        )
        if c != default
    ]
    Config = tuple[int, bool, int, float, int, float, int, int]
    runs: dict[str, dict[Config, tuple[dict[str, float], list[list[int]]]]] = {v: {} for v in makers}
    for budget, search, pool, probe, joint, text_probe, rescore, text_budget in configs:
        rk = Ranker(
            vectors,
            fidx,
            lex,
            post,
            budget=budget,
            text_budget=text_budget,
            expand_search=search,
            pool=pool,
            probe=probe,
            joint=joint,
            text_probe=text_probe,
            dense_reference=dense_ref,
            rescore=rescore,
        )
        for verb, qs in queries.items():
            if verb == "search" and (search != EXPAND_SEARCH or probe != args.probe or budget != args.budget):
                continue  # free text is never expanded, probes text_probe's lists, reads text_budget postings
            if verb == "related" and (
                text_probe != args.text_probe or joint != args.joint or text_budget != args.text_budget
            ):
                continue  # a paper query probes ``probe``'s lists and takes no joint candidates
            runs[verb][(budget, search, pool, probe, joint, text_probe, rescore, text_budget)] = timed(rk, qs)
    if args.preload_rounds:
        preload_rounds(args.preload_rounds, ranker, vectors, lex, post, queries, timed, result)
    # The same queries with the numpy loops, in this process: the baseline the compiled ones replace.
    with kernels.numpy_only():
        for verb, qs in queries.items():
            stats, tops = timed(ranker, qs)
            result[f"{verb}_numpy"] = stats | {"same_tops": tops == runs[verb][default][1]}
    result["peak_rss_mb"] = vm_mb()
    # RSS counts the memory-mapped file pages a query touched (shared page cache, which the kernel
    # may drop); the process's own memory is RssAnon.
    result["rss_anon_mb"], result["rss_file_mb"] = vm_mb("RssAnon"), vm_mb("RssFile")
    exact_times = {}
    for verb, qs in queries.items():
        # Exact top 10s are slow at 1M (seconds each): kept beside the files for the next run.
        cache = tmp / (f"exact-{verb}.json" if args.seed == 2 else f"exact-{verb}-seed{args.seed}.json")
        want = [int(r) for r in rows[1 : args.exact_queries + 1]]
        saved = json.loads(cache.read_text()) if cache.is_file() else {}
        ref = list(dataclasses.astuple(ranker.reference()))  # the fusion constants: a change invalidates
        if saved.get("rows") == want and saved.get("reference") == ref and saved.get("fusion") == FUSION:
            exact, gaps = saved["tops"], saved["gaps"]
            exact_times |= saved["times"]
        else:
            times, exact, gaps, whole = [], [], [], []
            for q in qs[: args.exact_queries]:
                t0 = time.perf_counter()
                top = ranker.rank_exact(q, EXACT_DEPTH, "hybrid")  # best first
                times.append(time.perf_counter() - t0)
                exact.append([r.row for r in top])
                # how far the 10th exact hit stands above the 20th: a small gap is a near-tie
                gaps.append(top[9].z - top[EXACT_DEPTH - 1].z if len(top) == EXACT_DEPTH else float("nan"))
                # what the lexical side cost before this change: whole postings summed, then the top 200
                t0 = time.perf_counter()
                scores = post.score_all(q.lexical)
                np.argpartition(-scores, 200)[:200]
                whole.append(time.perf_counter() - t0)
            measured = {
                verb: statistics.median(times) * 1000,
                f"{verb}_whole_postings": statistics.median(whole) * 1000,
            }
            exact_times |= measured
            cache.write_text(
                json.dumps(
                    {
                        "rows": want,
                        "reference": ref,
                        "fusion": FUSION,
                        "tops": exact,
                        "gaps": gaps,
                        "times": measured,
                    }
                )
            )
        half = len(exact) // 2
        for stats, tops in runs[verb].values():
            agree = [len(set(e[:10]) & set(t)) / max(len(e[:10]), 1) for e, t in zip(exact, tops)]
            near = [len(set(e) & set(t)) / max(len(t), 1) for e, t in zip(exact, tops)]
            stats.update(
                agreement=float(np.mean(agree)),
                agreement_min=float(np.min(agree)),
                # settings are chosen on the first half of the exact queries, reported on the second
                agreement_tuning=float(np.mean(agree[:half])) if half else float("nan"),
                agreement_held_out=float(np.mean(agree[half:])),
                within_20=float(np.mean(near)),
                z_gap_10_20=float(np.nanmedian(gaps)),
                exact_queries=len(agree),
            )
    result["exact_median_ms"] = exact_times
    t0 = time.perf_counter()
    index.load(tmp / "index.faiss", n, dim, info)  # read whole, as before this change
    result["open_faiss_read_s"] = time.perf_counter() - t0
    result["default"] = {
        "budget": args.budget,
        "expand_search": EXPAND_SEARCH,
        "pool": args.pool,
        "probe": args.probe,
        "joint": args.joint,
        "text_probe": args.text_probe,
        "rescore": args.rescore,
        "text_budget": args.text_budget,
    }
    for verb in makers:
        result[verb] = runs[verb][default][0]
        result[f"{verb}_grid"] = [
            {
                "budget": b if verb == "related" else tb,
                "expand_search": e,
                "pool": p,
                "probe": s,
                "joint": j,
                "text_probe": t,
                "rescore": x,
                **stats,
            }
            for (b, e, p, s, j, t, x, tb), (stats, _) in sorted(runs[verb].items())
        ]
    print("RESULT " + json.dumps(result), flush=True)


def preload_rounds(
    rounds: int,
    ranker: Any,
    vectors: np.ndarray,
    lex: Any,
    post: Any,
    queries: dict[str, list[Any]],
    timed: Callable[[Any, list[Any]], tuple[dict[str, float], list[list[int]]]],
    result: dict[str, object],
) -> None:
    """The default settings' queries again, ``rounds`` times each way, alternating: with the query
    files' pages unmapped from this process first (the first touch of each costs a fault, as in a
    fresh process), and with them unmapped and then mapped whole up front as ``paperscope serve``
    does (``Explorer.preload``: ``pagein.populate`` over the same arrays). The page cache holds the
    files throughout. Medians and p95 over all rounds' queries of each way."""
    from paperscope import overlay, pagein
    from paperscope.lexical import Vocab, release_pages

    arrays = [*overlay.parts(vectors), *post.query_arrays()]
    if isinstance(lex.vocab, Vocab):
        arrays += [a for a in (lex.vocab.data, lex.vocab.offsets, lex.vocab.order) if a is not None]
    times: dict[str, dict[str, list[float]]] = {way: {v: [] for v in queries} for way in ("fresh", "preloaded")}
    populate_s, mapped = [], 0
    for _ in range(rounds):
        for way in ("fresh", "preloaded"):
            release_pages(*arrays)
            if way == "preloaded":
                t0 = time.perf_counter()
                mapped = pagein.populate(*arrays)
                populate_s.append(time.perf_counter() - t0)
            for verb, qs in queries.items():
                for q in qs:
                    t0 = time.perf_counter()
                    ranker.rank(q, 10, "hybrid")
                    times[way][verb].append(time.perf_counter() - t0)
    result["preload"] = {
        "rounds": rounds,
        "mapped_mb": mapped / 1e6,
        "populate_s": populate_s,
        **{
            f"{verb}_{way}": {
                "median_ms": statistics.median(ts) * 1000,
                "p95_ms": float(np.percentile(ts, 95)) * 1000,
                "p99_ms": float(np.percentile(ts, 99)) * 1000,
                "queries": len(ts),
            }
            for way, by_verb in times.items()
            for verb, ts in by_verb.items()
        },
    }
    result["rss_after_preload_mb"] = vm_mb("VmRSS")


def link_store(store: Path, tmp: Path) -> None:
    """Hard-link the live generation's query files into ``tmp``, with its index parameters as index.json."""
    import paperscope
    from paperscope import impact, layered_lexical

    forward = (layered_lexical.FORWARD_FILE, layered_lexical.FORWARD_UNIT_FILE)
    with paperscope.open(store) as ex:
        gen = ex.generation
        for name in ("index.faiss", "lexical.npz", impact.DERIVED_FILE, impact.BASE_FILE, *VECTOR_FILES, *forward):
            if not (tmp / name).exists() and name in gen.manifest["files"]:
                os.link(gen.file(name), tmp / name)
        (tmp / "index.json").write_text(json.dumps(gen.manifest["index"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--vocab", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--exact-queries", type=int, default=50, help="exact scoring is slow at 1M: agreement on these")
    ap.add_argument("--budget", type=int, default=None, help="postings per lexical pass (default: impact.BUDGET)")
    ap.add_argument(
        "--text-budget", type=int, default=None, help="postings per free-text pass (default: rank.TEXT_BUDGET)"
    )
    ap.add_argument("--pool", type=int, default=None, help="candidates per side (default: rank.POOL)")
    ap.add_argument(
        "--probe", type=float, default=None, help="share of nprobe hybrid probes (default: rank.HYBRID_PROBE)"
    )
    ap.add_argument("--joint", type=int, default=None, help="free text's dense depth for joint candidates (rank.JOINT)")
    ap.add_argument(
        "--text-probe",
        type=float,
        default=None,
        help="multiple of nprobe free text probes (default: rank.default_text_probe)",
    )
    ap.add_argument("--grid", type=int, nargs="*", default=[], help="also measure these postings budgets (related)")
    ap.add_argument("--grid-text-budget", type=int, nargs="*", default=[], help="also measure these (search)")
    ap.add_argument("--grid-pool", type=int, nargs="*", default=[], help="also measure these pool sizes")
    ap.add_argument("--grid-probe", type=float, nargs="*", default=[], help="also measure these probe shares")
    ap.add_argument("--grid-joint", type=int, nargs="*", default=[], help="also measure these joint depths")
    ap.add_argument("--grid-text-probe", type=float, nargs="*", default=[], help="also measure these text probes")
    ap.add_argument(
        "--seed", type=int, default=2, help="draws the query papers: another seed gives fresh held-out queries"
    )
    ap.add_argument("--rescore", type=int, default=None, help="pool rows scored exactly (default: rank.RESCORE)")
    ap.add_argument("--grid-rescore", type=int, nargs="*", default=[], help="also measure these rescore depths")
    ap.add_argument("--grid-expand", action="store_true", help="also measure the other expansion mode")
    ap.add_argument("--keep", type=Path, default=None, help="build into (or reuse) this directory, kept after")
    ap.add_argument("--store", type=Path, default=None, help="measure this store's live generation (needs --keep)")
    ap.add_argument(
        "--warm-first",
        action="store_true",
        help="time the first query with the files as the page cache holds them (default: dropped first)",
    )
    ap.add_argument(
        "--preload-rounds",
        type=int,
        default=0,
        help="also time the queries this many rounds each with the files' pages unmapped and preloaded",
    )
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.budget is None:
        from paperscope.impact import BUDGET

        args.budget = BUDGET
    from paperscope import rank

    args.pool = rank.POOL if args.pool is None else args.pool
    args.probe = rank.HYBRID_PROBE if args.probe is None else args.probe
    args.joint = rank.JOINT if args.joint is None else args.joint
    args.text_budget = rank.TEXT_BUDGET if args.text_budget is None else args.text_budget
    args.rescore = getattr(rank, "RESCORE", 0) if args.rescore is None else args.rescore
    if args.child is not None:
        measure(args, args.child)
        return
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="ps-related1m-"))
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        if args.store is not None:
            link_store(args.store, tmp)
        if not (tmp / "lexical-impact.npz").exists():
            build(args, tmp)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        cmd = [sys.executable, __file__, "--child", str(tmp), *sys.argv[1:]]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"child failed:\n{out.stdout}\n{out.stderr}")
        res = json.loads(line[len("RESULT ") :])
        print(json.dumps(res, indent=1))
        print()
        # The store's own size with --store (--n is the synthetic size, ignored there).
        print(f"| at {res['papers']:,} papers, one core | related (hybrid) | search (hybrid) |")
        print("| --- | --- | --- |")
        r, s = res["related"], res["search"]
        print(f"| warm median, wall | {r['median_ms']:.2f} ms | {s['median_ms']:.2f} ms |")
        print(f"| warm p95, wall | {r['p95_ms']:.2f} ms | {s['p95_ms']:.2f} ms |")
        print(f"| warm median, CPU time | {r['cpu_median_ms']:.2f} ms | {s['cpu_median_ms']:.2f} ms |")
        print(f"| warm p95, CPU time | {r['cpu_p95_ms']:.2f} ms | {s['cpu_p95_ms']:.2f} ms |")
        if "related_numpy" in res:
            rn, sn = res["related_numpy"], res["search_numpy"]
            print(
                f"| the same with the numpy loops (same run): median / p95, wall | {rn['median_ms']:.2f} / "
                f"{rn['p95_ms']:.2f} ms | {sn['median_ms']:.2f} / {sn['p95_ms']:.2f} ms |"
            )
            print(f"| top 10s identical with either loops | {rn['same_tops']} | {sn['same_tops']} |")
            print(f"| compiled loops loaded (load time) | {res['compiled']} ({res['compiled_wait_s']:.2f} s) | |")
        print(
            f"| top-10 agreement with exact hybrid (mean, worst; {r['exact_queries']} queries) "
            f"| {r['agreement']:.3f}, {r['agreement_min']:.1f} | {s['agreement']:.3f}, {s['agreement_min']:.1f} |"
        )
        print(f"| share of the top 10 in the exact top 20 | {r['within_20']:.3f} | {s['within_20']:.3f} |")
        print(
            f"| exact fused z of the 10th hit minus the 20th's (median: a near-tie when small) "
            f"| {r['z_gap_10_20']:.3f} | {s['z_gap_10_20']:.3f} |"
        )
        print(
            f"| first query after open | {res['first_query_s']['related']:.3f} s | {res['first_query_s']['search']:.3f} s |"
        )
        print(
            f"| open (FAISS + lexical) | {res['open_s']:.3f} s ({res['open_faiss_s']:.3f} + {res['open_lexical_s']:.3f}) | same |"
        )
        print(f"| (index.faiss read whole instead of mapped, as before) | {res['open_faiss_read_s']:.3f} s | |")
        print(
            f"| peak RSS of the query process | {res['peak_rss_mb']:.0f} MB (then: {res['rss_anon_mb']:.0f} MB own "
            f"memory, {res['rss_file_mb']:.0f} MB mapped file pages) | same process |"
        )
        if "preload" in res:
            pre = res["preload"]
            for way, said in (("fresh", "pages unmapped first"), ("preloaded", "pages mapped up front")):
                r2, s2 = pre[f"related_{way}"], pre[f"search_{way}"]
                print(
                    f"| {said} ({pre['rounds']} rounds): median / p95 / p99, wall | {r2['median_ms']:.2f} / "
                    f"{r2['p95_ms']:.2f} / {r2['p99_ms']:.2f} ms | {s2['median_ms']:.2f} / {s2['p95_ms']:.2f} / "
                    f"{s2['p99_ms']:.2f} ms |"
                )
            pops = ", ".join(f"{x:.2f}" for x in pre["populate_s"])
            print(f"| preload: mapped, time per round | {pre['mapped_mb']:.0f} MB, {pops} s | |")
            print(f"| RSS after the preloaded rounds | {res['rss_after_preload_mb']:.0f} MB | same process |")
        ex = res["exact_median_ms"]
        print(f"| exact hybrid (the reference), median | {ex['related']:.0f} ms | {ex['search']:.0f} ms |")
        print(
            f"| one lexical pass over whole postings (the path before), median "
            f"| {ex['related_whole_postings']:.0f} ms | {ex['search_whole_postings']:.0f} ms |"
        )
        print()
        print(
            "| verb | budget | pool | probe | joint | rescored | expansion searches again | median (CPU) | p95 (CPU) "
            "| agreement (mean, worst) | first half / second half |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for verb in ("related", "search"):
            for g in res[f"{verb}_grid"]:
                print(
                    f"| {verb} | {g['budget']:,} | {g['pool']} "
                    f"| {g['probe'] if verb == 'related' else g['text_probe']} | {g['joint']} | {g['rescore'] or 'all'} "
                    f"| {'yes' if g['expand_search'] else 'no'} "
                    f"| {g['median_ms']:.2f} ms ({g['cpu_median_ms']:.2f}) | {g['p95_ms']:.2f} ms ({g['cpu_p95_ms']:.2f}) "
                    f"| {g['agreement']:.3f}, {g['agreement_min']:.1f} "
                    f"| {g['agreement_tuning']:.3f} / {g['agreement_held_out']:.3f} |"
                )
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
