"""kill -9 a real `paperscope index` at several points; the store must stay usable and resumable."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import TENSOR_PROGRAMS_V

from paperscope.corpus import bundled_corpus
from paperscope.explorer import Explorer
from paperscope.pipeline import build

pytestmark = pytest.mark.model


def staged_rows(store: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{store / 'staging.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return int(con.execute("SELECT count(*) FROM vectors").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def tmp_vectors_exist(store: Path) -> bool:
    return any((store / "generations").glob(".tmp-*/vectors.npy"))


def run_and_kill(store: Path, when: Callable[[], bool], timeout: float = 240) -> bool:
    """Start a full index, SIGKILL it once ``when()`` holds; False if it finished first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "paperscope.cli",
            "index",
            str(bundled_corpus()),
            "--store",
            str(store),
            "--chunk-size",
            "16",
            "-q",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if when():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    return False


def test_kill_9_at_several_points_then_resume(tmp_path: Path, real_store: Path) -> None:
    store = tmp_path / "s"
    first_page = sorted(bundled_corpus().iterdir())[0]
    build([first_page], store)
    base_generation = (store / "CURRENT").read_text()

    points = {
        "while starting": lambda: True,
        "after 2 chunks": lambda: staged_rows(store) >= 32,
        "after 10 chunks": lambda: staged_rows(store) >= 160,
    }
    staged_before = 0
    for label, when in points.items():
        killed = run_and_kill(store, when)
        assert killed, f"run finished before the kill point {label!r}"
        # Readers still see the previous complete generation and it answers queries.
        assert (store / "CURRENT").read_text() == base_generation, label
        ex = Explorer(store)
        assert len(ex) == 76 and len(ex.related(ex.paper(next(ex.papers()).id).id, k=5)) == 5
        # Checkpoints only grow: a kill loses at most the chunk in flight.
        staged = staged_rows(store)
        assert staged >= staged_before, label
        staged_before = staged

    report = build([bundled_corpus()], store, chunk_size=16)
    assert report.papers == 432 and report.resumed == staged_before
    assert report.embedded == 432 - 76 - staged_before
    resumed, clean = Explorer(store), Explorer(real_store)
    clean_rows = {p.id: i for i, p in enumerate(clean.papers())}
    for i, p in enumerate(resumed.papers()):
        assert float(resumed.index.vectors[i] @ clean.index.vectors[clean_rows[p.id]]) > 0.9999, p.title
    assert [h.paper.id for h in resumed.related(TENSOR_PROGRAMS_V, k=5)] == [
        h.paper.id for h in clean.related(TENSOR_PROGRAMS_V, k=5)
    ]


def test_kill_9_during_assembly_keeps_previous_generation(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build([sorted(bundled_corpus().iterdir())[0]], store)
    before = (store / "CURRENT").read_text()
    if run_and_kill(store, lambda: tmp_vectors_exist(store)):
        assert (store / "CURRENT").read_text() == before
        assert len(Explorer(store)) == 76
    final = build([bundled_corpus()], store)
    assert final.papers == 432 and len(Explorer(store)) == 432
    assert not list((store / "generations").glob(".tmp-*"))
