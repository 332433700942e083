"""pagein.take: a gather that reads a cold memory map with threads gives the same array as plain indexing."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

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
