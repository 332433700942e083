"""The vectors as a shared base and a delta of rows (paperscope.overlay): what a reader sees and
what a run of small edits writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder
from hypothesis import given, settings
from hypothesis import strategies as st

from paperscope import overlay
from paperscope.cli import main
from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify


@settings(max_examples=60, deadline=None)
@given(
    n_base=st.integers(1, 40),
    extra=st.integers(0, 8),
    picks=st.lists(st.integers(0, 47), max_size=12),
    index=st.lists(st.integers(-48, 47), max_size=20),
    bounds=st.tuples(st.integers(-60, 60), st.integers(-60, 60), st.sampled_from([None, 1, 2, -1, 3])),
)
def test_layered_vectors_index_as_the_whole_array(
    n_base: int, extra: int, picks: list[int], index: list[int], bounds: tuple[int, int, int | None]
) -> None:
    rng = np.random.default_rng(n_base * 100 + extra)
    n = n_base + extra
    base = rng.standard_normal((n_base, 3)).astype(np.float32)
    rows = np.union1d([p for p in picks if p < n], np.arange(n_base, n)).astype(np.int64)
    delta = rng.standard_normal((len(rows), 3)).astype(np.float32)
    whole = np.concatenate([base, np.zeros((extra, 3), np.float32)])
    whole[rows] = delta
    v = overlay.LayeredVectors(base, delta, rows, n)
    assert v.shape == whole.shape and len(v) == n and np.array_equal(np.asarray(v), whole)
    a, b, step = bounds
    assert np.array_equal(v[a:b:step], whole[a:b:step])
    valid = np.array([i for i in index if -n <= i < n], dtype=np.int64)
    assert np.array_equal(v[valid], whole[valid])
    assert np.array_equal(v[valid.reshape(-1, 1)], whole[valid.reshape(-1, 1)])  # any shape of rows
    for i in valid.tolist():
        assert np.array_equal(v[i], whole[i])
    assert v[[]].shape == whole[[]].shape == (0, 3)
    with pytest.raises(IndexError):
        v[n]


def corpus(n: int, edited: set[int], salt: str = "") -> list[dict[str, object]]:
    return [
        {"id": f"p{i}", "title": f"Paper {i} on topic {i % 7}", "abstract": f"words {i} topic {i % 7}"
         + (f" edited {salt}" if i in edited else "")}
        for i in range(n)
    ]  # fmt: skip


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_small_edits_add_to_the_delta_until_a_new_base_is_written(tmp_path: Path) -> None:
    """Each run links the base and writes the rows written since it; past DELTA_MAX of the papers it
    writes the whole file again. Every generation reads as a from-scratch build of its inputs."""
    fake = FakeEmbedder()
    src, store = tmp_path / "a.jsonl", tmp_path / "s"
    n = 200
    build([write(src, corpus(n, set()))], store, embedder=fake)
    base_inode = Store(store).require_current().file("vectors.npy").stat().st_ino  # the first generation's
    edits = [({1, 2, 3}, n), ({50, 2}, n + 5), ({120, 121, 122, 123, 124, 125}, n + 5), (set(range(60, 80)), n + 5)]
    done: set[int] = set()
    for k, (edited, size) in enumerate(edits):
        done |= edited
        rows = corpus(size, done, salt=str(k))
        report = build([write(src, rows)], store, embedder=fake)
        gen = Store(store).require_current()
        fresh = tmp_path / f"fresh{k}"
        build([write(tmp_path / f"f{k}.jsonl", rows)], fresh, embedder=fake)
        assert np.array_equal(gen.load_vectors(mmap=False), Store(fresh).require_current().load_vectors(mmap=False))
        with Explorer(store, embedder=fake) as a, Explorer(fresh, embedder=fake) as b:
            probe = [p.id for p in a.papers()][::25]
            assert [[h.paper.id for h in a.related(i, k=5, mode="dense")] for i in probe] == [
                [h.paper.id for h in b.related(i, k=5, mode="dense")] for i in probe
            ]
        assert verify(Store(store)).ok
        written_since = len(done | set(range(n, size)))
        if written_since <= overlay.DELTA_MAX * size:
            assert gen.manifest["vectors"] == {"delta_rows": written_since}
            assert gen.file(overlay.BASE_FILE).stat().st_ino == base_inode and not gen.file("vectors.npy").exists()
            assert overlay.BASE_FILE in report.carried and overlay.DELTA_FILE not in report.carried
            shown = CliRunner().invoke(main, ["info", "--store", str(store)]).output
            assert f"vectors  the base written by g000001 and a delta of {written_since} rows" in shown
        else:  # the last edit: 34 rows of 205 written since the base: a new base, no delta
            assert k == len(edits) - 1 and "vectors" not in gen.manifest
            assert not any(gen.file(f).exists() for f in overlay.LAYERED) and "vectors.npy" not in report.carried


def test_a_damaged_delta_is_named(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src, store = tmp_path / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(100, set()))], store, embedder=fake)
    build([write(src, corpus(100, {5, 9}))], store, embedder=fake)
    gen = Store(store).require_current()
    rows_file = gen.file(overlay.DELTA_ROWS_FILE)
    np.save(rows_file, np.array([9, 5], dtype=np.int64))  # same size, out of order
    with pytest.raises(StoreError, match=rf"{overlay.DELTA_ROWS_FILE}: damaged"):
        Explorer(store, embedder=fake)
    found = verify(Store(store))
    assert not found.ok and [Path(f.path).name for f in found.damaged] == [overlay.DELTA_ROWS_FILE]


def test_prune_over_a_delta_writes_the_vectors_whole(tmp_path: Path) -> None:
    """--prune renumbers rows, which no delta can follow: the vectors are written whole, as a fresh build's."""
    fake = FakeEmbedder()
    src, store = tmp_path / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(120, set()))], store, embedder=fake)
    build([write(src, corpus(120, {4, 7}))], store, embedder=fake)
    assert Store(store).require_current().manifest["vectors"] == {"delta_rows": 2}
    kept = [r for r in corpus(120, {4, 7}) if r["id"] not in {"p0", "p50"}]
    report = build([write(src, kept)], store, embedder=fake, prune=True)
    assert report.removed == 2
    gen = Store(store).require_current()
    assert "vectors" not in gen.manifest and gen.file("vectors.npy").exists()
    assert not any(gen.file(f).exists() for f in overlay.LAYERED)
    build([write(tmp_path / "f.jsonl", kept)], tmp_path / "f", embedder=fake)
    assert np.array_equal(gen.load_vectors(mmap=False), Store(tmp_path / "f").require_current().load_vectors())
    assert verify(Store(store)).ok
