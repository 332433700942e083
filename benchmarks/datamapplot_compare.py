"""The same map drawn by paperscope's render/png.py and by datamapplot's static create_plot, side by side.

    python -m venv --system-site-packages /tmp/dmp && /tmp/dmp/bin/pip install datamapplot==0.7.3
    /tmp/dmp/bin/python benchmarks/datamapplot_compare.py --store STORE --out /tmp/pictures

datamapplot is never a paperscope dependency: run this with a throwaway environment's Python.
Both pictures use the saved map's coordinates and fine-topic labels; low-confidence papers are
datamapplot's "Unlabelled" (muted) points, as they are muted in paperscope's picture.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import paperscope
from paperscope.render import write_png


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("/tmp/pictures"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tm = paperscope.open(args.store).topic_map(render=False)
    t0 = time.perf_counter()
    write_png(tm, args.out / "paperscope.png")
    print(f"paperscope: {args.out / 'paperscope.png'} in {time.perf_counter() - t0:.1f}s")

    import datamapplot

    label = {t.id: t.label for t in tm.topics if t.level == 1}
    names = np.array([label[int(f)] for f in tm.levels[1]], dtype=object)
    names[tm.margin < 0.1] = "Unlabelled"
    t0 = time.perf_counter()
    fig, _ = datamapplot.create_plot(
        tm.coords, names, title=f"{len(tm)} papers", sub_title="datamapplot 0.7.3", figsize=(16, 9), dpi=120
    )
    fig.savefig(args.out / "datamapplot.png", dpi=120)
    print(f"datamapplot: {args.out / 'datamapplot.png'} in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
