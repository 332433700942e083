"""A feeder that keeps a GPU busy: texts in, unit vectors out, chunk by chunk and in order.

sentence-transformers' ``encode`` tokenizes each batch in line with the forward pass, so on a
GPU the card waits for one CPU core (the issue measured 2,470 abstracts/s where the forward
pass alone takes 20,782/s). Here:

- tokenization runs in ``workers`` processes (the fast ``tokenizers`` library, one thread
  each) and runs ahead of the forward pass through a bounded queue of ``prefetch`` jobs;
- the texts of a window (several checkpoint chunks) are sorted by token length and cut into
  batches by a token budget (rows x longest row), so short texts make large batches and
  padding is small;
- on CUDA, batches are built in pinned host memory and copied with ``non_blocking=True``, and
  vectors stay on the card until the window is done (one device-to-host copy per window);
- vectors come back in input order, one array per input chunk, as soon as its window is
  done: the pipeline checkpoints and resumes exactly as with the plain path.

The transformer module runs directly, with mean pooling over the attention mask (in fp32,
whatever the model's dtype) and L2 normalisation: what the pinned model's
``1_Pooling/config.json`` and ``2_Normalize`` module ask for, checked on load.

This module imports only numpy at import time; torch and transformers load with the model,
and the worker processes import nothing but ``tokenizers``.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.embed.base import LockedEmbedder
from paperscope.embed.device import CPU, Placement
from paperscope.embed.lock import ModelLock, model_dir, verify_files
from paperscope.errors import ModelLockError

# Rows x longest row per forward batch. On CUDA: up to 1024 full-length (256-token) texts, the
# batch the forward-only figure used. On the CPU: 32 full-length texts, as encode(batch_size=32).
GPU_TOKEN_BUDGET = 1024 * 256
CPU_TOKEN_BUDGET = 32 * 256
# Texts sorted together before batching; also the most a killed run redoes.
GPU_WINDOW_TEXTS = 8192
CPU_WINDOW_TEXTS = 1024
# Texts per tokenizer job (a job is the unit sent to a worker process).
JOB_TEXTS = 256


def default_workers() -> int:
    """Tokenizer processes: all cores but two (one feeds the GPU, one reads and writes the store)."""
    return max(1, (os.cpu_count() or 1) - 2)


# ---- the worker side: only tokenizers and numpy ----
_TOKENIZER: Any = None


def _init_worker(tokenizer_json: str, max_length: int) -> None:
    global _TOKENIZER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per process: the processes are the parallelism
    _TOKENIZER = _load_tokenizer(tokenizer_json, max_length)


def _load_tokenizer(tokenizer_json: str, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(tokenizer_json)
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def _tokenize_with(tok: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``texts`` concatenated (int32) and each text's length: cheap to send between processes."""
    # sentence-transformers strips each text before tokenizing; so do we (same ids, same vectors).
    encodings = tok.encode_batch([t.strip() for t in texts])
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
    ids = np.fromiter((i for e in encodings for i in e.ids), dtype=np.int32, count=int(lengths.sum()))
    return ids, lengths


