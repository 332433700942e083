"""Reading scattered rows of a memory map whose pages may not be in memory yet.

A query reads a few hundred scattered rows of maps that are gigabytes at a million papers (the
vectors, the lexical forward index). When the page cache does not hold them (the first queries
after a reboot, or after the kernel evicted them), each page fault waits for the device, one after
the other: 1,200 papers' lexical entries and vectors of a cold 1M store took 0.28-0.32 s to gather.
Faults taken by several threads at once are served by the device together (0.08 s), but with
the pages in memory the threads only add work. So :func:`take` reads a first block itself and hands
the rest to threads only when that block was slow (``benchmarks/mapped_reads.py``).

Even with every page in the page cache, a process's first touch of each page of a map costs a
minor fault (the kernel maps the cached page into the process): a warm ``related`` at 1M papers
touches pages of the postings and the forward index that no earlier query touched: its p95 was
15.5-16.9 ms with the maps' pages unmapped first, 10.4-11.8 ms with them mapped up front (round 19,
``benchmarks/related_1m.py --preload-rounds``). :func:`populate` maps a long-lived process's arrays whole, up front
(``Explorer.preload``; ``paperscope serve`` runs it in a thread for each generation it opens).
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["libc_madvise", "populate", "take", "touch"]

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


# madvise(2) advice (Linux 5.14+): fault every page of a range in now, reading the file where needed.
MADV_POPULATE_READ = 22
PAGE = mmap.PAGESIZE


def _mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a file map (a memory-mapped ``.npy`` or a view of one)."""
    base: object = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base is not None


def _ranges(arrays: tuple[np.ndarray, ...]) -> list[tuple[int, int]]:
    """The page-aligned address ranges of the mapped arrays among ``arrays``, merged where they overlap."""
    spans = []
    for a in arrays:
        if a is None or not a.nbytes or not _mapped(a) or not a.flags.c_contiguous:
            continue
        start = a.__array_interface__["data"][0]
        spans.append((start // PAGE * PAGE, -(-(start + a.nbytes) // PAGE) * PAGE))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def touch(array: np.ndarray) -> None:
    """Read one byte of every page of ``array`` (C-contiguous): the portable way to fault its pages in."""
    flat = array.reshape(-1).view(np.uint8)
    for lo in range(0, len(flat), 1 << 30):  # a strided view, read a gigabyte of the map at a time
        int(flat[lo : lo + (1 << 30) : PAGE].max(initial=0))


def populate(*arrays: np.ndarray) -> int:
    """Map every page of the memory-mapped ``arrays`` into this process now; the bytes mapped.

    Arrays in memory are left alone. ``MADV_POPULATE_READ`` does it in the kernel (0.39 s for the
    7 GB of a 1M store's query files in the page cache here, minutes when they must be read from
    the device); where the kernel refuses it, one byte of every page is read instead. The pages
    then count in the process's RSS (they stay the kernel's page cache, shared and reclaimable).
    Each array must stay referenced until this returns (its map stays open while it is).
    """
    ranges = _ranges(arrays)
    advise = libc_madvise()
    for lo, hi in ranges:
        if advise is None or advise(lo, hi - lo, MADV_POPULATE_READ) != 0:
            touch(np.frombuffer((ctypes.c_char * (hi - lo)).from_address(lo), dtype=np.uint8))
    return sum(hi - lo for lo, hi in ranges)


@functools.cache
def libc_madvise() -> Callable[[int, int, int], int] | None:
    """libc's ``madvise(addr, length, advice)`` (0 on success), or None where there is none: for
    advice on part of a map (Python's ``mmap.madvise`` needs the map object and its offsets)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn
