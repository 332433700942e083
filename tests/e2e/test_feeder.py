"""The GPU feeder (embed/feeder.py), run on the CPU: order, windows, workers, and equality with the plain path.

The feeder is built for a GPU; everything but pinned memory and non-blocking copies runs on
the CPU too, so its ordering, chunking, resume and vectors are proved here against the plain
sentence-transformers path with the real pinned model in fp32.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from paperscope.corpus import bundled_corpus, expand, read_papers
from paperscope.embed import SentenceTransformerEmbedder, load_lock
from paperscope.embed.device import CPU
from paperscope.embed.feeder import FeederEmbedder, check_pooling, supports
from paperscope.embed.lock import model_dir
from paperscope.errors import ModelLockError
from paperscope.pipeline import build
from paperscope.store import Staging, Store

pytestmark = pytest.mark.model


def shuffled_texts(n: int, seed: int = 7) -> list[str]:
    """Bundled titles+abstracts cut to random word counts (2..120 words) in random order: lengths vary a lot."""
    lock = load_lock()
    rng = random.Random(seed)
    papers = list(read_papers(expand([bundled_corpus()])))
    rng.shuffle(papers)
    out = []
    for p in papers[:n]:
        words = lock.text(p.title, p.abstract).split()
        out.append(" ".join(words[: rng.randint(2, 120)]))
    return out


@pytest.fixture(scope="module")
def feeder() -> FeederEmbedder:
    # Small windows and token budget: many windows and many batches from few texts.
    return FeederEmbedder(load_lock(), CPU, workers=2, token_budget=600, window_texts=16)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return shuffled_texts(60)


@pytest.fixture(scope="module")
def plain_vectors(texts: list[str]) -> np.ndarray:
    return SentenceTransformerEmbedder(load_lock()).embed_batch(texts)


def chunked(texts: list[str], sizes: list[int]) -> list[list[str]]:
    out, start = [], 0
    for size in sizes:
        out.append(texts[start : start + size])
        start += size
    assert start == len(texts)
    return out


def assert_same_rows(got: np.ndarray, want: np.ndarray) -> None:
    """Row i of got is row i of want: cosine >= 0.99999, and no other row is closer (exact order)."""
    assert got.shape == want.shape and got.dtype == np.float32
    cos = np.sum(got * want, axis=1)
    assert cos.min() >= 0.99999, f"lowest cosine {cos.min():.7f}"
    assert np.array_equal(np.argmax(got @ want.T, axis=1), np.arange(len(want)))
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_feeder_keeps_order_across_chunks_windows_and_workers(
    feeder: FeederEmbedder, texts: list[str], plain_vectors: np.ndarray, workers: int
) -> None:
    # Uneven chunks (an empty one, one longer than a tokenizer job would be at JOB_TEXTS=256 is not
    # needed here: windows of 16 texts already cut across chunks).
    sizes = [7, 1, 0, 23, 5, 24]
    chunks = chunked(texts, sizes)
    out = list(feeder.embed_chunks(chunks, workers=workers))
    assert [a.shape[0] for a in out] == sizes  # one array per chunk, in order
    assert_same_rows(np.concatenate(out), plain_vectors)


def test_feeder_splits_long_chunks_into_jobs(
    monkeypatch: pytest.MonkeyPatch, feeder: FeederEmbedder, texts: list[str], plain_vectors: np.ndarray
) -> None:
    from paperscope.embed import feeder as feeder_module

    monkeypatch.setattr(feeder_module, "JOB_TEXTS", 4)  # a 40-text chunk becomes 10 worker jobs
    out = list(feeder.embed_chunks(chunked(texts, [40, 20]), workers=2))
    assert [a.shape[0] for a in out] == [40, 20]
    assert_same_rows(np.concatenate(out), plain_vectors)


def test_token_stream_matches_in_process_tokenizer(feeder: FeederEmbedder, texts: list[str]) -> None:
    want_ids, want_lengths = feeder.tokenize(texts)
    assert want_lengths.max() <= load_lock().max_seq_length and want_lengths.min() >= 3  # [CLS] w [SEP]
    for workers in (0, 2):
        jobs = list(feeder.token_stream(chunked(texts, [30, 30]), workers=workers))
        assert [size for size, _, _ in jobs] == [30, 30]
        assert np.array_equal(np.concatenate([j[1] for j in jobs]), want_ids)
        assert np.array_equal(np.concatenate([j[2] for j in jobs]), want_lengths)


def test_embed_batch_is_the_same_path(feeder: FeederEmbedder, texts: list[str], plain_vectors: np.ndarray) -> None:
    assert_same_rows(feeder.embed_batch(texts[:20]), plain_vectors[:20])
    assert feeder.embed_batch([]).shape == (0, feeder.dimension)


def test_feeder_refuses_a_model_it_cannot_pool(tmp_path: Path) -> None:
    lock = load_lock()
    root = tmp_path / "model"
    shutil.copytree(model_dir(lock), root)
    check_pooling(root, lock)  # the pinned model: Transformer + mean Pooling + Normalize
    cfg = root / "1_Pooling" / "config.json"
    data = json.loads(cfg.read_text())
    data.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    cfg.write_text(json.dumps(data))
    with pytest.raises(ModelLockError, match="mean pooling only.*pooling_mode_cls_token"):
        check_pooling(root, lock)
    assert supports(model_dir(lock), lock) and not supports(root, lock)  # auto then keeps sentence-transformers


def vectors_by_id(store: Path) -> dict[str, np.ndarray]:
    gen = Store(store).require_current()
    con = gen.connect()
    rows = dict(con.execute("SELECT id, row FROM papers").fetchall())
    con.close()
    vectors = gen.load_vectors()
    return {pid: np.asarray(vectors[row]) for pid, row in rows.items()}


def test_build_with_feeder_equals_plain_build_on_bundled_corpus(
    tmp_path: Path, torch_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole bundled corpus through the pipeline with the feeder (fp32, CPU): same vectors, same rows."""
    puts: list[int] = []
    real_put = Staging.put

    def spy(self: Staging, fingerprint: str, hashes: list[str], vectors: np.ndarray, made_by=None) -> None:
        puts.append(len(hashes))
        real_put(self, fingerprint, hashes, vectors, made_by)

    monkeypatch.setattr(Staging, "put", spy)
    report = build(None, tmp_path / "fed", backend="torch", device="cpu", feeder=True, workers=2, chunk_size=100)
    assert (report.papers, report.embedded, report.device, report.dtype) == (432, 432, "cpu", "float32")
    assert puts == [100, 100, 100, 100, 32]  # checkpointed chunk by chunk, as the plain path does
    plain, fed = vectors_by_id(torch_store), vectors_by_id(tmp_path / "fed")
    assert sorted(plain) == sorted(fed)
    ids = sorted(plain)
    assert_same_rows(np.stack([fed[i] for i in ids]), np.stack([plain[i] for i in ids]))
    a, b = Store(torch_store).require_current().manifest, Store(tmp_path / "fed").require_current().manifest
    assert a["model"]["fingerprint"] == b["model"]["fingerprint"]  # the device is not part of the fingerprint
    assert b["build"]["devices"] == [{"device": "cpu", "dtype": "float32", "count": 432}]


@pytest.mark.gpu
def test_gpu_feeder_fp16_agrees_with_cpu_fp32(texts: list[str], plain_vectors: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from paperscope.embed.device import resolve

    placement = resolve("cuda")
    assert placement.dtype == "float16"
    gpu = FeederEmbedder(load_lock(), placement, workers=2)
    got = np.concatenate(list(gpu.embed_chunks(chunked(texts, [30, 30]))))
    cos = np.sum(got * plain_vectors, axis=1)
    assert cos.min() >= 0.999, f"lowest cosine fp16 GPU vs fp32 CPU {cos.min():.6f}"
    assert np.array_equal(np.argmax(got @ plain_vectors.T, axis=1), np.arange(len(texts)))
