"""Stage 2 of the pipeline: texts to L2-normalised float32 vectors.

Every backend implements :class:`Embedder`; batching and normalisation checks live in
:func:`embed_texts` so that a backend only has to turn a batch of texts into vectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from paperscope.embed.base import LockedEmbedder
from paperscope.embed.device import CPU, Placement
from paperscope.embed.lock import ModelLock, load_lock, model_dir, verify_files


class Embedder(Protocol):
    """The one interface a backend implements."""

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str:
        """Identifies the vectors this embedder makes; stored beside them and checked on query."""
        ...

    def text(self, title: str, abstract: str) -> str:
        """The text the model sees for a paper."""
        ...

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32 vectors, each of unit L2 norm."""
        ...


def check_vectors(vectors: np.ndarray, n: int, dimension: int) -> np.ndarray:
    """Validate a backend's output before it reaches the store or FAISS."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (n, dimension):
        raise ValueError(f"embedder returned shape {vectors.shape}, expected {(n, dimension)}")
    if not np.isfinite(vectors).all():
        raise ValueError("embedder returned non-finite values")
    return vectors


class SentenceTransformerEmbedder(LockedEmbedder):
    """The pinned sentence-transformers model on torch, verified against models.lock.

    ``placement`` (issue 18, embed/device.py) is the device and dtype; the default is today's CPU fp32.
    """

    def __init__(self, lock: ModelLock, verify: bool = True, placement: Placement | None = None):
        self.lock = lock
        self.placement = placement or CPU
        root = model_dir(lock)
        if verify:
            verify_files(lock, root)
        if lock.source.get("kind") != "hub":
            # The files are local and verified: never let a missing file turn into a download.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # transformers' own "Loading weights" bar would interleave with ours.
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        from sentence_transformers import SentenceTransformer  # heavy: imported only when embedding

        self.model = SentenceTransformer(str(root), device=self.placement.device)
        self.model.max_seq_length = lock.max_seq_length
        if self.placement.dtype != "float32":  # a runtime cast: the weights on disk (and their hashes) stay fp32
            import torch

            self.model.to(getattr(torch, self.placement.dtype))

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        # encode() sorts by length inside the call, so a large call pads little.
        vectors = self.model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)
        return check_vectors(vectors, len(texts), self.dimension)


BACKENDS = ("torch", "onnx-int8", "static")
DEFAULT_BACKEND = "torch"


def with_backend(lock: ModelLock, backend: str | None) -> ModelLock:
    """``lock`` with its backend set: part of the fingerprint, so vectors of two backends never mix."""
    from dataclasses import replace

    from paperscope.errors import ModelLockError

    if backend is None or backend == lock.backend:
        return lock
    if backend not in BACKENDS:
        raise ModelLockError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "static":
        from paperscope.embed.static_backend import PCA_DIMS

        return replace(lock, backend=backend, dimension=PCA_DIMS)
    return replace(lock, backend=backend)


def load_embedder(lock: ModelLock | None = None, *, for_query: bool = False) -> Embedder:
    """The embedder a lock describes (default: the lock :func:`load_lock` finds).

    ``for_query`` lets a torch store's queries run on the cached ONNX fp32 export of the same
    weights when there is one (equal to torch's vectors within 1e-5, measured; no torch import).
    """
    lock = lock or load_lock()
    if lock.backend == "onnx-int8":
        from paperscope.embed.onnx_backend import OnnxEmbedder

        return OnnxEmbedder(lock, "int8")
    if lock.backend == "static":
        from paperscope.embed.static_backend import StaticEmbedder

        return StaticEmbedder(lock)
    if lock.backend != "torch":
        from paperscope.errors import ModelLockError

        raise ModelLockError(f"models.lock: backend {lock.backend!r} is not available (this version has: "
                             f"{', '.join(BACKENDS)})")
    if for_query:
        from paperscope.embed import artifacts

        if (artifacts.artifact_dir("onnx-fp32", lock) / artifacts.MANIFEST).is_file():
            try:
                from paperscope.embed.onnx_backend import OnnxEmbedder

                return OnnxEmbedder(lock, "fp32")
            except ImportError:
                pass  # onnxruntime not installed: torch gives the same vectors
    return SentenceTransformerEmbedder(lock)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Embedder", "ModelLock", "SentenceTransformerEmbedder", "check_vectors", "load_embedder", "load_lock", "with_backend"]