def _tokenize(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    return _tokenize_with(_TOKENIZER, texts)


class _Done:
    """A finished result with a Future's ``result()``: the in-process (workers=0) path."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value


def check_pooling(root: Path, lock: ModelLock) -> None:
    """Refuse a model whose modules are not Transformer -> mean Pooling (-> Normalize): the feeder runs only those."""
    modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ModelLockError(
            f"{root / 'modules.json'}: the GPU feeder runs Transformer + Pooling (+ Normalize) "
            f"models, this one has {' + '.join(kinds)}; use --device cpu"
        )
    pooling_cfg = json.loads((root / modules[1]["path"] / "config.json").read_text(encoding="utf-8"))
    modes = sorted(k for k, v in pooling_cfg.items() if k.startswith("pooling_mode") and v is True)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ModelLockError(
            f"{root / modules[1]['path'] / 'config.json'}: the GPU feeder does mean pooling only, "
            f"this model asks for {', '.join(modes) or 'none'}; use --device cpu"
        )
    if (kinds[-1] == "Normalize") != lock.normalize:
        raise ModelLockError(f"{root / 'modules.json'}: normalisation disagrees with models.lock; re-pin the model")


def supports(root: Path, lock: ModelLock) -> bool:
    """Whether the feeder can run the model in ``root`` (see :func:`check_pooling`)."""
    try:
        check_pooling(root, lock)
    except (ModelLockError, OSError, ValueError, KeyError, IndexError):
        return False
    return True


class FeederEmbedder(LockedEmbedder):
    """The pinned torch model run by the feeder on ``placement`` (any torch device; meant for CUDA).

    ``workers=0`` tokenizes in this process (no prefetch); ``token_budget`` and ``window_texts``
    default by device. ``embed_chunks`` is the streaming entry point the local engine uses;
    ``embed_batch`` is one chunk through the same path.
    """

    def __init__(
        self,
        lock: ModelLock,
        placement: Placement = CPU,
        *,
        workers: int | None = None,
        token_budget: int | None = None,
        window_texts: int | None = None,
        prefetch: int | None = None,
        verify: bool = True,
        root: Path | None = None,
    ):
        self.lock = lock
        self.placement = placement
        gpu = placement.device.startswith("cuda")
        self.workers = default_workers() if workers is None else max(0, int(workers))
        self.token_budget = token_budget or (GPU_TOKEN_BUDGET if gpu else CPU_TOKEN_BUDGET)
        self.window_texts = window_texts or (GPU_WINDOW_TEXTS if gpu else CPU_WINDOW_TEXTS)
        # Jobs in flight: enough that every worker has one queued behind the one it is doing.
        self.prefetch = prefetch or max(2, 2 * self.workers)
        self.pin = gpu  # pinned host memory only helps host-to-CUDA copies
        root = Path(root) if root is not None else model_dir(lock)
        if verify:
            verify_files(lock, root)  # the same weights whatever the device: fp16 is a cast after loading
        check_pooling(root, lock)
        self.root = root
        self.tokenizer_json = str(root / "tokenizer.json")
        self._tokenizer = _load_tokenizer(self.tokenizer_json, lock.max_seq_length)
        self.model = self._load_model(root, placement)
        import inspect

        # BERT-like models take token_type_ids, others (MPNet, say) refuse the argument.
        self._type_ids = "token_type_ids" in inspect.signature(self.model.forward).parameters
        self.forward_seconds = 0.0

    @staticmethod
    def _load_model(root: Path, placement: Placement) -> Any:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the files are local and verified: never a download
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # transformers' "Loading weights" bar would interleave with ours

        modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
        model = AutoModel.from_pretrained(str(root / modules[0].get("path", "")))
        dtype = getattr(torch, placement.dtype)
        return model.to(device=placement.device, dtype=dtype).eval()

    # ---- the Embedder protocol ----
    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        from paperscope.embed.base import check_vectors

        out = next(self._run([list(texts)], workers=0), None)
        return check_vectors(
            out if out is not None else np.zeros((0, self.dimension), np.float32), len(texts), self.dimension
        )

    def embed_chunks(self, chunks: Iterable[list[str]], workers: int | None = None) -> Iterator[np.ndarray]:
        """One (len(chunk), dimension) float32 array per chunk, in order, each as soon as its window is done.

        ``workers`` tokenizer processes (default: ``self.workers``; 0 tokenizes in this process).
        """
        yield from self._run(chunks, workers=self.workers if workers is None else max(0, int(workers)))

    # ---- the pipeline ----
    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids of all texts concatenated, each text's length), in this process: what a worker returns."""
        return _tokenize_with(self._tokenizer, texts)

    def _run(self, chunks: Iterable[list[str]], workers: int) -> Iterator[np.ndarray]:
        window_ids: list[np.ndarray] = []
        window_lengths: list[np.ndarray] = []
        sizes: list[int] = []  # the chunk lengths of this window, in order
        held = 0
        for size, ids, lengths in self.token_stream(chunks, workers):
            if size >= 0:
                sizes.append(size)
            window_ids.append(ids)
            window_lengths.append(lengths)
            held += lengths.size
            if held >= self.window_texts and size >= 0:  # a window ends on a chunk boundary
                yield from self._split(
                    self.forward_tokens(np.concatenate(window_ids), np.concatenate(window_lengths)), sizes
                )
                window_ids, window_lengths, sizes, held = [], [], [], 0
        if sizes:
            yield from self._split(
                self.forward_tokens(np.concatenate(window_ids), np.concatenate(window_lengths)), sizes
            )

    def token_stream(
        self, chunks: Iterable[list[str]], workers: int | None = None
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """(chunk size or -1, ids, lengths) per tokenizer job, in input order, ``prefetch`` jobs ahead.

        ``workers`` processes tokenize (default: ``self.workers``; 0: this process, no read-ahead).
        A chunk longer than JOB_TEXTS is split into several jobs; only its last job carries the
        chunk's size (the others -1), so a consumer can cut windows on chunk boundaries.
        """
        workers = self.workers if workers is None else workers
        pool = None
        if workers > 0:
            import multiprocessing
            import sys

            # fork on Linux, as torch's own DataLoader workers do: the children never touch torch or CUDA
            # (only tokenizers), and fork needs no `if __name__ == "__main__"` guard in the caller's script.
            method = "fork" if sys.platform.startswith("linux") else "spawn"
            # Said explicitly (the library's default), so that tokenizers does not warn in every forked child
            # that parallelism was used before the fork; the children turn their own off in _init_worker.
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
            pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context(method),
                initializer=_init_worker,
                initargs=(self.tokenizer_json, self.lock.max_seq_length),
            )
        inflight: deque[tuple[int, Future[Any] | _Done]] = deque()
        it = iter(chunks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(inflight) < (self.prefetch if pool is not None else 1):
                    chunk = next(it, None)  # reading the texts (the store's SQLite) happens here, in this thread
                    if chunk is None:
                        exhausted = True
                        break
                    starts = list(range(0, len(chunk), JOB_TEXTS)) or [0]
                    for k, start in enumerate(starts):
                        part = chunk[start : start + JOB_TEXTS]
                        job = pool.submit(_tokenize, part) if pool is not None else _Done(self.tokenize(part))
                        inflight.append((len(chunk) if k == len(starts) - 1 else -1, job))
                if not inflight:
                    return
                size, job = inflight.popleft()
                ids, lengths = job.result()
                yield size, ids, lengths
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def forward_tokens(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Unit vectors for tokenized texts (as :meth:`tokenize` gives), in input order.

        Length-sorted, token-budget batches; on CUDA pinned host memory and non-blocking copies;
        one device-to-host copy at the end.
        """
        import time

        import torch

        n = int(lengths.size)
        if n == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        offsets = np.zeros(n, dtype=np.int64)
        np.cumsum(lengths[:-1], out=offsets[1:])
        order = np.argsort(-lengths, kind="stable")  # longest first; ties keep input order
        device = torch.device(self.placement.device)
        out = torch.empty((n, self.dimension), dtype=torch.float32, device=device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            i = 0
            while i < n:
                longest = max(1, int(lengths[order[i]]))
                rows = max(1, min(n - i, self.token_budget // longest))
                idx = order[i : i + rows]
                lens = lengths[idx]
                mask_np = np.arange(longest)[None, :] < lens[:, None]
                batch_ids = np.zeros((rows, longest), dtype=np.int64)
                batch_ids[mask_np] = ids[(offsets[idx][:, None] + np.arange(longest)[None, :])[mask_np]]
                input_ids = torch.from_numpy(batch_ids)
                mask = torch.from_numpy(mask_np.astype(np.int64))
                where = torch.from_numpy(idx.astype(np.int64))
                if self.pin:
                    input_ids, mask, where = input_ids.pin_memory(), mask.pin_memory(), where.pin_memory()
                input_ids = input_ids.to(device, non_blocking=True)
                mask = mask.to(device, non_blocking=True)
                where = where.to(device, non_blocking=True)
                extra = {"token_type_ids": torch.zeros_like(input_ids)} if self._type_ids else {}
                hidden = self.model(input_ids=input_ids, attention_mask=mask, **extra).last_hidden_state
                out[where] = pool_and_normalise(hidden, mask, self.lock.normalize)
                i += rows
            result = out.cpu().numpy()  # the one device-to-host copy (and sync) per window
        self.forward_seconds += time.perf_counter() - t0
        return result

    @staticmethod
    def _split(vectors: np.ndarray, sizes: list[int]) -> Iterator[np.ndarray]:
        start = 0
        for size in sizes:
            yield vectors[start : start + size]
            start += size


def pool_and_normalise(hidden: Any, mask: Any, normalize: bool = True) -> Any:
    """Mean over real tokens (as sentence-transformers' Pooling), in fp32; then L2 normalisation (its Normalize)."""
    import torch

    m = mask.unsqueeze(-1).to(torch.float32)
    summed = (hidden.to(torch.float32) * m).sum(dim=1)
    pooled = summed / m.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled
