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


class StaticEmbedder(DerivedEmbedder):
    """model2vec inference: no torch, no transformer; vectors of ``PCA_DIMS`` dimensions."""

    def __init__(self, lock: ModelLock):
        self.lock = lock
        directory, self.artifact = prepare(lock)
        self.model = load_static(directory)
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
