"""Inflating a gzipped input: the standard library's zlib against ISA-L's (python-isal), alternating.

    python benchmarks/inflate.py FILE.gz [--rounds 3]

Each round reads the whole file once with each, in 16 MiB blocks (as the line scan of
``paperscope index`` reads it), after one untimed read that puts the file in the page cache.
Prints wall and CPU seconds per round and the medians; the decompressed bytes must agree.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from pathlib import Path

from isal import igzip


def _inflate(opener, path: Path) -> tuple[int, float, float]:  # noqa: ANN001 - gzip.open or igzip.open
    t, c, n = time.perf_counter(), time.process_time(), 0
    with opener(path, "rb") as fh:
        while block := fh.read(1 << 24):
            n += len(block)
    return n, time.perf_counter() - t, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with open(a.file, "rb") as fh:  # into the page cache: both read from memory
        while fh.read(1 << 24):
            pass
    walls: dict[str, list[float]] = {"zlib": [], "isal": []}
    sizes = set()
    for r in range(a.rounds):
        for name, opener in (("zlib", gzip.open), ("isal", igzip.open)):
            n, wall, cpu = _inflate(opener, a.file)
            sizes.add(n)
            walls[name].append(wall)
            print(f"round {r + 1} {name}: {n:,} bytes, wall {wall:.2f} s, CPU {cpu:.2f} s", flush=True)
    assert len(sizes) == 1, "the two inflaters gave different byte counts"
    z, i = statistics.median(walls["zlib"]), statistics.median(walls["isal"])
    print(f"median wall: zlib {z:.2f} s, isal {i:.2f} s ({z / i:.1f}x)")


if __name__ == "__main__":
    main()
