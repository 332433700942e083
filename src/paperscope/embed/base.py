"""What every backend bound to a models.lock shares: its dimension, fingerprint and text template."""

from __future__ import annotations

from typing import Any

from paperscope.embed import artifacts
from paperscope.embed.lock import ModelLock


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
