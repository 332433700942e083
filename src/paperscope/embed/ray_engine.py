"""The ``ray`` embedding engine: the embedding step of ``paperscope index`` on Ray Data.

Only the embedding moves: the driver (``paperscope index``) still reads the inputs, decides
what to embed, checkpoints every chunk of vectors as it arrives and builds the index. Texts
go to an actor pool (``map_batches`` with :class:`EmbedActor`), each actor loads and verifies
the pinned model once, and vectors come back in input order.

Connection: an already initialised Ray is used as is; else ``RAY_ADDRESS`` (``ray.init()``
reads it) joins an existing cluster; else a local Ray is started with
``PAPERSCOPE_RAY_CPUS`` (default: all cores) CPUs. Every worker needs paperscope and the
pinned model package installed (see README, "Scaling out with Ray").

Texts are sent in windows of ``WINDOW_CHUNKS`` chunks so the driver never holds the whole
corpus; each window is one Ray Data pipeline, so the actors load the model once per window
(a few seconds against minutes of embedding per window).

This module imports ray only inside functions: ``paperscope related`` never imports it.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from paperscope.embed.lock import ModelLock
from paperscope.errors import MissingExtraError, PaperscopeError
from paperscope.report import BuildReport

CPUS_ENV = "PAPERSCOPE_RAY_CPUS"
WINDOW_CHUNKS = 32
# Rows per map_batches call: small enough that the actors share a window evenly.
BATCH_ROWS = 64
# On a GPU an actor's batch must be large enough to fill the card (the feeder batches it by tokens).
GPU_BATCH_ROWS = 2048


def require_ray() -> None:
    """Raise a one-line PaperscopeError when the ``paperscope[ray]`` extra is not installed."""
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("--engine ray", "ray", f"Ray Data: {e.msg}") from None


class EmbedActor:
    """One per Ray actor: loads (and verifies) the pinned model once, then embeds batches."""

    def __init__(self, lock_json: str, threads: int = 1, device: str = "cpu", dtype: str = "auto"):
        import torch

        # One actor per CPU: more torch threads per actor would only fight over the same cores.
        torch.set_num_threads(threads)
        from paperscope.embed.device import DeviceRequest
        from paperscope.embed.placed import load_placed

        # With num_gpus=1 Ray makes the actor's own GPU its cuda:0; on the CPU this is today's path.
        self.model = load_placed(
            ModelLock.from_dict(json.loads(lock_json), "models.lock (from the driver)"), DeviceRequest(device, dtype)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.embed_batch([str(t) for t in batch["text"]])
        return {"pos": np.asarray(batch["pos"], dtype=np.int64), "vector": vectors}


def _connect() -> bool:
    """Make sure Ray is initialised; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if not address:
        cpus = os.environ.get(CPUS_ENV)
        try:
            kwargs["num_cpus"] = int(cpus) if cpus else (os.cpu_count() or 1)
        except ValueError:
            raise PaperscopeError(f"${CPUS_ENV} must be a whole number of CPUs, got {cpus!r}") from None
        kwargs.update(include_dashboard=False, configure_logging=False)
    try:
        ray.init(**kwargs)  # with RAY_ADDRESS set, ray.init() joins that cluster
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PaperscopeError(f"cannot start or reach {where}: {first[:200]}") from None
    return True


