"""``paperscope index --engine ray`` on a two-node Ray cluster started on this machine, against the local engine.

    python benchmarks/ray_cluster.py [--papers FILE]... [--backend NAME] [--pairs 1] [--port 6411] [--out JSON]

Starts a head node (``ray start --head --port=PORT --num-cpus=1 --temp-dir=DIR``) and a second
node on the same host (``ray start --address=HEAD --num-cpus=1``), with a token of its own
(``RAY_AUTH_MODE=token``); both inherit this process's environment, so their workers import the
same paperscope and find the same model cache (the backend's derived model is made first,
untimed). Then, per corpus (default: the bundled one) and pair, in alternating order, two fresh
full builds, each a separate ``paperscope index --json`` process: the local engine, and ``RAY_ADDRESS=HEAD ... --engine ray``. The Ray build's report
(``nodes``: texts per Ray node id) must show both nodes at work; ``ray.nodes()`` gives their ids.
Prints one JSON object per build and a markdown table; ``--out`` writes all of it as JSON.

The cluster is stopped by ending the processes it started, one id at a time (found by a tag in
their environment): ``ray stop`` would end every Ray of this user on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

# The tests' helper finds a Ray instance's processes by a tag in their environment (their command
# lines are renamed); the cluster this script starts is found and ended the same way.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rayprocs import TAG_VAR, tagged  # noqa: E402


def stop_cluster(tag: str) -> int:
    """SIGTERM, then SIGKILL after 15 s, each process of the cluster by id; how many were running."""
    first = tagged(tag)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in tagged(tag):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 15
        while tagged(tag) and time.monotonic() < deadline:
            time.sleep(0.25)
    return len(first)


def run(cmd: list[str], env: dict[str, str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out


def start_cluster(port: int, temp: Path, env: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """Head plus a second node, 1 CPU each; (address, [{node_id, cpus}]) once both are alive."""
    # Both nodes on the loopback address: two raylets on one host, as ray.cluster_utils does for tests.
    ray = [sys.executable, "-m", "ray.scripts.scripts", "start", "--num-cpus=1", "--disable-usage-stats"]
    ray.append("--node-ip-address=127.0.0.1")
    run([*ray, "--head", f"--port={port}", f"--temp-dir={temp}", "--include-dashboard=false"], env)
    address = f"127.0.0.1:{port}"
    run([*ray, f"--address={address}"], env)
    probe = (
        "import json, ray; ray.init(log_to_driver=False); "
        "print(json.dumps([{'node_id': n['NodeID'], 'cpus': n['Resources'].get('CPU', 0)} "
        "for n in ray.nodes() if n['Alive']])); ray.shutdown()"
    )
    nodes = json.loads(run([sys.executable, "-c", probe], {**env, "RAY_ADDRESS": address}).stdout.strip())
    if len(nodes) != 2:
        raise SystemExit(f"expected 2 live nodes, got {nodes}")
    return address, nodes


def build(engine: str, papers: Path, backend: str | None, env: dict[str, str], work: Path) -> dict[str, Any]:
    store = work / f"store-{engine}"
    shutil.rmtree(store, ignore_errors=True)
    cmd = [sys.executable, "-m", "paperscope.cli", "index", str(papers), "--store", str(store), "--engine", engine]
    cmd += ["--json"] + (["--backend", backend] if backend else [])
    t0 = time.perf_counter()
    out = run(cmd, env)
    wall = time.perf_counter() - t0
    report = json.loads(out.stdout)
    shutil.rmtree(store, ignore_errors=True)
    keys = ("papers", "embedded", "embed_seconds", "model_load_seconds", "texts_per_second", "nodes")
    return {"engine": engine, "corpus": str(papers), "wall_s": round(wall, 2), **{k: report[k] for k in keys}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--papers", type=Path, action="append", help="corpus file (repeatable; default: the bundled one)")
    ap.add_argument("--backend", help="embedding backend (default: the lock's)")
    ap.add_argument("--pairs", type=int, default=1, help="local/ray pairs per corpus, in alternating order")
    ap.add_argument("--port", type=int, default=6411, help="the head node's GCS port")
    ap.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = ap.parse_args()
    from paperscope.corpus import bundled_corpus

    corpora = args.papers or [bundled_corpus()]
    tag = uuid.uuid4().hex[:12]
    temp = Path(tempfile.mkdtemp(prefix="psrc-", dir="/tmp"))  # short: Unix socket paths are limited
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PAPERSCOPE_RAY_CPUS")}
    env.update({TAG_VAR: tag, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    env.setdefault("HF_HUB_OFFLINE", "1")
    results: list[dict[str, Any]] = []
    # Derive the backend's model (ONNX export, static distillation) once, untimed: a cold cache would
    # charge minutes to whichever build runs first.
    warm = (
        "import sys; from paperscope.embed import registry; from paperscope.embed.lock import load_lock; "
        "registry.artifact_digest(registry.with_backend(load_lock(), sys.argv[1] or None), None)"
    )
    run([sys.executable, "-c", warm, args.backend or ""], env)
    try:
        t0 = time.perf_counter()
        address, nodes = start_cluster(args.port, temp, env)
        started = time.perf_counter() - t0
        print(json.dumps({"cluster": address, "nodes": nodes, "start_s": round(started, 1)}), flush=True)
        for papers in corpora:
            for pair in range(args.pairs):
                order = ["local", "ray"] if pair % 2 == 0 else ["ray", "local"]
                for engine in order:
                    run_env = {**env, "RAY_ADDRESS": address} if engine == "ray" else env
                    row = build(engine, papers, args.backend, run_env, temp)
                    if engine == "ray":
                        ids = {n["node_id"] for n in nodes}
                        row["both_nodes_worked"] = set(row["nodes"]) == ids and min(row["nodes"].values()) > 0
                    results.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        stopped = stop_cluster(tag)
        left = tagged(tag)
        shutil.rmtree(temp, ignore_errors=True)
        print(json.dumps({"stopped_processes": stopped, "left": left}), flush=True)
    load = os.getloadavg()
    summary = {
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(x, 2) for x in load],
        "backend": args.backend or "lock default",
        "results": results,
    }
    print("\n| corpus | engine | papers | wall s | embed s | texts/s | texts per node |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        per_node = ", ".join(str(v) for v in r["nodes"].values()) or "-"
        rate = f"{r['texts_per_second']:.1f}" if r["texts_per_second"] else "-"
        name = Path(r["corpus"]).name
        row = f"| {name} | {r['engine']} | {r['papers']} | {r['wall_s']} | {r['embed_seconds']:.1f} | {rate} | {per_node} |"
        print(row)
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
