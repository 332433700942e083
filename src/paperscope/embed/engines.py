"""Embedding engines: where the pipeline's embedding step runs.

An engine turns an iterator of text chunks into one array of unit vectors per chunk, in
order, so the pipeline can checkpoint each chunk as it arrives. ``local`` embeds in this
process; ``ray`` (embed/ray_engine.py, the ``paperscope[ray]`` extra) on Ray actors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from paperscope.choices import DEFAULT_ENGINE, ENGINES
from paperscope.embed import registry
from paperscope.embed.base import Embedder
from paperscope.embed.device import CPU, DeviceRequest, placement_of
from paperscope.embed.lock import ModelLock
from paperscope.embed.placed import load_placed
from paperscope.errors import InvalidArgument, ModelLockError
from paperscope.report import BuildReport
from paperscope.terminal import shown

__all__ = ["DEFAULT_ENGINE", "ENGINES", "EmbedChunks", "get_engine"]

EmbedChunks = Callable[[ModelLock, Iterator[list[str]], BuildReport], Iterator[np.ndarray]]


def get_engine(name: str, embedder: Embedder | None = None, request: DeviceRequest | None = None) -> EmbedChunks:
    """The engine called ``name``; ``embedder`` (local only) replaces the lock's model.

    ``request`` (embed/device.py) says where the lock's model runs; None is today's CPU path.
    """
    if name == "local":

        def local(lock: ModelLock, chunks: Iterator[list[str]], report: BuildReport) -> Iterator[np.ndarray]:
            model = embedder
            if model is None:
                t_load = time.perf_counter()
                # only once there is something to embed
                model = load_placed(lock, request) if request is not None else registry.load_embedder(lock)
                report.model_load_seconds = time.perf_counter() - t_load
            report.device, report.dtype = placement_of(model).device, placement_of(model).dtype
            # The feeder streams: tokenization runs ahead in worker processes, vectors come back per chunk.
            stream = getattr(model, "embed_chunks", None)
            yield from (stream(chunks) if stream is not None else (model.embed_batch(texts) for texts in chunks))
            # The export is checked against this model's vectors to 1e-5: only a CPU fp32 model is that reference.
            if embedder is None and placement_of(model) == CPU:
                try:
                    registry.after_build(lock, model)  # torch: cache the torch-free query model now
                except (OSError, ModelLockError) as e:
                    # An optional speed-up: an unwritable or damaged cache must never sink a build.
                    report.warnings.append(shown(f"skipped the ONNX query-model export ({e}); queries will load torch"))

        return local
    if name == "ray":
        if embedder is not None:
            raise InvalidArgument(
                "engine 'ray' embeds with the model pinned in models.lock; "
                "a custom embedder= runs with engine 'local' only"
            )
        from paperscope.embed import ray_engine  # imports ray lazily; fails clearly without the extra

        ray_engine.require_ray()
        if request is not None:
            from functools import partial

            return partial(ray_engine.embed_chunks, device=request.device, dtype=request.dtype)
        return ray_engine.embed_chunks
    raise InvalidArgument(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
