"""The one snapshot mechanism (store generations and saved maps): numbering, pointer, swap, pruning."""

from __future__ import annotations

from pathlib import Path

import pytest

from paperscope.errors import DamagedError
from paperscope.snapshots import Snapshots
from paperscope.store import Store


def _snap(tmp_path: Path) -> Snapshots:
    return Snapshots(tmp_path / "snaps", "s-", tmp_path / "CURRENT", keep=2, what="a snapshot", repair="redo it")


def test_numbering_pointer_and_pruning(tmp_path: Path) -> None:
    snaps = _snap(tmp_path)
    assert snaps.current() is None and snaps.names() == []
    made = []
    for i in range(4):
        name, tmp = snaps.begin()
        (tmp / "data.txt").write_text(str(i))
        made.append(snaps.commit(name, tmp))
    assert [p.name for p in made] == ["s-000001", "s-000002", "s-000003", "s-000004"]
    assert snaps.names() == ["s-000003", "s-000004"]  # keep=2: the live one and the one before
    assert snaps.current() == made[-1] and (snaps.current() / "data.txt").read_text() == "3"
    assert not list(snaps.directory.glob(".tmp-*"))


def test_a_crashed_begin_leaves_nothing_live_and_is_cleaned_up(tmp_path: Path) -> None:
    snaps = _snap(tmp_path)
    name, tmp = snaps.begin()
    snaps.commit(name, tmp)
    _, stale = snaps.begin()  # a writer killed before commit
    (stale / "half-written").write_text("x")
    assert snaps.current().name == "s-000001" and snaps.names() == ["s-000001"]
    name, tmp = snaps.begin()
    assert name == "s-000002" and list(tmp.iterdir()) == []


@pytest.mark.parametrize("pointer", ["s-000009\n", "../../etc\n", "\xff"])
def test_a_damaged_pointer_names_the_file_and_the_repair(tmp_path: Path, pointer: str) -> None:
    snaps = _snap(tmp_path)
    name, tmp = snaps.begin()
    snaps.commit(name, tmp)
    snaps.pointer.write_bytes(pointer.encode("latin-1"))
    with pytest.raises(DamagedError, match=r"CURRENT: damaged .*; redo it$"):
        snaps.current()


def test_store_generations_and_maps_are_snapshots(tmp_path: Path) -> None:
    store = Store(tmp_path / "st")
    assert store.generations.pointer == store.path / "CURRENT" and store.generations.prefix == "g"
    assert store.maps.pointer == store.map_dir / "CURRENT" and store.maps.prefix == "state-"
    assert "paperscope map --refit" in store.maps.repair and "index --rebuild" in store.generations.repair


def test_a_map_pruned_while_it_is_read_is_read_again_from_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two maps saved between reading map/CURRENT and reading arrays.npz prune the map being
    read: the reader reads the newest, and real damage (the pointer unchanged) still raises."""
    import numpy as np

    from paperscope import store as store_mod
    from paperscope.errors import StoreError

    store = Store(tmp_path / "store")
    store.write_map({"n": 1}, {"xy": np.zeros((1, 2))})
    digest = store_mod.file_digest
    calls: list[Path] = []

    def digest_then_two_saves(path: Path, *algorithm: str) -> str:
        calls.append(path)
        if len(calls) == 1:  # the reader's first digest: two saves happen now
            for n in (2, 3):
                store.write_map({"n": n}, {"xy": np.full((n, 2), n)})
            assert not path.exists()
        return digest(path, *algorithm)

    monkeypatch.setattr(store_mod, "file_digest", digest_then_two_saves)
    meta, arrays = store.read_map()
    assert meta["n"] == 3 and arrays["xy"].shape == (3, 2)
    monkeypatch.setattr(store_mod, "file_digest", digest)
    (store.maps.current() / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(StoreError, match="arrays.npz: damaged map"):
        store.read_map()
