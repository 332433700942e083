"""The pinned transformer on ONNX Runtime: ``onnx-int8`` (a backend) and an fp32 export.

The export is made here, from the verified safetensors weights, with ``torch.onnx.export``
(torch is needed once, to export; never to embed). ``onnx-int8`` quantises the export's
weights dynamically to int8 per channel (ONNX Runtime picks the CPU's VNNI/AVX-512 kernels).
Tokenisation uses ``tokenizers`` on the pinned tokenizer.json with the lock's max length;
pooling (mean over the attention mask) and L2 normalisation follow the lock, in numpy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.embed import artifacts
from paperscope.embed.base import DerivedEmbedder, check_vectors
from paperscope.embed.lock import ModelLock, model_dir, verify_files
from paperscope.errors import ModelLockError

# Texts per ONNX call; with length-sorted batches larger batches pad little and amortise calls.
BATCH = 32
# ORT's session-level fusion that would turn the plain-LayerNorm graph back into SkipLayerNormalization.
SKIP_LN_FUSION = "SkipLayerNormFusion"
# Backends whose int8 export keeps plain layer norms (the ``onnx-int8-ln`` artefact); the others'
# exports fuse them into SkipLayerNormalization, as every export did before.
PLAIN_LAYER_NORM = frozenset({"onnx-int8-solo-v2"})


def _skip(lock: ModelLock, skip_layer_norm: bool | None) -> bool:
    return lock.backend not in PLAIN_LAYER_NORM if skip_layer_norm is None else skip_layer_norm


def _export(lock: ModelLock, out: Path, quantise: bool, skip_layer_norm: bool = True) -> dict[str, Any]:
    root = model_dir(lock)
    verify_files(lock, root)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import logging
    import warnings

    import torch
    from transformers import AutoModel

    # Eager attention exports as plain MatMul/Softmax, which ORT's BERT optimiser fuses.
    model = AutoModel.from_pretrained(str(root), attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self, m: Any):
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.int64)
    raw = out.parent / (out.name + "-raw.onnx")
    fused = out.parent / (out.name + "-fused.onnx")
    axes = {
        "input_ids": {0: "batch", 1: "seq"},
        "attention_mask": {0: "batch", 1: "seq"},
        "token_type_ids": {0: "batch", 1: "seq"},
        "hidden": {0: "batch", 1: "seq"},
    }
    info: dict[str, Any] = {"torch": torch.__version__}
    import onnxruntime
    from onnxruntime.transformers.optimizer import optimize_model

    info["onnxruntime"] = onnxruntime.__version__
    try:
        # The exporter's tracer and deprecation warnings concern graphs with data-dependent control
        # flow; this one has none, and the export is checked against torch (prepare_query_model, tests).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                Hidden(model),
                (ids, ids, torch.zeros_like(ids)),
                str(raw),
                input_names=["input_ids", "attention_mask", "token_type_ids"],
                output_names=["hidden"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        # Fuse attention, LayerNorm and GELU: faster to load and run, and for int8 the quantised
        # MatMuls then dominate the graph.
        cfg = model.config
        from onnxruntime.transformers.fusion_options import FusionOptions

        options = FusionOptions("bert")
        # ORT 1.32's CPU SkipLayerNormalization kernel takes 446 us where Add + LayerNormalization
        # take 69 us on one sequence of 246 tokens x 384 (benchmarks/layer_norm_kernels.py): a fifth
        # of the int8 model's time. The plain graph keeps the Add and the standard LayerNormalization.
        options.enable_skip_layer_norm = skip_layer_norm
        optimize_model(
            str(raw),
            model_type="bert",
            num_heads=cfg.num_attention_heads,
            hidden_size=cfg.hidden_size,
            opt_level=1,
            optimization_options=options,
        ).save_model_to_file(str(fused))
        info["layer_norm"] = "SkipLayerNormalization" if skip_layer_norm else "Add + LayerNormalization"
        if quantise:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            root_logger, level = logging.getLogger(), logging.getLogger().level
            root_logger.setLevel(logging.ERROR)  # its "consider pre-processing" advice goes to the root logger
            try:
                quantize_dynamic(
                    str(fused),
                    str(out / "model.onnx"),
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    extra_options={"DefaultTensorType": 1},
                )  # FLOAT: fused ops lack shape info
            finally:
                root_logger.setLevel(level)
            info["quantisation"] = "ORT BERT fusion, then dynamic int8 per channel"
        else:
            os.replace(fused, out / "model.onnx")
            info["optimisation"] = "ORT BERT fusion"
    finally:
        raw.unlink(missing_ok=True)
        fused.unlink(missing_ok=True)
    return info


def prepare(lock: ModelLock, precision: str, skip_layer_norm: bool | None = None) -> tuple[Path, dict[str, Any]]:
    """The cached, verified ONNX model of the pinned weights (``precision``: ``int8`` or ``fp32``).

    ``skip_layer_norm=False`` is the int8 export whose residual adds and layer norms stay standard
    ``Add`` and ``LayerNormalization`` ops (artefact ``onnx-int8-ln``): other bits, a fifth faster
    here. None: as the lock's backend has it (:data:`PLAIN_LAYER_NORM`).
    """
    if precision not in ("int8", "fp32"):
        raise ValueError(f"precision must be int8 or fp32, got {precision!r}")
    skip_layer_norm = _skip(lock, skip_layer_norm)
    kind = f"onnx-{precision}" + ("" if skip_layer_norm else "-ln")
    return artifacts.ensure(kind, lock, lambda out: _export(lock, out, precision == "int8", skip_layer_norm))


class OnnxEmbedder(DerivedEmbedder):
    """Embeds with ONNX Runtime; imports neither torch nor sentence-transformers once cached.

    ``skip_layer_norm=False`` (by default: when the lock's backend is in :data:`PLAIN_LAYER_NORM`)
    runs the ``onnx-int8-ln`` export, with ORT's SkipLayerNormalization fusion disabled in the
    session too (it would otherwise fuse the plain ops back at load).
    """

    def __init__(
        self, lock: ModelLock, precision: str = "int8", threads: int | None = None, skip_layer_norm: bool | None = None
    ):
        self.lock = lock
        self.precision = precision
        self.skip_layer_norm = skip_layer_norm = _skip(lock, skip_layer_norm)
        directory, self.artifact = prepare(lock, precision, skip_layer_norm)
        root = model_dir(lock)
        # The weights were verified when exported, and the export carries its own sha256; of the
        # pinned directory only the tokenizer is read here (hashing the safetensors would double
        # a query's start-up).
        from dataclasses import replace

        verify_files(replace(lock, files={k: v for k, v in lock.files.items() if k == "tokenizer.json"}), root)
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=lock.max_seq_length)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"),
            opts,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=None if skip_layer_norm else [SKIP_LN_FUSION],
        )
        if lock.pooling != "mean":
            raise ModelLockError(f"models.lock: pooling {lock.pooling!r} is not supported by the ONNX backends (mean)")

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort(-lengths, kind="stable")  # length-sorted batches: little padding
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            width = int(lengths[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            types = np.zeros((len(idx), width), dtype=np.int64)
            for j, i in enumerate(idx):
                e = encodings[i]
                n = len(e.ids)
                ids[j, :n], mask[j, :n], types[j, :n] = e.ids, e.attention_mask, e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            # Models without segment ids (MPNet, e.g. all-mpnet-base-v2) export no token_type_ids input.
            wanted = {i.name for i in self.session.get_inputs()}
            hidden = self.session.run(None, {k: v for k, v in feed.items() if k in wanted})[0]
            out[idx] = pool(hidden, mask, self.lock.normalize)
        return check_vectors(out, len(texts), self.dimension)


def pool(hidden: np.ndarray, mask: np.ndarray, normalize: bool) -> np.ndarray:
    """Mean over real tokens, then (as the lock says) L2 normalisation, as sentence-transformers does."""
    m = mask[:, :, None].astype(np.float32)
    summed = (hidden * m).sum(axis=1)
    vec = summed / np.clip(m.sum(axis=1), 1e-9, None)
    if normalize:
        vec = vec / np.clip(np.linalg.norm(vec, axis=1, keepdims=True), 1e-12, None)
    return vec.astype(np.float32)


# The fp32 export serves a torch store's queries only if it reproduces torch's vectors this closely.
QUERY_TOLERANCE = 1e-5
_PROBES = (
    "Attention is all you need. The dominant sequence transduction models are based on recurrent networks.",
    "LoRA",
    "μP: zero-shot hyperparameter transfer across widths " * 20,
)


def prepare_query_model(lock: ModelLock, reference: Any) -> bool:
    """Cache the ONNX fp32 export for a torch store's queries, if it matches ``reference`` (torch).

    Checked on probe texts (short, long, truncated); an export that differs by more than
    ``QUERY_TOLERANCE`` is deleted, and queries then load torch. Returns whether it is usable.
    """
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    directory = artifacts.artifact_dir("onnx-fp32", lock)
    if (directory / artifacts.MANIFEST).is_file():
        return True
    prepare(lock, "fp32")
    got = OnnxEmbedder(lock, "fp32").embed_batch(_PROBES)
    want = reference.embed_batch(_PROBES)
    if float(np.abs(got - want).max()) > QUERY_TOLERANCE:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        return False
    return True
