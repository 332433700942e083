"""The default backend against torch: paired whole-process builds, agreement, and the 1% re-index.

    python benchmarks/backend_speed.py [--pairs 3] [--reindex 3] [--edited 4] [--also onnx-int8-solo]

Each build is a fresh ``paperscope index`` process into a fresh store, as from cron, so imports
and model loading count; torch and the default backend (models.lock) alternate, and the order
flips every pair, so a machine that gets busier or quieter slows both alike. The derived models
(the int8 export, torch's fp32 query export) are made once before timing, in a cache of this
run: what a machine pays once is not in the figures. Then, on a store built with the default
backend, ``--edited`` abstracts are revised and re-indexed, each repeat in a fresh process that
reports whether torch was imported. Prints the medians, the ratio of the medians, per-pair
ratios, peak RSS, and the cosine of each paper's default vector to its torch vector. ``--also``
times more backends in the same rotation (for example the previous default), each against torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import paperscope
from paperscope.corpus import bundled_corpus, read_corpus
from paperscope.embed import DEFAULT_BACKEND

# Runs the CLI in this process, then says on stderr whether torch was imported.
DRIVER = (
    "import sys, runpy\n"
    "sys.argv = ['paperscope'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('paperscope.cli', run_name='__main__')\n"
    "except SystemExit as e:\n    assert not e.code, e.code\n"
    "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
)


def write_corpus(path: Path, edit: str = "", edited: int = 0) -> int:
    """The bundled corpus as JSON Lines, the first ``edited`` abstracts ending in ``edit``."""
    papers = read_corpus([bundled_corpus()])
    with open(path, "w", encoding="utf-8") as fh:
        for i, p in enumerate(papers):
            abstract = p.abstract + (f" ({edit})" if i < edited else "")
            fh.write(json.dumps({"id": p.id, "title": p.title, "abstract": abstract, "date": p.date}) + "\n")
    return len(papers)


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, dict, bool]:
    """Wall seconds, the child's own peak RSS in MB (from wait4), its --json report, whether torch was imported."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    # Read both pipes to the end first (a full pipe would block the child), then reap it with wait4.
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024, json.loads(out), b"TORCH True" in err


def vectors(store: Path) -> dict[str, np.ndarray]:
    with paperscope.open(store) as ex:
        return {p.id: ex.vector(p.id) for p in ex.papers()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--reindex", type=int, default=3, help="re-index repeats")
    ap.add_argument("--edited", type=int, default=4, help="abstracts revised per re-index (4 = 1%% of 432)")
    ap.add_argument("--also", action="append", default=[], help="another backend to time in the same rotation")
    args = ap.parse_args()
    backends = ("torch", DEFAULT_BACKEND, *args.also)
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        corpus = root / "corpus.jsonl"
        n = write_corpus(corpus)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PAPERSCOPE_CACHE": str(root / "cache")}
        print(f"load average before: {load()}", flush=True)
        small = root / "small.jsonl"
        small.write_text("".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:8]), encoding="utf-8")
        for b in backends:  # warm-up: the derived models are made once per machine, not per build
            run(["index", str(small), "--store", str(root / f"warm-{b}"), "--backend", b, "-q"], env)
        walls: dict[str, list[float]] = {b: [] for b in backends}
        rss: dict[str, list[float]] = {b: [] for b in backends}
        for pair in range(args.pairs):
            for b in backends if pair % 2 == 0 else backends[::-1]:
                store = root / f"{b}-{pair}"
                wall, peak, report, _ = run(["index", str(corpus), "--store", str(store), "--backend", b], env)
                assert report["embedded"] == n
                walls[b].append(wall)
                rss[b].append(peak)
                print(f"pair {pair}: {b:15s} {wall:6.2f} s  peak RSS {peak:5.0f} MB  load {load()}", flush=True)
        default_store = root / f"{DEFAULT_BACKEND}-0"
        reindex: list[float] = []
        torch_seen = []
        for k in range(args.reindex):
            write_corpus(corpus, edit=f"revision {k}", edited=args.edited)
            wall, _, report, torch_imported = run(["index", str(corpus), "--store", str(default_store)], env)
            assert report["embedded"] == args.edited, report
            reindex.append(wall)
            torch_seen.append(torch_imported)
            print(f"re-index {k}: {args.edited} edited  {wall:5.2f} s  torch imported: {torch_imported}", flush=True)
        ref, got = vectors(root / "torch-0"), vectors(root / f"{DEFAULT_BACKEND}-0")
        cos = np.array([float(ref[i] @ got[i]) for i in ref])
        a, b = backends[:2]
        print(f"\nload average after: {load()}")
        print(f"bundled corpus, {n} papers; {args.pairs} pairs of fresh whole-process builds")
        print("| backend | median build s | runs (s) | median peak RSS MB |")
        print("| --- | --- | --- | --- |")
        for name in backends:
            runs = ", ".join(f"{t:.2f}" for t in walls[name])
            print(f"| {name} | {statistics.median(walls[name]):.2f} | {runs} | {statistics.median(rss[name]):.0f} |")
        pair_ratios = [x / y for x, y in zip(walls[a], walls[b])]
        print(
            f"speed-up {b} vs {a}: {statistics.median(walls[a]) / statistics.median(walls[b]):.2f}x (medians); "
            f"per pair {', '.join(f'{r:.2f}' for r in pair_ratios)}"
        )
        for c in args.also:
            ratios = ", ".join(f"{x / y:.2f}" for x, y in zip(walls[a], walls[c]))
            print(
                f"speed-up {c} vs {a}: {statistics.median(walls[a]) / statistics.median(walls[c]):.2f}x; per pair {ratios}"
            )
            print(f"speed-up {b} vs {c}: {statistics.median(walls[c]) / statistics.median(walls[b]):.2f}x (medians)")
        print(f"cosine {b} to torch over {len(cos)} papers: mean {cos.mean():.5f}, min {cos.min():.5f}")
        print(
            f"re-index of {args.edited} edited abstracts ({args.edited / n:.1%}), {b} store: median "
            f"{statistics.median(reindex):.2f} s, runs {', '.join(f'{t:.2f}' for t in reindex)}; "
            f"torch imported: {any(torch_seen)}; "
            f"ratio to a full {b} build {statistics.median(reindex) / statistics.median(walls[b]):.3f}"
        )


if __name__ == "__main__":
    main()
