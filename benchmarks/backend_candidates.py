"""Ways to make int8 vectors deterministic, measured: speed, cosine to torch, same text same vector.

    python benchmarks/backend_candidates.py [--texts 96] [--rounds 3] [--no-static]

Embeds the same bundled texts (spread over the corpus) with each candidate in one process, in
interleaved rounds, so machine load hits all alike; prints the median seconds, the speed-up
over torch (sentence-transformers, fp32), the cosine to torch's vectors, and whether a text's
vector is the same alone as inside the batch (np.array_equal, else the largest difference):

- ``onnx-int8``: length-sorted padded batches of 32, dynamic int8 (the existing backend);
- ``int8 solo, N workers``: the same model, each text alone and unpadded, N threads sharing one
  single-threaded session (``onnx-int8-solo``);
- ``int8 solo, plain layer norms``: the same again on the export whose layer norms are plain
  ``Add`` + ``LayerNormalization`` ops (``onnx-int8-solo-v2``, the default);
- ``int8 one-by-one, 2-thread session``: each text alone, one session with two intra-op threads;
- ``fp32 one-by-one``: the fp32 export, each text alone;
- ``static int8 (QDQ)``: ``quantize_static`` with MinMax calibration on every 8th bundled
  text, per-channel weights, each text alone and in padded batches.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from paperscope.corpus import bundled_corpus, read_corpus
from paperscope.embed import load_lock, with_backend
from paperscope.embed.lock import model_dir
from paperscope.embed.onnx_backend import OnnxEmbedder, pool, prepare
from paperscope.embed.solo_backend import SoloOnnxEmbedder, available_cpus
from paperscope.embed.torch_backend import SentenceTransformerEmbedder


def session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def static_model(fp32: Path, encodings: Sequence, out: Path) -> Path:
    """A statically quantised (QDQ) copy of the fp32 export, calibrated on ``encodings``."""
    import logging

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.rows = iter(encodings)

        def get_next(self) -> dict | None:
            e = next(self.rows, None)
            if e is None:
                return None
            ids = np.array([e.ids], dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}

    logging.getLogger().setLevel(logging.ERROR)  # its pre-processing advice and shape-inference notes
    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"DefaultTensorType": 1},
    )
    return out


def padded(sess, encodings: Sequence, batch: int = 32) -> np.ndarray:
    """Length-sorted padded batches through ``sess``, mean-pooled over the mask."""
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(-lengths, kind="stable")
    out = np.empty((len(encodings), 384), np.float32)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        ids = np.zeros((len(idx), int(lengths[idx].max())), np.int64)
        mask = np.zeros_like(ids)
        for j, i in enumerate(idx):
            ids[j, : lengths[i]], mask[j, : lengths[i]] = encodings[i].ids, 1
        hidden = sess.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
        out[idx] = pool(hidden, mask, True)
    return out


def one_by_one(sess, encodings: Sequence) -> np.ndarray:
    rows = []
    for e in encodings:
        ids = np.array([e.ids], dtype=np.int64)
        ones = np.ones_like(ids)
        hidden = sess.run(None, {"input_ids": ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ids)})[0]
        rows.append(pool(hidden, ones, True)[0])
    return np.stack(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-static", action="store_true", help="skip the static quantisation (half a minute)")
    args = ap.parse_args()
    lock = load_lock()
    papers = read_corpus([bundled_corpus()])
    texts = [lock.text(p.title, p.abstract) for p in papers[:: max(1, len(papers) // args.texts)][: args.texts]]
    torch_lock = with_backend(lock, "torch")
    int8_lock = with_backend(lock, "onnx-int8")
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(model_dir(lock) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length=lock.max_seq_length)
    encodings = tok.encode_batch(texts)
    cpus = available_cpus()
    torch_model = SentenceTransformerEmbedder(torch_lock)
    batched = OnnxEmbedder(int8_lock, "int8")
    solo = SoloOnnxEmbedder(with_backend(lock, "onnx-int8-solo"))
    solo_v2 = SoloOnnxEmbedder(with_backend(lock, "onnx-int8-solo-v2"))
    solo1 = SoloOnnxEmbedder(with_backend(lock, "onnx-int8-solo"), workers=1)
    two_thread = session(prepare(int8_lock, "int8")[0] / "model.onnx", 2)
    fp32 = session(prepare(lock, "fp32")[0] / "model.onnx", 1)
    candidates: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
        "torch (sentence-transformers fp32)": torch_model.embed_batch,
        "onnx-int8 (padded batches of 32)": batched.embed_batch,
        f"int8 solo, {cpus} workers (onnx-int8-solo)": solo.embed_batch,
        f"int8 solo, plain layer norms, {cpus} workers (onnx-int8-solo-v2)": solo_v2.embed_batch,
        "int8 solo, 1 worker": solo1.embed_batch,
        "int8 one-by-one, 2-thread session": lambda ts: one_by_one(two_thread, tok.encode_batch(list(ts))),
        "fp32 one-by-one, 1 thread": lambda ts: one_by_one(fp32, tok.encode_batch(list(ts))),
    }
    with tempfile.TemporaryDirectory() as d:
        if not args.no_static:
            t0 = time.perf_counter()
            path = static_model(prepare(lock, "fp32")[0] / "model.onnx", encodings[::8], Path(d) / "static.onnx")
            print(f"static quantisation: {time.perf_counter() - t0:.1f} s")
            qdq = session(path, cpus)
            candidates["static int8 QDQ, one-by-one"] = lambda ts: one_by_one(qdq, tok.encode_batch(list(ts)))
            candidates["static int8 QDQ, padded batches"] = lambda ts: padded(qdq, tok.encode_batch(list(ts)))
        times: dict[str, list[float]] = {k: [] for k in candidates}
        got: dict[str, np.ndarray] = {}
        for _ in range(args.rounds):
            for name, f in candidates.items():
                t0 = time.perf_counter()
                got[name] = f(texts)
                times[name].append(time.perf_counter() - t0)
        ref = got["torch (sentence-transformers fp32)"]
        base = statistics.median(times["torch (sentence-transformers fp32)"])
        print(f"{len(texts)} bundled texts, {args.rounds} interleaved rounds, {cpus} CPUs")
        print("| candidate | median s | speed-up vs torch | cosine to torch mean / min | alone = in batch |")
        print("| --- | --- | --- | --- | --- |")
        for name, f in candidates.items():
            cos = (got[name] * ref).sum(axis=1)
            alone = np.stack([f([t])[0] for t in texts[:8]])
            diff = float(np.abs(alone - got[name][:8]).max())
            same = "equal" if np.array_equal(alone, got[name][:8]) else f"no, max diff {diff:.1e}"
            med = statistics.median(times[name])
            print(f"| {name} | {med:.2f} | {base / med:.2f}x | {cos.mean():.5f} / {cos.min():.5f} | {same} |")


if __name__ == "__main__":
    main()
