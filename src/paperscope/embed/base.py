"""The one interface a backend implements, and what the backends bound to a models.lock share.

Nothing here imports a backend: backends import this module, and :mod:`paperscope.embed.registry`
finds them by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from paperscope.embed import artifacts
from paperscope.embed.lock import ModelLock


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


class LockedEmbedder:
    """Base of the backends: everything that decides a vector comes from ``self.lock``."""

    lock: ModelLock

    @property
    def dimension(self) -> int:
        return self.lock.dimension

    @property
    def fingerprint(self) -> str:
        return self.lock.fingerprint

    def text(self, title: str, abstract: str) -> str:
        return self.lock.text(title, abstract)


class DerivedEmbedder(LockedEmbedder):
    """A backend whose model is derived locally from the pinned weights and cached (``self.artifact``)."""

    artifact: Any

    @property
    def artifact_sha256(self) -> str:
        """Digest of the cached model, recorded in the manifest so a store never mixes two of them."""
        return artifacts.digest(self.artifact)
