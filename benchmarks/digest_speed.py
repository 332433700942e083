"""How fast a store file is hashed: sha256 (rounds 1-13) against XXH3-128 (round 14), same file.

    python benchmarks/digest_speed.py [--mb 1024] [--file PATH] [--repeats 5]

Hashes one file (default: a temporary file of ``--mb`` MiB of random bytes) with
``paperscope.files.file_digest`` for each algorithm, alternating, after one read that brings it
into the page cache; prints the median GB/s of each and their ratio as JSON. Every build hashes
the files it writes and the previous generation it reuses (8.8 GB each at 1M papers), and
``paperscope verify`` the live one, so this speed is a floor on their cost on a warm cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from paperscope.files import file_digest

ALGORITHMS = ("sha256", "xxh3_128")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="size of the temporary file (MiB)")
    ap.add_argument("--file", type=Path, help="hash this file instead of a temporary one")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
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


if __name__ == "__main__":
    raise SystemExit(main())