def _windows(chunks: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    window: list[list[str]] = []
    for chunk in chunks:
        window.append(chunk)
        if len(window) == size:
            yield window
            window = []
    if window:
        yield window


def actor_placement(device: str, cluster_gpus: float) -> tuple[int, str]:
    """(num_gpus per embedding actor, the device the actor loads the model on) for ``--device``.

    ``cuda``/``cuda:N`` asks Ray for one GPU per actor (Ray picks which: an actor sees its own GPU
    as cuda:0) and fails in one line when the cluster has none; ``auto`` does so when the cluster has
    GPUs, else runs on the CPU with ``num_gpus=0``, as ``cpu`` does.
    """
    from paperscope.embed.device import parse_device

    device = parse_device(device)
    if device.startswith("cuda"):
        if cluster_gpus < 1:
            raise PaperscopeError(
                f"--engine ray --device {device}: the Ray cluster has no GPU "
                "(ray.cluster_resources() lists none); use --device cpu or auto"
            )
        return 1, "cuda:0"
    if device == "auto":
        return (1, "cuda:0") if cluster_gpus >= 1 else (0, "cpu")
    return 0, device


def embed_chunks(
    lock: ModelLock, chunks: Iterator[list[str]], report: BuildReport, device: str = "cpu", dtype: str = "auto"
) -> Iterator[np.ndarray]:
    """Vectors for each chunk of texts, chunk for chunk and in order, embedded on Ray Data.

    ``device`` as in :func:`actor_placement`; ``report.device`` / ``report.dtype`` record the choice.
    """
    import ray
    import ray.data

    from paperscope.embed.device import default_dtype, parse_dtype

    started = _connect()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # vectors must come back in row order
        ctx.enable_progress_bars = False  # paperscope draws its own bar
        ctx.print_on_execution_start = False
        # Ray Data logs every execution at INFO; a paperscope run prints one summary line.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "bars disabled": we know
        resources = ray.cluster_resources()
        cpus = max(1, int(resources.get("CPU", 1)))
        num_gpus, actor_device = actor_placement(device, float(resources.get("GPU", 0)))
        slots = max(1, int(resources.get("GPU", 0))) if num_gpus else cpus
        report.device = actor_device
        report.dtype = default_dtype(actor_device) if parse_dtype(dtype) == "auto" else parse_dtype(dtype)
        lock_json = lock.to_json()
        for window in _windows(chunks, WINDOW_CHUNKS):
            yield from _embed_window(ray, window, lock_json, slots, num_gpus, actor_device, report.dtype)
    finally:
        if started:
            ray.shutdown()


def _embed_window(
    ray: Any,
    window: list[list[str]],
    lock_json: str,
    slots: int,
    num_gpus: int = 0,
    device: str = "cpu",
    dtype: str = "float32",
) -> Iterator[np.ndarray]:
    texts = [t for chunk in window for t in chunk]
    items = [{"pos": i, "text": t} for i, t in enumerate(texts)]
    rows = GPU_BATCH_ROWS if num_gpus else BATCH_ROWS
    blocks = max(1, -(-len(items) // rows))
    actors = max(1, min(slots, blocks))
    with warnings.catch_warnings():
        # max_restarts is only reachable through ray_remote_args, deprecated from Ray 2.60 on
        # (removed in 2.64; the extra pins 2.60.0).
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            EmbedActor,
            fn_constructor_kwargs={"lock_json": lock_json, "threads": 1, "device": device, "dtype": dtype},
            batch_size=rows,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=1,
            num_gpus=num_gpus,  # one GPU per actor with --device cuda; 0 on the CPU
            # A failed actor fails the run: the checkpoint makes a re-run cheap, and restarts
            # would need the constructor arguments kept alive in the object store.
            max_restarts=0,
        )
    del items
    sizes = iter([len(c) for c in window])
    want = next(sizes)
    pending: list[np.ndarray] = []
    held = 0
    expected = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        pos = batch["pos"]
        if pos.size and (pos[0] != expected or not np.array_equal(pos, np.arange(expected, expected + pos.size))):
            raise PaperscopeError(
                f"ray engine: vectors came back out of order (row {int(pos[0])}, expected "
                f"{expected}); chunks already checkpointed are kept, re-run to resume"
            )
        expected += pos.size
        pending.append(np.asarray(batch["vector"], dtype=np.float32).reshape(pos.size, -1))
        held += pos.size
        while want is not None and held >= want:
            block = np.concatenate(pending)
            yield block[:want]
            pending, held = [block[want:]], block.shape[0] - want
            want = next(sizes, None)
    if expected != len(texts):
        raise PaperscopeError(f"ray engine: {expected} vectors for {len(texts)} texts; re-run to resume")
