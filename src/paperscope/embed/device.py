"""Where the torch backend runs: ``--device auto|cpu|cuda|cuda:N|mps`` and ``--dtype``.

A device is checked before a build opens the store writer, so a request for a device the
machine does not have is one line and nothing written. ``auto`` is resolved only when the
model loads (torch is imported then anyway): a build with nothing to embed never imports torch.

The device never enters the model fingerprint or the content hash: vectors made on a GPU in
fp16 and on the CPU in fp32 agree to cosine >= 0.999 (see docs/gpu.md), so a store may hold
both and a device switch never re-embeds an unchanged paper. Which device and dtype made the
vectors of a build is recorded in its manifest (``build.devices``).

Only the stdlib at import: torch is imported inside the functions that need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from paperscope.choices import DTYPES
from paperscope.errors import PaperscopeError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
# Backends that run on an accelerator; every other backend runs on the CPU whatever --device says.
GPU_BACKENDS = ("torch",)
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(?::(\d+))?)$")


class DeviceError(PaperscopeError):
    """A device or dtype this machine (or this backend) cannot give."""


@dataclass(frozen=True)
class Placement:
    """A resolved device and dtype, e.g. ``Placement("cuda:0", "float16")``."""

    device: str
    dtype: str

    @property
    def accelerated(self) -> bool:
        return self.device != "cpu"

    def to_dict(self) -> dict[str, str]:
        return {"device": self.device, "dtype": self.dtype}


CPU = Placement("cpu", "float32")


def parse_device(device: str) -> str:
    """Normalise a ``--device`` value ("CUDA" -> "cuda"); one clear line for anything else."""
    value = str(device).strip().lower()
    if not _DEVICE_RE.match(value):
        raise DeviceError(f"--device {device!r}: use one of auto, cpu, cuda, cuda:N (N a GPU number) or mps")
    return value


def parse_dtype(dtype: str) -> str:
    value = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(
        str(dtype).strip().lower(), str(dtype).strip().lower()
    )
    if value not in DTYPES:
        raise DeviceError(f"--dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return value


def default_dtype(device: str) -> str:
    """fp16 on CUDA (the forward pass is ~2x faster and agrees to cosine >= 0.999), else fp32."""
    return "float16" if device.startswith("cuda") else "float32"


def check(device: str = "auto", dtype: str = "auto", *, backend: str = "torch") -> Placement | None:
    """Validate a request before anything is written; the Placement, or None for ``auto`` (resolved at load).

    Raises :class:`DeviceError` for a device this machine lacks (``cuda`` without a CUDA GPU,
    ``cuda:7`` on a one-GPU machine, ``mps`` off Apple silicon), a dtype the device cannot run,
    or an accelerator asked of a backend that only runs on the CPU.
    """
    device, dtype = parse_device(device), parse_dtype(dtype)
    if device == "auto":
        return None
    if device != "cpu" and backend not in GPU_BACKENDS:
        raise DeviceError(
            f"--device {device}: backend {backend} runs on the CPU only; to embed on the GPU "
            f"re-index with --backend torch --rebuild --device {device}"
        )
    if device != "cpu":
        _require(device)
    chosen = default_dtype(device) if dtype == "auto" else dtype
    if chosen == "bfloat16" and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_bf16_supported():
            raise DeviceError(
                f"--dtype bfloat16: {torch.cuda.get_device_name(_index(device))} has no bfloat16; use --dtype float16"
            )
    return Placement(_canonical(device), chosen)


def resolve(device: str = "auto", dtype: str = "auto", *, backend: str = "torch") -> Placement:
    """The placement to load a model with: ``auto`` becomes the first CUDA GPU (or MPS) when torch sees one.

    ``auto`` keeps a CPU-only backend (onnx-int8, static) on the CPU: a device never changes a
    store's backend. On a machine without an accelerator ``auto`` is today's CPU path, fp32.
    """
    placed = check(device, dtype, backend=backend)
    if placed is not None:
        return placed
    if backend not in GPU_BACKENDS:
        return CPU
    import torch

    if torch.cuda.is_available():
        chosen = "cuda:0"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        chosen = "mps"
    else:
        chosen = "cpu"
    dtype = parse_dtype(dtype)
    return Placement(chosen, default_dtype(chosen) if dtype == "auto" else dtype)


def _index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def _canonical(device: str) -> str:
    return f"cuda:{_index(device)}" if device.startswith("cuda") else device


def _require(device: str) -> None:
    """Raise a one-line DeviceError unless torch can use ``device`` here."""
    try:
        import torch
    except ImportError:
        raise DeviceError(f"--device {device}: torch is not installed (pip install torch)") from None
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(
                f"--device {device}: torch {torch.__version__} ({build}) sees no CUDA GPU on this "
                "machine; use --device cpu (or auto)"
            )
        n = torch.cuda.device_count()
        if _index(device) >= n:
            have = ", ".join(f"cuda:{i}" for i in range(n))
            raise DeviceError(f"--device {device}: this machine has {n} CUDA GPU{'s' * (n != 1)} ({have})")
    elif device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceError(
                "--device mps: torch sees no Apple-silicon GPU (MPS) on this machine; use --device cpu (or auto)"
            )


def placement_of(model: object) -> Placement:
    """Where an embedder runs: its ``placement`` attribute, else the CPU (int8 for onnx-int8, else fp32)."""
    placed = getattr(model, "placement", None)
    if isinstance(placed, Placement):
        return placed
    backend = getattr(getattr(model, "lock", None), "backend", None)
    return Placement("cpu", "int8") if backend == "onnx-int8" else CPU


def summarise(made_by: list[tuple[str, str, int]]) -> list[dict[str, object]]:
    """``[(device, dtype, count), ...]`` -> the manifest's ``build.devices`` list, merged and sorted."""
    totals: dict[tuple[str, str], int] = {}
    for device, dtype, count in made_by:
        totals[(device, dtype)] = totals.get((device, dtype), 0) + int(count)
    return [{"device": d, "dtype": t, "count": c} for (d, t), c in sorted(totals.items(), key=lambda x: -x[1])]


def describe(devices: list[dict[str, object]] | None) -> str:
    """One line for ``paperscope info``: 'cuda:0 float16 (300), cpu float32 (132)'."""
    if not devices:
        return "n/a (nothing embedded in this generation)"
    return ", ".join(f"{d['device']} {d['dtype']} ({d['count']})" for d in devices)


@dataclass(frozen=True)
class DeviceRequest:
    """What a build asked for: ``device``/``dtype`` as given, ``feeder`` (None: on CUDA only), tokenizer ``workers``."""

    device: str = "auto"
    dtype: str = "auto"
    feeder: bool | None = None
    workers: int | None = None

    def use_feeder(self, placement: Placement) -> bool:
        # The feeder is built for a GPU; on the CPU the plain path stays the default (measured: no faster there).
        return self.feeder if self.feeder is not None else placement.device.startswith("cuda")
