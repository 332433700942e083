"""Readers during a re-index: an open Explorer keeps answering from its generation while another
process builds and swaps in the next one; a new Explorer sees the new generation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from conftest import FakeEmbedder

from paperscope.explorer import Explorer
from paperscope.pipeline import build

TESTS = Path(__file__).resolve().parents[1]  # the helpers (conftest, corrupt_child, ...) live in tests/

# The writer: a fake embedder that is slow per batch, so the re-index spans many reader queries.
WRITER = """
import sys, time
sys.path.insert(0, sys.argv[3])
from conftest import FakeEmbedder
from paperscope.pipeline import build

class Slow(FakeEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.03)
        return super().embed_batch(texts)

print(build([sys.argv[2]], sys.argv[1], embedder=Slow(), chunk_size=64).generation)
"""


def test_open_explorer_answers_while_another_process_reindexes(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    ex = Explorer(store, embedder=fake)
    before = ex.generation.name
    probes = [p.id for p in ex.papers()][:25]
    expected = {pid: [h.paper.id for h in ex.related(pid, k=5)] for pid in probes}
    expected_search = [h.paper.id for h in ex.search("scaling laws for language models", k=5)]

    extra = tmp_path / "more.jsonl"
    abstract = "A study of optimisation and generalisation in deep networks, with experiments. " * 3
    extra.write_text(
        "".join(
            json.dumps(
                {"id": f"new{i}", "title": f"New paper {i} on topic {i % 13}", "abstract": f"topic{i % 13} {abstract}"}
            )
            + "\n"
            for i in range(2000)
        )
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), str(extra), str(TESTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )

    problems: list[str] = []
    counts = {"during": 0, "after": 0}
    stop = threading.Event()

    def reader() -> None:
        i = 0
        while not stop.is_set():
            running = writer.poll() is None
            pid = probes[i % len(probes)]
            try:
                got = [h.paper.id for h in ex.related(pid, k=5)]
                if got != expected[pid]:
                    problems.append(f"related({pid}) changed under an open Explorer: {got} != {expected[pid]}")
                if (
                    i % 10 == 0
                    and [h.paper.id for h in ex.search("scaling laws for language models", k=5)] != expected_search
                ):
                    problems.append("search changed under an open Explorer")
            except Exception as e:  # any exception is a failure of the guarantee
                problems.append(f"{type(e).__name__}: {e}")
            counts["during" if running else "after"] += 1
            i += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        out, err = writer.communicate(timeout=300)
        # Keep reading the old generation for a while after the swap.
        while counts["after"] < 200 and thread.is_alive():
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=60)
    assert writer.returncode == 0, err
    assert not problems, problems[:5]
    assert counts["during"] > 0 and counts["after"] >= 200

    new = Explorer(store, embedder=fake)
    assert new.generation.name == out.strip().splitlines()[-1] != before
    assert len(new) == 432 + 2000 and len(ex) == 432
    assert new.paper("new7").title == "New paper 7 on topic 7"
    assert [h.paper.id for h in new.related(probes[0], k=5)]  # answers from the new generation
    ex.close()
    new.close()
