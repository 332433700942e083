"""How far the idf carried between generations moves rankings (issue 16, round 5).

    python benchmarks/idf_drift.py [--steps 9] [--dir D]

A re-run merges the lexical weights of edited papers under the previous generation's idf
(every ``impact.IDF_CHECK``, 10%, of rows changed the idf is checked, and derived again only when
it drifted). This script exports the bundled
corpus to JSON Lines, builds a store, then edits 1% of the abstracts per step (each edited paper
gets a sentence of another paper's abstract appended) and re-indexes, ``--steps`` times, so the
last generation carries an idf computed ``--steps``% of rows ago. A second store is built from
scratch on the final inputs. Printed: the mean top-10 overlap of ``related`` between the two
stores over every paper, in lexical and in hybrid mode, and the largest difference of a shown
score among the common hits.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

import numpy as np

import paperscope


def export(store: Path, out: Path) -> list[dict[str, object]]:
    with paperscope.open(store) as ex:
        rows = [
            {"id": p.id, "title": p.title, "abstract": p.abstract, "authors": list(p.authors), "date": p.date}
            for p in ex.papers()
        ]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return rows


def overlap(a: Path, b: Path, mode: str) -> tuple[float, float, float]:
    """Mean top-10 overlap of ``related`` over every paper; the median and largest score difference of a common hit."""
    shares, diffs = [], [0.0]
    with paperscope.open(a) as x, paperscope.open(b) as y:
        for p in x.papers():
            hx = {h.paper.id: h.score for h in x.related(p.id, k=10, mode=mode)}
            hy = {h.paper.id: h.score for h in y.related(p.id, k=10, mode=mode)}
            shares.append(len(hx.keys() & hy.keys()) / 10)
            diffs += [abs(hx[i] - hy[i]) for i in hx.keys() & hy.keys()]
    return float(np.mean(shares)), float(np.median(diffs)), max(diffs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=9, help="1%% edits merged under the carried idf (9: 9%% of rows)")
    ap.add_argument("--dir", type=Path, default=None)
    a = ap.parse_args()
    d = a.dir or Path(tempfile.mkdtemp(prefix="idf-drift-"))
    paperscope.build(None, d / "bundled")
    src = d / "papers.jsonl"
    rows = export(d / "bundled", src)
    paperscope.build([src], d / "carried")
    rng = random.Random(0)
    per_step = max(1, len(rows) // 100)
    for _ in range(a.steps):
        for i in rng.sample(range(len(rows)), per_step):
            other = rows[rng.randrange(len(rows))]["abstract"].split(". ")[0]
            rows[i] = {**rows[i], "abstract": f"{rows[i]['abstract']} {other}."}
        src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paperscope.build([src], d / "carried")
    fresh_src = d / "fresh.jsonl"
    fresh_src.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    paperscope.build([fresh_src], d / "fresh")
    with paperscope.open(d / "carried") as ex:
        lex = ex.generation.manifest["lexical"]
    print(f"papers {len(rows)}, {a.steps} steps of {per_step} edits; last derivation: {lex.get('derivation')}")
    for mode in ("dense", "lexical", "hybrid"):
        share, median, most = overlap(d / "carried", d / "fresh", mode)
        print(
            f"{mode}: top-10 overlap with a from-scratch store {share:.3f}; "
            f"score difference of a common hit: median {median:.4f}, largest {most:.4f}"
        )


if __name__ == "__main__":
    main()
