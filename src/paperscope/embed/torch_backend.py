"""The default backend: the pinned sentence-transformers model on torch (CPU)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from paperscope.embed.base import LockedEmbedder, check_vectors
from paperscope.embed.device import CPU, Placement
from paperscope.embed.lock import ModelLock, model_dir, verify_files


class SentenceTransformerEmbedder(LockedEmbedder):
    """The pinned sentence-transformers model on torch, verified against models.lock.

    ``placement`` (embed/device.py) is the device and dtype; the default is the CPU in fp32.
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
        vectors = self.model.encode(
            list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return check_vectors(vectors, len(texts), self.dimension)


def load(lock: ModelLock, for_query: bool = False) -> LockedEmbedder:
    """The torch embedder, or for a query the cached ONNX fp32 export of the same weights.

    The export equals torch's vectors within ``onnx_backend.QUERY_TOLERANCE`` (checked when it
    was made) and spares a query the torch import; without onnxruntime torch is used.
    """
    if for_query:
        from paperscope.embed import artifacts

        if (artifacts.artifact_dir("onnx-fp32", lock) / artifacts.MANIFEST).is_file():
            try:
                from paperscope.embed.onnx_backend import OnnxEmbedder

                return OnnxEmbedder(lock, "fp32")
            except ImportError:
                pass  # onnxruntime not installed: torch gives the same vectors
    return SentenceTransformerEmbedder(lock)


def after_build(lock: ModelLock, model: object) -> None:
    """torch is loaded now: exporting the torch-free query model costs seconds (see onnx_backend)."""
    from paperscope.embed.onnx_backend import prepare_query_model

    prepare_query_model(lock, model)
