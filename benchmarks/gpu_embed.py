"""Embedding throughput on one machine: sentence-transformers' encode, paperscope's feeder path, the
forward-only ceiling and today's CPU path, in abstracts/s, with peak GPU memory (issue 18).

    python benchmarks/gpu_embed.py [--n 100000] [--device auto] [--workers N] [--model-dir DIR]
                                   [--cpu-n 2000] [--st-n N] [--ablate] [--json FILE]

Runs from the source tree (``PYTHONPATH=src``) with only torch, transformers,
sentence-transformers, tokenizers and numpy: no faiss, umap, ray or click is imported (the GPU
benchmark machine has none of them). ``--model-dir`` loads the model from a sentence-transformers
directory (hashed on the spot into a lock); without it, the pinned model of models.lock.

The corpus is generated on the spot: ``--n`` title+abstract texts drawn with a fixed seed from
the bundled abstracts' vocabulary (unigram frequencies) and their title/abstract word counts.

Rows, each timed from texts in memory to vectors out (model load and a warm-up excluded):

- ``st-encode``: ``SentenceTransformer(dir, device=...).encode(texts, normalize_embeddings=True)``,
  the script a user would write (fp32, batch 256 on a GPU / 32 on the CPU; on CUDA also fp16, batch 1024);
- ``paperscope``: texts -> content hashes -> the feeder (tokenizer worker processes, token-budget
  batches, pinned memory) -> vectors checkpointed chunk by chunk into a paperscope staging store
  (``Staging``, the SQLite checkpoint a build writes): the embedding stage of ``paperscope index``.
  A full generation also needs FAISS, which the GPU machine lacks, so "store" here means the
  checkpoint store;
- ``forward-only``: the feeder's forward pass over texts tokenized beforehand (untimed), one
  length-sorted pass: the ceiling of the card;
- ``tokenize-only``: the feeder's tokenizer workers alone: the ceiling of the host;
- ``cpu-today``: paperscope's plain torch path on the CPU (sentence-transformers, fp32, batch 32), on
  the first ``--cpu-n`` texts (it is ~100x slower than a GPU).

``--ablate`` adds the feeder with workers=0 (tokenization in line) and with one-chunk windows
(less length sorting). The agreement of the paperscope path's vectors with the CPU path's on the
first ``--cpu-n`` texts (cosine, top-10 overlap among them) is printed below the table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from the source tree
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local: never the hub
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from paperscope.corpus import bundled_corpus, expand, read_papers
from paperscope.embed import SentenceTransformerEmbedder
from paperscope.embed.device import Placement, resolve
from paperscope.embed.feeder import FeederEmbedder, default_workers
from paperscope.embed.lock import ModelLock, load_lock, model_dir, pin
from paperscope.store import Staging

CHUNK = 256  # paperscope index's default --chunk-size: texts per checkpoint


def generate_texts(n: int, template: ModelLock, seed: int = 0) -> list[str]:
    """``n`` title+abstract texts from the bundled abstracts' vocabulary and length distribution."""
    papers = list(read_papers(expand([bundled_corpus()])))
    words: Counter[str] = Counter()
    for p in papers:
        words.update(p.title.split())
        words.update(p.abstract.split())
    vocab = np.array(list(words))
    freq = np.array([words[w] for w in vocab], dtype=np.float64)
    title_len = np.array([len(p.title.split()) for p in papers])
    abstract_len = np.array([len(p.abstract.split()) for p in papers])
    rng = np.random.default_rng(seed)
    tl = rng.choice(title_len, n)
    al = rng.choice(abstract_len, n)
    draws = rng.choice(len(vocab), int(tl.sum() + al.sum()), p=freq / freq.sum())
    out, at = [], 0
    for t, a in zip(tl, al):
        title = " ".join(vocab[draws[at : at + t]])
        abstract = " ".join(vocab[draws[at + t : at + t + a]])
        at += t + a
        out.append(template.text(title[:1].upper() + title[1:], abstract))
    return out


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        m = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = m.group(1).strip() if m else platform.processor() or "unknown"
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    import sentence_transformers
    import transformers

    return {
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence-transformers": sentence_transformers.__version__,
        "load average": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def gpu_peak_reset(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def gpu_peak_mib(device: str) -> float | None:
    import torch

    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def timed(device: str, fn: Callable[[], Any]) -> tuple[Any, float, float | None]:
    gpu_peak_reset(device)
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    return out, seconds, gpu_peak_mib(device)


def row(
    rows: list[dict[str, Any]],
    path: str,
    placement: Placement,
    n: int,
    seconds: float,
    peak: float | None,
    note: str = "",
) -> None:
    rows.append(
        {
            "path": path,
            "device": placement.device,
            "dtype": placement.dtype,
            "n": n,
            "per_second": n / seconds if seconds > 0 else float("nan"),
            "seconds": seconds,
            "peak_gpu_mib": peak,
            "note": note,
        }
    )
    print(f"  {path}: {n / seconds:,.1f}/s ({seconds:.1f}s)", file=sys.stderr, flush=True)


def st_encode(
    root: Path, lock: ModelLock, placement: Placement, texts: list[str], batch: int
) -> tuple[np.ndarray, float, float | None]:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(root), device=placement.device)
    model.max_seq_length = lock.max_seq_length
    model.to(getattr(torch, placement.dtype))  # also fp32 from an fp16 copy of the weights
    model.encode(texts[:64], batch_size=batch, normalize_embeddings=True)  # warm-up (CUDA kernels, allocator)
    out, seconds, peak = timed(
        placement.device,
        lambda: model.encode(
            texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ),
    )
    return out, seconds, peak


def paperscope_path(feeder: FeederEmbedder, texts: list[str], store_dir: Path, workers: int) -> np.ndarray:
    """Texts -> content hashes -> feeder -> checkpoint store, chunk by chunk as ``paperscope index`` does."""
    staging = Staging(store_dir / "staging.sqlite")
    hashes: list[list[str]] = []

    def chunks() -> Iterator[list[str]]:
        for start in range(0, len(texts), CHUNK):
            chunk = texts[start : start + CHUNK]
            hashes.append([hashlib.sha256(t.encode("utf-8")).hexdigest() for t in chunk])
            yield chunk

    out = np.empty((len(texts), feeder.dimension), dtype=np.float32)
    at = 0
    made_by = (feeder.placement.device, feeder.placement.dtype)
    for i, vectors in enumerate(feeder.embed_chunks(chunks(), workers=workers)):
        staging.put(feeder.fingerprint, hashes[i], vectors, made_by=made_by)
        out[at : at + len(vectors)] = vectors
        at += len(vectors)
    stored = sum(c for _, _, c in staging.made_by(feeder.fingerprint))
    staging.close()
    assert at == len(texts) and stored == len(texts), (at, stored)
    return out


def write_fp16_copy(root: Path, out: Path) -> None:
    """The model directory with model.safetensors in fp16: half the size, cosine >= 0.99999 to fp32 (NOTES.md)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(root, out, ignore=shutil.ignore_patterns("model.safetensors", "__pycache__"), dirs_exist_ok=True)
    weights = {k: v.half().contiguous() for k, v in load_file(str(root / "model.safetensors")).items()}
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    print(f"wrote {out} ({sum(f.stat().st_size for f in out.rglob('*') if f.is_file()) / 2**20:.0f} MiB)")


def agreement(got: np.ndarray, want: np.ndarray) -> dict[str, float]:
    cos = np.sum(got * want, axis=1)
    k = min(10, len(want) - 1)
    top_got = np.argsort(-(got @ got.T), axis=1)[:, 1 : k + 1]
    top_want = np.argsort(-(want @ want.T), axis=1)[:, 1 : k + 1]
    overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(top_got, top_want)])
    return {"cosine_min": float(cos.min()), "cosine_mean": float(cos.mean()), "top10_overlap": float(overlap)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="generated abstracts (default 100,000)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (default auto)")
    ap.add_argument("--dtype", default="auto", help="auto (fp16 on CUDA), float32, float16, bfloat16")
    ap.add_argument("--workers", type=int, default=None, help=f"tokenizer processes (default {default_workers()})")
    ap.add_argument("--model-dir", type=Path, default=None, help="sentence-transformers model directory")
    ap.add_argument("--cpu-n", type=int, default=2000, help="texts for the CPU path (default 2000)")
    ap.add_argument("--st-n", type=int, default=None, help="texts for sentence-transformers' encode (default --n)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablate", action="store_true", help="also the feeder with workers=0 and one-chunk windows")
    ap.add_argument("--skip-cpu", action="store_true", help="no CPU-path row")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument(
        "--write-fp16-copy",
        type=Path,
        default=None,
        metavar="DIR",
        help="write the pinned model with fp16 weights (45 MB, for a GPU machine) to DIR and exit",
    )
    args = ap.parse_args(argv)
    if args.write_fp16_copy is not None:
        write_fp16_copy(model_dir(load_lock()), args.write_fp16_copy)
        return 0

    if args.model_dir is not None:
        root = args.model_dir.resolve()
        lock = pin(root, {"kind": "directory", "path": str(root)}, root.name)
    else:
        lock = load_lock()
        root = model_dir(lock)
    placement = resolve(args.device, args.dtype)
    workers = default_workers() if args.workers is None else args.workers
    info = machine()
    t0 = time.perf_counter()
    texts = generate_texts(args.n, lock, args.seed)
    print(
        f"generated {len(texts):,} texts in {time.perf_counter() - t0:.1f}s; device {placement.device} "
        f"{placement.dtype}, {workers} tokenizer workers",
        file=sys.stderr,
        flush=True,
    )
    gpu = placement.device.startswith("cuda")
    rows: list[dict[str, Any]] = []
    vectors: dict[str, np.ndarray] = {}
    st_texts = texts[: args.st_n or args.n]

    # 1. sentence-transformers' own encode on the device: the baseline a user would write.
    fp32 = Placement(placement.device, "float32")
    batch = 256 if placement.accelerated else 32
    _, s, peak = st_encode(root, lock, fp32, st_texts, batch)
    row(rows, f"st-encode fp32, batch {batch}", fp32, len(st_texts), s, peak, "sentence-transformers encode")
    if gpu:
        fp16 = Placement(placement.device, "float16")
        _, s, peak = st_encode(root, lock, fp16, st_texts, 1024)
        row(rows, "st-encode fp16, batch 1024", fp16, len(st_texts), s, peak, "sentence-transformers encode")

    # 2. paperscope's path: texts in, vectors in the checkpoint store.
    t_load = time.perf_counter()
    feeder = FeederEmbedder(lock, placement, workers=workers, root=root)
    load_s = time.perf_counter() - t_load
    list(feeder.embed_chunks([texts[:CHUNK]], workers=0))  # warm-up
    with tempfile.TemporaryDirectory(prefix="gpu-embed-") as tmp:
        out, s, peak = timed(placement.device, lambda: paperscope_path(feeder, texts, Path(tmp), workers))
    vectors["paperscope"] = out
    row(
        rows,
        f"paperscope feeder -> checkpoint store ({workers} workers)",
        placement,
        len(texts),
        s,
        peak,
        f"model load {load_s:.1f}s not included",
    )
    if args.ablate:
        with tempfile.TemporaryDirectory(prefix="gpu-embed-") as tmp:
            _, s, peak = timed(placement.device, lambda: paperscope_path(feeder, texts, Path(tmp), 0))
        row(rows, "ablation: feeder, workers=0 (tokenize in line)", placement, len(texts), s, peak)
        narrow = FeederEmbedder(lock, placement, workers=workers, root=root, window_texts=CHUNK, verify=False)
        with tempfile.TemporaryDirectory(prefix="gpu-embed-") as tmp:
            _, s, peak = timed(placement.device, lambda: paperscope_path(narrow, texts, Path(tmp), workers))
        row(rows, f"ablation: feeder, windows of one chunk ({CHUNK})", placement, len(texts), s, peak)

    # 3. the ceilings: the forward pass alone (pre-tokenized), the tokenizer workers alone.
    ids, lengths = feeder.tokenize(texts)
    _, s, peak = timed(placement.device, lambda: feeder.forward_tokens(ids, lengths))
    row(
        rows,
        "forward-only (pre-tokenized, length-sorted, token budget)",
        placement,
        len(texts),
        s,
        peak,
        f"mean {lengths.mean():.0f} tokens/text",
    )
    _, s, _ = timed(
        "cpu",
        lambda: sum(
            1 for _ in feeder.token_stream((texts[i : i + CHUNK] for i in range(0, len(texts), CHUNK)), workers)
        ),
    )
    row(rows, f"tokenize-only ({workers} worker processes)", Placement("cpu", "-"), len(texts), s, None)
    feeder = narrow = None  # free the GPU's memory before the CPU row

    # 4. today's CPU path.
    if not args.skip_cpu:
        cpu_texts = texts[: args.cpu_n]
        plain = SentenceTransformerEmbedder(lock, verify=args.model_dir is None)
        plain.model.float()  # fp32 even from an fp16 copy of the weights (a no-op for the pinned model)
        plain.embed_batch(cpu_texts[:32])  # warm-up
        out, s, _ = timed(
            "cpu",
            lambda: np.concatenate(
                [plain.embed_batch(cpu_texts[i : i + CHUNK]) for i in range(0, len(cpu_texts), CHUNK)]
            ),
        )
        vectors["cpu"] = out
        row(
            rows,
            "cpu-today (sentence-transformers on the CPU, fp32, batch 32)",
            Placement("cpu", "float32"),
            len(cpu_texts),
            s,
            None,
            f"torch threads {__import__('torch').get_num_threads()}",
        )

    print_report(rows, info, args, placement, vectors)
    if args.json is not None:
        agree = agreement(vectors["paperscope"][: len(vectors["cpu"])], vectors["cpu"]) if "cpu" in vectors else None
        args.json.write_text(
            json.dumps({"machine": info, "rows": rows, "agreement": agree, "argv": sys.argv[1:]}, indent=2)
        )
    return 0


def print_report(
    rows: list[dict[str, Any]],
    info: dict[str, str],
    args: argparse.Namespace,
    placement: Placement,
    vectors: dict[str, np.ndarray],
) -> None:
    print(
        f"\nMachine: CPU {info['cpu']}; GPU {info['gpu']}; Python {info['python']}, torch {info['torch']}, "
        f"transformers {info['transformers']}, sentence-transformers {info['sentence-transformers']}; "
        f"load average at start {info['load average']}"
    )
    print(f"Command: python benchmarks/gpu_embed.py {' '.join(sys.argv[1:])}\n")
    print("| path | device | dtype | N | abstracts/s | seconds | peak GPU MiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        peak = f"{r['peak_gpu_mib']:,.0f}" if r["peak_gpu_mib"] is not None else "n/a"
        print(
            f"| {r['path']} | {r['device']} | {r['dtype']} | {r['n']:,} | {r['per_second']:,.{0 if r['per_second'] >= 100 else 1}f} | "
            f"{r['seconds']:.1f} | {peak} |"
        )
    base = next((r for r in rows if r["path"].startswith("st-encode")), None)
    ours = next((r for r in rows if r["path"].startswith("paperscope")), None)
    if base and ours:
        best = max((r for r in rows if r["path"].startswith("st-encode")), key=lambda r: r["per_second"])
        print(f"\npaperscope path / best sentence-transformers encode: {ours['per_second'] / best['per_second']:.2f}x")
    if "cpu" in vectors:
        a = agreement(vectors["paperscope"][: len(vectors["cpu"])], vectors["cpu"])
        print(
            f"paperscope path ({placement.device} {placement.dtype}) vs CPU fp32 path on {len(vectors['cpu']):,} "
            f"texts: cosine min {a['cosine_min']:.6f}, mean {a['cosine_mean']:.7f}; "
            f"top-10 neighbour overlap {a['top10_overlap']:.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
