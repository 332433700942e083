"""Topic map with the fast fake embedder: determinism, coverage, stability, labels, outputs, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paperscope.cli import main
from paperscope.explorer import Explorer
from paperscope.map import MapParams, compute_map
from paperscope.map.labels import keywords
from paperscope.map.terms import terms, tokens
from paperscope.pipeline import build
from paperscope.render import topics_document
from paperscope.render.html import safe_json


def test_tokens_keep_field_terms() -> None:
    toks = tokens("We tune u-μP and muP with LoRA adapters for 3D Gaussian splatting on GPT-4, and don't stop.")
    for term in ("u-μP", "muP", "LoRA", "3D", "GPT-4", "Gaussian"):
        assert term in toks
    assert "and" not in toks and "don't" not in toks
    assert "diffusion models" in terms("Score-based diffusion models, sampled fast")
    assert "adaptation lora" not in terms("Low-rank adaptation (LoRA)")  # no phrase across punctuation
    assert "μp" in terms("muP") and "μp" in terms("µP")  # micro sign and spelled-out forms fold together


def test_ctfidf_keywords_pick_distinctive_terms() -> None:
    texts = [
        "LoRA adapters for fine-tuning",
        "LoRA low-rank adapters",
        "LoRA rank adapters merge",
        "diffusion models sample images",
        "score diffusion models",
        "diffusion models denoise",
    ]
    kw = keywords(texts, np.array([0, 0, 0, 1, 1, 1]), n=3)
    assert kw[0][0] in ("LoRA", "adapters") and "diffusion models" in kw[1]


@pytest.fixture(scope="module")
def fake_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import FakeEmbedder

    store = tmp_path_factory.mktemp("map") / "store"
    build(None, store, embedder=FakeEmbedder())
    return store


def _inputs(ex: Explorer) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]:
    rows = list(ex.table.columns("id", "title", "abstract", "content_hash"))
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [f"{r[1]}. {r[2]}" for r in rows],
        [r[3] for r in rows],
        np.asarray(ex.index.vectors),
    )


def test_map_is_deterministic_and_covers_every_paper(fake_store: Path) -> None:
    with Explorer(fake_store, embedder=None) as ex:
        ids, titles, texts, hashes, vecs = _inputs(ex)
    a = compute_map(ids, titles, texts, hashes, vecs, "g", MapParams())
    b = compute_map(ids, titles, texts, hashes, vecs, "g", MapParams())
    assert np.array_equal(a.coords, b.coords) and all(np.array_equal(x, y) for x, y in zip(a.levels, b.levels))
    assert a.coords.shape == (432, 2) and np.isfinite(a.coords).all()
    coarse, fine = a.levels
    assert (coarse >= 0).all() and (fine >= 0).all()
    parents = {t.id: t.parent for t in a.topics if t.level == 1}
    assert all(parents[int(f)] == int(c) for f, c in zip(fine, coarse))  # fine topics nest in themes
    assert sum(t.size for t in a.topics if t.level == 1) == 432 == sum(t.size for t in a.topics if t.level == 0)
    assert 0 <= a.low_confidence < 432 and a.stats["low_confidence"] == a.low_confidence
    c = compute_map(ids, titles, texts, hashes, vecs, "g", MapParams(seed=7))
    assert not np.array_equal(a.coords, c.coords)  # the seed is really used


def test_growing_corpus_keeps_old_papers_and_topic_ids(fake_store: Path) -> None:
    with Explorer(fake_store) as ex:
        ids, titles, texts, hashes, vecs = _inputs(ex)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(ids))
    old, new = np.sort(order[:346]), np.sort(order[346:])  # 80% then all

    def pick(idx: np.ndarray) -> tuple:
        return (
            [ids[i] for i in idx],
            [titles[i] for i in idx],
            [texts[i] for i in idx],
            [hashes[i] for i in idx],
            vecs[idx],
        )

    first = compute_map(*pick(old), "g1", MapParams())
    grown = compute_map(*pick(np.arange(len(ids))), "g2", MapParams(), previous=first)
    assert grown.stats["reused_fit"] and grown.stats["placed"] == len(new)
    pos = {pid: i for i, pid in enumerate(grown.ids)}
    moved = [np.linalg.norm(grown.coords[pos[pid]] - first.coords[i]) for i, pid in enumerate(first.ids)]
    kept = np.mean([grown.levels[1][pos[pid]] == first.levels[1][i] for i, pid in enumerate(first.ids)])
    assert float(np.median(moved)) == 0.0 and kept == 1.0
    assert np.isfinite(grown.coords).all() and (grown.levels[1] >= 0).all()
    # A fresh re-fit of the grown corpus still carries most topic ids over by member overlap.
    refit = compute_map(*pick(np.arange(len(ids))), "g2", MapParams(refit_growth=0.0), previous=first)
    assert not refit.stats["reused_fit"]
    same = np.mean([refit.levels[1][pos[pid]] == first.levels[1][i] for i, pid in enumerate(first.ids)])
    old_ids = {t.id for t in first.topics if t.level == 1}
    assert same > 0.5 and len(old_ids & {t.id for t in refit.topics if t.level == 1}) >= len(old_ids) // 2


def test_map_command_writes_outputs_and_reuses_saved_map(fake_store: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["map", "--store", str(fake_store), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "topics.json").read_text())
    assert len(doc["papers"]) == 432 and {"id", "title", "x", "y", "topics"} <= set(doc["papers"][0])
    assert {"id", "level", "label", "keywords", "size"} <= set(doc["topics"][0])
    assert (tmp_path / "out" / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (tmp_path / "out" / "map.html").read_text()
    assert "http://" not in html and "https://" not in html.split("</style>")[0]  # nothing fetched from a CDN
    res2 = runner.invoke(main, ["map", "--store", str(fake_store), "--out", str(tmp_path / "out2")])
    assert res2.exit_code == 0 and "kept from the saved map" in res2.output
    assert json.loads((tmp_path / "out2" / "topics.json").read_text())["papers"] == doc["papers"]


def test_map_bad_input_is_one_line(fake_store: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(main, ["map", "--store", str(fake_store), "--topics", "1"])
    assert res.exit_code == 2 and "--topics" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["map", "--store", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no paperscope store" in res.output
    with pytest.raises(ValueError, match="n_neighbors"):
        MapParams(n_neighbors=1)


def test_damaged_saved_map_is_reported(fake_store: Path, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "copy"
    shutil.copytree(fake_store, store)
    with Explorer(store) as ex:
        ex.topic_map(render=False)
    state = next((store / "map").glob("state-*"))
    data = bytearray((state / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (state / "arrays.npz").write_bytes(bytes(data))
    res = CliRunner().invoke(main, ["map", "--store", str(store)])
    assert res.exit_code == 2 and "damaged map" in res.output and "--refit" in res.output
    assert CliRunner().invoke(main, ["map", "--store", str(store), "--refit"]).exit_code == 0


def test_html_json_cannot_close_the_script_block() -> None:
    out = safe_json({"title": "</script><img src=x onerror=alert(1)> & <!--"})
    assert "<" not in out and ">" not in out and "&" not in out
    assert json.loads(out)["title"] == "</script><img src=x onerror=alert(1)> & <!--"


def test_large_corpus_fits_on_a_fixed_sample_and_places_the_rest(fake_store: Path) -> None:
    with Explorer(fake_store) as ex:
        ids, titles, texts, hashes, vecs = _inputs(ex)
    tm = compute_map(ids, titles, texts, hashes, vecs, "g", MapParams(max_fit=300))
    assert tm.stats["fitted_on"] == 300 and tm.stats["placed"] == 132 and int(tm.base.sum()) == 300
    assert np.isfinite(tm.coords).all() and (tm.levels[1] >= 0).all() and len(np.unique(tm.coords, axis=0)) == 432
    again = compute_map(ids, titles, texts, hashes, vecs, "g", MapParams(max_fit=300))
    assert np.array_equal(tm.base, again.base) and np.array_equal(tm.coords, again.coords)


def test_html_page_of_a_large_map_holds_a_fixed_sample(
    fake_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paperscope.map.maker as maker

    monkeypatch.setattr(maker, "HTML_POINTS", 100)
    with Explorer(fake_store) as ex:
        tm = ex.topic_map(tmp_path)
    html = (tmp_path / "map.html").read_text()
    data = json.loads(html.split('<script id="data" type="application/json">')[1].split("</script>")[0])
    # Column arrays; each paper's 5 related papers as (row, score) pairs, rows past the sample in "extra".
    assert len(data["ids"]) == 100 and all(len(r) == 10 for r in data["related"])
    assert data["extra"] and all(r < 100 + len(data["extra"]) for rel in data["related"] for r in rel[0::2])
    text = (tmp_path / "topics.json").read_text()
    assert len(json.loads(text)["papers"]) == len(tm) == 432
    # the document topics_document describes, with one compact line per paper (streamed, not indented)
    doc, expected = json.loads(text), json.loads(json.dumps(topics_document(tm)))
    assert (doc["papers"], doc["topics"]) == (expected["papers"], expected["topics"])
    lines = text.split('"papers": [\n', 1)[1].splitlines()
    assert all(json.loads(line.rstrip(","))["id"] == pid for line, pid in zip(lines, tm.ids))


def test_unwritable_output_directory_is_one_line(fake_store: Path, tmp_path: Path) -> None:
    import shutil

    store = tmp_path / "copy"
    shutil.copytree(fake_store, store)
    shutil.rmtree(store / "map", ignore_errors=True)
    res = CliRunner().invoke(main, ["map", "--store", str(store), "--out", "/proc/paperscope-nope"])
    assert res.exit_code == 2 and "cannot write the map there" in res.output and "Traceback" not in res.output
    assert not (store / "map").exists()  # nothing saved when the outputs could not be written


@pytest.mark.parametrize("exact", [True, False])
def test_placed_papers_land_among_their_nearest_fitted_papers(exact: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from paperscope.map import project

    if not exact:  # the IVF search used above EXACT_PAIRS (at 100k papers and up)
        monkeypatch.setattr(project, "EXACT_PAIRS", 0)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 64)).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        which = rng.integers(0, 3, n)
        x = centres[which] + 0.3 * rng.normal(size=(n, 64)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True), which

    base, base_c = draw(3000)
    rest, rest_c = draw(500)
    where = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], dtype=np.float32)  # each cluster's spot on the map
    layout = where[base_c] + rng.normal(scale=0.5, size=(3000, 2)).astype(np.float32)
    near = project.neighbours(base, rest, k=15, seed=0)
    assert near.rows.shape == (500, 15) and np.allclose(near.weights.sum(1), 1.0, atol=1e-5)
    placed = project.place(layout, near)
    landed = np.argmin(((placed[:, None, :] - where[None]) ** 2).sum(-1), axis=1)
    assert (landed == rest_c).mean() >= 0.99
    # the nearest neighbour weighs most, and a paper identical to a fitted one is led by it
    assert (near.weights[:, 0] >= near.weights.max(1) - 1e-6).all()
    twin = project.neighbours(base, base[:5], k=15, seed=0)
    assert (twin.rows[:, 0] == np.arange(5)).all()


@pytest.mark.parametrize("chunk", [1, 7, 50_000])
def test_joint_features_in_pieces_are_the_whole_expression_bit_for_bit(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The joint space is built a chunk of rows at a time (peak RSS of the 1M map) and reads a base
    and a delta of vectors (overlay.LayeredVectors) without a copy: the same bytes as the one-shot
    expression over one array."""
    from paperscope.map import features
    from paperscope.overlay import LayeredVectors

    rng = np.random.default_rng(chunk)
    dense = rng.standard_normal((40, 6)).astype(np.float32)
    dense[3] = 0.0  # a zero row stays zero (no division by zero)
    lexical = rng.standard_normal((40, 4)).astype(np.float32)
    unit = lambda x: (x / np.where((nx := np.linalg.norm(x, axis=1, keepdims=True)) > 0, nx, 1.0)).astype(np.float32)  # noqa: E731
    whole = unit(np.hstack([unit(dense), 2.0 * lexical]))
    monkeypatch.setattr(features, "TRANSFORM_CHUNK", chunk)
    rows = np.array([1, 5, 38, 39], dtype=np.int64)
    layered = LayeredVectors(dense[:38], dense[rows], rows, 40)
    for source in (dense, layered):
        got = features.joint_features(source, lexical, 2.0)
        assert got.dtype == np.float32 and got.tobytes() == whole.tobytes()
