"""kill -9 inside the steps of an incremental re-run: the previous generation stays live and whole.

Each case builds a store (IVF index forced, so the re-run updates it instead of rebuilding), then
runs a 1%-edit re-run in a child process (tests/incremental_child.py) that stops at one point of
the incremental path and is killed there with SIGKILL. After the kill: CURRENT names the previous
generation (or, once CURRENT was swapped, the new one), ``verify`` passes on every byte, answers
are those of the live generation, and a plain re-run finishes the job and ends where a
from-scratch build of the same inputs ends. A reader opened before the kill keeps answering.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder, whole_lexical

from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify

TESTS = Path(__file__).resolve().parents[1]
POINTS = [
    "lines-parsing",
    "vectors-written",
    "lexical-half-written",
    "postings-delta-saved",
    "index-updated",
    "index-saved",
    "hashing",
    "renamed",
    "swapped",
]
N = 400
EDITED = {2, 50, 199, 333}


def corpus(path: Path, edited: set[int]) -> Path:
    lines = []
    for i in range(N):
        extra = " revised after review with zzedit" if i in edited else ""
        words = " ".join(f"w{(i * 7 + j) % 97}" for j in range(30))
        lines.append(json.dumps({"id": f"p{i}", "title": f"Paper {i} topic{i % 11}", "abstract": words + extra}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def answers(store: Path) -> list[list[str]]:
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        return [[h.paper.id for h in ex.related(f"p{i}", k=5)] for i in (0, 2, 50, 199, 333, 399)]


def kill_at(store: Path, src: Path, point: str, marker: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(TESTS / "incremental_child.py"), str(store), str(src), point, str(marker)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ,
    )
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        _, err = proc.communicate()
        pytest.fail(f"child ended before {point} (rc {proc.returncode}): {err.decode()[-2000:]}")
    assert marker.exists(), f"child never reached {point}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()


@pytest.mark.parametrize("point", POINTS)
def test_kill_9_inside_an_incremental_rerun_leaves_a_whole_store(tmp_path: Path, point: str) -> None:
    store, src = tmp_path / "s", tmp_path / "a.jsonl"
    build([corpus(src, set())], store, embedder=FakeEmbedder(), index_type="ivf")
    before_gen = (store / "CURRENT").read_text().strip()
    before_answers = answers(store)
    reader = Explorer(store, embedder=FakeEmbedder())  # open across the kill and the re-runs
    kill_at(store, corpus(src, EDITED), point, tmp_path / "marker")

    live = (store / "CURRENT").read_text().strip()
    assert live == (before_gen if point != "swapped" else "g000002")
    found = verify(Store(store))
    assert found.ok, [(f.path, f.detail) for f in found.damaged]
    if point != "swapped":
        assert answers(store) == before_answers

    report = build([src], store, embedder=FakeEmbedder(), index_type="ivf")
    assert verify(Store(store)).ok
    assert not list((store / "generations").glob(".tmp-*"))  # scratch and temporary generations cleaned
    if point != "swapped":
        assert report.changed == len(EDITED) and report.embedded <= len(EDITED)
        assert report.entries_read == len(EDITED)  # only the edited lines parsed
    fresh = tmp_path / "f"
    build([corpus(tmp_path / "b.jsonl", EDITED)], fresh, embedder=FakeEmbedder())
    got, want = Store(store).require_current(), Store(fresh).require_current()
    assert got.manifest["lexical"]["derivation"] == "delta"  # the postings of the edited rows only
    assert got.manifest["vectors"] == {"delta_rows": len(EDITED)}  # and the vectors: a base and a delta
    assert np.array_equal(got.load_vectors(mmap=False), want.load_vectors(mmap=False))
    a, b = whole_lexical(store), whole_lexical(fresh)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in b)
    assert [[h.paper.id for h in reader.related(f"p{i}", k=5)] for i in (0, 2, 50, 199, 333, 399)] == before_answers
    reader.close()


def test_kill_9_while_layered_rows_are_written_whole_leaves_a_whole_store(tmp_path: Path) -> None:
    """A run that writes the lexical rows whole over layered ones (the idf check fell due), killed
    once lexical.npz is written whole from them: the live generation (layered rows) answers as
    before, verifies, and the next run cleans up and builds on it."""
    store, src = tmp_path / "s", tmp_path / "a.jsonl"
    build([corpus(src, set())], store, embedder=FakeEmbedder(), index_type="ivf")
    build([corpus(src, EDITED)], store, embedder=FakeEmbedder(), index_type="ivf")
    live = Store(store).require_current()
    assert live.manifest["lexical"]["forward_rows"] == len(EDITED)  # the rows are a base and a delta
    before_answers = answers(store)
    kill_at(store, corpus(src, EDITED | {7, 8}), "rows-written-whole", tmp_path / "marker")
    assert (store / "CURRENT").read_text().strip() == live.name
    found = verify(Store(store))
    assert found.ok, [(f.path, f.detail) for f in found.damaged]
    assert answers(store) == before_answers
    report = build([src], store, embedder=FakeEmbedder(), index_type="ivf")
    assert report.changed == 2 and verify(Store(store)).ok
    assert not list((store / "generations").glob(".tmp-*"))
    fresh = tmp_path / "f"
    build([corpus(tmp_path / "b.jsonl", EDITED | {7, 8})], fresh, embedder=FakeEmbedder())
    a, b = whole_lexical(store), whole_lexical(fresh)
    assert all(np.array_equal(a[k], b[k]) for k in b)
