"""fp16 and bf16 against fp32 on the CPU, through the feeder, on the bundled corpus (issue 18, item 3).

    python benchmarks/cpu_precision.py [--n 432]

A GPU runs fp16 by default; this machine has no GPU, so the agreement a store built partly in
reduced precision has with an fp32 store is measured here with torch's CPU kernels for the same
dtypes (they are not the GPU's kernels: the GPU figure is the issue's, cosine min 0.99956).
Prints cosine min/mean to the fp32 vectors and the related top-10 overlap among the papers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from paperscope.corpus import bundled_corpus, expand, read_papers
from paperscope.embed.device import Placement
from paperscope.embed.feeder import FeederEmbedder
from paperscope.embed.lock import load_lock


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=432)
    args = ap.parse_args()
    lock = load_lock()
    texts = [lock.text(p.title, p.abstract) for p in read_papers(expand([bundled_corpus()]))][: args.n]
    out: dict[str, np.ndarray] = {}
    print(f"{len(texts)} bundled papers, torch CPU kernels\n")
    print("| dtype | cosine min | cosine mean | related top-10 overlap | seconds |")
    print("|---|---:|---:|---:|---:|")
    for dtype in ("float32", "bfloat16", "float16"):
        t0 = time.perf_counter()
        try:
            emb = FeederEmbedder(lock, Placement("cpu", dtype), workers=0, verify=dtype == "float32")
            out[dtype] = np.concatenate(list(emb.embed_chunks([texts[i : i + 64] for i in range(0, len(texts), 64)])))
        except Exception as e:  # noqa: BLE001 - a dtype torch cannot run on this CPU is a finding, not a crash
            print(f"| {dtype} | failed: {type(e).__name__}: {str(e).splitlines()[0][:80]} | | | |")
            continue
        seconds = time.perf_counter() - t0
        ref, got = out["float32"], out[dtype]
        cos = np.sum(ref * got, axis=1)
        top_r = np.argsort(-(ref @ ref.T), axis=1)[:, 1:11]
        top_g = np.argsort(-(got @ got.T), axis=1)[:, 1:11]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_r, top_g)])
        print(f"| {dtype} | {cos.min():.6f} | {cos.mean():.7f} | {overlap:.3f} | {seconds:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
