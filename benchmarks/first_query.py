"""The first `related` (or `search`) after opening a store whose files are not in the page cache (as after a reboot).

    python benchmarks/first_query.py --store STORE [--rounds 3] [--queries 5] [--verb related|search] [--cold-model]

Each round is a fresh Python process. It drops the live generation's files from the page cache
(``posix_fadvise(DONTNEED)``: the kernel forgets their clean pages, so every page is read from the
device again), then times ``paperscope.open(STORE)``, the first ``related`` (k=10, the default
hybrid ranking) and the next ``--queries`` ``related`` of other papers, each on a paper not asked
before. With ``--verb search`` the queries are those papers' titles as free text, so the first
one also loads the store's query model (the derived model files stay in the page cache, unless
``--cold-model``). Each round uses other papers, spread over the first 100,000 rows. Prints one JSON line
per round and the medians. Public API only; run it with ``PYTHONPATH=OTHER/src`` to measure
another checkout on the same store.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def drop_page_cache(directory: Path) -> None:
    """Forget the cached pages of every file in ``directory`` (clean pages of read-only files)."""
    for path in directory.iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def child(store: Path, ids: list[str], verb: str = "related", cold_model: bool = False) -> dict[str, object]:
    """One cold round: open, the first query, then the others."""
    import paperscope
    from paperscope.embed.artifacts import cache_root

    with paperscope.open(store) as ex:
        generation = ex.generation.path
        queries = ids if verb == "related" else [ex.paper(pid).title for pid in ids]
    drop_page_cache(generation)
    if cold_model:  # the derived query models too, as after a reboot
        for directory in [cache_root(), *(d for d in cache_root().rglob("*") if d.is_dir())]:
            drop_page_cache(directory)
    t0 = time.perf_counter()
    ex = paperscope.open(store)
    opened = time.perf_counter() - t0
    times = []
    for q in queries:
        t0 = time.perf_counter()
        hits = ex.related(q, k=10) if verb == "related" else ex.search(q, k=10)
        times.append(time.perf_counter() - t0)
        assert len(hits) == 10
    ex.close()
    return {"open_s": opened, f"first_{verb}_s": times[0], f"next_{verb}_s": times[1:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=5, help="queries after the first, per round")
    ap.add_argument("--verb", choices=("related", "search"), default="related")
    ap.add_argument(
        "--cold-model", action="store_true", help="drop the query model's files from the page cache too (search)"
    )
    ap.add_argument("--child", nargs="*", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print("ROUND " + json.dumps(child(args.store, args.child, args.verb, args.cold_model)), flush=True)
        return
    import paperscope

    per_round = 1 + args.queries
    with paperscope.open(args.store) as ex:
        count = min(len(ex), 100_000)
        step = max(1, count // (args.rounds * per_round))
        ids = [p.id for p in itertools.islice(ex.papers(), 0, count, step)][: args.rounds * per_round]
    rounds = []
    for r in range(args.rounds):
        mine = ids[r * per_round : (r + 1) * per_round]
        cmd = [sys.executable, __file__, "--store", str(args.store), "--verb", args.verb]
        cmd += ["--cold-model"] * args.cold_model + ["--child", *mine]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        line = next(x for x in out.stdout.splitlines() if x.startswith("ROUND "))
        rounds.append(json.loads(line.removeprefix("ROUND ")))
        print(line, flush=True)
    summary = {
        "rounds": len(rounds),
        "open_s_median": statistics.median(r["open_s"] for r in rounds),
        f"first_{args.verb}_s_median": statistics.median(r[f"first_{args.verb}_s"] for r in rounds),
        f"next_{args.verb}_s_median": statistics.median(t for r in rounds for t in r[f"next_{args.verb}_s"]),
    }
    print("SUMMARY " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
