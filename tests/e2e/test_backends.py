"""Embedding backends: agreement with torch, fingerprints, cache verification, light query path.

Real model and real backends (no timing assertions: benchmarks/run_all.py measures speed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paperscope.embed import BACKENDS, DEFAULT_BACKEND, with_backend
from paperscope.embed.lock import load_lock
from paperscope.errors import ModelLockError, StoreError

pytestmark = pytest.mark.model

onnxruntime = pytest.importorskip("onnxruntime")

TEXTS = [
    "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer. Hyperparameter "
    "tuning in deep learning is an expensive process, prohibitively so for neural networks with billions of "
    "parameters. We show that, in the recently discovered Maximal Update Parametrization, many optimal "
    "hyperparameters remain stable even as model size changes.",
    "LoRA: Low-Rank Adaptation of Large Language Models.",
    "Denoising diffusion probabilistic models. " * 60,  # longer than max_seq_length: truncated
    "μP",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One derived-model cache for the module: exporting and distilling cost seconds, once."""
    path = tmp_path_factory.mktemp("model-cache")
    old = os.environ.get("PAPERSCOPE_CACHE")
    os.environ["PAPERSCOPE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("PAPERSCOPE_CACHE", None)
    else:
        os.environ["PAPERSCOPE_CACHE"] = old


@pytest.fixture(scope="module")
def torch_model() -> object:
    from paperscope.embed import load_embedder

    return load_embedder(with_backend(load_lock(), "torch"))


@pytest.fixture(scope="module")
def torch_vectors(torch_model: object) -> np.ndarray:
    return torch_model.embed_batch(TEXTS)


def bundled_sample(n: int) -> list[str]:
    """``n`` paper texts spread over the bundled corpus (short and long abstracts alike)."""
    from paperscope.corpus import bundled_corpus, read_corpus

    lock = load_lock()
    papers = read_corpus([bundled_corpus()])
    return [lock.text(p.title, p.abstract) for p in papers[:: max(1, len(papers) // n)][:n]]


def test_default_lock_is_the_deterministic_int8_backend() -> None:
    lock = load_lock()
    assert lock.backend == DEFAULT_BACKEND == "onnx-int8-solo-v2"
    assert with_backend(lock, None) is lock and with_backend(lock, DEFAULT_BACKEND) is lock
    # torch stays a choice, pinned by the same files: only the backend (part of the fingerprint) differs
    torch_lock = with_backend(lock, "torch")
    assert "torch" in BACKENDS and torch_lock.files == lock.files and torch_lock.dimension == lock.dimension
    fps = {with_backend(lock, b).fingerprint for b in BACKENDS}
    assert len(fps) == len(BACKENDS)  # the backend decides the vectors: part of the fingerprint
    with pytest.raises(ModelLockError, match="unknown backend"):
        with_backend(lock, "tensorrt")


def test_onnx_int8_agrees_with_torch(cache: Path, torch_vectors: np.ndarray) -> None:
    from paperscope.embed.onnx_backend import OnnxEmbedder

    e = OnnxEmbedder(with_backend(load_lock(), "onnx-int8"), "int8")
    got = e.embed_batch(TEXTS)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * torch_vectors).sum(axis=1)
    assert cos.mean() >= 0.99 and cos.min() >= 0.97
    # Dynamic quantisation scales activations per batch: a text alone differs slightly from in a batch,
    # but is the same text; and the same batch gives the same vectors.
    assert float(e.embed_batch(TEXTS[1:2])[0] @ got[1]) >= 0.99
    assert np.array_equal(e.embed_batch(TEXTS), got)


@pytest.fixture(scope="module")
def solo(cache: Path) -> object:
    from paperscope.embed import load_embedder

    return load_embedder(load_lock())  # the default backend


def test_solo_same_text_same_vector_in_any_batch(solo: object) -> None:
    """A text's vector is bit-identical alone, in any batch, at any position, with any batch-mates."""
    from paperscope.embed.solo_backend import SoloOnnxEmbedder

    assert isinstance(solo, SoloOnnxEmbedder)
    texts = bundled_sample(10) + TEXTS
    together = solo.embed_batch(texts)
    alone = np.stack([solo.embed_batch([t])[0] for t in texts])
    assert np.array_equal(together, alone)
    reordered = solo.embed_batch(texts[::-1])[::-1]
    assert np.array_equal(reordered, together)
    # other batch-mates and sizes: a long truncated text first, duplicates, a short one
    mixed = solo.embed_batch([TEXTS[2], texts[5], TEXTS[3], texts[5], TEXTS[1]])
    assert np.array_equal(mixed[1], together[5]) and np.array_equal(mixed[3], together[5])
    assert np.array_equal(mixed[0], together[len(texts) - 2]) and np.array_equal(mixed[4], together[-3])
    # onnx-int8 (padded batches, per-batch activation scales) does not have this property: the test can fail
    from paperscope.embed.onnx_backend import OnnxEmbedder

    int8 = OnnxEmbedder(solo.lock, "int8")
    assert not np.array_equal(int8.embed_batch(texts)[0], int8.embed_batch(texts[:1])[0])


def test_solo_vectors_do_not_depend_on_the_worker_count(solo: object) -> None:
    from paperscope.embed.solo_backend import SoloOnnxEmbedder

    texts = bundled_sample(8)
    one = SoloOnnxEmbedder(solo.lock, workers=1).embed_batch(texts)
    three = SoloOnnxEmbedder(solo.lock, workers=3).embed_batch(texts)
    assert np.array_equal(one, solo.embed_batch(texts)) and np.array_equal(three, one)
    # nor on ONNX Runtime's intra-op thread count: a 2-thread session given one unpadded text at a
    # time (onnx-int8 with a batch of one) computes the same bits on this machine
    from paperscope.embed.onnx_backend import OnnxEmbedder

    two_threads = OnnxEmbedder(solo.lock, "int8", threads=2)
    assert np.array_equal(np.stack([two_threads.embed_batch([t])[0] for t in texts]), one)


def test_solo_v2_runs_its_plain_layer_norms(solo: object) -> None:
    """The default runs the export without SkipLayerNormalization, and ORT does not fuse it back.

    Its vectors are close to onnx-int8-solo's (same weights, same quantisation) but not the same
    bits; a session that lets ORT re-fuse the plain ops computes other vectors again, so the
    default's session must keep that fusion off.
    """
    import onnx
    import onnxruntime as ort

    from paperscope.embed import with_backend
    from paperscope.embed.onnx_backend import SKIP_LN_FUSION, prepare
    from paperscope.embed.solo_backend import SoloOnnxEmbedder

    assert solo.lock.backend == "onnx-int8-solo-v2" and not solo.skip_layer_norm
    path = prepare(solo.lock, "int8")[0] / "model.onnx"
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "LayerNormalization" in ops and "SkipLayerNormalization" not in ops
    texts = bundled_sample(6)
    v2 = solo.embed_batch(texts)
    v1 = SoloOnnxEmbedder(with_backend(solo.lock, "onnx-int8-solo")).embed_batch(texts)
    cos = (v1 * v2).sum(axis=1)
    assert cos.min() >= 0.995 and not np.array_equal(v1, v2)

    def alone(disabled: list[str] | None) -> np.ndarray:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
        ids = np.asarray(solo.tokenizer.encode(texts[0]).ids, dtype=np.int64)[None, :]
        hidden = sess.run(
            None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        )
        vec = hidden[0][0].mean(axis=0)
        return vec / np.linalg.norm(vec)

    assert np.array_equal(alone([SKIP_LN_FUSION]), v2[0])
    assert not np.array_equal(alone(None), v2[0])  # re-fused: the plain ops' vectors are lost


def test_solo_agrees_with_torch_on_the_bundled_corpus(solo: object, torch_model: object) -> None:
    texts = bundled_sample(24) + TEXTS
    got, want = solo.embed_batch(texts), torch_model.embed_batch(texts)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = (got * want).sum(axis=1)
    # measured over all 432 bundled papers: mean 0.9948, min 0.9909 (benchmarks/backend_speed.py)
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, (cos.mean(), cos.min())


def test_onnx_fp32_equals_torch(cache: Path, torch_model: object, torch_vectors: np.ndarray) -> None:
    from paperscope.embed import load_embedder
    from paperscope.embed.onnx_backend import OnnxEmbedder, prepare_query_model

    lock = with_backend(load_lock(), "torch")
    assert prepare_query_model(lock, torch_model)
    q = load_embedder(lock, for_query=True)
    assert isinstance(q, OnnxEmbedder)
    assert np.abs(q.embed_batch(TEXTS) - torch_vectors).max() <= 1e-5


def test_static_backend(cache: Path, torch_vectors: np.ndarray) -> None:
    from paperscope.embed import load_embedder

    lock = with_backend(load_lock(), "static")
    e = load_embedder(lock)
    got = e.embed_batch(TEXTS)
    assert got.shape == (len(TEXTS), lock.dimension) and e.dimension == lock.dimension
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # another space than torch's, but the same notion of similar: the long diffusion text is far from LoRA
    sims = got @ got.T
    assert sims[0, 3] > sims[2, 3] or sims[0, 1] > sims[2, 1]


def test_the_static_model_loads_as_model2vec_loads_it(cache: Path) -> None:
    """Built from its files without model2vec's hub and model-card imports, it encodes the same."""
    from model2vec import StaticModel

    from paperscope.embed.static_backend import load_static, prepare

    directory, _ = prepare(with_backend(load_lock(), "static"))
    ours, theirs = load_static(directory), StaticModel.from_pretrained(str(directory))
    assert (ours.normalize, ours.max_length, ours.config) == (theirs.normalize, theirs.max_length, theirs.config)
    for max_length in (256, None):
        assert np.array_equal(ours.encode(TEXTS, max_length=max_length), theirs.encode(TEXTS, max_length=max_length))


def test_the_static_query_model_encodes_as_model2vec_without_importing_it(cache: Path, tmp_path: Path) -> None:
    """A static store's query model is built without model2vec (its import and set-up were most of
    the first search after a cold open): the same vectors, bit for bit, one text at a time or many."""
    import shutil

    from model2vec import StaticModel
    from safetensors.numpy import save_file

    from paperscope.corpus import bundled_corpus, read_corpus
    from paperscope.embed import load_embedder
    from paperscope.embed.static_backend import QueryModel, prepare, query_model

    lock = with_backend(load_lock(), "static")
    directory, _ = prepare(lock)
    ours, theirs = query_model(directory), StaticModel.from_pretrained(str(directory))
    assert isinstance(ours, QueryModel)
    papers = read_corpus(bundled_corpus())
    texts = [*TEXTS, "", "   ", "cooking recipes for pasta", "\u2603 zzqqxx"]
    texts += [p.title for p in papers] + [f"{p.title}. {p.abstract}" for p in papers]
    for max_length in (lock.max_seq_length, 8, None):
        want = theirs.encode(texts, max_length=max_length)
        assert np.array_equal(ours.encode(texts, max_length=max_length), want), max_length
    one_by_one = np.stack([ours.encode([t], max_length=lock.max_seq_length)[0] for t in texts[:60]])
    assert np.array_equal(one_by_one, theirs.encode(texts[:60], max_length=lock.max_seq_length))
    # through the registry: the query embedder's vectors are the index embedder's
    query, index_side = load_embedder(lock, for_query=True), load_embedder(lock)
    assert np.array_equal(query.embed_batch(texts[:50]), index_side.embed_batch(texts[:50]))
    code = (
        "import sys; from paperscope.embed import load_embedder, with_backend; "
        "from paperscope.embed.lock import load_lock; "
        "e = load_embedder(with_backend(load_lock(), 'static'), for_query=True); e.embed_batch(['LoRA']); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('model2vec', 'joblib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    assert out.stdout.strip() == "[]", out.stdout
    # a model this does not cover (per-token weights) is loaded by model2vec's code instead
    other = tmp_path / "weighted"
    shutil.copytree(directory, other)
    table = ours.embedding
    save_file({"embeddings": table, "weights": np.ones(len(table), dtype=np.float32)}, str(other / "model.safetensors"))
    assert isinstance(query_model(other), StaticModel)


def test_tampered_cache_is_refused(cache: Path) -> None:
    from paperscope.embed import artifacts
    from paperscope.embed.onnx_backend import OnnxEmbedder, prepare

    lock = with_backend(load_lock(), "onnx-int8")
    directory, _ = prepare(lock, "int8")
    model = directory / "model.onnx"
    original = model.read_bytes()
    try:
        model.write_bytes(original[:-16] + bytes(16))
        with pytest.raises(ModelLockError, match="does not match its cache record"):
            OnnxEmbedder(lock, "int8")
        with pytest.raises(ModelLockError, match="delete"):
            artifacts.verify(directory)
    finally:
        model.write_bytes(original)
    artifacts.verify(directory)


def test_backend_end_to_end_and_mismatch(cache: Path, tmp_path: Path, torch_vectors: np.ndarray) -> None:
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build

    papers = tmp_path / "papers.jsonl"
    papers.write_text(
        "".join(json.dumps({"id": f"p{i}", "title": t[:40], "abstract": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    store = tmp_path / "store"
    build([papers], store, backend="onnx-int8")
    with Explorer(store) as ex:
        info = ex.info()["model"]
        assert info["backend"] == "onnx-int8" and info["lock"]["backend"] == "onnx-int8"
        assert len(info["artifact_sha256"]) == 64
        assert ex.search("low-rank adaptation", k=1, mode="dense")[0].paper.id == "p1"
        assert ex.related("p0", k=2)
    # no --backend: the store keeps its own
    assert build([papers], store).nothing_to_do
    with pytest.raises(StoreError, match="backend onnx-int8, this run asks for torch.*--rebuild"):
        build([papers], store, backend="torch")
    with pytest.raises(StoreError, match="fingerprint"):
        from paperscope.embed import load_embedder

        Explorer(store, embedder=load_embedder(load_lock()))
    # the CLI names the fix in one line
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "paperscope.cli",
            "index",
            str(papers),
            "--store",
            str(store),
            "--backend",
            "static",
            "-q",
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert r.returncode == 2 and "--rebuild" in r.stderr
    build([papers], store, backend="static", rebuild=True)
    with Explorer(store) as ex:
        assert (
            ex.info()["model"]["backend"] == "static" and ex.dimension == with_backend(load_lock(), "static").dimension
        )
        assert ex.search("low-rank adaptation", k=1, mode="dense")


FORBIDDEN = ("torch", "sentence_transformers", "transformers", "scipy", "umap", "sklearn", "numba", "matplotlib")


def _probe() -> str:
    return (
        "import sys, runpy\n"
        "sys.argv = ['paperscope'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('paperscope.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        f"bad = sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))\n"
        "print('IMPORTED', bad, file=sys.stderr)\n"
    )


def write_papers(path: Path, edited: int = 0) -> Path:
    """TEXTS as a JSON Lines corpus, the first ``edited`` abstracts revised."""
    rows = (
        {"id": f"p{i}", "title": t[:40], "abstract": t + (" (revised)" if i < edited else "")}
        for i, t in enumerate(TEXTS)
    )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_torch_build_keeps_its_backend_and_leaves_search_torch_free(cache: Path, tmp_path: Path) -> None:
    """`paperscope index --backend torch` prepares the fp32 ONNX query model itself: the next search needs
    no torch; a re-index without --backend keeps torch (the store's own) although the default is another."""
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build

    papers, store = write_papers(tmp_path / "papers.jsonl"), tmp_path / "store"
    build([papers], store, backend="torch")
    report = build([write_papers(papers, edited=1)], store)
    assert report.embedded == 1
    with Explorer(store) as ex:
        assert ex.info()["model"]["backend"] == "torch" != DEFAULT_BACKEND
    r = subprocess.run(
        [sys.executable, "-c", _probe(), "search", "low-rank adaptation", "--store", str(store)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert r.returncode == 0, r.stderr
    assert "IMPORTED []" in r.stderr, r.stderr[-500:]


def test_a_store_of_the_previous_default_keeps_its_vectors(cache: Path, tmp_path: Path) -> None:
    """An ``onnx-int8-solo`` store (the default of rounds 3-11) re-indexes and queries with its own
    export after the default moved to ``-v2``: its vectors stay the bits that backend computes."""
    from paperscope.embed import load_embedder
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build

    papers, store = write_papers(tmp_path / "papers.jsonl"), tmp_path / "store"
    build([papers], store, backend="onnx-int8-solo")
    report = build([write_papers(papers, edited=1)], store)
    assert report.embedded == 1
    v1 = load_embedder(with_backend(load_lock(), "onnx-int8-solo"))
    v2 = load_embedder(load_lock())
    with Explorer(store) as ex:
        assert ex.info()["model"]["backend"] == "onnx-int8-solo" != DEFAULT_BACKEND
        got = np.stack([ex.vector(f"p{i}") for i in range(len(TEXTS))])
        texts = [v1.text(p.title, p.abstract) for p in ex.papers()]
        assert [p.id for p in ex.papers()] == [f"p{i}" for i in range(len(TEXTS))]
        assert [h.paper.id for h in ex.search("low-rank adaptation", k=1)] == ["p1"]
    assert np.array_equal(got, v1.embed_batch(texts))
    assert not np.array_equal(got, v2.embed_batch(texts))


def test_reindex_with_the_default_backend_imports_no_torch(cache: Path, tmp_path: Path) -> None:
    """Re-indexing edited papers into a default-backend store: a fresh process, no torch import at all
    (the cached int8 model, tokenizers for the tokens), and the unedited papers keep their exact vectors."""
    from paperscope.explorer import Explorer
    from paperscope.pipeline import build

    papers, store = write_papers(tmp_path / "papers.jsonl"), tmp_path / "store"
    build([papers], store)
    with Explorer(store) as ex:
        before = {p: ex.vector(p) for p in ("p0", "p1", "p2", "p3")}
    write_papers(papers, edited=2)
    r = subprocess.run(
        [sys.executable, "-c", _probe(), "index", str(papers), "--store", str(store), "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    assert r.returncode == 0, r.stderr
    assert "IMPORTED []" in r.stderr, r.stderr[-500:]
    assert json.loads(r.stdout)["embedded"] == 2
    with Explorer(store) as ex:
        assert ex.info()["model"]["backend"] == DEFAULT_BACKEND
        assert np.array_equal(ex.vector("p2"), before["p2"]) and np.array_equal(ex.vector("p3"), before["p3"])
        assert not np.array_equal(ex.vector("p0"), before["p0"])


def test_related_and_search_import_no_heavy_module(cache: Path, tmp_path: Path) -> None:
    """A fresh `paperscope related` (and an onnx store's `search`) never imports torch, scipy, UMAP..."""
    from paperscope.pipeline import build

    papers = tmp_path / "papers.jsonl"
    papers.write_text(
        "".join(json.dumps({"id": f"p{i}", "title": t[:40], "abstract": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    store = tmp_path / "store"
    build([papers], store, backend="onnx-int8")
    probe = _probe()
    for args in (["related", "p0", "--store", str(store)], ["search", "low-rank adaptation", "--store", str(store)]):
        r = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, env=os.environ.copy())
        assert r.returncode == 0, r.stderr
        assert "IMPORTED []" in r.stderr, (args, r.stderr[-500:])
