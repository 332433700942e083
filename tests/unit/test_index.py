"""Index type by size or by force, recall measured at build time and recorded, parameters on load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import FakeEmbedder
from synthetic import clustered

from paperscope import index
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(20_000, 384, seed=3)


def test_size_rule_and_list_count() -> None:
    assert index.choose_type(1) == "flat"
    assert index.choose_type(index.FLAT_MAX) == "flat"
    assert index.choose_type(index.FLAT_MAX + 1) == "ivf"
    assert index.ivf_lists(1_000_000) == 2000
    # Never fewer than 39 training points per list (FAISS's minimum), never zero lists.
    assert index.ivf_lists(400) == 10 and index.ivf_lists(5) == 1
    with pytest.raises(ValueError, match="index type must be one of flat, ivf, hnsw, got 'foo'"):
        index.check_type("foo")


def brute_recall(idx: faiss.Index, vectors: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    """Recall@k of idx against a plain numpy scan, self excluded (independent of index.recall)."""
    sims = vectors[rows] @ vectors.T
    sims[np.arange(len(rows)), rows] = -np.inf
    exact = np.argsort(-sims, axis=1)[:, :k]
    _, got = idx.search(np.ascontiguousarray(vectors[rows]), k + 1)
    found = [set(g[g != r][:k].tolist()) & set(e.tolist()) for g, e, r in zip(got, exact, rows)]
    return sum(map(len, found)) / (k * len(rows))


@pytest.mark.parametrize("kind,param", [("ivf", "nprobe"), ("hnsw", "efSearch")])
def test_forced_type_records_recall_and_answers_after_load(
    tmp_path: Path, vectors: np.ndarray, kind: str, param: str
) -> None:
    idx, info = index.build(vectors, kind)
    assert info["type"] == kind and info["chosen_by"] == "user"
    assert info["faiss"] == type(idx).__name__
    assert info["recall_queries"] == index.RECALL_QUERIES
    assert info["recall_at_10"] >= 0.9
    assert param in info["params"] and info["build_seconds"] >= 0
    # The recorded recall is the last point of the tuning curve, for the parameter kept.
    assert info["tuning"][param][str(info["params"][param])] == info["recall_at_10"]

    index.save(idx, tmp_path / "i.faiss")
    loaded = index.load(tmp_path / "i.faiss", len(vectors), vectors.shape[1], info)
    assert type(loaded) is type(idx)
    # Queries not used for tuning: the recall holds on fresh ones, measured independently.
    fresh = np.random.default_rng(99).choice(len(vectors), size=300, replace=False)
    measured = brute_recall(loaded, vectors, fresh)
    assert measured >= 0.9
    assert abs(measured - info["recall_at_10"]) < 0.05


def test_flat_is_exact(vectors: np.ndarray) -> None:
    idx, info = index.build(vectors[:3000])
    assert (info["type"], info["chosen_by"], info["recall_at_10"]) == ("flat", "size", 1.0)
    assert brute_recall(idx, vectors[:3000], np.arange(0, 3000, 37)) == 1.0


def test_measured_recall_matches_a_plain_scan(vectors: np.ndarray) -> None:
    # index.recall (used at build time) agrees with the independent numpy version.
    idx, _ = index.build(vectors, "ivf")
    rows = np.arange(0, len(vectors), 97)
    truth = index.exact_neighbours(vectors, rows, 10)
    for nprobe in (1, 4):
        index.configure(idx, {"params": {"nprobe": nprobe}})
        assert index.recall(idx, vectors, rows, truth) == pytest.approx(brute_recall(idx, vectors, rows), abs=1e-3)


@pytest.mark.parametrize(
    "kind,param,attr",
    [
        ("ivf", "nprobe", lambda i: faiss.extract_index_ivf(i).nprobe),
        ("hnsw", "efSearch", lambda i: faiss.downcast_index(i).hnsw.efSearch),
    ],
)
def test_load_applies_the_manifest_parameters_not_the_files(
    tmp_path: Path, vectors: np.ndarray, kind: str, param: str, attr: object
) -> None:
    idx, info = index.build(vectors[:4000], kind)
    index.configure(idx, {"params": {param: 3}})  # what the file will carry
    index.save(idx, tmp_path / "i.faiss")
    info["params"][param] = 7
    loaded = index.load(tmp_path / "i.faiss", 4000, 384, info)
    assert attr(loaded) == 7  # type: ignore[operator]


def test_pipeline_records_index_block_and_links_unchanged_vectors(
    tmp_path: Path, fake: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    first = Store(store).require_current()
    block = first.manifest["index"]
    assert (block["type"], block["chosen_by"], block["recall_at_10"]) == ("flat", "size", 1.0)

    # Forcing another type on an unchanged corpus rebuilds the index only (no embedding).
    r = build(None, store, embedder=fake, index_type="hnsw")
    assert not r.nothing_to_do and r.embedded == 0
    gen = Store(store).require_current()
    block = gen.manifest["index"]
    assert (block["type"], block["chosen_by"], block["faiss"]) == ("hnsw", "user", "IndexHNSWFlat")
    assert 0.9 <= block["recall_at_10"] <= 1.0 and block["recall_queries"] == 432
    ex = Explorer(store, embedder=fake)
    assert ex.index.faiss.hnsw.efSearch == block["params"]["efSearch"]
    hits = ex.related("Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer", k=10)
    assert len(hits) == 10 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)

    # Same type again, or no type: nothing to do; the forced type is kept.
    assert build(None, store, embedder=fake, index_type="hnsw").nothing_to_do
    assert build(None, store, embedder=fake).nothing_to_do

    # Identical vectors (a metadata-only change): the index file is hard-linked, its block kept.
    p = next(ex.papers())
    (tmp_path / "meta.jsonl").write_text(
        json.dumps({"id": p.id, "title": p.title, "abstract": p.abstract, "date": "1999-01-01"}) + "\n"
    )
    r = build([tmp_path / "meta.jsonl"], store, embedder=fake)
    assert (r.updated, r.embedded) == (1, 0)
    linked = Store(store).require_current()
    assert os.stat(linked.file("index.faiss")).st_ino == os.stat(gen.file("index.faiss")).st_ino
    assert linked.manifest["index"]["type"] == "hnsw"
    assert linked.manifest["index"]["linked_from"] == gen.name

    # Above the size threshold the rule picks IVF.
    monkeypatch.setattr(index, "FLAT_MAX", 100)
    build(None, tmp_path / "t", embedder=fake)
    auto = Store(tmp_path / "t").require_current().manifest["index"]
    assert (auto["type"], auto["chosen_by"]) == ("ivf", "size") and auto["params"]["nlist"] == index.ivf_lists(432)
    assert Explorer(tmp_path / "t", embedder=fake).index.faiss.nprobe == auto["params"]["nprobe"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paperscope.cli", *args], capture_output=True, text=True, env=os.environ, timeout=120
    )


@pytest.mark.parametrize(
    "args,message",
    [
        (["--index-type", "foo"], "'foo' is not one of 'auto', 'flat', 'ivf', 'hnsw'"),
        (["--engine", "foo"], "'foo' is not one of 'local', 'ray'"),
    ],
)
def test_bad_index_options_are_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    out = cli("index", "--store", str(tmp_path / "s"), *args)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr
    assert not (tmp_path / "s").exists()


def test_engine_ray_without_ray_installed_is_one_line_exit_2(tmp_path: Path) -> None:
    # A directory earlier on sys.path with a ray package that fails to import, as if not installed.
    fake_site = tmp_path / "site"
    (fake_site / "ray").mkdir(parents=True)
    (fake_site / "ray" / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_site), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "paperscope.cli", "index", "--store", str(tmp_path / "s"), "--engine", "ray"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and 'pip install "paperscope[ray]"' in out.stderr
    assert not (tmp_path / "s").exists()


def test_info_shows_the_index_block(tmp_path: Path, fake: FakeEmbedder) -> None:
    build(None, tmp_path / "s", embedder=fake, index_type="ivf")
    block = Store(tmp_path / "s").require_current().manifest["index"]
    out = cli("info", "--store", str(tmp_path / "s"))
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("index"))
    assert f"nprobe={block['params']['nprobe']}" in line and f"recall@10 {block['recall_at_10']:.3f}" in line
