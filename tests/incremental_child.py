"""Run one incremental build that stops for good at a named point, so the parent can kill -9 it there.

    python incremental_child.py STORE CORPUS POINT MARKER

At POINT the child writes MARKER and sleeps; the parent (tests/integration/test_incremental_crash.py)
then sends SIGKILL. The points wrap public functions of the steps a re-run takes after the live
generation was verified: parsing the changed input lines, writing vectors.npy, carrying the lexical rows,
writing the postings delta, writing layered lexical rows whole, updating the IVF index,
hashing and linking at commit, the rename of the finished generation, the swap of CURRENT.
POINT "none" runs the build to its end.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeEmbedder  # noqa: E402

import paperscope.files  # noqa: E402
import paperscope.impact  # noqa: E402
import paperscope.index  # noqa: E402
import paperscope.inputs  # noqa: E402
import paperscope.lexical  # noqa: E402
import paperscope.lexical_delta  # noqa: E402
import paperscope.snapshots  # noqa: E402
import paperscope.store  # noqa: E402
from paperscope.pipeline import build  # noqa: E402


def stop_here(marker: Path) -> None:
    marker.write_text("here")
    time.sleep(600)


def after(module: Any, name: str, marker: Path) -> None:
    """Let ``module.name`` run, then stop (its output is on disk, nothing after it has run)."""
    inner = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        stop_here(marker)
        return out

    setattr(module, name, wrapped)


def before(module: Any, name: str, marker: Path) -> None:
    inner = getattr(module, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        stop_here(marker)
        return inner(*args, **kwargs)

    setattr(module, name, wrapped)


def main() -> None:
    store, corpus, point, marker = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    if point == "lines-parsing":  # the changed input lines copied to scratch files, being parsed
        before(paperscope.inputs, "read_papers", marker)
    elif point == "vectors-written":
        before(paperscope.lexical_delta, "write", marker)
    elif point == "lexical-half-written":  # the forward delta's lexical.npz (paperscope.lexical_delta)
        inner = paperscope.lexical_delta.write_rows

        def half(path: Path, arrays: dict[str, Any]) -> None:
            inner(path, arrays)
            with open(path, "r+b") as fh:  # as if killed while the file was being written
                fh.truncate(path.stat().st_size // 2)
            stop_here(marker)

        paperscope.lexical_delta.write_rows = half
    elif point == "rows-written-whole":  # the idf check due over layered rows: lexical.npz written whole from them
        paperscope.impact.IDF_CHECK = 0.0
        before(paperscope.impact, "rebase", marker)
    elif point == "postings-delta-saved":  # lexical-impact.npz written as a delta, the base not yet linked
        after(paperscope.impact.Postings, "save", marker)
    elif point == "index-updated":
        after(paperscope.index, "update", marker)
    elif point == "index-saved":
        after(paperscope.index, "save", marker)
    elif point == "hashing":
        after(paperscope.store, "file_digest", marker)
    elif point == "renamed":
        before(paperscope.snapshots, "write_atomic", marker)
    elif point == "swapped":
        after(paperscope.snapshots, "write_atomic", marker)
    elif point != "none":
        raise SystemExit(f"unknown point {point}")
    report = build([corpus], store, embedder=FakeEmbedder(), index_type="ivf")
    print(report.generation)


if __name__ == "__main__":
    main()
