"""Two sets of hybrid candidate settings timed query by query, side by side, on a store's live generation.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 nice -n 5 python benchmarks/hybrid_pairs.py \\
        --keep DIR [--queries 200] [--rounds 3] [--old BUDGET,POOL,PROBE,RESCORE[,MARKS[,TEXT_BUDGET]]] [--new ...]

``DIR`` holds the generation's query files, as ``benchmarks/related_1m.py --store STORE --keep DIR``
links them. Both rankers share the open files, the page cache (read whole first) and the compiled
loops (loaded first). Each query is asked of both, in an order that alternates from one query to
the next, ``--rounds`` times over, so a machine whose speed drifts during the run (a shared host)
slows both alike: the figure to read is the median of the per-query ratios (new / old), with the
medians and p95s of each beside it. Paper queries (``related``: the paper's vector and terms,
itself excluded, k=10, expansion on) and free-text queries (``search``: a few title terms and the
paper's vector with noise), drawn as related_1m.py draws them (seed 2). The defaults compare
today's settings (``rank`` and ``impact``) with round 15's: 150,000 postings, 600 per side, half
the IVF lists, the whole pool scored exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from related_1m import QUERY_FILES, one_core, query_makers  # noqa: E402


def settings(text: str) -> dict[str, float]:
    """BUDGET,POOL,PROBE,RESCORE[,MARKS[,TEXT_BUDGET]]: MARKS 0 places a pass's threshold from the
    lists themselves, as before round 17, instead of from the stored marks (``impact.MARK_STRIDE``);
    TEXT_BUDGET, the postings of a free-text pass, is BUDGET when not given (as before round 17)."""
    budget, pool, probe, rescore, *rest = text.split(",")
    out = {"budget": int(budget), "pool": int(pool), "probe": float(probe), "rescore": int(rescore)}
    return out | {"marks": int(rest[0]) if rest else 1, "text_budget": int(rest[1]) if len(rest) > 1 else int(budget)}


def main() -> None:
    from paperscope import impact, rank

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, required=True, help="the query files (related_1m.py --store S --keep DIR)")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old", type=settings, default=settings("150000,600,0.5,0"))
    default = f"{impact.BUDGET},{rank.POOL},{rank.HYBRID_PROBE},{rank.RESCORE},1,{rank.TEXT_BUDGET}"
    ap.add_argument("--new", type=settings, default=settings(default))
    args = ap.parse_args()
    one_core()
    from paperscope import index, kernels, overlay
    from paperscope.lexical import advise_random
    from paperscope.rank import Ranker, dense_reference
    from paperscope.store import read_vectors

    tmp = args.keep
    info = json.loads((tmp / "index.json").read_text())
    vectors = read_vectors(tmp)  # vectors.npy, or a base and a delta
    advise_random(*overlay.parts(vectors))
    n, dim = vectors.shape
    fidx = index.load(tmp / "index.faiss", n, dim, info, mmap=True)
    base = tmp / impact.BASE_FILE
    lex, post = impact.open_index(tmp / "lexical.npz", tmp / impact.DERIVED_FILE, n, base if base.exists() else None)
    ref = dense_reference(vectors)
    rankers = {}
    for name in ("old", "new"):
        kw = dict(vars(args)[name])
        if kw.pop("marks"):
            mine = post
        else:  # the same files, the marks left unread
            d = post.delta and dataclasses.replace(post.delta, marks=None)
            mine = dataclasses.replace(post, marks=None, delta=d)
        rankers[name] = Ranker(vectors, fidx, lex, mine, dense_reference=ref, **kw)
    out: dict[str, object] = {"old": vars(args)["old"], "new": vars(args)["new"], "queries": args.queries}
    out["marks_stored"] = [post.marks is not None, post.delta is not None and post.delta.marks is not None]
    for name in QUERY_FILES:
        if (tmp / name).exists():
            with open(tmp / name, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    kernels.load()
    rng = np.random.default_rng(2)
    rows = rng.choice(n, size=args.queries + 1, replace=False)[1:]

    makers = query_makers(vectors, lex, rng)

    for verb, make in makers.items():
        qs = [make(int(r)) for r in rows]
        for q in qs[:20]:  # warm both (buffers, caches) before timing
            for rk in rankers.values():
                rk.rank(q, 10, "hybrid")
        times: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.rounds):
            for i, q in enumerate(qs):
                for name in ("old", "new") if i % 2 else ("new", "old"):
                    t0 = time.perf_counter()
                    rankers[name].rank(q, 10, "hybrid")
                    times[name].append(time.perf_counter() - t0)
        old, new = np.array(times["old"]) * 1000, np.array(times["new"]) * 1000
        out[verb] = {
            "old_median_ms": float(np.median(old)),
            "old_p95_ms": float(np.percentile(old, 95)),
            "new_median_ms": float(np.median(new)),
            "new_p95_ms": float(np.percentile(new, 95)),
            "ratio_median": float(np.median(new / old)),
            "ratio_q25_q75": [float(np.percentile(new / old, 25)), float(np.percentile(new / old, 75))],
        }
    print(json.dumps(out, indent=1))
    for verb in ("related", "search"):
        r = out[verb]
        assert isinstance(r, dict)
        print(
            f"| {verb} | {r['old_median_ms']:.2f} / {r['old_p95_ms']:.2f} ms | {r['new_median_ms']:.2f} / "
            f"{r['new_p95_ms']:.2f} ms | {r['ratio_median']:.3f} ({r['ratio_q25_q75'][0]:.3f}-{r['ratio_q25_q75'][1]:.3f}) |"
        )


if __name__ == "__main__":
    main()
