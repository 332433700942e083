"""Whether ``related``'s first hits depend on k: the first ten of k=10 against those of k=20 and k=40.

    python benchmarks/k_consistency.py --store STORE [--every 1] [--mode hybrid]

A ranking's first ten should not change when more hits are asked for. Prints, for each larger k,
how many query papers (every ``--every``-th paper of the store) get other first ten ids, or the
same ids in another order. Public API only (``Explorer.related``).
"""

from __future__ import annotations

import argparse
import json

from paperscope.explorer import Explorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--every", type=int, default=1, help="query every N-th paper of the store")
    ap.add_argument("--mode", default="hybrid")
    a = ap.parse_args()
    with Explorer(a.store) as ex:
        ids = [p.id for p in ex.papers()][:: a.every]
        out: dict[str, object] = {"store_papers": len(ex), "queries": len(ids), "mode": a.mode}
        first = {pid: [h.paper.id for h in ex.related(pid, k=10, mode=a.mode)] for pid in ids}
        for k in (20, 40):
            other = set_differs = 0
            for pid in ids:
                deeper = [h.paper.id for h in ex.related(pid, k=k, mode=a.mode)][:10]
                other += deeper != first[pid]
                set_differs += set(deeper) != set(first[pid])
            out[f"k{k}_first_ten_differ"] = other
            out[f"k{k}_first_ten_other_papers"] = set_differs
    print(json.dumps(out))


if __name__ == "__main__":
    main()
