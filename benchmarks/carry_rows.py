"""Carrying a big store's lexical rows with 1% of them re-tokenised: ``lexical.carry_rows`` alone.

    python benchmarks/carry_rows.py STORE [--repeats 2]

Loads the live generation's ``lexical.npz`` (memory-mapped, as a re-run does), marks 1% of the
rows (seeded) as tokenised afresh with 150 of the store's terms and one new term each (so every
term id after it moves: the remap path of a real edit), and times ``carry_rows`` in this process,
wall and CPU, ``--repeats`` times. Run it with ``PYTHONPATH=CHECKOUT/src`` for each code to compare.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from paperscope.lexical import CarriedArrays, LexicalIndex, carry_rows
from paperscope.store import Store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    old = CarriedArrays.load(Store(args.store).require_current().file("lexical.npz"))
    n = old.n
    rng = np.random.default_rng(0)
    mapping = np.arange(n, dtype=np.int64)
    edited = np.sort(rng.choice(n, size=max(1, n // 100), replace=False))
    mapping[edited] = -1
    vocab = [old.term(i).decode() for i in range(min(2000, len(old.vocab_offsets) - 1))]
    rows = []
    for r in edited.tolist():
        counts = Counter({vocab[(r * 7 + j) % len(vocab)]: 1 for j in range(150)})
        counts["zzbrandnew"] = 1
        rows.append((counts, Counter()))
    fresh = LexicalIndex.from_counts(rows)
    for i in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        carried = carry_rows(old, mapping, fresh)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"run {i + 1}: carry_rows {wall:.2f} s wall, {cpu:.2f} s CPU ({len(carried.terms):,} entries)", flush=True
        )
        del carried


if __name__ == "__main__":
    main()
