"""pagein.take: a gather that reads a cold memory map with threads gives the same array as plain indexing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import resident_kb

from paperscope import pagein


@pytest.fixture()
def mapped(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "v.npy", rng.standard_normal((20_000, 48)).astype(np.float32))
    np.save(tmp_path / "u.npy", rng.standard_normal(400_000).astype(np.float32))
    return np.load(tmp_path / "v.npy", mmap_mode="r"), np.load(tmp_path / "u.npy", mmap_mode="r")


@pytest.mark.parametrize("cold", [False, True])
def test_take_equals_indexing_whether_or_not_threads_read(
    mapped: tuple[np.ndarray, np.ndarray], cold: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cold: every first block counts as slow, so the rest is always read by the threads
    monkeypatch.setattr(pagein, "COLD_SECONDS_PER_BYTE", 0.0 if cold else 1.0)
    rows, entries = mapped
    rng = np.random.default_rng(1)
    for source, size in ((rows, 3_000), (entries, 150_000), (rows, 5), (entries, 0)):
        index = np.sort(rng.choice(len(source), size, replace=False))
        got = pagein.take(source, index)
        assert got.dtype == source.dtype and got.shape == (size, *source.shape[1:])
        assert np.array_equal(got, np.asarray(source)[index])
    ran = any(t.name.startswith("paperscope-pagein") for t in threading.enumerate())
    assert ran or not cold


@pytest.mark.parametrize("how", ["populate", "touch"])
def test_populate_maps_every_page_of_the_arrays_and_nothing_else(tmp_path: Path, how: str) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.arange(4 << 20, dtype=np.int32))  # 16 MiB, in the page cache once written
    arr = np.load(path, mmap_mode="r")
    before = resident_kb(path)
    if before is None:
        pytest.skip("needs /proc/self/smaps (Linux)")
    half = arr[: len(arr) // 2]  # a view of the first half: only its pages
    if how == "populate":
        assert pagein.populate(half, np.zeros(10)) >= half.nbytes  # an array in memory is left alone
    else:
        pagein.touch(half)
    after = resident_kb(path)
    assert after is not None
    # the first half (8 MiB), and not the rest: the kernel maps a little around a faulting page (64 KB
    # of fault-around; a whole 2 MiB folio of the page cache at once, seen with MADV_POPULATE_READ)
    assert 8 * 1024 - 4 <= after - before <= 10 * 1024 + 256, (before, after)
    assert pagein.populate(arr) >= arr.nbytes
    assert resident_kb(path) >= 16 * 1024 - 4
    assert int(arr[-1]) == (4 << 20) - 1  # the map still reads what was written
