"""Reading scattered rows of a memory map whose pages may not be in memory yet.

A query reads a few hundred scattered rows of maps that are gigabytes at a million papers (the
vectors, the lexical forward index). When the page cache does not hold them (the first queries
after a reboot, or after the kernel evicted them), each page fault waits for the device, one after
the other: 1,200 papers' lexical entries and vectors of a cold 1M store took 0.28-0.32 s to gather.
Faults taken by several threads at once are served by the device together (0.08 s), but with
the pages in memory the threads only add work. So :func:`take` reads a first block itself and hands
the rest to threads only when that block was slow (``benchmarks/mapped_reads.py``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["take"]

# Bytes read before deciding. Above this many seconds per byte the pages were being read from the
# device: with the pages in memory a gather costs 0.1-2 ns per byte here (rows of vectors, single
# lexical entries), from a cold map 60-250 ns.
FIRST_BYTES = 1 << 14
COLD_SECONDS_PER_BYTE = 25e-9
THREADS = 16
_pool: ThreadPoolExecutor | None = None


def take(source: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``source[index]`` (along the first axis), the same array whether or not threads read it."""
    index = np.asarray(index)
    row_bytes = max(1, source.itemsize * int(np.prod(source.shape[1:], dtype=np.int64)))
    first = max(1, FIRST_BYTES // row_bytes)
    if len(index) <= 2 * first:
        return source[index]
    t0 = time.perf_counter()
    head = source[index[:first]]
    if time.perf_counter() - t0 < COLD_SECONDS_PER_BYTE * first * row_bytes:
        # In memory: the whole gather again (the first block is 16 KB) costs less than joining parts.
        return source[index]
    out = np.empty((len(index), *source.shape[1:]), dtype=source.dtype)
    out[:first] = head
    # numpy's fancy indexing releases the GIL, so the threads' page faults overlap.
    bounds = np.linspace(first, len(index), THREADS + 1).astype(np.int64)

    def part(i: int) -> None:
        a, b = int(bounds[i]), int(bounds[i + 1])
        out[a:b] = source[index[a:b]]

    list(_threads().map(part, range(THREADS)))
    return out


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(THREADS, thread_name_prefix="paperscope-pagein")
    return _pool
