"""The build pipeline and the store, with the fake embedder: incremental, atomic, locked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder

from paperscope.corpus import read_corpus
from paperscope.errors import InputError, StoreError, StoreLockedError
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store

ABS = "An abstract long enough to be read as a paper about optimisation of networks. " * 3


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n: int, start: int = 0) -> list[dict[str, object]]:
    return [
        {"id": f"p{i}", "title": f"Paper number {i}", "abstract": f"topic{i % 7} " + ABS, "date": "2024-01-01"}
        for i in range(start, start + n)
    ]


def snapshot(store: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and p.name != ".writer.lock"
    }


def test_bundled_build_round_trips_every_paper(tmp_path: Path, corpus_dir: Path, fake: FakeEmbedder) -> None:
    report = build(None, tmp_path / "s", embedder=fake)
    assert (report.papers, report.added, report.embedded) == (432, 432, 432)
    ex = Explorer(tmp_path / "s", embedder=fake)
    expected = {p.id: p for p in read_corpus([corpus_dir])}
    stored = {p.id: p for p in ex.papers()}
    assert stored == expected
    assert all(stored[i].sources == expected[i].sources for i in expected)
    manifest = ex.info()
    assert manifest["counts"]["papers"] == 432 and manifest["schema_version"] == 1
    assert set(manifest["files"]) == {
        "papers.sqlite",
        "vectors.npy",
        "index.faiss",
        "lexical.npz",
        "lexical-impact.npz",
    }
    vectors = np.load(ex.generation.file("vectors.npy"), allow_pickle=False)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_rerun_unchanged_embeds_nothing_and_keeps_generation(tmp_path: Path, fake: FakeEmbedder) -> None:
    src = jsonl(tmp_path / "a.jsonl", rows(30))
    first = build([src], tmp_path / "s", embedder=fake)
    again = build([src], tmp_path / "s", embedder=FakeEmbedder())
    assert again.nothing_to_do and again.embedded == 0 and again.unchanged == 30
    assert again.generation == first.generation


def test_add_change_metadata_and_prune(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(30))], store, embedder=fake)
    before = Explorer(store, embedder=fake)
    old_vec = {p.id: before.index.vectors[i].copy() for i, p in enumerate(before.papers())}

    data = rows(40)
    data[3]["abstract"] = "entirely new text about diffusion " + ABS  # content change
    data[5]["date"] = "2025-05-05"  # metadata only
    r = build([jsonl(tmp_path / "a.jsonl", data)], store, embedder=fake)
    assert (r.added, r.changed, r.updated, r.embedded, r.papers) == (10, 1, 1, 11, 40)
    ex = Explorer(store, embedder=fake)
    assert ex.paper("p5").date == "2025-05-05"
    new_vec = {p.id: ex.index.vectors[i] for i, p in enumerate(ex.papers())}
    assert np.array_equal(new_vec["p5"], old_vec["p5"]) and not np.array_equal(new_vec["p3"], old_vec["p3"])

    # A second input file adds papers; the first file's papers stay without --prune.
    r = build([jsonl(tmp_path / "b.jsonl", rows(5, start=100))], store, embedder=fake)
    assert (r.added, r.kept_not_in_inputs, r.papers) == (5, 40, 45)
    r = build([tmp_path / "b.jsonl"], store, embedder=fake, prune=True)
    assert (r.removed, r.papers, r.embedded) == (40, 5, 0)
    ex = Explorer(store, embedder=fake)
    assert sorted(p.id for p in ex.papers()) == [f"p{i}" for i in range(100, 105)]
    # Rows were renumbered and still line up with their vectors.
    for i, p in enumerate(ex.papers()):
        assert np.allclose(ex.index.vectors[i], fake.embed_batch([fake.text(p.title, p.abstract)])[0], atol=1e-6)


def test_failed_build_leaves_store_unchanged_and_resumes(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(10))], store, embedder=fake)
    before = snapshot(store)

    class Crashing(FakeEmbedder):
        def embed_batch(self, texts):  # type: ignore[no-untyped-def]
            if len(self.calls) == 3:
                raise KeyboardInterrupt  # like Ctrl-C in the middle of the fourth chunk
            return super().embed_batch(texts)

    with pytest.raises(KeyboardInterrupt):
        build([jsonl(tmp_path / "b.jsonl", rows(100, start=10))], store, embedder=Crashing(), chunk_size=8)
    after = {k: v for k, v in snapshot(store).items() if not k.startswith("staging.sqlite")}
    assert after == {k: v for k, v in before.items() if not k.startswith("staging.sqlite")}
    assert len(Explorer(store, embedder=fake)) == 10

    resumed = FakeEmbedder()
    r = build([tmp_path / "b.jsonl"], store, embedder=resumed, chunk_size=8)
    assert r.resumed == 24 and r.embedded == 76 and r.papers == 110
    clean = tmp_path / "clean"
    build([tmp_path / "a.jsonl"], clean, embedder=fake)
    build([tmp_path / "b.jsonl"], clean, embedder=fake)
    a, b = Explorer(store, embedder=fake), Explorer(clean, embedder=fake)
    assert [p.id for p in a.papers()] == [p.id for p in b.papers()]
    assert np.array_equal(np.asarray(a.index.vectors), np.asarray(b.index.vectors))


def test_input_with_no_paper_is_an_error_and_writes_nothing(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(3))], store, embedder=fake)
    before = snapshot(store)
    bad = jsonl(tmp_path / "bad.jsonl", [{"title": "no abstract"}, {"abstract": "no title"}])
    with pytest.raises(InputError, match="no paper with both a title and an abstract"):
        build([bad], store, embedder=fake)
    assert snapshot(store) == before
    with pytest.raises(InputError):
        build([tmp_path / "missing.csv"], tmp_path / "new", embedder=fake)
    assert Store(tmp_path / "new").current() is None


def test_second_writer_is_refused(tmp_path: Path, fake: FakeEmbedder) -> None:
    st = Store(tmp_path / "s")
    with st.writer(), pytest.raises(StoreLockedError, match="another paperscope index is writing"):
        build([jsonl(tmp_path / "a.jsonl", rows(3))], st, embedder=fake)


def test_model_change_requires_rebuild(tmp_path: Path, fake: FakeEmbedder) -> None:
    src = jsonl(tmp_path / "a.jsonl", rows(5))
    build([src], tmp_path / "s", embedder=fake)
    other = FakeEmbedder(tag="fake-v2")
    with pytest.raises(StoreError, match="--rebuild"):
        build([src], tmp_path / "s", embedder=other)
    r = build([src], tmp_path / "s", embedder=other, rebuild=True)
    assert r.embedded == 5
    assert Explorer(tmp_path / "s", embedder=other).fingerprint == other.fingerprint
    with pytest.raises(StoreError, match="fingerprint"):
        Explorer(tmp_path / "s", embedder=fake)


def test_old_generations_are_dropped(tmp_path: Path, fake: FakeEmbedder) -> None:
    for i in range(4):
        build([jsonl(tmp_path / "a.jsonl", rows(3 + i))], tmp_path / "s", embedder=fake)
    gens = sorted(p.name for p in (tmp_path / "s" / "generations").iterdir())
    assert gens == ["g000003", "g000004"]
    assert (tmp_path / "s" / "CURRENT").read_text().strip() == "g000004"
