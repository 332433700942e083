"""The papers table as a shared base file and a delta of rows (paperscope.layered_papers): what a
reader sees, what a run of small edits writes, and when the file is written whole again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder

from paperscope import layered_papers
from paperscope.cli import main
from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify


def corpus(n: int, edited: dict[int, str], dated: set[int] = frozenset()) -> list[dict[str, object]]:
    return [
        {"id": f"p{i}", "title": f"Paper {i} on topic {i % 7}",
         "abstract": f"words {i} topic {i % 7}" + (f" edited {edited[i]}" if i in edited else ""),
         "authors": [f"A{i % 5}", f"B{i % 3}"], "date": "2024-03-01" if i in dated else f"2023-0{1 + i % 9}-01"}
        for i in range(n)
    ]  # fmt: skip


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def table(store: Path) -> list[tuple[object, ...]]:
    """Every row and column of the live generation's papers, as its connection reads them."""
    con = Store(store).require_current().connect()
    try:
        return con.execute("SELECT * FROM papers ORDER BY row").fetchall()
    finally:
        con.close()


def test_small_edits_add_to_the_delta_until_the_file_is_written_whole(tmp_path: Path) -> None:
    """Each run links the base and writes the rows written since it (text edits, metadata-only
    updates, new papers, a file read under a second name); a run after the delta passed DELTA_MAX of
    the papers writes the whole file again, and the next starts a delta over it. Every generation
    reads as a from-scratch build of the same inputs: every column of every row, filters, queries."""
    fake = FakeEmbedder()
    src, store, n = tmp_path / "in" / "a.jsonl", tmp_path / "s", 200
    build([write(src, corpus(n, {}))], store, embedder=fake)
    first = Store(store).require_current().file("papers.sqlite").stat().st_ino
    edited: dict[int, str] = {}
    dated: set[int] = set()
    # (texts edited, dates changed, papers): the delta grows 3, 9, 11, 31 (past 10% of 205), then whole.
    steps = [({1, 2, 3}, set(), n), ({50, 2}, set(), n + 5), (set(), {7, 8}, n + 5), (set(range(60, 80)), set(), n + 5)]
    steps += [({9}, set(), n + 5), ({10}, {11}, n + 6)]
    expect = ["delta", "delta", "delta", "delta", "whole", "delta"]
    for k, (texts, dates, size) in enumerate(steps):
        edited.update({i: str(k) for i in texts})
        dated |= dates
        rows = corpus(size, edited, dated)
        # From step 2 on, a second file repeats three papers: they gain its name (sources), nothing else.
        inputs = [write(src, rows)] + ([write(tmp_path / "in" / "b.jsonl", rows[:3])] if k >= 2 else [])
        report = build(inputs, store, embedder=fake)
        gen = Store(store).require_current()
        fresh = tmp_path / f"fresh{k}"
        build([write(tmp_path / f"f{k}" / "a.jsonl", rows)] + inputs[1:], fresh, embedder=fake)
        assert table(store) == table(fresh)
        with Explorer(store, embedder=fake) as a, Explorer(fresh, embedder=fake) as b:
            assert [p.id for p in a.papers()] == [p.id for p in b.papers()]
            for i in ("p2", "p60", "p199"):
                hits = [[(h.paper.id, h.paper.date) for h in x.related(i, k=5, date_from="2023-03")] for x in (a, b)]
                assert hits[0] == hits[1] and hits[0]
            assert [h.paper.id for h in a.search("edited", k=20)] == [h.paper.id for h in b.search("edited", k=20)]
            assert a.table.row_of("Paper 61 on topic 5") == b.table.row_of("Paper 61 on topic 5") == 61
        assert verify(Store(store)).ok
        shown = CliRunner().invoke(main, ["info", "--store", str(store)]).output
        if expect[k] == "delta":
            delta = gen.manifest["papers"]["delta_rows"]
            assert layered_papers.BASE_FILE in report.carried and "papers.sqlite" not in report.carried
            assert gen.file("papers.sqlite").stat().st_size < gen.file(layered_papers.BASE_FILE).stat().st_size
            if k < 4:
                assert gen.file(layered_papers.BASE_FILE).stat().st_ino == first
                assert delta == len(set(edited) | dated | set(range(n, size)) | ({0, 1, 2} if k >= 2 else set()))
            base = gen.manifest["files"][layered_papers.BASE_FILE]["written_by"]
            assert f"papers  {size} (the base written by {base} and a delta of {delta} rows)" in shown
        else:
            assert "papers" not in gen.manifest and not gen.file(layered_papers.BASE_FILE).exists()
            assert f"papers  {size}\n" in shown
    assert report.changed == 1 and report.updated == 1  # the last step: one text, one date


