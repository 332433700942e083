"""Which text should the model see? Dense-only related-paper quality for four variants.

    python benchmarks/text_variants.py --store STORE [--cache vecs.npz]   # a store of the bundled corpus

Variants (all with the pinned all-MiniLM-L6-v2, which truncates input at 256 tokens):
  title           the title alone
  title+abstract  "{title}. {abstract}", the shipped template (truncated when longer than 256 tokens)
  chunks-mean     "{title}. " + each window of the abstract that fits 256 tokens; mean of the chunk vectors
  chunks-maxsim   same chunks; paper-to-paper similarity = the best-matching pair of chunks
Scored with the shipped labels (themes.csv and queries.json), all queries and held-out ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from paperscope import evaluate as ev
from paperscope import index
from paperscope.embed import load_embedder
from paperscope.explorer import Explorer
from paperscope.rank import HYBRID_WEIGHT, Query, Ranker

STRIDE_OVERLAP = 32  # tokens shared by consecutive chunks, so no sentence is only ever seen cut


def chunks(tokenizer, title: str, abstract: str, window: int) -> list[str]:
    """Title plus successive windows of the abstract, each fitting ``window`` tokens with the title."""
    head = f"{title}. "
    budget = window - 2 - len(tokenizer.tokenize(head))  # [CLS] and [SEP]
    enc = tokenizer(abstract, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if len(offsets) <= budget:
        return [head + abstract]
    out, start = [], 0
    while start < len(offsets):
        end = min(start + budget, len(offsets))
        out.append(head + abstract[offsets[start][0] : offsets[end - 1][1]])
        if end == len(offsets):
            break
        start = end - STRIDE_OVERLAP
    return out


def rank_all(sim: np.ndarray, depth: int) -> np.ndarray:
    sim = sim.copy()
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1, kind="stable")[:, :depth]


def score(ranking: np.ndarray, queries: list[tuple[str, int, set[int]]]) -> dict[str, list[float]]:
    out = {}
    for split in ("all", "held_out"):
        ms = [
            ev.query_metrics(ranking[row].tolist(), rel)
            for title, row, rel in queries
            if rel and (split == "all" or ev.is_held_out(title))
        ]
        out[split] = [round(float(x), 4) for x in np.mean(ms, axis=0)] + [len(ms)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", required=True)
    ap.add_argument("--json", dest="as_json", action="store_true")
    ap.add_argument("--cache", help="an .npz to keep the embedded vectors in (re-runs skip the model)")
    args = ap.parse_args()
    ex = Explorer(args.store)
    papers = list(ex.papers())
    model = load_embedder()
    tok = model.model.tokenizer
    window = model.model.max_seq_length
    full = [f"{p.title}. {p.abstract}" for p in papers]
    lengths = np.array([len(tok.tokenize(t)) + 2 for t in full])
    per_paper = [chunks(tok, p.title, p.abstract, window) for p in papers]
    flat = [c for cs in per_paper for c in cs]
    owner = np.repeat(np.arange(len(papers)), [len(cs) for cs in per_paper])
    t0 = time.perf_counter()
    if args.cache and Path(args.cache).is_file():
        with np.load(args.cache, allow_pickle=False) as z:
            vec_title, vec_full, vec_chunks = z["title"], z["full"], z["chunks"]
    else:
        vec_title = model.embed_batch([p.title for p in papers])
        vec_full = model.embed_batch(full)
        vec_chunks = model.embed_batch(flat)
        if args.cache:
            np.savez(args.cache, title=vec_title, full=vec_full, chunks=vec_chunks)
    seconds = time.perf_counter() - t0
    mean = np.zeros_like(vec_full)
    np.add.at(mean, owner, vec_chunks)
    mean /= np.linalg.norm(mean, axis=1, keepdims=True)
    pair = vec_chunks @ vec_chunks.T
    maxsim = np.full((len(papers), len(papers)), -np.inf, dtype=np.float32)
    for i in range(len(papers)):  # max over each paper's chunk pairs
        rows = pair[owner == i]
        col_max = rows.max(axis=0)
        np.maximum.at(maxsim[i], owner, col_max)
    sims = {
        "title": vec_title @ vec_title.T,
        "title+abstract": vec_full @ vec_full.T,
        "chunks-mean": mean @ mean.T,
        "chunks-maxsim": maxsim,
    }
    label_sets = ev.shipped_labels()
    resolved = {ls.name.rsplit("/", 1)[-1]: ev.resolve(ex, ls) for ls in label_sets}
    results = {
        name: {lab: score(rank_all(sim, ev.MAP_DEPTH), qs) for lab, qs in resolved.items()}
        for name, sim in sims.items()
    }
    # The same vectors inside the shipped hybrid ranking (max-sim has no single vector per paper).
    hybrid = {}
    for name, vecs in {"title": vec_title, "title+abstract": vec_full, "chunks-mean": mean}.items():
        vecs = np.ascontiguousarray(vecs, dtype=np.float32)
        ranker = Ranker(vecs, index.build_flat(vecs), ex.lexical)
        hybrid[name] = {}
        for lab, qs in resolved.items():
            ranking = np.zeros((len(papers), ev.MAP_DEPTH), dtype=np.int64)
            for _, row, _ in qs:
                q = Query(dense=vecs[row], lexical=ex.lexical.rows_vector([row]), exclude=frozenset([row]))
                ranking[row] = [r.row for r in ranker.rank(q, ev.MAP_DEPTH, "hybrid")]
            hybrid[name][lab] = score(ranking, qs)
    meta = {
        "papers": len(papers),
        "over_window": int((lengths > window).sum()),
        "max_tokens": int(lengths.max()),
        "median_tokens": int(np.median(lengths)),
        "chunks": len(flat),
        "embed_seconds": round(seconds, 1),
    }
    if args.as_json:
        print(json.dumps({"meta": meta, "dense": results, "hybrid": hybrid}, indent=2))
        return
    print(
        f"{meta['papers']} papers; {meta['over_window']} exceed {window} tokens as title+abstract "
        f"(median {meta['median_tokens']}, max {meta['max_tokens']}); {meta['chunks']} chunks"
    )
    for lab in resolved:
        print(f"\n{lab}: dense only   P@10 R@10 nDCG@10 MAP (n)  |  held-out")
        for name in sims:
            a, h = results[name][lab]["all"], results[name][lab]["held_out"]
            print(
                f"  {name:<15} {a[0]:.3f} {a[1]:.3f} {a[2]:.3f} {a[3]:.3f} ({a[4]})  |  "
                f"{h[0]:.3f} {h[1]:.3f} {h[2]:.3f} {h[3]:.3f} ({h[4]})"
            )
        print(f"{lab}: hybrid (dense weight {HYBRID_WEIGHT})")
        for name in hybrid:
            a, h = hybrid[name][lab]["all"], hybrid[name][lab]["held_out"]
            print(
                f"  {name:<15} {a[0]:.3f} {a[1]:.3f} {a[2]:.3f} {a[3]:.3f} ({a[4]})  |  "
                f"{h[0]:.3f} {h[1]:.3f} {h[2]:.3f} {h[3]:.3f} ({h[4]})"
            )


if __name__ == "__main__":
    main()
