"""ONNX Runtime's fused SkipLayerNormalization against a plain Add + LayerNormalization, on the CPU.

    python benchmarks/layer_norm_kernels.py [--tokens 246] [--hidden 384] [--calls 500] [--rounds 5]

Why the default backend's export keeps plain layer norms (docs/backends.md, round 12): one
sequence of ``--tokens`` x ``--hidden`` (MiniLM's width; 246 is the mean token count of the
bundled abstracts), each graph in its own single-threaded session with graph optimisations off
(so that neither is rewritten into the other), interleaved rounds of ``--calls`` runs. Prints the
median microseconds per call of each and their ratio, and the largest difference of their outputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def session(nodes: list, hidden: int, tokens: int) -> ort.InferenceSession:
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array((1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32), "gamma"),
        numpy_helper.from_array((0.1 * rng.standard_normal(hidden)).astype(np.float32), "beta"),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, tokens, hidden]) for n in ("x", "skip")]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "layer_norm", inputs, [output], inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=246)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    eps = 1e-12
    fused = session(
        [
            helper.make_node(
                "SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["y"], domain="com.microsoft", epsilon=eps
            )
        ],
        args.hidden,
        args.tokens,
    )
    plain = session(
        [
            helper.make_node("Add", ["x", "skip"], ["sum"]),
            helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=eps),
        ],
        args.hidden,
        args.tokens,
    )
    rng = np.random.default_rng(1)
    feed = {n: rng.standard_normal((1, args.tokens, args.hidden)).astype(np.float32) for n in ("x", "skip")}
    sessions = {"SkipLayerNormalization (fused)": fused, "Add + LayerNormalization": plain}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(20):  # warm-up: allocations, first-call paths
            s.run(None, feed)
    for _ in range(args.rounds):
        for name, s in sessions.items():
            t0 = time.perf_counter()
            for _ in range(args.calls):
                s.run(None, feed)
            times[name].append((time.perf_counter() - t0) / args.calls * 1e6)
    diff = float(np.abs(fused.run(None, feed)[0] - plain.run(None, feed)[0]).max())
    print(
        f"onnxruntime {ort.__version__}, one sequence of {args.tokens} x {args.hidden}, one thread, {args.rounds} rounds"
    )
    for name, t in times.items():
        print(f"{name:32s} median {statistics.median(t):7.1f} us per call (rounds: {', '.join(f'{x:.1f}' for x in t)})")
    a, b = (statistics.median(t) for t in times.values())
    print(f"fused / plain: {a / b:.2f}x; largest output difference {diff:.2e}")


if __name__ == "__main__":
    main()
