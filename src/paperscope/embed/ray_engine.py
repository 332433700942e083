"""The ``ray`` embedding engine: the embedding step of ``paperscope index`` on Ray actors.

Only the embedding moves: the driver (``paperscope index``) still reads the inputs, decides
what to embed, checkpoints every chunk of vectors as it arrives and builds the index. A pool
of Ray actors (one per CPU of the cluster, or one per GPU with ``--device cuda``) each loads
and verifies the pinned model once per run, through the backend registry, so every backend
runs here as it does locally. Each call embeds whole chunks, exactly the texts the local
engine gives one ``embed_batch`` call, so a backend whose vectors depend on their batch-mates
(onnx-int8's dynamic quantisation) still gives the local engine's vectors.

Connection: an already initialised Ray is used as is; else ``RAY_ADDRESS`` (``ray.init()``
reads it) joins an existing cluster; else a local Ray is started with
``PAPERSCOPE_RAY_CPUS`` (default: all cores) CPUs (``RAY_TMPDIR`` moves its session files).
Every worker needs paperscope and the pinned model package installed (docs/ray.md).

At most ``PAPERSCOPE_RAY_WINDOW`` (default ``WINDOW_CHUNKS``) chunks are out at once: sent to
an actor and not yet checkpointed by the driver. That window bounds the driver's memory and
what a killed run loses: a re-run redoes at most one window. Every chunk's vectors come back
with the id of the Ray node that made them: ``BuildReport.nodes`` counts texts per node.
``logging`` (this module's logger, DEBUG) traces every chunk sent and checkpointed.

This module imports ray only inside functions: ``paperscope related`` never imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from paperscope.embed.lock import ModelLock
from paperscope.errors import MissingExtraError, PaperscopeError
from paperscope.report import BuildReport

CPUS_ENV = "PAPERSCOPE_RAY_CPUS"
WINDOW_ENV = "PAPERSCOPE_RAY_WINDOW"
# Chunks out at once (default 32 x 256 texts): enough to keep every actor of a small cluster busy.
WINDOW_CHUNKS = 32
# On a GPU an actor's call must be large enough to fill the card (the feeder batches it by tokens).
GPU_BATCH_ROWS = 2048

log = logging.getLogger(__name__)


def require_ray() -> None:
    """Raise a one-line PaperscopeError when the ``paperscope[ray]`` extra is not installed."""
    try:
        import ray  # noqa: F401
    except ImportError as e:
        raise MissingExtraError("--engine ray", "ray", f"Ray: {e.msg}") from None


class EmbedActor:
    """One per Ray actor: loads (and verifies) the pinned model once, then embeds whole chunks.

    ``artifact`` is the sha256 of the derived model (ONNX int8, static) the driver's store
    records; an actor whose own cached model differs (another node exported it with another
    toolchain) refuses to embed, so one store never mixes vectors of two derived models.
    """

    def __init__(
        self, lock_json: str, threads: int = 1, device: str = "cpu", dtype: str = "auto", artifact: str | None = None
    ):
        import ray

        from paperscope.embed.device import GPU_BACKENDS

        lock = ModelLock.from_dict(json.loads(lock_json), "models.lock (from the driver)")
        if lock.backend in GPU_BACKENDS:
            import torch

            # One actor per CPU: more torch threads per actor would only fight over the same cores.
            torch.set_num_threads(threads)
            from paperscope.embed.device import DeviceRequest
            from paperscope.embed.placed import load_placed

            # With num_gpus=1 Ray makes the actor's own GPU its cuda:0; on the CPU this is the local path.
            self.model = load_placed(lock, DeviceRequest(device, dtype))
        else:
            from paperscope.embed.registry import load_embedder

            self.model = load_embedder(lock)
        self.node = ray.get_runtime_context().get_node_id()
        got = getattr(self.model, "artifact_sha256", None) if artifact is not None else None
        if got != artifact:
            raise PaperscopeError(
                f"Ray node {self.node[:12]}: its cached {lock.backend} model ({str(got)[:12]}…) is not the "
                f"driver's ({artifact[:12]}…); give every node the driver's cache directory "
                "($PAPERSCOPE_CACHE) or embed with --backend torch"
            )

    def embed(self, chunks: list[list[str]]) -> tuple[list[np.ndarray], str]:
        """One array of vectors per chunk (one ``embed_batch`` each, as locally) and this actor's node id."""
        return [self.model.embed_batch(texts) for texts in chunks], self.node


