"""Re-indexing cost: full build vs. re-run with nothing changed vs. re-run with 1% changed.

    python benchmarks/reindex.py [--repeats 3] [--copies 10]

Uses the bundled corpus (written out as JSON Lines so that 1% of abstracts can be edited;
``--copies N`` writes it N times, each copy's titles and abstracts marked "(variant k)",
so a larger corpus of realistic texts needs N times the embedding)
and the real pinned model. Each run is a fresh `paperscope index` process, as from cron,
so imports and the model load count. Prints medians and each re-run's ratio to the full
build, all measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from paperscope.corpus import bundled_corpus, read_corpus


def write_corpus(path: Path, changed: int = 0, copies: int = 1) -> int:
    papers = read_corpus([bundled_corpus()])
    i = 0
    with open(path, "w", encoding="utf-8") as fh:
        for copy in range(copies):
            mark = f" (variant {copy})" if copy else ""
            for p in papers:
                abstract = p.abstract + mark + (" (revised)" if i < changed else "")
                fh.write(
                    json.dumps(
                        {
                            "id": p.id + (f"-v{copy}" if copy else ""),
                            "title": p.title + mark,
                            "abstract": abstract,
                            "date": p.date,
                        }
                    )
                    + "\n"
                )
                i += 1
    return i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=1, help="write the bundled corpus this many times")
    args = ap.parse_args()
    times: dict[str, list[float]] = {"full": [], "unchanged": [], "1% changed": []}
    embedded: dict[str, int] = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as d:
            src, store = Path(d) / "corpus.jsonl", Path(d) / "store"
            n = write_corpus(src, copies=args.copies)
            for label, changed in (("full", 0), ("unchanged", 0), ("1% changed", max(1, n // 100))):
                write_corpus(src, changed, args.copies)
                t0 = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, "-m", "paperscope.cli", "index", str(src), "--store", str(store), "--json"],
                    capture_output=True,
                    text=True,
                    check=True,
                    env={**os.environ, "HF_HUB_OFFLINE": "1"},
                )
                times[label].append(time.perf_counter() - t0)
                embedded[label] = json.loads(out.stdout)["embedded"]
    full = statistics.median(times["full"])
    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}; "
        f"{n} papers; {args.repeats} repeats, each in a fresh store; wall time of the whole process"
    )
    print("| run | median s | runs (s) | embedded | ratio to full |")
    print("| --- | --- | --- | --- | --- |")
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"| {label} | {med:.2f} | {', '.join(f'{t:.2f}' for t in ts)} | {embedded[label]} | {med / full:.3f} |")


if __name__ == "__main__":
    main()
