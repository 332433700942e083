"""Embedding engines: where the pipeline's embedding step runs.

An engine turns an iterator of text chunks into one array of unit vectors per chunk, in
order, so the pipeline can checkpoint each chunk as it arrives. ``local`` embeds in this
process; ``ray`` (embed/ray_engine.py, the ``paperscope[ray]`` extra) on Ray Data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from paperscope.choices import DEFAULT_ENGINE, ENGINES
from paperscope.embed import registry
from paperscope.embed.base import Embedder
from paperscope.embed.lock import ModelLock
from paperscope.errors import InvalidArgument, ModelLockError
from paperscope.report import BuildReport
from paperscope.terminal import shown

__all__ = ["DEFAULT_ENGINE", "ENGINES", "EmbedChunks", "get_engine"]

EmbedChunks = Callable[[ModelLock, Iterator[list[str]], BuildReport], Iterator[np.ndarray]]


def get_engine(name: str, embedder: Embedder | None = None) -> EmbedChunks:
    """The engine called ``name``; ``embedder`` (local only) replaces the lock's model."""
    if name == "local":
        def local(lock: ModelLock, chunks: Iterator[list[str]], report: BuildReport) -> Iterator[np.ndarray]:
            model = embedder
            if model is None:
                t_load = time.perf_counter()
                model = registry.load_embedder(lock)  # only once there is something to embed
                report.model_load_seconds = time.perf_counter() - t_load
            for texts in chunks:
                yield model.embed_batch(texts)
            if embedder is None:
                try:
                    registry.after_build(lock, model)  # torch: cache the torch-free query model now
                except (OSError, ModelLockError) as e:
                    # An optional speed-up: an unwritable or damaged cache must never sink a build.
                    report.warnings.append(shown(f"skipped the ONNX query-model export ({e}); queries will load torch"))
        return local
    if name == "ray":
        if embedder is not None:
            raise InvalidArgument("engine 'ray' embeds with the model pinned in models.lock; "
                             "a custom embedder= runs with engine 'local' only")
        from paperscope.embed import ray_engine  # imports ray lazily; fails clearly without the extra

        ray_engine.require_ray()
        return ray_engine.embed_chunks
    raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
