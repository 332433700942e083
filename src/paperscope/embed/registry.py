"""Every embedding backend, by name: the one place a backend name is looked up.

A backend is a :class:`Backend` record: how to load its embedder, the dimension it fixes (if
any), how to prepare its locally derived model (if any), what to do after a build, and the
extra that installs it. ``paperscope index --backend NAME`` and the pipeline both go through
:func:`get`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from paperscope.embed import artifacts, onnx_backend, solo_backend, static_backend, torch_backend
from paperscope.embed.base import Embedder
from paperscope.embed.lock import DEFAULT_BACKEND, ModelLock, load_lock
from paperscope.errors import ModelLockError, StoreError, require_extra


@dataclass(frozen=True)
class Backend:
    """How paperscope runs one backend. Only ``name`` and ``load`` are required."""

    name: str
    load: Callable[[ModelLock, bool], Embedder]  # (lock, for_query) -> embedder
    dimension: int | None = None  # fixed output dimension; None: the model's own
    prepare: Callable[[ModelLock], tuple[Path, dict[str, Any]]] | None = None  # derived model, cached
    after_build: Callable[[ModelLock, Embedder], None] | None = None
    extra: str | None = None  # the pip extra that installs what it imports
    modules: tuple[str, ...] = ()  # imported when it runs: checked first, for a one-line hint

    def require(self) -> None:
        """MissingExtraError naming ``pip install "paperscope[extra]"`` if a module is missing."""
        if self.extra:
            require_extra(self.modules, self.extra, f"--backend {self.name}")


REGISTRY: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("torch", torch_backend.load, after_build=torch_backend.after_build),
        Backend(
            "onnx-int8",
            lambda lock, for_query: onnx_backend.OnnxEmbedder(lock, "int8"),
            # onnx and onnxruntime are core dependencies: a torch store's queries run on them too.
            prepare=lambda lock: onnx_backend.prepare(lock, "int8"),
        ),
        Backend(
            "onnx-int8-solo",
            # The onnx-int8 model file, each text run alone and unpadded: a vector depends on its text only.
            lambda lock, for_query: solo_backend.SoloOnnxEmbedder(lock),
            prepare=lambda lock: onnx_backend.prepare(lock, "int8"),
        ),
        Backend(
            "onnx-int8-solo-v2",
            # The default: onnx-int8-solo on an export whose layer norms are plain ops (the same weights
            # and quantisation; a fifth faster on CPU). Its own name, so v1 stores keep their vectors.
            lambda lock, for_query: solo_backend.SoloOnnxEmbedder(lock),  # onnx_backend.PLAIN_LAYER_NORM
            prepare=lambda lock: onnx_backend.prepare(lock, "int8"),
        ),
        Backend(
            "static",
            lambda lock, for_query: static_backend.StaticEmbedder(lock, for_query=for_query),
            dimension=static_backend.PCA_DIMS,
            prepare=static_backend.prepare,
            extra="static",
            modules=("model2vec", "skeletoken"),
        ),
    )
}
BACKENDS = tuple(REGISTRY)
# DEFAULT_BACKEND (embed/lock.py, what a new pin and the shipped models.lock say) is one of them.
assert DEFAULT_BACKEND in REGISTRY


def get(name: str) -> Backend:
    """The backend called ``name``; ModelLockError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelLockError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}") from None


def with_backend(lock: ModelLock, backend: str | None) -> ModelLock:
    """``lock`` with its backend set: part of the fingerprint, so vectors of two backends never mix."""
    if backend is None or backend == lock.backend:
        return lock
    spec = get(backend)
    return replace(lock, backend=backend, dimension=spec.dimension or lock.dimension)


def load_embedder(lock: ModelLock | None = None, *, for_query: bool = False) -> Embedder:
    """The embedder a lock describes (default: the lock :func:`load_lock` finds).

    ``for_query`` lets a backend serve queries with a lighter equivalent model (the torch
    backend uses the cached ONNX fp32 export of the same weights when there is one).
    """
    lock = lock or load_lock()
    if lock.backend not in REGISTRY:
        raise ModelLockError(
            f"models.lock: backend {lock.backend!r} is not available (this version has: {', '.join(BACKENDS)})"
        )
    spec = REGISTRY[lock.backend]
    spec.require()
    return spec.load(lock, for_query)


def after_build(lock: ModelLock, model: Embedder) -> None:
    """The backend's step after a build that embedded with ``model`` (torch: cache the query model)."""
    spec = get(lock.backend)
    if spec.after_build is not None:
        spec.after_build(lock, model)


def artifact_digest(lock: ModelLock, before: str | None) -> str | None:
    """The sha256 of the derived model (ONNX int8, static) a build's vectors come from; None for torch.

    ``before`` is the digest the store's vectors were made with: new vectors are only added to a
    store whose vectors came from the same derived model (another toolchain's export would shift them).
    """
    spec = get(lock.backend)
    if spec.prepare is None:
        return None
    spec.require()
    _, meta = spec.prepare(lock)
    digest = artifacts.digest(meta)
    if before is not None and before != digest:
        raise StoreError(
            f"the cached {spec.name} model ({digest[:12]}…) is not the one this store's vectors came "
            f"from ({before[:12]}…); run `paperscope index --rebuild`"
        )
    return digest


def store_embedder(model: dict[str, Any], manifest_path: Path, store_path: Path) -> Embedder:
    """The query embedder for a store whose manifest has this ``model`` block, verified against it.

    Checks that the recorded lock gives the vectors' fingerprint and that a derived model (ONNX
    int8, static) is the very one the vectors came from; errors say which model the store needs.
    """
    fingerprint = model["fingerprint"]
    lock_data = model.get("lock")
    if not lock_data:
        raise StoreError(f"{store_path}: built with a custom embedder; pass embedder= to query it")
    lock = ModelLock.from_dict(lock_data, f"{manifest_path}")
    if lock.fingerprint != fingerprint:
        raise StoreError(
            f"{manifest_path}: lock fingerprint {lock.fingerprint} "
            f"does not match the vectors' {fingerprint}; re-index: paperscope index --rebuild"
        )
    try:
        embedder = load_embedder(lock, for_query=True)
    except (ModelLockError, ValueError, OSError) as e:  # say which model the store needs, and both ways out
        raise ModelLockError(
            f"{e} [this store's vectors come from {lock.name} (backend {lock.backend}, "
            f"fingerprint {lock.fingerprint}); install that model, or re-index with the "
            "current one: paperscope index --rebuild]"
        ) from None
    recorded = model.get("artifact_sha256")
    actual = getattr(embedder, "artifact_sha256", None) if lock.backend != "torch" else None
    if recorded != actual:
        raise StoreError(
            f"{store_path}: vectors made by the {lock.backend} model {str(recorded)[:12]}…, "
            f"the cached one is {str(actual)[:12]}…; re-index: paperscope index --rebuild"
        )
    return embedder