def test_a_paperscope_from_before_refuses_a_delta_and_damage_is_named(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src, store = tmp_path / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(60, {}))], store, embedder=fake)
    build([write(src, corpus(60, {5: "x"}))], store, embedder=fake)
    gen = Store(store).require_current()
    # What older code runs on open: the delta file alone has no papers table to answer from.
    with sqlite3.connect(gen.file("papers.sqlite")) as con, pytest.raises(sqlite3.OperationalError, match="papers"):
        con.execute("SELECT max(rowid) FROM papers")
    base = gen.file(layered_papers.BASE_FILE)
    data = bytearray(base.read_bytes())
    data[:16] = b"not a database!!"  # same size: only the digest or SQLite finds it
    base.write_bytes(bytes(data))  # the previous generation's papers.sqlite too: the same inode
    with pytest.raises(StoreError, match=rf"{layered_papers.BASE_FILE}: damaged"):
        Explorer(store, embedder=fake)
    found = verify(Store(store))
    assert not found.ok and layered_papers.BASE_FILE in [Path(f.path).name for f in found.damaged]


def test_prune_over_a_delta_writes_the_papers_whole(tmp_path: Path) -> None:
    """--prune renumbers rows, which no delta can follow: the papers are written whole, as a fresh build's."""
    fake = FakeEmbedder()
    src, store = tmp_path / "in" / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(120, {}))], store, embedder=fake)
    build([write(src, corpus(120, {4: "a", 7: "a"}))], store, embedder=fake)
    assert Store(store).require_current().manifest["papers"] == {"delta_rows": 2}
    kept = [r for r in corpus(120, {4: "a", 7: "a"}) if r["id"] not in {"p0", "p50"}]
    report = build([write(src, kept)], store, embedder=fake, prune=True)
    assert report.removed == 2
    gen = Store(store).require_current()
    assert "papers" not in gen.manifest and not gen.file(layered_papers.BASE_FILE).exists()
    build([write(tmp_path / "f" / "a.jsonl", kept)], tmp_path / "fs", embedder=fake)
    assert table(store) == table(tmp_path / "fs")
    assert verify(Store(store)).ok


def test_delta_max_zero_copies_the_whole_file_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeEmbedder()
    src, store = tmp_path / "in" / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(80, {}))], store, embedder=fake)
    build([write(src, corpus(80, {3: "a"}))], store, embedder=fake)
    assert Store(store).require_current().manifest["papers"] == {"delta_rows": 1}
    monkeypatch.setattr(layered_papers, "DELTA_MAX", 0.0)
    for k, edit in enumerate(({3: "a", 4: "b"}, {3: "a", 4: "b", 5: "c"})):  # the delta applied, then a copy
        build([write(src, corpus(80, edit))], store, embedder=fake)
        gen = Store(store).require_current()
        assert "papers" not in gen.manifest and not gen.file(layered_papers.BASE_FILE).exists()
        build([write(tmp_path / f"f{k}" / "a.jsonl", corpus(80, edit))], tmp_path / f"fs{k}", embedder=fake)
        assert table(store) == table(tmp_path / f"fs{k}")


def test_a_row_written_back_to_the_base_text_leaves_the_delta(tmp_path: Path) -> None:
    """An edit undone since the base holds no row in the delta: the view reads the base's row (p9
    is read twice and merged under one id, as a repeated entry of a snapshot is)."""
    fake = FakeEmbedder()
    src, store = tmp_path / "in" / "a.jsonl", tmp_path / "s"
    rows = corpus(60, {})
    build([write(src, rows + [rows[9]])], store, embedder=fake)  # p9 twice: merged
    twice = corpus(60, {5: "x", 9: "y"})
    build([write(src, twice + [twice[9]])], store, embedder=fake)
    assert Store(store).require_current().manifest["papers"] == {"delta_rows": 2}
    report = build([write(src, rows + [rows[9]])], store, embedder=fake)  # both edits undone
    assert report.changed == 2 and Store(store).require_current().manifest["papers"] == {"delta_rows": 0}
    build([write(tmp_path / "f" / "a.jsonl", rows + [rows[9]])], tmp_path / "fs", embedder=fake)
    assert table(store) == table(tmp_path / "fs")
    assert verify(Store(store)).ok
