"""Store file digests: XXH3-128 for every file a build writes (and the saved map); a store written
before round 14 (a sha256 per file) still opens, verifies, finds damage and re-indexes, the files
it carries by hard link keeping their recorded sha256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xxhash
from conftest import FakeEmbedder

from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import SEAL, sealed, verify


def rows(n: int) -> list[dict[str, str]]:
    return [
        {
            "id": f"p{i}",
            "title": f"Paper {i} on width",
            "abstract": f"topic{i % 7} learning rate transfer " * 8,
            "date": "2024-01-01",
        }
        for i in range(n)
    ]


def write(path: Path, papers: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in papers), encoding="utf-8")
    return path


def as_written_before_round_14(store: Path) -> None:
    """Rewrite the live manifest as rounds 1-13 wrote it: a sha256 per file, then the seal."""
    gen = Store(store).require_current()
    manifest = {k: v for k, v in gen.manifest.items() if k != SEAL}
    manifest["files"] = {
        name: {"bytes": meta["bytes"], "sha256": hashlib.sha256(gen.file(name).read_bytes()).hexdigest()}
        for name, meta in manifest["files"].items()
    }
    gen.file("manifest.json").write_text(json.dumps(sealed(manifest), indent=2), encoding="utf-8")


def test_a_build_records_the_xxh3_128_of_every_file_it_writes(tmp_path: Path) -> None:
    build([write(tmp_path / "a.jsonl", rows(40))], tmp_path / "s", embedder=FakeEmbedder())
    gen = Store(tmp_path / "s").require_current()
    assert len(gen.manifest["files"]) == 5
    for name, meta in gen.manifest["files"].items():
        assert set(meta) == {"bytes", "xxh3_128"}
        assert meta["xxh3_128"] == xxhash.xxh3_128(gen.file(name).read_bytes()).hexdigest()
    report = verify(Store(tmp_path / "s"))
    assert report.ok and all(f.detail.startswith("xxh3_128 ") for f in report.findings[2:])


def test_a_store_written_with_sha256_opens_verifies_and_reindexes(tmp_path: Path) -> None:
    papers = rows(40)
    src = write(tmp_path / "a.jsonl", papers)
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    as_written_before_round_14(tmp_path / "s")
    report = verify(Store(tmp_path / "s"))
    assert report.ok and all(f.detail.startswith("sha256 ") for f in report.findings[2:])
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:  # a small store: every digest checked on open
        assert ex.related("p3", k=3, mode="dense")
    before = Store(tmp_path / "s").require_current()
    papers[4] = {**papers[4], "date": "2024-02-02"}  # metadata only: everything but papers.sqlite carried
    build([write(src, papers)], tmp_path / "s", embedder=FakeEmbedder())
    after = Store(tmp_path / "s").require_current()
    assert after.name != before.name
    for name, meta in after.manifest["files"].items():
        if name == "papers.sqlite":  # written again: the new digest
            assert set(meta) == {"bytes", "xxh3_128"}
        else:  # a hard link: the sha256 recorded for these bytes, not hashed again
            assert meta["sha256"] == before.manifest["files"][name]["sha256"] and "xxh3_128" not in meta
    assert verify(Store(tmp_path / "s")).ok


def test_damage_in_a_file_recorded_with_sha256_is_found_and_refused(tmp_path: Path) -> None:
    src = write(tmp_path / "a.jsonl", rows(40))
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    as_written_before_round_14(tmp_path / "s")
    vectors = Store(tmp_path / "s").require_current().file("vectors.npy")
    arr = np.load(vectors)
    arr[5] *= 1.0001  # same size, other bytes
    np.save(vectors, arr)
    damaged = verify(Store(tmp_path / "s")).damaged
    assert [Path(f.path).name for f in damaged] == ["vectors.npy"] and "sha256 differs" in damaged[0].detail
    with pytest.raises(StoreError, match=r"vectors.npy: damaged \(sha256 differs from the manifest\)"):
        Explorer(tmp_path / "s", embedder=FakeEmbedder())
    with pytest.raises(StoreError, match=r"vectors.npy: sha256 differs.*--rebuild"):
        build([write(tmp_path / "b.jsonl", rows(41)[40:])], tmp_path / "s", embedder=FakeEmbedder())


def test_a_map_saved_with_sha256_is_read_and_its_damage_found(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.write_map({"n": 1}, {"xy": np.arange(6.0).reshape(3, 2)})
    state = store.maps.current()
    meta = json.loads((state / "map.json").read_text(encoding="utf-8"))
    assert meta["arrays_xxh3_128"] == xxhash.xxh3_128((state / "arrays.npz").read_bytes()).hexdigest()
    old = {k: v for k, v in meta.items() if k not in (SEAL, "arrays_xxh3_128")}
    old["arrays_sha256"] = hashlib.sha256((state / "arrays.npz").read_bytes()).hexdigest()
    (state / "map.json").write_text(json.dumps(sealed(old)), encoding="utf-8")
    read = store.read_map()
    assert read is not None and read[1]["xy"].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    data = bytearray((state / "arrays.npz").read_bytes())
    data[-30] ^= 1
    (state / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"arrays.npz: damaged map \(sha256 differs from map.json\)"):
        store.read_map()
