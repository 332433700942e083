"""Store file digests: XXH3-128 for every file a build writes (and the saved map); a store written
before round 14 (a sha256 per file) still opens, verifies, finds damage and re-indexes, the files
it carries by hard link keeping their recorded sha256."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest
import xxhash
from conftest import FakeEmbedder

from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.files import file_digest
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
            source = "papers.sqlite" if name == "papers-base.sqlite" else name  # the papers' base: the old file
            assert meta["sha256"] == before.manifest["files"][source]["sha256"] and "xxh3_128" not in meta
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


def as_recorded_before_round_14(store: Path, src: Path) -> None:
    """Rewrite the live record of input lines as rounds 1-13 wrote it (blake2b, no ``input_hash``
    table), then the manifest's entry for papers.sqlite and the seal."""
    gen = Store(store).require_current()
    lines = src.read_bytes().splitlines(keepends=True)
    con = sqlite3.connect(gen.file("papers.sqlite"))
    try:
        assert con.execute("SELECT algorithm FROM input_hash").fetchall() == [("xxh3_128",)]
        assert [bytes(h) for (h,) in con.execute("SELECT hash FROM input_lines ORDER BY entry")] == [
            xxhash.xxh3_128_digest(raw) for raw in lines
        ]
        con.executemany(
            "UPDATE input_lines SET hash = ? WHERE entry = ?",
            [(hashlib.blake2b(raw, digest_size=16).digest(), k) for k, raw in enumerate(lines)],
        )
        con.execute("DROP TABLE input_hash")
        con.commit()
    finally:
        con.close()
    manifest = {k: v for k, v in gen.manifest.items() if k != SEAL}
    path = gen.file("papers.sqlite")
    manifest["files"]["papers.sqlite"] = {"bytes": path.stat().st_size, "xxh3_128": file_digest(path)}
    gen.file("manifest.json").write_text(json.dumps(sealed(manifest), indent=2), encoding="utf-8")


def test_a_record_of_blake2b_line_hashes_still_spares_the_unchanged_lines(tmp_path: Path) -> None:
    """The first run after the line hash changed parses only the edited entries (a record that
    matched no line made it parse all of them: 335 s instead of 80 s at 1M papers), and records
    every line again in the new hash."""
    papers = rows(40)
    src = write(tmp_path / "a.jsonl", papers)
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    as_recorded_before_round_14(tmp_path / "s", src)
    for i in (3, 17):
        papers[i] = {**papers[i], "abstract": papers[i]["abstract"] + " with an edit"}
    report = build([write(src, papers)], tmp_path / "s", embedder=FakeEmbedder())
    assert (report.entries_read, report.entries_unchanged, report.changed, report.embedded) == (2, 38, 2, 2)
    gen = Store(tmp_path / "s").require_current()
    con = sqlite3.connect(f"file:{gen.file('papers.sqlite')}?mode=ro", uri=True)
    try:
        assert con.execute("SELECT algorithm FROM input_hash").fetchall() == [("xxh3_128",)]
        recorded = [bytes(h) for (h,) in con.execute("SELECT hash FROM input_lines ORDER BY entry")]
    finally:
        con.close()
    assert recorded == [xxhash.xxh3_128_digest(raw) for raw in src.read_bytes().splitlines(keepends=True)]
    papers[30] = {**papers[30], "abstract": "another edit " * 10}
    report = build([write(src, papers)], tmp_path / "s", embedder=FakeEmbedder())
    assert (report.entries_unchanged, report.changed) == (39, 1)
    assert verify(Store(tmp_path / "s")).ok


def test_check_map_checks_every_byte_and_each_header_without_loading_the_arrays(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    assert store.check_map() is None
    store.write_map({"n": 2}, {"xy": np.arange(6.0).reshape(3, 2), "topic": np.array([0, 1, 1])})
    assert store.check_map() is not None and store.check_map()["n"] == 2
    state = store.maps.current()
    data = bytearray((state / "arrays.npz").read_bytes())
    data[-30] ^= 1
    (state / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"arrays.npz: damaged map \(xxh3_128 differs from map.json\)"):
        store.check_map()
    # A map written wrong (its digest recorded over a member that is no .npy): the header check finds it.
    with zipfile.ZipFile(state / "arrays.npz", "w") as z:
        z.writestr("xy.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8, }")  # .npy magic, no readable header
    meta = {k: v for k, v in json.loads((state / "map.json").read_text(encoding="utf-8")).items() if k != SEAL}
    meta["arrays_xxh3_128"] = file_digest(state / "arrays.npz")
    (state / "map.json").write_text(json.dumps(sealed(meta)), encoding="utf-8")
    with pytest.raises(StoreError, match=r"arrays.npz: damaged map"):
        store.check_map()


def test_the_notebook_view_of_a_store_says_a_map_is_saved_without_reading_it(tmp_path: Path) -> None:
    from IPython.core.formatters import DisplayFormatter

    build([write(tmp_path / "a.jsonl", rows(30))], tmp_path / "s", embedder=FakeEmbedder())
    store = Store(tmp_path / "s")
    store.write_map({"n": 1}, {"xy": np.zeros((30, 2))})
    (store.maps.current() / "arrays.npz").write_bytes(b"damaged")  # found by verify, not by a repr
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:
        html = DisplayFormatter().format(ex)[0]["text/html"]
    assert "saved map" in html and ">yes<" in html
    damaged = verify(store).damaged
    assert [Path(f.path).name for f in damaged] == ["arrays.npz"] and "damaged map" in damaged[0].detail
