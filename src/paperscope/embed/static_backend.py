"""``static``: a model2vec static model distilled locally from the pinned weights.

Distillation (``model2vec[distill]``: torch and skeletoken) runs once, offline, on the verified
model directory; the result is cached with its sha256 like the ONNX exports. Embedding is a
token-embedding lookup and a mean, in numpy: tens of times faster than the transformer, with
lower ranking quality (README, "Backends").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.embed import artifacts
from paperscope.embed.base import DerivedEmbedder, check_vectors
from paperscope.embed.lock import ModelLock, model_dir, verify_files

PCA_DIMS = 256


def _distill(lock: ModelLock, out: Path) -> dict[str, Any]:
    root = model_dir(lock)
    verify_files(lock, root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import model2vec
    from model2vec.distill import distill

    # float32 weights: the cache is small either way and float16 would add a rounding step.
    model = distill(model_name=str(root), pca_dims=PCA_DIMS, device="cpu", quantize_to="float32")
    model.save_pretrained(str(out))
    return {"model2vec": model2vec.__version__, "pca_dims": PCA_DIMS}


def prepare(lock: ModelLock) -> tuple[Path, dict[str, Any]]:
    """The cached, verified static model distilled from the pinned weights."""
    return artifacts.ensure("static", lock, lambda out: _distill(lock, out))


def load_static(directory: Path) -> Any:
    """The distilled model in ``directory``, as ``StaticModel.from_pretrained`` loads it, from its files.

    ``from_pretrained`` first imports model2vec's model-card and hub modules (about 0.4 s), which
    a local, verified artefact does not need: that was most of the first query of a static store.
    The arrays, tokenizer and settings passed to ``StaticModel`` are those it would pass.
    """
    import json

    import safetensors
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    tensors: dict[str, np.ndarray] = {}
    with safetensors.safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        stored = set(f.keys())
        for name in ("embeddings", "weights", "mapping"):
            if name in stored:
                tensors[name] = f.get_tensor(name)
    return StaticModel(
        vectors=tensors["embeddings"],
        tokenizer=Tokenizer.from_file(str(directory / "tokenizer.json")),
        config=config,
        normalize=bool(config.get("normalize", False)),
        weights=tensors.get("weights"),
        token_mapping=tensors.get("mapping"),
        max_length=config.get("max_length", 512),
    )


class QueryModel:
    """``StaticModel.encode`` of a distilled model of one table (no weights, no token mapping),
    from its files, without importing model2vec.

    A query loads the model once, on the store's first text search: importing model2vec (and
    joblib with it) and ``StaticModel``'s set-up (sorting the vocabulary, copying the tokenizer)
    took 0.21 of the 0.35 s that load took after a cold open at 1M papers, where ranking took
    0.28 s (round 17). The encoding is model2vec 0.10's, step for step: each text cut to
    ``max_length`` x the vocabulary's median token length in characters, tokenised without
    special tokens and truncated to ``max_length`` tokens, unknown tokens dropped, the mean of
    the rows of the token ids (float32, texts of the same token count in one gather), then
    L2-normalised when the model's config says so. ``tests/e2e/test_backends.py`` checks that its
    vectors equal model2vec's bit for bit; :func:`query_model` falls back to model2vec for a model
    this does not cover.
    """

    def __init__(self, directory: Path, embedding: np.ndarray, config: dict[str, Any]):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        padding = tokenizer.padding
        if padding is not None:  # as StaticModel: no padding, the pad token kept
            tokenizer.enable_padding(
                pad_id=padding["pad_id"], pad_token=padding["pad_token"], pad_type_id=padding["pad_type_id"], length=0
            )
        unk = getattr(tokenizer.model, "unk_token", None)
        self.unk_token_id = tokenizer.token_to_id(unk) if unk is not None else None
        self.tokenizer = tokenizer
        self.embedding = embedding
        self.config = config
        self.normalize = bool(config.get("normalize", False))
        self.max_length: int | None = config.get("max_length", 512)
        self.median_token_length = int(np.median([len(t) for t in tokenizer.get_vocab()]))

    @property
    def dim(self) -> int:
        return int(self.embedding.shape[1])

    def encode(self, sentences: Sequence[str], *, max_length: int | None = None, **_: Any) -> np.ndarray:
        """(len(sentences), dim) vectors, as ``StaticModel.encode(sentences, max_length=...)``."""
        if max_length is not None:
            cut = max_length * self.median_token_length
            sentences = [s[:cut] for s in sentences]
            self.tokenizer.enable_truncation(max_length)
        else:
            self.tokenizer.no_truncation()
        encodings = self.tokenizer.encode_batch_fast(list(sentences), add_special_tokens=False)
        ids = [[t for t in e.ids if t != self.unk_token_id] for e in encodings]
        out = np.zeros((len(ids), self.dim), dtype=self.embedding.dtype)
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            if row:
                by_length.setdefault(len(row), []).append(i)
        for rows in by_length.values():
            out[rows] = self.embedding[np.array([ids[i] for i in rows], dtype=np.int64)].mean(axis=1)
        if self.normalize:
            out32 = out.astype(np.float32)
            return (out32 / (np.linalg.norm(out32, axis=1, keepdims=True) + 1e-32)).astype(out.dtype)
        return out


def query_model(directory: Path) -> Any:
    """The distilled model in ``directory`` for queries: :class:`QueryModel` when it covers the
    model (one float table, a WordPiece / BPE / word-level tokenizer), else :func:`load_static`'s."""
    import json

    import safetensors

    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    with safetensors.safe_open(str(directory / "model.safetensors"), framework="numpy") as f:
        if set(f.keys()) != {"embeddings"}:
            return load_static(directory)
        embedding = f.get_tensor("embeddings")
    tokenizer_model = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]["type"]
    if embedding.dtype.kind != "f" or tokenizer_model not in ("WordPiece", "BPE", "WordLevel"):
        return load_static(directory)
    return QueryModel(directory, embedding, config)


class StaticEmbedder(DerivedEmbedder):
    """model2vec inference: no torch, no transformer; vectors of ``PCA_DIMS`` dimensions.

    ``for_query``: the store's query model, :func:`query_model` (the same vectors, loaded without
    model2vec's imports).
    """

    def __init__(self, lock: ModelLock, *, for_query: bool = False):
        self.lock = lock
        directory, self.artifact = prepare(lock)
        self.model = query_model(directory) if for_query else load_static(directory)
        self._dimension = int(self.model.dim)

    @property
    def dimension(self) -> int:
        return self._dimension

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        vec = np.asarray(
            self.model.encode(
                list(texts), max_length=self.lock.max_seq_length, batch_size=1024, show_progress_bar=False
            ),
            dtype=np.float32,
        )
        vec /= np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
        return check_vectors(vec, len(texts), self.dimension)
