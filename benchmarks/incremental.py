"""Re-runs against a full build, before (another tree, e.g. main) and after (this tree), whole process.

    python benchmarks/incremental.py --papers 100000 --before-src /work/main/src [--backend static]
        [--generator benchmarks/arxiv_corpus.py] [--work DIR] [--full-after]

1. Writes N papers (gzipped JSON lines; with ``--generator`` the arXiv-format generator and its
   ``--edit-fraction 0.01``, else a simple one from the bundled corpus) and a copy with 1% of the
   abstracts edited.
2. Builds the store once with the *before* tree (wall time: the full build) and copies it, so both
   trees start from the same generation. ``--full-after`` also times a full build with this tree.
3. On the same input path, each tree runs: an unchanged re-run, then the 1%-edit re-run, then
   another unchanged re-run (for this tree the first unchanged run is on a store written by the
   before tree, which has no record of its inputs' bytes yet, so it parses them once).

Each run is a fresh ``paperscope index`` process (``/usr/bin/time -v``: wall and peak RSS); the
table prints every run's figures and its ratio to the full build, plus the machine load.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def simple_corpus(n: int, out: Path, edit: float) -> None:
    """N papers from the bundled corpus's texts, one word changed each (no generator needed)."""
    sys.path.insert(0, str(ROOT / "src"))
    from paperscope.corpus import bundled_corpus, read_corpus

    papers = read_corpus([bundled_corpus()])
    words = sorted({w for p in papers for w in p.abstract.split()})
    rng, redit = random.Random(7), random.Random(11)
    with gzip.open(out, "wt", encoding="utf-8") as fh:
        for i in range(n):
            p = papers[i % len(papers)]
            ws = p.abstract.split()
            ws[rng.randrange(len(ws))] = rng.choice(words)
            abstract = " ".join(ws) + f" v{i}" + (" (revised)" if redit.random() < edit else "")
            row = {"id": f"{2400 + i // 99999:04d}.{i % 99999:05d}", "title": f"{p.title} {i}", "abstract": abstract}
            fh.write(json.dumps({**row, "authors": "A. B, C. D", "categories": "cs.LG"}) + "\n")


def corpus(args: argparse.Namespace, out: Path, edit: float) -> None:
    if args.generator is None:
        simple_corpus(args.papers, out, edit)
        return
    extra = ["--edit-fraction", str(edit), "--edit-seed", "1"] if edit else []
    subprocess.run([sys.executable, args.generator, str(args.papers), str(out), *extra], check=True)


def load() -> str:
    return open("/proc/loadavg").read().split()[0]


def index(tree: Path, store: Path, work: Path, backend: str | None) -> dict[str, object]:
    """One whole ``paperscope index`` process of ``tree`` on ``work/corpus.jsonl.gz``."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "paperscope.cli", "index", "corpus.jsonl.gz"]
    cmd += ["--store", str(store), "--json"] + (["--backend", backend] if backend else [])
    env = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1"}
    before = load()
    out = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", out.stderr).group(1)
    secs = sum(float(x) * 60**i for i, x in enumerate(reversed(wall.split(":"))))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) / 1024
    report = json.loads(out.stdout)
    return {"wall": secs, "rss_mb": rss, "load": f"{before}-{load()}", **report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--papers", type=int, default=100_000)
    ap.add_argument("--before-src", type=Path, required=True, help="src/ of the tree to compare with")
    ap.add_argument("--after-src", type=Path, default=ROOT / "src")
    ap.add_argument("--backend", default="static")
    ap.add_argument("--generator", default=None, help="arxiv_corpus.py (default: a simple built-in one)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/paperscope-incremental"))
    ap.add_argument("--full-after", action="store_true", help="also time a full build with this tree")
    args = ap.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    base, edited, live = work / "base.jsonl.gz", work / "edited.jsonl.gz", work / "corpus.jsonl.gz"
    if not base.exists():
        corpus(args, base, 0.0)
        corpus(args, edited, 0.01)
    rows: list[tuple[str, str, dict[str, object]]] = []
    stores = {"before": work / "store-before", "after": work / "store-after"}
    trees = {"before": args.before_src, "after": args.after_src}
    for s in [*stores.values(), work / "store-full-after"]:
        shutil.rmtree(s, ignore_errors=True)
    shutil.copyfile(base, live)
    rows.append(("full build", "before", index(trees["before"], stores["before"], work, args.backend)))
    if args.full_after:
        rows.append(("full build", "after", index(trees["after"], work / "store-full-after", work, args.backend)))
    shutil.copytree(stores["before"], stores["after"])
    for label, source in (("unchanged", base), ("1% edited", edited), ("unchanged again", edited)):
        shutil.copyfile(source, live)
        for tree in ("before", "after"):
            rows.append((label, tree, index(trees[tree], stores[tree], work, None)))
    full = rows[0][2]["wall"]
    print(f"{args.papers} papers, backend {args.backend}, corpus: {args.generator or 'built-in'}")
    print("| run | tree | wall s | ratio to full | peak RSS MB | embedded | tokenised | bytes written | load |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, tree, r in rows:
        print(
            f"| {label} | {tree} | {r['wall']:.1f} | {r['wall'] / full:.3f} | {r['rss_mb']:.0f} | {r['embedded']} "
            f"| {r['tokenised']} | {r.get('bytes_written', 'n/a')} | {r['load']} |"
        )


if __name__ == "__main__":
    main()
