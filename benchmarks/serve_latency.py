"""Latency of `paperscope serve` under concurrent clients: warm `related` and `search` over HTTP.

    python benchmarks/serve_latency.py [--store DIR] [--clients 16] [--requests 2000] [--seconds 120]

Starts a real `paperscope serve` process on 127.0.0.1 (a free port) on the store (default: the
bundled corpus indexed with the real pinned model into a temporary store), waits for it to be
ready and warm (page built, query model loaded), then for each endpoint runs ``--clients``
threads, each with its own keep-alive httpx client, until ``--requests`` requests have been
sent in all or ``--seconds`` have passed. Latency is measured per request at the client (so it
includes the client's own overhead). Prints a markdown table for benchmarks/RESULTS.md.
Targets (issue 15): related p95 <= 20 ms, search p95 <= 50 ms, zero errors.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import httpx

TARGETS = {"related": 20.0, "search": 50.0}  # p95, ms


def _start(store: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "paperscope.cli", "serve", "--store", str(store), "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    url = None
    for line in proc.stdout:
        if line.startswith("serving on "):
            url = line.split()[2].rstrip("/")
        if line.startswith("ready"):
            print(f"server: {line.strip()}", file=sys.stderr)
            assert url is not None
            return proc, url
    raise SystemExit(f"paperscope serve exited with {proc.wait()}")


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next(
            (line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")),
            platform.processor(),
        )
    except OSError:
        return platform.processor()


def _run(
    url: str, make_request: Callable[[httpx.Client, int], httpx.Response], clients: int, total: int, seconds: float
) -> dict[str, float]:
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while time.monotonic() < deadline:
                i = next(counter)
                if i >= total:
                    return
                t0 = time.perf_counter()
                try:
                    r = make_request(c, i)
                    ok = r.status_code == 200
                    detail = f"{r.status_code} {r.text[:100]}"
                except httpx.HTTPError as e:
                    ok, detail = False, repr(e)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    latencies.append(ms)
                    if not ok:
                        errors.append(detail)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        print(f"first errors: {errors[:3]}", file=sys.stderr)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "median": statistics.median(latencies),
        "p95": q[94],
        "p99": q[98],
        "rps": len(latencies) / wall,
        "seconds": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", type=Path, default=None, help="store to serve (default: bundled corpus, real model)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000, help="requests per endpoint, in all")
    ap.add_argument("--seconds", type=float, default=120.0, help="time limit per endpoint")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument(
        "--only",
        choices=["health", "related", "search"],
        action="append",
        help="measure only these endpoints (repeatable; default: all three)",
    )
    args = ap.parse_args()

    from paperscope.explorer import Explorer

    tmp = None
    store = args.store
    if store is None:
        from paperscope.pipeline import build

        tmp = tempfile.TemporaryDirectory(prefix="paperscope-serve-bench-")
        store = Path(tmp.name) / "store"
        print("indexing the bundled corpus with the real model...", file=sys.stderr)
        build(None, store)
    with Explorer(store) as ex:
        ids = [p.id for p in ex.papers()]
    queries = [
        q["query"]
        for q in json.loads((resources.files("paperscope") / "data/labels/queries.json").read_text(encoding="utf-8"))
    ]
    queries += [
        "learning-rate transfer across model widths",
        "diffusion models for video generation",
        "reinforcement learning from human feedback",
        "graph neural networks for molecules",
    ]
    rng = random.Random(0)
    rng.shuffle(ids)

    proc, url = _start(store)
    try:
        # Warm: the model loads in the server's background thread after "ready"; wait for it.
        with httpx.Client(base_url=url, timeout=300) as c:
            for q in queries[:5]:
                c.get("/api/search", params={"q": q, "k": args.k}).raise_for_status()
            for pid in ids[:20]:
                c.get(f"/api/related/{pid}", params={"k": args.k}).raise_for_status()
            papers = c.get("/api/health").json()["papers"]
        cases = {
            # The floor: HTTP, routing and JSON with no query (no target of its own).
            "health": lambda c, i: c.get("/api/health"),
            "related": lambda c, i: c.get(f"/api/related/{ids[i % len(ids)]}", params={"k": args.k}),
            # Distinct texts with a request number, so no layer can answer from a cache.
            "search": lambda c, i: c.get("/api/search", params={"q": f"{queries[i % len(queries)]} {i}", "k": args.k}),
        }
        results = {
            name: _run(url, fn, args.clients, args.requests, args.seconds)
            for name, fn in cases.items()
            if not args.only or name in args.only
        }
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        if tmp is not None:
            tmp.cleanup()

    load = os.getloadavg()
    print(
        f"\n{papers} papers, {args.clients} concurrent clients, k={args.k}, up to {args.requests} requests or "
        f"{args.seconds:.0f} s per endpoint; {_cpu()}, {os.cpu_count()} CPUs, load average {load[0]:.1f} "
        f"at the end\n"
    )
    print("| endpoint | requests | errors | median | p95 | p99 | req/s | p95 target | met |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        target = TARGETS.get(name)
        met = "" if target is None else "yes" if r["p95"] <= target and r["errors"] == 0 else "**no**"
        print(
            f"| {name} | {r['requests']} | {r['errors']} | {r['median']:.1f} ms | {r['p95']:.1f} ms | "
            f"{r['p99']:.1f} ms | {r['rps']:.0f} | {'' if target is None else f'{target:.0f} ms'} | {met} |"
        )


if __name__ == "__main__":
    main()
