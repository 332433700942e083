"""``onnx-int8-solo``: the int8 ONNX model with every text run alone, so a vector is a function of its text.

``onnx-int8`` runs length-sorted, padded batches, and its dynamic quantisation computes each
activation scale over the whole batch: a paper's vector then depends on its batch-mates and on
the padding. Here each text is one sequence of exactly its own tokens (no padding, no mask), so
every scale, every GEMM shape and every summation order is decided by that text alone: the same
text gives the bit-identical vector in any batch, at any position, in any chunking, resumed or
not. ``onnx-int8-solo`` runs the ``onnx-int8`` export itself (one artefact, one sha256);
``onnx-int8-solo-v2``, the default, runs the ``onnx-int8-ln`` export of the same weights, whose
residual adds and layer norms are plain ``Add`` and ``LayerNormalization`` ops: ONNX Runtime's fused
SkipLayerNormalization CPU kernel is six times slower than the two (docs/backends.md).

Throughput comes from running several texts at once instead of batching them: ``workers``
Python threads (the CPUs this process may use) share one session whose kernels run on a single
thread each (``intra_op_num_threads=1``). ONNX Runtime releases the GIL in ``run``, the texts
are independent, and a single-threaded session does no spin-waiting, which on a busy machine
halves the time a two-thread session takes (benchmarks/backend_speed.py). A vector does not
depend on the number of workers either (tests/e2e/test_backends.py compares 1 and 2).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from paperscope.embed.base import check_vectors
from paperscope.embed.lock import ModelLock
from paperscope.embed.onnx_backend import OnnxEmbedder, pool


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class SoloOnnxEmbedder(OnnxEmbedder):
    """The ``onnx-int8`` model, one unpadded text per run: the same text always gives the same vector."""

    def __init__(self, lock: ModelLock, workers: int | None = None, skip_layer_norm: bool | None = None):
        super().__init__(lock, "int8", threads=1, skip_layer_norm=skip_layer_norm)
        self.workers = workers or available_cpus()
        # Models without segment ids (MPNet) export no token_type_ids input.
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed_one(self, ids: Sequence[int]) -> np.ndarray:
        """The unit vector of one tokenised text, run alone (shape ``(dimension,)``)."""
        row = np.asarray(ids, dtype=np.int64)[None, :]
        ones = np.ones_like(row)
        feed: dict[str, Any] = {"input_ids": row, "attention_mask": ones, "token_type_ids": np.zeros_like(row)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        return pool(hidden, ones, self.lock.normalize)[0]

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        # Longest first, so that the last texts to finish are short ones and no worker idles long.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        if self.workers == 1 or len(texts) == 1:
            for i in order:
                out[i] = self.embed_one(encodings[i].ids)
        else:
            with ThreadPoolExecutor(self.workers) as pool_:
                for i, vec in zip(order, pool_.map(lambda i: self.embed_one(encodings[i].ids), order)):
                    out[i] = vec
        return check_vectors(out, len(texts), self.dimension)
