"""The embedder a build loads for a device request: the feeder, sentence-transformers, or a CPU backend.

Kept apart from embed/device.py (which stays stdlib-only and is imported by the backends) so that
choosing a backend for a device creates no import cycle.
"""

from __future__ import annotations

from paperscope.embed.base import Embedder
from paperscope.embed.device import GPU_BACKENDS, DeviceRequest, resolve
from paperscope.embed.feeder import FeederEmbedder, supports
from paperscope.embed.lock import ModelLock, model_dir
from paperscope.embed.registry import load_embedder
from paperscope.embed.torch_backend import SentenceTransformerEmbedder


def load_placed(lock: ModelLock, request: DeviceRequest) -> Embedder:
    """The embedder for ``lock`` on the device ``request`` resolves to.

    torch: the feeder on CUDA (or when asked), else sentence-transformers on the device. Other
    backends: their own CPU embedder, whatever ``auto`` finds (a device never changes a backend).
    """
    placement = resolve(request.device, request.dtype, backend=lock.backend)
    if lock.backend not in GPU_BACKENDS:
        return load_embedder(lock)
    # A model the feeder cannot run (CLS pooling, a Dense layer) gets sentence-transformers on the
    # same device, unless the feeder was asked for by name (then its one-line refusal).
    if request.use_feeder(placement) and (request.feeder or supports(model_dir(lock), lock)):
        return FeederEmbedder(lock, placement, workers=request.workers)
    return SentenceTransformerEmbedder(lock, placement=placement)
