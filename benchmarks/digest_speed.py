"""How fast a store file is hashed: sha256 (rounds 1-13) against XXH3-128 (round 14), same file;
with ``--lines``, how fast input lines are hashed: blake2b (rounds 1-13) against XXH3-128.

    python benchmarks/digest_speed.py [--mb 1024] [--file PATH] [--repeats 5] [--lines CORPUS --n 200000]

Hashes one file (default: a temporary file of ``--mb`` MiB of random bytes) with
``paperscope.files.file_digest`` for each algorithm, alternating, after one read that brings it
into the page cache; prints the median GB/s of each and their ratio as JSON. Every build hashes
the files it writes and the previous generation it reuses (8.8 GB each at 1M papers), and
``paperscope verify`` the live one, so this speed is a floor on their cost on a warm cache.
``--lines`` hashes the first ``--n`` lines of a (gzipped) JSON Lines corpus in memory with
``inputs.legacy_line_hash`` and ``inputs.line_hash``, alternating, and prints seconds per
million lines (a re-index hashes every line of its inputs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from paperscope.files import file_digest, open_input
from paperscope.inputs import legacy_line_hash, line_hash

ALGORITHMS = ("sha256", "xxh3_128")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="size of the temporary file (MiB)")
    ap.add_argument("--file", type=Path, help="hash this file instead of a temporary one")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lines", type=Path, help="hash this corpus's lines instead of a file")
    ap.add_argument("--n", type=int, default=200_000, help="lines of --lines to hash")
    a = ap.parse_args()
    if a.lines is not None:
        return _lines(a.lines, a.n, a.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.file
        if path is None:
            path = Path(tmp) / "random.bin"
            with open(path, "wb") as fh:
                for _ in range(a.mb):
                    fh.write(os.urandom(1 << 20))
        size = path.stat().st_size
        file_digest(path)  # into the page cache: the disk is not what is compared
        seconds: dict[str, list[float]] = {name: [] for name in ALGORITHMS}
        for _ in range(a.repeats):
            for name in ALGORITHMS:
                t = time.perf_counter()
                file_digest(path, name)
                seconds[name].append(time.perf_counter() - t)
    gbps = {name: round(size / statistics.median(s) / 1e9, 2) for name, s in seconds.items()}
    print(
        json.dumps(
            {
                "bytes": size,
                "repeats": a.repeats,
                "median_gb_per_s": gbps,
                "ratio_xxh3_128_to_sha256": round(gbps["xxh3_128"] / gbps["sha256"], 2),
            }
        )
    )
    return 0


def _lines(corpus: Path, n: int, repeats: int) -> int:
    with open_input(corpus) as fh:
        lines = [line for _, line in zip(range(n), fh, strict=False)]
    hashers = {"blake2b": legacy_line_hash, "xxh3_128": line_hash}
    seconds: dict[str, list[float]] = {name: [] for name in hashers}
    for _ in range(repeats):
        for name, fn in hashers.items():
            t = time.perf_counter()
            for line in lines:
                fn(line)
            seconds[name].append(time.perf_counter() - t)
    per_million = {name: round(statistics.median(s) * 1e6 / len(lines), 3) for name, s in seconds.items()}
    print(
        json.dumps(
            {
                "lines": len(lines),
                "mean_bytes": round(sum(map(len, lines)) / max(1, len(lines))),
                "repeats": repeats,
                "median_s_per_million_lines": per_million,
                "ratio_blake2b_to_xxh3_128": round(per_million["blake2b"] / per_million["xxh3_128"], 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
