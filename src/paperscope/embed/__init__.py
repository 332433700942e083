"""Stage 2 of the pipeline: texts to L2-normalised float32 vectors.

Every backend implements :class:`Embedder` (``embed/base.py``), lives in its own module
(``torch_backend``, ``onnx_backend``, ``static_backend``) and is found by name through
``embed/registry.py``. Embedding engines (where the work runs) are in ``embed/engines.py``.
"""

from __future__ import annotations

from paperscope.embed.base import Embedder, check_vectors
from paperscope.embed.lock import ModelLock, load_lock
from paperscope.embed.registry import BACKENDS, DEFAULT_BACKEND, load_embedder, with_backend
from paperscope.embed.torch_backend import SentenceTransformerEmbedder

__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "Embedder",
    "ModelLock",
    "SentenceTransformerEmbedder",
    "check_vectors",
    "load_embedder",
    "load_lock",
    "with_backend",
]
