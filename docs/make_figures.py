"""Regenerates every figure the docs quote: README's examples, docs/map.png, docs/map.json and the notebook.

    python docs/make_figures.py [--store DIR] [--skip-notebook]

Builds the bundled corpus into a fresh store with `paperscope index` (or uses --store), runs the
README's shell and Python examples against it and writes their output into README.md (between
its ``make_figures`` markers; the `index` line only when the store was built here), fits the map with the default
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
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import paperscope
from paperscope.map import MapParams

ROOT = Path(__file__).resolve().parents[1]
# The README's shell examples, run in this order (the index line only when this script builds the store).
TITLE = "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer"
SHELL = (
    ["index"],
    ["related", TITLE, "-k", "5"],
    ["search", "cooking recipes for pasta", "-k", "5", "--min-score", "0.3"],
)
SHELL_TAIL = "$ paperscope serve            # the map, search, related papers and a basket at http://127.0.0.1:8765"
BEGIN, END = "<!-- begin {}: written by docs/make_figures.py -->", "<!-- end {} -->"


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


def paperscope_cli(args: list[str], home: Path) -> str:
    """The stdout of one ``paperscope`` command run against ``home``, as a user would see it."""
    env = {**os.environ, "PAPERSCOPE_HOME": str(home), "COLUMNS": "100"}
    cmd = [sys.executable, "-m", "paperscope.cli", *args]
    return subprocess.run(cmd, check=True, env=env, capture_output=True, text=True).stdout.rstrip("\n")


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the lines between the ``name`` markers replaced by ``body`` (a fenced block)."""
    begin, end = BEGIN.format(name), END.format(name)
    head, found, rest = text.partition(begin + "\n")
    if not found or end not in rest:
        raise SystemExit(f"README.md: no '{begin}' ... '{end}' markers")
    return head + begin + "\n" + body + "\n" + rest[rest.index(end) :]


def readme_examples(home: Path, index_output: str | None) -> None:
    """Run README.md's shell and Python examples against ``home`` and write what they print into it."""
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if index_output is None:  # a store given with --store: keep the index line a fresh build printed
        old = text.split(BEGIN.format("shell") + "\n", 1)[1].split("\n$ paperscope related", 1)[0]
        index_output = "\n".join(old.splitlines()[2:])
    shown = ["```console", "$ paperscope index", index_output]
    for args in SHELL[1:]:
        shown += ["$ paperscope " + shlex.join(args), paperscope_cli(args, home)]
    text = replace_block(text, "shell", "\n".join([*shown, SHELL_TAIL, "```"]))
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "PAPERSCOPE_HOME": str(home)}
    run = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    text = replace_block(text, "python", "\n".join(["```text", run.stdout.rstrip("\n"), "```"]))
    readme.write_text(text, encoding="utf-8")
    print("README.md: shell and Python examples re-run")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--skip-notebook", action="store_true")
    args = ap.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="ps-figures-")) / "store"
    index_output = None if (store / "CURRENT").exists() else paperscope_cli(["index", "--quiet"], store)
    ex = paperscope.open(store)
    readme_examples(store, index_output)
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
