"""The speed suite: one command, one table of medians and ratios measured side by side in one run.

    nice -n 5 python benchmarks/run_all.py              # about 15 minutes on 2 busy cores
    nice -n 5 python benchmarks/run_all.py --write      # also writes the table into benchmarks/RESULTS.md

On the bundled corpus (432 papers), in one process and one run:

1. embedding throughput of paperscope's backends (torch, onnx-int8, static) against a plain
   sentence-transformers ``encode`` (what a user would otherwise write), repeats interleaved so
   machine load hits every method alike; each backend's mean cosine to the torch vectors, its
   related-paper top-10 overlap with torch (dense neighbours, and paperscope's default hybrid
   ranking), and ranking quality on the shipped labels (``Explorer.evaluate``);
2. index + query: ``paperscope.build`` per backend against the plain sentence-transformers +
   FAISS script and against txtai (same model directory, same texts);
3. cold starts: ``paperscope related`` / ``search`` as fresh processes, against the plain script
   and txtai loading their saved index in a fresh process;
4. warm latencies of the Python API (``related``, ``search``);
5. the topic map against BERTopic defaults on the same vectors (benchmarks/topics.py's ``compare``).

Derived models (ONNX exports, the static distillation) come from ``$PAPERSCOPE_CACHE`` or the
user cache; building them is timed separately ("load") and is a one-off per machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import paperscope  # noqa: E402
from paperscope.embed import BACKENDS, load_embedder, with_backend  # noqa: E402
from paperscope.embed.lock import load_lock, model_dir  # noqa: E402

ROWS: list[dict[str, Any]] = []
_START = "<!-- run_all.py: start -->"
_END = "<!-- run_all.py: end -->"


def row(section: str, item: str, value: float | str, unit: str = "", ratio: str = "", note: str = "") -> None:
    ROWS.append({"section": section, "item": item, "value": value, "unit": unit, "ratio": ratio, "note": note})
    v = f"{value:.4g}" if isinstance(value, float) else value
    print(f"  {section} | {item} | {v} {unit} | {ratio} | {note}", flush=True)


def fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def median_time(fn: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def wall(cmd: Sequence[str], n: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = subprocess.run(list(cmd), capture_output=True, text=True, env=env or os.environ.copy())
        times.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}...: {r.stderr[-800:]}")
    return statistics.median(times)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = (
            next(int(x.split()[1]) for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal"))
            / 2**20
        )
    except (OSError, StopIteration):
        mem = float("nan")
    from importlib.metadata import version

    vers = ", ".join(
        f"{p} {version(p)}"
        for p in (
            "torch",
            "sentence-transformers",
            "onnxruntime",
            "model2vec",
            "faiss-cpu",
            "numpy",
            "txtai",
            "bertopic",
        )
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, no GPU; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {vers}"
    )


def corpus_texts(lock: Any) -> tuple[list[str], list[str]]:
    from paperscope.corpus import bundled_corpus, read_corpus

    seen: dict[str, str] = {}
    for p in read_corpus([bundled_corpus()]):
        seen.setdefault(p.id, lock.text(p.title, p.abstract))
    return list(seen), list(seen.values())


class Precomputed:
    """An embedder that returns vectors measured above: stores for evaluation without embedding twice."""

    def __init__(self, name: str, texts: list[str], vectors: np.ndarray, lock: Any):
        self._by_text = dict(zip(texts, vectors))
        self.dimension = vectors.shape[1]
        self.fingerprint = f"bench-{name}"
        self._lock = lock

    def text(self, title: str, abstract: str) -> str:
        return self._lock.text(title, abstract)

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._by_text[t] for t in texts])


def neighbours(v: np.ndarray, k: int = 10) -> np.ndarray:
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b)]))


# ---- 1. throughput and quality ---------------------------------------------------------------
def throughput(texts: list[str], repeats: int, tmp: Path) -> dict[str, np.ndarray]:
    lock = load_lock()
    print(f"1. embedding throughput, {len(texts)} texts, {repeats} interleaved repeats", flush=True)
    models: dict[str, Any] = {}
    loads: dict[str, float] = {}
    t0 = time.perf_counter()
    from sentence_transformers import SentenceTransformer

    plain = SentenceTransformer(str(model_dir(lock)), device="cpu")
    loads["plain sentence-transformers"] = time.perf_counter() - t0
    models["plain sentence-transformers"] = lambda: plain.encode(
        texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    for b in BACKENDS:
        t0 = time.perf_counter()
        e = load_embedder(with_backend(lock, b))
        loads[b] = time.perf_counter() - t0
        models[b] = lambda e=e: e.embed_batch(texts)
    times: dict[str, list[float]] = {name: [] for name in models}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, fn in models.items():
            t0 = time.perf_counter()
            vectors[name] = np.asarray(fn())
            times[name].append(time.perf_counter() - t0)
    rate = {name: len(texts) / statistics.median(t) for name, t in times.items()}
    base, plain_rate = rate["torch"], rate["plain sentence-transformers"]
    for name in models:
        row(
            "embed",
            f"{name} throughput",
            rate[name],
            "texts/s",
            f"{rate[name] / base:.2f}x torch, {rate[name] / plain_rate:.2f}x plain",
            f"model load {loads[name]:.1f} s (first use builds the cached ONNX/static model)",
        )
    ref = vectors["torch"]
    nn_ref = neighbours(ref)
    for name in ("plain sentence-transformers", "onnx-int8", "static"):
        v = vectors[name]
        cos = "n/a (other space)" if v.shape[1] != ref.shape[1] else f"{float((v * ref).sum(axis=1).mean()):.4f}"
        row(
            "embed",
            f"{name} vs torch: mean cosine / dense top-10 overlap",
            cos,
            "",
            f"{overlap(neighbours(v), nn_ref):.3f} overlap",
        )
    return {b: vectors[b] for b in BACKENDS}


def quality(ids: list[str], texts: list[str], vectors: dict[str, np.ndarray], tmp: Path) -> None:
    from paperscope.corpus import bundled_corpus
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build

    print("   ranking quality per backend (shipped labels)", flush=True)
    lock = load_lock()
    hybrid: dict[str, list[list[str]]] = {}
    for b, v in vectors.items():
        store = tmp / f"eval-{b}"
        emb = Precomputed(b, texts, v, lock)
        build([bundled_corpus()], store, embedder=emb)
        with Explorer(store, embedder=emb) as ex:
            hybrid[b] = [[h.paper.id for h in ex.related(pid, k=10)] for pid in ids]
            cells = []
            for res in ex.evaluate(modes=("dense", "hybrid")):
                res.labels = Path(res.labels).name
                for mode in ("dense", "hybrid"):
                    m = res.all[mode]
                    cells.append(f"{res.labels} {mode} nDCG@10 {m.ndcg:.3f} MAP {m.map:.3f}")
            hyb = [c for c in cells if " hybrid " in c]
            ov = np.mean([len(set(a) & set(t)) / 10 for a, t in zip(hybrid[b], hybrid["torch"])])
            row("quality", f"{b}: hybrid related top-10 overlap with torch", float(ov), "", "", "; ".join(hyb))
            row("quality", f"{b}: dense", "-", "", "", "; ".join(c for c in cells if " dense " in c))


# ---- 2. index + query against the plain script and txtai -------------------------------------
PLAIN_BUILD = """
import sys, time, json, numpy as np, faiss
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1])); out = sys.argv[2]
m = SentenceTransformer(sys.argv[3], device="cpu")
v = m.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
index = faiss.IndexFlatIP(v.shape[1]); index.add(v); faiss.write_index(index, out)
"""
PLAIN_QUERY = """
import sys, numpy as np, faiss
from sentence_transformers import SentenceTransformer
index = faiss.read_index(sys.argv[1])
m = SentenceTransformer(sys.argv[2], device="cpu")
q = m.encode([sys.argv[3]], normalize_embeddings=True, convert_to_numpy=True)
print(index.search(q, 10)[1][0].tolist())
"""
TXTAI_BUILD = """
import sys, json
from txtai import Embeddings
texts = json.load(open(sys.argv[1]))
e = Embeddings(path=sys.argv[3], backend="faiss", content=False)
e.index(texts); e.save(sys.argv[2])
"""
TXTAI_QUERY = """
import sys
from txtai import Embeddings
e = Embeddings(); e.load(sys.argv[1])
print(e.search(sys.argv[3], 10))
"""


def index_and_query(texts: list[str], tmp: Path, query: str) -> dict[str, Path]:
    from paperscope.pipeline import build

    print("2. index + query: paperscope build per backend vs plain script vs txtai", flush=True)
    lock = load_lock()
    mdir = str(model_dir(lock))
    tfile = tmp / "texts.json"
    tfile.write_text(json.dumps(texts))
    stores: dict[str, Path] = {}
    build_s: dict[str, float] = {}
    for b in BACKENDS:
        stores[b] = tmp / f"store-{b}"
        t0 = time.perf_counter()
        build(None, stores[b], backend=b)
        build_s[b] = time.perf_counter() - t0
    py = sys.executable
    t0 = time.perf_counter()
    subprocess.run([py, "-c", PLAIN_BUILD, str(tfile), str(tmp / "plain.faiss"), mdir], check=True, capture_output=True)
    build_s["plain sentence-transformers + FAISS script"] = time.perf_counter() - t0
    txtai_error = None
    try:
        t0 = time.perf_counter()
        r = subprocess.run(
            [py, "-c", TXTAI_BUILD, str(tfile), str(tmp / "txtai"), mdir], capture_output=True, text=True
        )
        if r.returncode:
            raise RuntimeError(r.stderr.strip().splitlines()[-1])
        build_s["txtai (faiss backend)"] = time.perf_counter() - t0
    except (RuntimeError, IndexError) as e:
        txtai_error = str(e)
        row("index", "txtai", "failed", "", "", txtai_error)
    base = build_s["torch"]
    for name, s in build_s.items():
        label = f"paperscope index --backend {name}" if name in BACKENDS else name
        row(
            "index",
            f"{label}: build wall",
            s,
            "s",
            f"{base / s:.2f}x faster than paperscope torch",
            "fresh process (includes imports, model load)" if name not in BACKENDS else "in process, model load incl.",
        )

    # cold starts
    print("3. cold starts (fresh processes)", flush=True)
    env = os.environ.copy()
    pid = paperscope.open(stores["torch"]).papers().__next__().id
    cli = [py, "-m", "paperscope.cli"]
    n = 5
    related = wall([*cli, "related", pid, "--store", str(stores["torch"])], n, env)
    row("cold", "paperscope related ID (any backend)", related, "s", "", f"median of {n}; target <= 0.5 s")
    cold: dict[str, float] = {}
    for b in BACKENDS:
        cold[b] = wall([*cli, "search", query, "--store", str(stores[b])], n, env)
        how = {
            "torch": "query on the cached ONNX fp32 export (= torch within 1e-5), no torch import",
            "onnx-int8": "store's own int8 model",
            "static": "store's own static model",
        }[b]
        row("cold", f"paperscope search TEXT, {b} store", cold[b], "s", "", f"median of {n}; {how}; target <= 1.5 s")
    empty_cache = tmp / "no-cache"
    torch_env = {**env, "PAPERSCOPE_CACHE": str(empty_cache)}  # no fp32 export: queries load torch
    cold_torch = wall([*cli, "search", query, "--store", str(stores["torch"])], 2, torch_env)
    row(
        "cold",
        "paperscope search TEXT, torch store, no ONNX cache (torch loaded)",
        cold_torch,
        "s",
        f"{cold_torch / cold['torch']:.1f}x slower than with the fp32 export",
        "median of 2",
    )
    plain = wall([py, "-c", PLAIN_QUERY, str(tmp / "plain.faiss"), mdir, query], 2, env)
    row(
        "cold",
        "plain script: load model, embed query, FAISS search",
        plain,
        "s",
        f"{plain / cold['torch']:.1f}x paperscope search (torch store)",
        "median of 2",
    )
    if txtai_error is None:
        tx = wall([py, "-c", TXTAI_QUERY, str(tmp / "txtai"), mdir, query], 2, env)
        row(
            "cold",
            "txtai: load saved index, search",
            tx,
            "s",
            f"{tx / cold['torch']:.1f}x paperscope search (torch store)",
            "median of 2",
        )
    return stores


# ---- 4. warm latencies -----------------------------------------------------------------------
def warm(stores: dict[str, Path], texts: list[str], queries: list[str], tmp: Path) -> None:
    print("4. warm latencies (Python API)", flush=True)
    from paperscope.explorer import Explorer

    for b, store in stores.items():
        with Explorer(store) as ex:
            ids = [p.id for p in ex.papers()]
            for mode in ("hybrid", "dense"):
                ex.related(ids[0], mode=mode)
                t = []
                for pid in ids:
                    t0 = time.perf_counter()
                    ex.related(pid, k=10, mode=mode)
                    t.append(time.perf_counter() - t0)
                row(
                    "warm",
                    f"related, {b} store, {mode}",
                    statistics.median(t) * 1000,
                    "ms",
                    "",
                    f"median over {len(ids)} papers, p95 {np.percentile(t, 95) * 1000:.2f} ms; target <= 1 ms",
                )
            ex.search(queries[0])
            t = []
            for q in queries:
                t0 = time.perf_counter()
                ex.search(q, k=10)
                t.append(time.perf_counter() - t0)
            row(
                "warm",
                f"search (embeds the query), {b} store",
                statistics.median(t) * 1000,
                "ms",
                "",
                f"median over {len(queries)} queries",
            )
    # What a plain script answers warm: encode the query and search FAISS.
    import faiss
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(str(model_dir(load_lock())), device="cpu")
    index = faiss.read_index(str(tmp / "plain.faiss"))
    m.encode(queries[:1])
    t = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(m.encode([q], normalize_embeddings=True, convert_to_numpy=True), 10)
        t.append(time.perf_counter() - t0)
    row(
        "warm",
        "plain script: encode query + FAISS search",
        statistics.median(t) * 1000,
        "ms",
        "",
        f"median over {len(queries)} queries",
    )


# ---- 5. the map ------------------------------------------------------------------------------
def topic_map(store: Path, bertopic_runs: int) -> None:
    print("5. topic map vs BERTopic defaults (benchmarks/topics.py)", flush=True)
    import topics

    results, _ = topics.compare(paperscope.open(store), bertopic_runs=bertopic_runs, map_runs=2)
    ours = [r for r in results if r[0].startswith("paperscope")][-1]  # after numba's JIT
    bt = [r for r in results if r[0].startswith("BERTopic")]
    bt_wall = statistics.median(r[1] for r in bt)

    def f1(q: dict) -> float:
        return float(np.mean([q[t].f1 for t in topics.THEMES]))

    row(
        "map",
        "paperscope map (2nd run, incl. render)",
        ours[1],
        "s",
        f"{bt_wall / ours[1]:.2f}x BERTopic's speed",
        f"mean F1 over 3 themes {f1(ours[2]):.3f}, {ours[3]} topics, {ours[4]:.0%} low-confidence",
    )
    row(
        "map",
        "BERTopic defaults (same vectors)",
        bt_wall,
        "s",
        "",
        f"median of {len(bt)}; mean F1 {statistics.median(f1(r[2]) for r in bt):.3f}, "
        f"{bt[0][3]} topics, {bt[0][4]:.0%} outliers",
    )


# ---- output ----------------------------------------------------------------------------------
def table() -> str:
    lines = ["| section | measurement | median | ratio | notes |", "| --- | --- | --- | --- | --- |"]
    for r in ROWS:
        v = r["value"]
        value = f"{fmt(v)} {r['unit']}".strip() if isinstance(v, float) else str(v)
        lines.append(f"| {r['section']} | {r['item']} | {value} | {r['ratio']} | {r['note']} |")
    return "\n".join(lines)


def write_results(text: str) -> None:
    path = ROOT / "benchmarks" / "RESULTS.md"
    old = path.read_text(encoding="utf-8")
    block = f"{_START}\n{text}\n{_END}"
    if _START in old and _END in old:
        new = old[: old.index(_START)] + block + old[old.index(_END) + len(_END) :]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="interleaved embedding repeats (median)")
    ap.add_argument("--bertopic-runs", type=int, default=1)
    ap.add_argument("--write", action="store_true", help="write the table into benchmarks/RESULTS.md")
    ap.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)  # smoke runs: fewer texts in part 1
    args = ap.parse_args()
    load_start = os.getloadavg()
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="ps-bench-"))
    lock = load_lock()
    ids, texts = corpus_texts(lock)
    queries = [
        "learning-rate transfer across model widths",
        "low-rank adaptation of large language models",
        "video diffusion models",
        "mixture of experts routing",
        "reinforcement learning from human feedback",
        "3D gaussian splatting",
        "long-context attention",
        "speculative decoding",
        "vision-language model benchmark",
        "quantisation of LLM weights",
    ]
    if args.limit:
        ids, texts = ids[: args.limit], texts[: args.limit]
    vectors = throughput(texts, args.repeats, tmp)
    if not args.limit:  # evaluation needs a vector for every paper
        quality(ids, texts, vectors, tmp)
    del vectors
    stores = index_and_query(texts, tmp, queries[0])
    warm(stores, texts, queries, tmp)
    topic_map(stores["torch"], args.bertopic_runs)
    load_end = os.getloadavg()
    head = (
        f"Machine: {machine()}. Date: {dt.date.today().isoformat()}. Load average (1 min) "
        f"{load_start[0]:.1f} at start, {load_end[0]:.1f} at end; total wall "
        f"{(time.perf_counter() - t_start) / 60:.1f} min. {len(texts)} papers (bundled corpus)."
    )
    command = " ".join(["nice -n 5 python benchmarks/run_all.py", *sys.argv[1:]])
    text = f"## Speed suite: `{command}`\n\n{head}\n\n{table()}"
    print("\n" + text)
    if args.write:
        write_results(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