def _connect() -> bool:
    """Make sure Ray is initialised; True when this call started it (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    kwargs: dict[str, Any] = {"log_to_driver": False}
    if not address:
        kwargs["num_cpus"] = _env_int(CPUS_ENV, os.cpu_count() or 1)
        kwargs.update(include_dashboard=False, configure_logging=False)
    try:
        ray.init(**kwargs)  # with RAY_ADDRESS set, ray.init() joins that cluster
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at RAY_ADDRESS={address}" if address else "a local Ray"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PaperscopeError(f"cannot start or reach {where}: {first[:200]}") from None
    return True


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    try:
        number = int(value) if value else default
    except ValueError:
        number = 0
    if number < 1:
        raise PaperscopeError(f"${name} must be a whole number of at least 1, got {value!r}")
    return number


def actor_placement(device: str, cluster_gpus: float, backend: str = "torch") -> tuple[int, str]:
    """(num_gpus per embedding actor, the device the actor loads the model on) for ``--device``.

    ``cuda``/``cuda:N`` asks Ray for one GPU per actor (Ray picks which: an actor sees its own GPU
    as cuda:0) and fails in one line when the cluster has none; ``auto`` does so when the cluster has
    GPUs, else runs on the CPU with ``num_gpus=0``, as ``cpu`` does. A backend that runs on the CPU
    only (onnx-int8, static) never asks for a GPU, and refuses ``cuda`` as the local engine does.
    """
    from paperscope.embed.device import GPU_BACKENDS, DeviceError, parse_device

    device = parse_device(device)
    if backend not in GPU_BACKENDS:
        if device not in ("auto", "cpu"):
            raise DeviceError(
                f"--device {device}: backend {backend} runs on the CPU only; to embed on the GPU "
                f"re-index with --backend torch --rebuild --device {device}"
            )
        return 0, "cpu"
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
    """Vectors for each chunk of texts, chunk for chunk and in order, embedded by Ray actors.

    ``device`` as in :func:`actor_placement`; ``report.device`` / ``report.dtype`` record the
    choice and ``report.nodes`` the texts each Ray node embedded.
    """
    import ray

    from paperscope.embed import registry
    from paperscope.embed.device import default_dtype, parse_dtype

    window = _env_int(WINDOW_ENV, WINDOW_CHUNKS)
    # The derived model (if any) the driver's vectors come from: prepared here, checked by each actor.
    artifact = registry.artifact_digest(lock, None)
    started = _connect()
    try:
        resources = ray.cluster_resources()
        num_gpus, actor_device = actor_placement(device, float(resources.get("GPU", 0)), lock.backend)
        slots = max(1, int(resources.get("GPU", 0))) if num_gpus else max(1, int(resources.get("CPU", 1)))
        report.device = actor_device
        report.dtype = default_dtype(actor_device) if parse_dtype(dtype) == "auto" else parse_dtype(dtype)
        # A failed actor fails the run: the checkpoint makes a re-run cheap.
        remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_restarts=0)(EmbedActor)
        args = {"lock_json": lock.to_json(), "threads": 1, "device": actor_device, "dtype": report.dtype}
        actors = [remote.remote(**args, artifact=artifact) for _ in range(min(slots, window))]
        log.info("ray: %d actors (%s), at most %d chunks in flight", len(actors), actor_device, window)
        try:
            yield from _ordered(ray, actors, chunks, window, bool(num_gpus), report)
        finally:
            for actor in actors:
                # Cleanup only: a dead actor or a lost cluster must not hide the error being raised.
                with contextlib.suppress(Exception):
                    ray.kill(actor)
    finally:
        if started:
            ray.shutdown()


def _calls(chunks: Iterator[list[str]], gpu: bool) -> Iterator[list[list[str]]]:
    """The chunks one actor call embeds: one on the CPU, enough for a GPU batch on a GPU."""
    call: list[list[str]] = []
    rows = 0
    for chunk in chunks:
        call.append(chunk)
        rows += len(chunk)
        if not gpu or rows >= GPU_BATCH_ROWS:
            yield call
            call, rows = [], 0
    if call:
        yield call


def _ordered(
    ray: Any, actors: list[Any], chunks: Iterator[list[str]], window: int, gpu: bool, report: BuildReport
) -> Iterator[np.ndarray]:
    """Feed idle actors while fewer than ``window`` chunks are out; yield vectors in chunk order.

    A chunk counts as out from the moment it is sent until the pipeline, which checkpoints each
    chunk before asking for the next, has taken it: so a kill loses at most ``window`` chunks.
    """
    idle = deque(actors)
    running: dict[Any, tuple[int, Any, int]] = {}  # ObjectRef -> (call number, actor, chunks in it)
    done: dict[int, tuple[list[np.ndarray], str]] = {}
    calls = _calls(chunks, gpu)
    sent = taken = out = 0  # calls sent, calls yielded, chunks out
    exhausted = False
    while True:
        while idle and not exhausted and out < window:
            call = next(calls, None)
            if call is None:
                exhausted = True
                break
            actor = idle.popleft()
            running[actor.embed.remote(call)] = (sent, actor, len(call))
            log.debug("ray: sent call %d (%d chunks, %d texts)", sent, len(call), sum(map(len, call)))
            sent, out = sent + 1, out + len(call)
        if taken in done:
            vectors, node = done.pop(taken)
            for block in vectors:
                report.nodes[node] = report.nodes.get(node, 0) + len(block)
                yield np.asarray(block, dtype=np.float32)
            log.debug("ray: checkpointed call %d (%d chunks)", taken, len(vectors))
            taken, out = taken + 1, out - len(vectors)
            continue
        if not running:
            return
        ready, _ = ray.wait(list(running), num_returns=1)
        number, actor, _n = running.pop(ready[0])
        done[number] = _result(ray, ready[0])
        idle.append(actor)


def _result(ray: Any, ref: Any) -> tuple[list[np.ndarray], str]:
    """An actor's answer; a failed or lost actor is one line (the checkpoint keeps what came back)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, PaperscopeError):
            raise e.cause from None  # the actor's own one-line error
        why = _last_line(e)
    except ray.exceptions.RayError as e:
        # An actor whose __init__ raised (a model file that does not verify) dies: its error is the last line.
        why = _last_line(e) if getattr(e, "actor_init_failed", False) else f"lost ({_first_line(e)})"
    raise PaperscopeError(f"ray engine: an embedding actor failed: {why[:300]}; re-run to resume") from None


def _last_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1].removeprefix("paperscope.errors.") if lines else type(e).__name__


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
