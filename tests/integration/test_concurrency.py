"""Concurrency: one Explorer shared by many threads, and readers opening the store during re-indexes.

The figures (calls, threads, mismatches, wall time) are printed; run with ``-s`` to see them,
or set PAPERSCOPE_CONCURRENCY_OUT to append them to a file as JSON lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import FakeEmbedder

from paperscope.explorer import Explorer
from paperscope.pipeline import build

TESTS = Path(__file__).resolve().parents[1]  # the helpers (conftest, corrupt_child, ...) live in tests/
CALLS, THREADS = 1000, 16


def _report(figures: dict[str, object]) -> None:
    print(json.dumps(figures))
    if out := os.environ.get("PAPERSCOPE_CONCURRENCY_OUT"):
        with open(out, "a") as fh:
            fh.write(json.dumps(figures) + "\n")


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("conc") / "store"
    build(None, store, embedder=FakeEmbedder())
    return store


def _hammer(ex: Explorer, mode: str | None, label: str) -> None:
    probes = [p.id for p in ex.papers()]
    kwargs = {} if mode is None else {"mode": mode}

    def answer(pid: str) -> list[tuple[str, float]]:
        return [(h.paper.id, h.score) for h in ex.related(pid, k=10, **kwargs)]

    expected = {pid: answer(pid) for pid in probes}  # sequential: the reference
    jobs = [probes[(i * 7) % len(probes)] for i in range(CALLS)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        got = list(pool.map(answer, jobs))
    wall = time.perf_counter() - t0
    mismatches = sum(g != expected[pid] for pid, g in zip(jobs, got))
    _report(
        {
            "test": label,
            "mode": mode or "default (hybrid)",
            "calls": CALLS,
            "threads": THREADS,
            "distinct_papers": len(set(jobs)),
            "mismatches": mismatches,
            "wall_seconds": round(wall, 2),
        }
    )
    assert mismatches == 0


@pytest.mark.parametrize("mode", [None, "dense", "lexical"])
def test_one_explorer_shared_by_16_threads_answers_as_sequential(fake_store: Path, mode: str | None) -> None:
    with Explorer(fake_store, embedder=FakeEmbedder()) as ex:
        _hammer(ex, mode, "fake store, 432 papers")


def test_shared_explorer_on_the_real_store(real_store: Path) -> None:
    with Explorer(real_store) as ex:
        _hammer(ex, None, "real store (all-MiniLM-L6-v2), 432 papers")


WRITER = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from conftest import FakeEmbedder
from paperscope.pipeline import build

class Slow(FakeEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.02)
        return super().embed_batch(texts)

store, work = Path(sys.argv[1]), Path(sys.argv[3])
for g in range(4):
    src = work / f"batch{g}.jsonl"
    src.write_text("".join(json.dumps({"id": f"b{g}-{i}", "title": f"Batch {g} paper {i}",
                                       "abstract": f"batch{g} topic{i % 7} " + "words about models and data " * 12})
                           + "\\n" for i in range(150)))
    print(build([src], store, embedder=Slow(), chunk_size=16).generation, flush=True)
"""


def test_an_open_whose_generation_is_pruned_meanwhile_opens_the_new_current_one(
    tmp_path: Path, fake_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the test below found once in CI (1 of 65 opens), made certain: two re-indexes
    commit after an open has read CURRENT and before it reaches papers.sqlite, which prunes the
    generation it was opening. That is not damage; the open goes on to the new current one."""
    import shutil

    from paperscope import store as store_mod

    store = tmp_path / "store"
    shutil.copytree(fake_store, store)
    opened: list[str] = []
    check = store_mod.Generation.check

    def check_then_two_commits(gen: store_mod.Generation, **kw: object) -> None:
        check(gen, **kw)
        opened.append(gen.path.name)
        if len(opened) == 1:  # the first open only: two more generations, so this one is pruned
            for g in range(2):
                src = tmp_path / f"more{g}.jsonl"
                src.write_text(
                    "".join(
                        json.dumps({"id": f"m{g}-{i}", "title": f"More {g} {i}", "abstract": f"more{g} words {i}"})
                        + "\n"
                        for i in range(20)
                    )
                )
                build([src], store, embedder=FakeEmbedder())
            assert not gen.path.exists()

    monkeypatch.setattr(store_mod.Generation, "check", check_then_two_commits)
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        assert len(ex) == 432 + 40 and ex.generation.path.exists()
        assert opened == [opened[0], ex.generation.name] and opened[0] != ex.generation.name
        assert len(ex.related(next(ex.papers()).id, k=5)) == 5


def test_readers_opening_during_repeated_reindexes_see_complete_generations(tmp_path: Path, fake_store: Path) -> None:
    import shutil

    store = tmp_path / "store"
    shutil.copytree(fake_store, store)
    fake = FakeEmbedder()
    sizes = {432 + 150 * g for g in range(5)}
    early = Explorer(store, embedder=fake)  # opened now, first queried after its generation is deleted
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store), str(TESTS), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ,
    )
    problems: list[str] = []
    stats = {"opens": 0, "queries": 0, "generations": set()}
    lock = threading.Lock()

    def reader(seed: int) -> None:
        i = seed
        while writer.poll() is None:
            try:
                with Explorer(store, embedder=fake) as ex:
                    n = len(ex)
                    if n not in sizes or n != ex.info()["counts"]["papers"]:
                        problems.append(f"{ex.generation.name}: {n} papers, not a complete generation")
                    rows = list(ex.papers())
                    if len(rows) != n:
                        problems.append(f"{ex.generation.name}: {len(rows)} rows for {n} papers")
                    pid = rows[i % n].id
                    for mode in ("hybrid", "dense", "lexical"):
                        hits = ex.related(pid, k=5, mode=mode)
                        ids = [h.paper.id for h in hits]
                        if len(ids) != 5 or pid in ids or len(set(ids)) != 5:
                            problems.append(f"related({pid}, {mode}) = {ids}")
                        if [ex.paper(x).id for x in ids] != ids:
                            problems.append(f"hits of {pid} not in their own generation")
                    with lock:
                        stats["opens"] += 1
                        stats["queries"] += 3
                        stats["generations"].add(ex.generation.name)
            except Exception as e:  # noqa: BLE001 - any exception breaks the guarantee
                problems.append(f"{type(e).__name__}: {e}")
            i += 1

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    out, err = writer.communicate(timeout=600)
    for t in threads:
        t.join(timeout=120)
    assert writer.returncode == 0, err
    gens = out.split()
    assert len(gens) == 4 and sorted(p.name for p in (store / "generations").iterdir()) == gens[-2:]
    # The early Explorer's generation directory is gone; it still answers from it.
    assert not early.generation.path.exists()
    assert len(early) == 432 and len(early.related(next(early.papers()).id, k=5)) == 5
    early.close()
    _report(
        {
            "test": "readers opening during 4 re-indexes",
            "opens": stats["opens"],
            "queries": stats["queries"],
            "generations_seen": len(stats["generations"]),
            "problems": len(problems),
        }
    )
    assert not problems, problems[:5]
    assert stats["opens"] > 0 and len(stats["generations"]) >= 2
