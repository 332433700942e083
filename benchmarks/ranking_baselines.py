"""Held-out ranking quality of paperscope beside the short scripts a researcher would write.

    python benchmarks/ranking_baselines.py [--store STORE] [--mpnet-store STORE] [--write docs/ranking.md]

Scores every baseline of :mod:`paperscope.baselines` (TF-IDF, its RRF and z-score fusions with the
store's own vectors, z-fusion with query expansion) and every paperscope mode on the held-out half
of both shipped label sets, with bootstrap 95% intervals, and prints the Markdown table. With
``--store`` it uses that store (default: the bundled corpus indexed with the pinned model into a
temporary store). ``--mpnet-store`` adds the same table for a store built with all-mpnet-base-v2
(docs/ranking.md says how to build one). ``--write FILE`` replaces the block between
``<!-- ranking_baselines.py: start -->`` and ``<!-- ranking_baselines.py: end -->`` in FILE.
Also prints the tuning-half curves (dense weight, expansion) the shipped settings were chosen on,
and how the default mode's shown scores match the labels (``evaluate.reliability``).
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from paperscope import baselines as bl
from paperscope import evaluate as ev
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.rank import EXPANSION, HYBRID_WEIGHT

START, END = "<!-- ranking_baselines.py: start -->", "<!-- ranking_baselines.py: end -->"


def table(store: Path, title: str) -> str:
    with Explorer(store) as ex:
        sets = ev.shipped_labels()
        rows = bl.compare(ex, sets)
        curve = ev.tune(ex, sets, [0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        betas = ev.tune_expansion(ex, sets, HYBRID_WEIGHT, (0.0, 0.25, 0.5, 1.0))
        model = ex.info()["model"]["name"]
        shown = ev.reliability(ex, sets)
    lines = [
        f"### {title} ({model})",
        "",
        bl.format_rows(rows, markdown=True),
        "",
        "Tuning half, hybrid nDCG@10 (mean of the two label sets) by dense weight "
        f"(expansion {EXPANSION}): " + ", ".join(f"{w:.1f}: {s:.3f}" for w, s in curve),
        "",
        f"Tuning half, by expansion strength (weight {HYBRID_WEIGHT}): "
        + ", ".join(f"{b:g}: {s:.3f}" for b, s in betas),
        "",
        *reliability_lines(shown),
    ]
    return "\n".join(lines)


def reliability_lines(r: ev.Reliability) -> list[str]:
    """Shown scores of the default mode against the labels (``evaluate.reliability``) as Markdown."""
    ranks = "; ".join(f"hits {a}-{b}: mean score {m:.3f}, share relevant {y:.3f}" for a, b, m, y in r.by_rank)
    return [
        f"Shown {r.mode} scores of the first 10 hits of the {r.queries} held-out queries (both label sets) "
        f"against the labels: expected calibration error **{r.ece:.3f}**; {ranks}.",
        "",
        "| shown score | hits | mean score | share relevant |",
        "| --- | --- | --- | --- |",
        *(f"| {lo:.1f}-{hi:.1f} | {n} | {m:.3f} | {y:.3f} |" for lo, hi, n, m, y in r.bins),
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--mpnet-store", type=Path, default=None)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "store"
            build(None, store)
        out = [table(store, "Default model")]
        if args.mpnet_store is not None:
            out.append(table(args.mpnet_store, "all-mpnet-base-v2 store, same settings"))
    text = "\n".join(out).rstrip()
    print(text)
    if args.write is not None:
        doc = args.write.read_text(encoding="utf-8")
        block = f"{START}\n{text}\n{END}"
        doc = (
            re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, doc, flags=re.DOTALL)
            if START in doc
            else doc.rstrip() + "\n\n" + block + "\n"
        )
        args.write.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    main()
