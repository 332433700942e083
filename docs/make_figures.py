"""Regenerates every map figure the docs quote: docs/map.png, docs/map.json and the notebook's outputs.

    python docs/make_figures.py [--store DIR] [--skip-notebook]

Builds the bundled corpus into a fresh store (or uses --store), fits the map with the default
parameters (seed 42), draws docs/map.png, writes docs/map.json (the topics the picture was drawn
from: labels and sizes), then writes and executes notebooks/topic_map.ipynb against a fresh store
of its own (the notebook indexes its own file: it must not touch --store) and replaces the
store's path in the stored outputs with $PAPERSCOPE_HOME. tests/test_docs_figures.py fails when
docs/map.json differs from a fresh map on the machine running the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import paperscope
from paperscope.map import MapParams

ROOT = Path(__file__).resolve().parents[1]


def map_summary(tm: paperscope.map.TopicMap) -> dict:
    """What docs/map.json records: the seed, counts and every topic's level, label and size."""
    return {
        "seed": tm.params.seed,
        "params_key": tm.params.key,
        "papers": len(tm),
        "low_confidence": tm.low_confidence,
        "topics": sorted(([t.level, t.label, t.size] for t in tm.topics), key=lambda r: (r[0], -r[2], r[1])),
    }


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _is_progress(output: dict) -> bool:
    """A progress bar's frames or tqdm's "no ipywidgets" warning: timings of one run, not content."""
    text = output.get("text", "") if output.get("output_type") == "stream" else ""
    return bool(text) and ("%|" in text or "TqdmWarning" in text or "IProgress" in text or not text.strip())


def scrub(nb_path: Path, home: Path) -> None:
    """Drop progress-bar output and replace the store's path with $PAPERSCOPE_HOME in the stored outputs."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not _is_progress(o)]
    text = nbformat.writes(nb)
    for path in (str(home), str(home.parent)):
        text = text.replace(path, "$PAPERSCOPE_HOME")
    nb_path.write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--skip-notebook", action="store_true")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="ps-figures-")) / "store"
    ex = paperscope.open(store) if (store / "CURRENT").exists() else paperscope.build(None, store)
    out = Path(tempfile.mkdtemp(prefix="ps-figures-map-"))
    tm = ex.topic_map(out, params=MapParams(), refit=True)
    shutil.copyfile(tm.stats["outputs"]["png"], ROOT / "docs" / "map.png")
    summary = {**map_summary(tm), "drawn_on": cpu_model()}
    (ROOT / "docs" / "map.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"docs/map.png, docs/map.json: {len(tm)} papers, {tm.stats['topics']}")
    if args.skip_notebook:
        return
    home = Path(tempfile.mkdtemp(prefix="ps-nb-")) / "store"
    env = {**os.environ, "PAPERSCOPE_HOME": str(home)}
    make = ROOT / "notebooks" / "make_topic_map.py"
    subprocess.run([sys.executable, str(make)], check=True, env=env)
    subprocess.run([sys.executable, str(make), "--execute"], check=True, env=env)
    nb = ROOT / "notebooks" / "topic_map.ipynb"
    scrub(nb, home)
    print(f"{nb.relative_to(ROOT)}: executed against a fresh store, paths replaced")


if __name__ == "__main__":
    main()
