"""Incremental generations: a re-run does work in proportion to what changed, and ends where a
from-scratch build of the same inputs ends (fake embedder; the kill -9 tests are in
tests/integration/test_incremental_crash.py)."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import random
from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import FakeEmbedder, whole_lexical

from paperscope import impact, index, layered_lexical
from paperscope.errors import InputError, StoreError
from paperscope.explorer import Explorer
from paperscope.index import CHECK_FRACTION
from paperscope.lexical import CarriedArrays, LexicalIndex, carry_rows
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify

WORDS = "adam sgd lora μp width depth transfer scaling diffusion attention kernel émile sparse".split()
LEX_KEYS = ("vocab_utf8", "vocab_offsets", "indptr", "terms", "counts", "title_counts", "df")


def corpus(n: int, edited: set[int] = frozenset(), seed: int = 0) -> list[dict[str, object]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(40))
        abstract = f"topic{i % 9} {words}" + (" revised with a new term zzedit" if i in edited else "")
        out.append({"id": f"p{i}", "title": f"Paper {i} on {rng.choice(WORDS)}", "abstract": abstract})
    return out


# Another domain's words: abstracts made of them embed (FakeEmbedder) away from the corpus' region.
COOKING = (
    "pasta tomato basil garlic olive simmer sauce oven bake flour butter sugar yeast dough knead roast "
    "chicken pepper onion carrot broth soup stew braise grill lemon vinegar honey cinnamon"
).split()


def reworded(n: int, edited: set[int], other_domain: bool = False) -> list[dict[str, object]]:
    """corpus(n) with the edited rows' abstracts written again: from the same words (an edit drawn
    like the corpus), or from COOKING plus a term the corpus never had, zzedit (a drifted corpus)."""
    rows = corpus(n)
    for i in edited:
        rng = random.Random(1000 + i)
        words = " ".join(rng.choice(COOKING if other_domain else WORDS) for _ in range(40))
        rows[i] = {**rows[i], "abstract": f"topic{i % 9} {words}" + (" zzedit" * other_domain)}
    return rows


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def lexical_arrays(store: Path) -> dict[str, np.ndarray]:
    arrays = whole_lexical(store)
    return {k: arrays[k] for k in LEX_KEYS}


def vectors(store: Path) -> np.ndarray:
    return Store(store).require_current().load_vectors(mmap=False)


def related_ids(store: Path, k: int = 5) -> list[list[str]]:
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        ids = [p.id for p in ex.papers()]
        return [[h.paper.id for h in ex.related(i, k=k, mode="dense")] for i in ids[:40]]


def papers(store: Path, source: str) -> list[object]:
    """Every stored paper in row order, its source file name normalised (two stores read two files)."""
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        return [
            (p.id, p.title, p.abstract, p.date, tuple(s.replace(source, "X") for s in p.sources)) for p in ex.papers()
        ]


def inode(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_dev, st.st_ino


@pytest.mark.parametrize(
    ("block", "entries", "in_order", "prefix"),
    [
        (65_536, 1 << 24, False, 24),
        (3, 1 << 24, False, 24),  # carried rows moved in many blocks (as at 1M papers)
        (65_536, 1 << 24, True, 24),  # rows kept in order, a few edited or appended: copied as runs of slices
        (65_536, 2, True, 24),  # ... each run copied in many slices
        (65_536, 1 << 24, True, 1),  # fresh terms found by their first byte, then bisected among those
    ],
)
def test_lexical_rows_carried_as_arrays_equal_a_fresh_index(
    block: int, entries: int, in_order: bool, prefix: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import paperscope.lexical

    monkeypatch.setattr(paperscope.lexical, "_CARRY_ROWS", block)
    monkeypatch.setattr(paperscope.lexical, "_PREFIX", prefix)
    monkeypatch.setattr(paperscope.lexical, "_CARRY_ENTRIES", entries)
    monkeypatch.setattr(paperscope.lexical, "_RUNS_PER_ROW", 1 if in_order else 16)
    rng = random.Random(3)
    words = ["a", "b", "zeta", "μp", "émile", "c d", "x", "lora", "\U0001f600", "q", "lo", "low", "lorax"]
    for _ in range(300):
        old_rows = [(Counter(rng.choices(words, k=rng.randrange(5))), Counter()) for _ in range(rng.randrange(40))]
        for all_terms, title in old_rows:
            title.update(list(all_terms)[:1])
        if in_order:  # what a re-run without --prune gives: same rows, some re-tokenised, some appended
            mapping = np.arange(len(old_rows) + rng.randrange(3), dtype=np.int64)
            mapping[mapping >= len(old_rows)] = -1
            mapping[[rng.randrange(len(mapping)) for _ in range(rng.randrange(4))] if len(mapping) else []] = -1
        else:
            mapping = np.array(
                [rng.randrange(-1, len(old_rows)) if old_rows else -1 for _ in range(rng.randrange(10))],
                dtype=np.int64,
            )
        fresh = [
            (Counter(rng.choices([*words, "new", "ńew", "0", "lob", "lorb", "lowe"], k=rng.randrange(5))), Counter())
            for _ in range(int((mapping < 0).sum()))
        ]
        it = iter(fresh)
        new_rows = [old_rows[m] if m >= 0 else next(it) for m in mapping]
        old = CarriedArrays.of(LexicalIndex.from_counts(old_rows))
        if rng.random() < 0.5:  # a file written before the counts were stored: counted from the entries
            old = dataclasses.replace(old, df=None)
        got = carry_rows(old, mapping, LexicalIndex.from_counts(fresh))
        want = CarriedArrays.of(LexicalIndex.from_counts(new_rows))
        for key in LEX_KEYS:
            assert np.array_equal(getattr(got, key), getattr(want, key)), key


def test_stored_document_frequencies_are_checked_and_carried(tmp_path: Path) -> None:
    """lexical.npz stores each term's row count; a re-run carries it (no count over every entry), and a
    file whose counts do not add up to its entries is refused as inconsistent."""
    src = write(tmp_path / "a.jsonl", corpus(80))
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    build([write(src, corpus(82, edited={3, 40}))], tmp_path / "s", embedder=FakeEmbedder())
    arrays = lexical_arrays(tmp_path / "s")  # carried by the forward delta (paperscope.layered_lexical)
    assert np.array_equal(arrays["df"], np.bincount(arrays["terms"], minlength=len(arrays["vocab_offsets"]) - 1))
    with pytest.MonkeyPatch.context() as mp:  # and by a run that writes the rows whole
        mp.setattr(layered_lexical, "ENABLED", False)
        build([write(src, corpus(83, edited={3, 41}))], tmp_path / "s", embedder=FakeEmbedder())
    arrays = lexical_arrays(tmp_path / "s")
    assert np.array_equal(arrays["df"], np.bincount(arrays["terms"], minlength=len(arrays["vocab_offsets"]) - 1))
    loaded = CarriedArrays.load(Store(tmp_path / "s").require_current().file("lexical.npz"))
    bad = dataclasses.replace(loaded, df=np.asarray(loaded.df) + (np.arange(len(loaded.df)) == 0))
    bad.write(tmp_path / "bad.npz")
    with pytest.raises(StoreError, match="inconsistent lexical index"):
        CarriedArrays.load(tmp_path / "bad.npz")


def test_unchanged_inputs_are_not_parsed_and_a_touch_is_not_a_change(tmp_path: Path) -> None:
    src = write(tmp_path / "a.jsonl", corpus(60))
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    again = build([src], tmp_path / "s", embedder=FakeEmbedder())
    assert again.nothing_to_do and again.inputs_unchanged and again.entries_read == 0 and again.papers == 60
    os.utime(src, ns=(1, 1))  # same bytes, another mtime: hashed, found equal, still not parsed
    assert build([src], tmp_path / "s", embedder=FakeEmbedder()).inputs_unchanged
    write(src, corpus(60, edited={5}))
    edited = build([src], tmp_path / "s", embedder=FakeEmbedder())
    assert not edited.inputs_unchanged and edited.changed == 1
    assert (edited.entries_read, edited.entries_unchanged) == (1, 59)  # only the edited line is parsed
    # --prune on a store built without it may remove papers: the inputs are read.
    assert not build([src], tmp_path / "s", embedder=FakeEmbedder(), prune=True).inputs_unchanged
    write(src, corpus(50))
    assert build([src], tmp_path / "s", embedder=FakeEmbedder(), prune=True).removed == 10
    assert build([src], tmp_path / "s", embedder=FakeEmbedder(), prune=True).inputs_unchanged


def test_an_input_named_relative_or_absolute_is_the_same_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same file given as "a.jsonl" from its directory and by its absolute path: unchanged, not
    # parsed; edited, only the edited line is parsed (1M papers: named the other way, it was all parsed).
    src = write(tmp_path / "a.jsonl", corpus(40))
    monkeypatch.chdir(tmp_path)
    build([Path("a.jsonl")], tmp_path / "s", embedder=FakeEmbedder())
    again = build([src.absolute()], tmp_path / "s", embedder=FakeEmbedder())
    assert again.nothing_to_do and again.inputs_unchanged and again.entries_read == 0
    write(src, corpus(40, edited={3}))
    edited = build([src.absolute()], tmp_path / "s", embedder=FakeEmbedder())
    assert (edited.changed, edited.entries_read, edited.entries_unchanged) == (1, 1, 39)
    sub = tmp_path / "sub"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert build([Path("../a.jsonl")], tmp_path / "s", embedder=FakeEmbedder()).inputs_unchanged
    recorded = Store(tmp_path / "s").require_current().manifest["input_files"]["files"]
    assert [f["path"] for f in recorded] == [str(src.absolute())]
    # Another file is another input, whatever its bytes.
    other = write(tmp_path / "b.jsonl", corpus(40, edited={3}))
    assert not build([other], tmp_path / "s", embedder=FakeEmbedder()).inputs_unchanged


def test_a_new_snapshot_under_another_name_parses_only_its_changed_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new month's snapshot under a new name (1M papers: parsed in full, 340 s): only its changed
    # lines are parsed, and every other paper gains the new name among its sources, as a full
    # parse gives it.
    import paperscope.inputs

    rows = corpus(40)
    jan = write(tmp_path / "jan.jsonl", rows)
    feb = write(tmp_path / "feb.jsonl", [*corpus(40, edited={3}), {**rows[5], "id": "p40", "title": "New paper"}])
    fast, full = tmp_path / "s", tmp_path / "full"
    for store in (fast, full):
        build([jan], store, embedder=FakeEmbedder())
    report = build([feb], fast, embedder=FakeEmbedder())
    assert (report.entries_read, report.entries_unchanged, report.embedded, report.tokenised) == (2, 39, 2, 2)
    monkeypatch.setattr(paperscope.inputs, "MAX_CHANGED_FRACTION", -1.0)  # the line plan off
    parsed = build([feb], full, embedder=FakeEmbedder())
    monkeypatch.undo()
    assert parsed.entries_read == 41
    counts = ("added", "changed", "updated", "unchanged", "papers")
    assert [getattr(report, c) for c in counts] == [getattr(parsed, c) for c in counts] == [1, 1, 39, 0, 41]
    assert every_paper(fast) == every_paper(full)
    assert {p[0]: p[-1] for p in every_paper(fast)}["p7"] == ("jan.jsonl", "feb.jsonl")
    # The same file moved to another directory: no paper gains a name, nothing to do.
    (tmp_path / "moved").mkdir()
    moved = (tmp_path / "moved" / "feb.jsonl").write_bytes(feb.read_bytes())
    assert moved and build([tmp_path / "moved" / "feb.jsonl"], fast, embedder=FakeEmbedder()).nothing_to_do
    assert verify(Store(fast)).ok


def test_inputs_are_hashed_once_and_recorded_as_a_separate_hash_gives(tmp_path: Path) -> None:
    # An input whose size changed is hashed on the way through the line scan (no first read of
    # its own); a CSV, which the scan does not read, is hashed apart. Either record lets the next
    # run with the same bytes stop before parsing.
    import hashlib

    src = write(tmp_path / "a.jsonl", corpus(30))
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("".join(json.dumps({**r, "id": f"b{r['id']}"}) + "\n" for r in corpus(10, seed=1)))
    csv = tmp_path / "c.csv"
    csv.write_text("id,title,abstract\nc1,A CSV paper,An abstract long enough to be one\n", encoding="utf-8")
    files = [src, tmp_path / "b.jsonl.gz", csv]
    for edit in (set(), {4}):
        write(src, corpus(30, edit))
        assert build(files[:2], tmp_path / "lines", embedder=FakeEmbedder()).changed == len(edit)
        recorded = Store(tmp_path / "lines").require_current().manifest["input_files"]["files"]
        assert [e["sha256"] for e in recorded] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files[:2]]
        assert build(files[:2], tmp_path / "lines", embedder=FakeEmbedder()).inputs_unchanged
    for edit in (set(), {4}):
        write(src, corpus(30, edit))
        assert build(files, tmp_path / "s", embedder=FakeEmbedder()).changed == len(edit)
        recorded = Store(tmp_path / "s").require_current().manifest["input_files"]["files"]
        assert [e["sha256"] for e in recorded] == [hashlib.sha256(f.read_bytes()).hexdigest() for f in files]
        again = build(files, tmp_path / "s", embedder=FakeEmbedder())
        assert again.inputs_unchanged and again.entries_read == 0


def test_a_line_moved_to_the_next_file_gains_that_file_in_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The entries keep their order across the files, so none is parsed; the paper whose line moved
    # from a.jsonl to b.jsonl is now read from b.jsonl too, as a full parse would record.
    import paperscope.inputs

    rows = corpus(40)
    fast, full = tmp_path / "s", tmp_path / "full"
    first = [write(tmp_path / "a.jsonl", rows[:20]), write(tmp_path / "b.jsonl", rows[20:])]
    for store in (fast, full):
        build(first, store, embedder=FakeEmbedder())
    moved = [write(tmp_path / "a.jsonl", rows[:19]), write(tmp_path / "b.jsonl", rows[19:])]
    report = build(moved, fast, embedder=FakeEmbedder())
    assert (report.entries_read, report.updated, report.embedded) == (0, 1, 0)
    monkeypatch.setattr(paperscope.inputs, "MAX_CHANGED_FRACTION", -1.0)
    assert build(moved, full, embedder=FakeEmbedder()).updated == 1
    assert every_paper(fast) == every_paper(full)
    assert {p[0]: p[-1] for p in every_paper(fast)}["p19"] == ("a.jsonl", "b.jsonl")


def test_with_several_inputs_only_the_changed_line_is_parsed(tmp_path: Path) -> None:
    # A file with no changed line gets no scratch file (an empty one is refused by the reader, and
    # made every edit of a two-file corpus parse everything).
    rows = corpus(40)
    a, b = write(tmp_path / "a.jsonl", rows[:20]), write(tmp_path / "b.jsonl", rows[20:])
    build([a, b], tmp_path / "s", embedder=FakeEmbedder())
    write(a, corpus(40, edited={3})[:20])
    report = build([a, b], tmp_path / "s", embedder=FakeEmbedder())
    assert (report.changed, report.entries_read, report.entries_unchanged) == (1, 1, 39)


def _line(i: int) -> bytes:
    return json.dumps(
        {"id": f"p{i}", "title": f"Paper {i}", "abstract": f"an abstract long enough, paper {i}"}
    ).encode()


@pytest.mark.parametrize("case", ["empty file added", "BOM line moved down", "BOM line appended"])
def test_what_a_full_parse_refuses_the_line_plan_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    # Found by a differential test against full parses: lines that mean something else where they
    # sit (a UTF-8 BOM is dropped on a file's first line only) and empty files are the full
    # parse's to judge; the plan used to skip or re-place them and build.
    import paperscope.inputs

    rows = [_line(i) + b"\n" for i in range(12)]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"".join(rows[:6]))
    b.write_bytes(b"\xef\xbb\xbf" + b"".join(rows[6:]))  # b opens with a BOM: fine on its first line
    files = [a, b]
    for store in ("s", "full"):
        build(files, tmp_path / store, embedder=FakeEmbedder())
    if case == "empty file added":
        files.append(tmp_path / "c.jsonl")
        files[-1].write_bytes(b"")
        want = r"c\.jsonl: file is empty"
    elif case == "BOM line moved down":  # a's last line moved in front of b's first: the BOM is now on line 2
        a.write_bytes(b"".join(rows[:5]))
        b.write_bytes(rows[5] + b"\xef\xbb\xbf" + b"".join(rows[6:]))
        want = r"b\.jsonl:2: not valid JSON"
    else:  # a file concatenated onto a: its BOM lands on line 7
        a.write_bytes(b"".join(rows[:6]) + b"\xef\xbb\xbf" + _line(20) + b"\n")
        want = r"a\.jsonl:7: not valid JSON"
    before = Store(tmp_path / "s").require_current().name
    with pytest.raises(InputError, match=want):
        build(files, tmp_path / "s", embedder=FakeEmbedder())
    assert Store(tmp_path / "s").require_current().name == before
    monkeypatch.setattr(paperscope.inputs, "MAX_CHANGED_FRACTION", -1.0)  # the full parse says the same
    with pytest.raises(InputError, match=want):
        build(files, tmp_path / "full", embedder=FakeEmbedder())


def every_paper(store: Path) -> list[tuple[object, ...]]:
    """Every stored paper in row order with every field, sources as stored."""
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        return [(p.id, p.title, p.abstract, p.date, p.authors, p.categories, p.sources) for p in ex.papers()]


def test_unchanged_inputs_on_a_damaged_small_store_are_refused(tmp_path: Path) -> None:
    src = write(tmp_path / "a.jsonl", corpus(30))
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    vec = Store(tmp_path / "s").require_current().file("vectors.npy")
    data = bytearray(vec.read_bytes())
    data[-3] ^= 0xFF
    vec.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="vectors.npy"):
        build([src], tmp_path / "s", embedder=FakeEmbedder())


def test_one_percent_edit_embeds_and_tokenises_only_the_edited_rows(tmp_path: Path) -> None:
    n, edited = 400, {3, 77, 150, 399}
    src = write(tmp_path / "a.jsonl", corpus(n))
    build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    write(src, corpus(n, edited))
    report = build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    assert (report.changed, report.embedded, report.tokenised) == (4, 4, 4)
    info = Store(tmp_path / "s").require_current().manifest["index"]
    assert info["incremental"]["rows_updated"] == 4 and info["updated_from"] == "g000001"
    # The same arrays as a from-scratch build of the edited inputs.
    fresh = build([write(tmp_path / "b.jsonl", corpus(n, edited))], tmp_path / "f", embedder=FakeEmbedder())
    assert fresh.tokenised == n
    got, want = lexical_arrays(tmp_path / "s"), lexical_arrays(tmp_path / "f")
    assert all(np.array_equal(got[k], want[k]) for k in LEX_KEYS)
    assert np.array_equal(vectors(tmp_path / "s"), vectors(tmp_path / "f"))
    # the vectors: the first generation's file, linked as the base, and a delta of the 4 edited rows
    gens = sorted((tmp_path / "s" / "generations").glob("g*"))
    assert inode(gens[-1] / "vectors-base.npy") == inode(gens[0] / "vectors.npy")
    assert not (gens[-1] / "vectors.npy").exists()  # a paperscope from before deltas refuses the generation
    assert Store(tmp_path / "s").require_current().manifest["vectors"] == {"delta_rows": 4}
    assert "vectors-base.npy" in report.carried
    assert (report.entries_read, report.entries_unchanged) == (4, n - 4)
    assert papers(tmp_path / "s", "a.jsonl") == papers(tmp_path / "f", "b.jsonl")
    assert verify(Store(tmp_path / "s")).ok
    # The lexical weights were carried under the previous idf, not derived again, and the postings
    # left in place (the edited rows' in a delta): the rankings are those of the from-scratch store
    # but for the idf of 1% of the papers.
    assert Store(tmp_path / "s").require_current().manifest["lexical"]["derivation"] == "delta"
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as a, Explorer(tmp_path / "f", embedder=FakeEmbedder()) as b:
        ids = [p.id for p in a.papers()][::20]
        overlap = [
            len({h.paper.id for h in a.related(i, mode="lexical")} & {h.paper.id for h in b.related(i, mode="lexical")})
            / 10
            for i in ids
        ]
    assert np.mean(overlap) >= 0.95, overlap


def test_new_papers_are_appended_and_the_index_updated(tmp_path: Path) -> None:
    src = write(tmp_path / "a.jsonl", corpus(300))
    build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    write(src, corpus(310))
    report = build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    assert (report.added, report.embedded, report.tokenised, report.papers) == (10, 10, 10, 310)
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:
        assert ex.index.faiss.ntotal == 310
        assert ex.related("p305", k=1, mode="dense")[0].paper.id != "p305"
        assert ex.search("zzedit", mode="lexical", k=1) is not None


def test_metadata_only_change_carries_files_by_hard_link(tmp_path: Path) -> None:
    rows = corpus(50)
    src = write(tmp_path / "a.jsonl", rows)
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    before = Store(tmp_path / "s").require_current()
    rows[4] = {**rows[4], "date": "2024-02-02"}
    report = build([write(src, rows)], tmp_path / "s", embedder=FakeEmbedder())
    after = Store(tmp_path / "s").require_current()
    assert report.updated == 1 and report.embedded == 0 and report.tokenised == 0
    # The papers: the previous file as the base, and a delta holding the one row written.
    carried = ["index.faiss", "lexical-impact.npz", "lexical.npz", "papers-base.sqlite", "vectors.npy"]
    assert report.carried == carried and after.manifest["papers"] == {"delta_rows": 1}
    assert inode(after.file("papers-base.sqlite")) == inode(before.file("papers.sqlite"))
    for name in (n for n in report.carried if n != "papers-base.sqlite"):
        assert inode(after.file(name)) == inode(before.file(name))
        assert after.manifest["files"][name]["xxh3_128"] == before.manifest["files"][name]["xxh3_128"]
    assert report.bytes_written == after.file("papers.sqlite").stat().st_size
    assert verify(Store(tmp_path / "s")).ok


def test_damage_in_a_carried_file_is_found_by_verify_and_refused_by_index(tmp_path: Path) -> None:
    rows = corpus(50)
    src = write(tmp_path / "a.jsonl", rows)
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    rows[0] = {**rows[0], "date": "2020-01-01"}
    assert "vectors.npy" in build([write(src, rows)], tmp_path / "s", embedder=FakeEmbedder()).carried
    vec = Store(tmp_path / "s").require_current().file("vectors.npy")
    with open(vec, "r+b") as fh:  # one flipped byte in the payload, size unchanged
        fh.seek(vec.stat().st_size // 2)
        byte = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([byte[0] ^ 0x55]))
    found = verify(Store(tmp_path / "s"))
    assert not found.ok and [f.path for f in found.damaged] == [str(vec)]
    rows[1] = {**rows[1], "abstract": "a changed abstract about nothing in particular at all, long enough"}
    with pytest.raises(StoreError, match="vectors.npy"):
        build([write(src, rows)], tmp_path / "s", embedder=FakeEmbedder())


def top10(ex: Explorer, queries: list[str], mode: str) -> list[set[str]]:
    return [{h.paper.id for h in ex.search(q, k=10, mode=mode)} for q in queries]


def test_an_edit_only_rerun_past_the_check_keeps_the_centroids_and_the_idf(tmp_path: Path) -> None:
    """Edits drawn like the corpus, past CHECK_FRACTION / IDF_CHECK of the rows: both checks run,
    measure no drift, and keep what was trained; answers stay those of a from-scratch build."""
    n, edited = 400, set(range(0, 400, 8))  # 50 rows: 12.5%, one run
    src = write(tmp_path / "a.jsonl", corpus(n))
    build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    first = Store(tmp_path / "s").require_current()
    rows = reworded(n, edited)
    report = build([write(src, rows)], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    assert (report.changed, report.embedded, report.tokenised) == (50, 50, 50)
    gen = Store(tmp_path / "s").require_current()
    info, lex = gen.manifest["index"], gen.manifest["lexical"]
    # The IVF index: updated (not retrained) after a check that measured and kept it.
    assert info["updated_from"] == first.name and "drift_check" not in info
    inc = info["incremental"]
    assert (inc["rows_since_training"], inc["rows_since_check"]) == (50, 0) and CHECK_FRACTION * n < 50
    check = inc["checked"]
    assert check["decision"] == "kept" and check["reasons"] == []
    assert check["recall_at_10"] >= check["target_recall"] == index.TARGET_RECALL
    assert check["recall_queries"] == n and check["changed_queries"] == 50  # at most 500: every row here
    assert check["miscoded"] <= index.MISCODED_SHARE and check["rows"] == check["trained_rows"] == n
    loaded = [index.load(g.file("index.faiss"), n, FakeEmbedder.dimension) for g in (first, gen)]
    a, b = (faiss.extract_index_ivf(i) for i in loaded)  # the centroids trained on the first generation
    assert np.array_equal(a.quantizer.reconstruct_n(0, a.nlist), b.quantizer.reconstruct_n(0, b.nlist))
    # The idf: checked, kept, merged under it.
    assert lex["derivation"] == "merged" and lex["idf_check"]["decision"] == "kept"
    assert lex["idf_check"]["row_cosine_p1"] >= impact.IDF_MIN_COSINE and lex["idf_check"]["rows_since_check"] == 50
    idf = []
    for g in (first, gen):
        with np.load(g.file(impact.DERIVED_FILE)) as z:
            idf.append(dict(zip(LexicalIndex.load(g.file("lexical.npz")).vocab, z["idf"].tolist())))
            basis = z["idf_basis"].tolist()
    assert basis == [n, 0]  # the papers the idf was computed on; the count restarted at the check
    assert all(idf[1][t] == w for t, w in idf[0].items() if t in idf[1])  # every term still used: its idf
    assert [c.split(":")[0] for c in report.checks] == ["lexical", "index"]
    assert "kept the idf" in report.checks[0] and "kept the centroids" in report.checks[1]
    assert gen.manifest["build"]["checks"] == report.checks
    assert verify(Store(tmp_path / "s")).ok
    # Answers: those of a from-scratch build of the same inputs (trained and weighted on them), to
    # the tolerance of an approximate index and a carried idf: 95% of every top 10 in common.
    build([write(tmp_path / "b.jsonl", rows)], tmp_path / "f", embedder=FakeEmbedder(), index_type="ivf")
    queries = ["adam lora", "diffusion attention kernel", "sparse scaling width", "émile transfer depth", "sgd μp"]
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as x, Explorer(tmp_path / "f", embedder=FakeEmbedder()) as y:
        for mode in ("dense", "lexical", "hybrid"):
            got, want = top10(x, queries, mode), top10(y, queries, mode)
            assert np.mean([len(g & w) / 10 for g, w in zip(got, want)]) >= 0.95, mode
    dense = [len(set(g) & set(w)) / 5 for g, w in zip(related_ids(tmp_path / "s"), related_ids(tmp_path / "f"))]
    assert np.mean(dense) >= 0.95, dense
    # The next 1% edit counts from the check; the check's record is carried.
    report = build(
        [write(src, reworded(n, edited | {1, 2, 3, 5}))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf"
    )
    nxt = Store(tmp_path / "s").require_current().manifest["index"]["incremental"]
    assert (nxt["rows_since_check"], nxt["rows_since_training"], nxt["checked"]) == (4, 54, inc["checked"])
    assert report.checks == []


def test_compaction_ends_where_a_from_scratch_build_ends(tmp_path: Path) -> None:
    """1% edits that move papers to another domain (and give them a new term): at the check past
    CHECK_FRACTION the index measures the drift and is retrained, the idf is derived again, and
    the store is then the one a from-scratch build of the same inputs makes, byte for byte."""
    n = 400
    src = tmp_path / "a.jsonl"
    edited: set[int] = set()
    build([write(src, corpus(n))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    retrained = False
    for step in range(12):  # 1% edits until the rows changed pass CHECK_FRACTION and the check runs
        edited |= set(range(step * 4, step * 4 + 4))
        report = build(
            [write(src, reworded(n, edited, True))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf"
        )
        gen = Store(tmp_path / "s").require_current()
        info = gen.manifest["index"]
        if "incremental" not in info:
            retrained = True
            break
        assert info["incremental"]["rows_since_check"] <= CHECK_FRACTION * n and report.checks == []
    assert retrained and len(edited) > CHECK_FRACTION * n
    check = info["drift_check"]
    assert check["decision"] == "retrain" and "coding" in check["reasons"], check
    assert check["miscoded"] > index.MISCODED_SHARE and info["trained_rows"] == n
    idf = gen.manifest["lexical"]["idf_check"]
    assert gen.manifest["lexical"]["derivation"] == "derived" and idf["decision"] == "refreshed"
    assert idf["row_cosine_p1"] < impact.IDF_MIN_COSINE
    assert "retrained (" in report.checks[1] and "derived the weights again" in report.checks[0]
    build(
        [write(tmp_path / "b.jsonl", reworded(n, edited, True))],
        tmp_path / "f",
        embedder=FakeEmbedder(),
        index_type="ivf",
    )
    assert related_ids(tmp_path / "s") == related_ids(tmp_path / "f")
    a, b = (Store(p).require_current() for p in (tmp_path / "s", tmp_path / "f"))
    for name in ("index.faiss", "lexical.npz", impact.DERIVED_FILE):
        assert a.file(name).read_bytes() == b.file(name).read_bytes(), name


def test_a_corpus_that_doubled_is_retrained_for_its_size(tmp_path: Path) -> None:
    """Papers drawn like the first ones, more than doubling the store: the lists are sized for half
    of it (SIZE_FACTOR), so the index is retrained whatever the recall."""
    src = write(tmp_path / "a.jsonl", corpus(200))
    build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    report = build([write(src, corpus(401))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    assert report.added == 201
    info = Store(tmp_path / "s").require_current().manifest["index"]
    assert "incremental" not in info and info["trained_rows"] == 401
    assert info["params"]["nlist"] == index.ivf_lists(401) != index.ivf_lists(200)
    check = info["drift_check"]
    assert (check["decision"], check["reasons"], check["rows"], check["trained_rows"]) == (
        "retrain",
        ["size"],
        401,
        200,
    )


def test_prune_renumbers_rows_and_rebuilds_what_depends_on_them(tmp_path: Path) -> None:
    src = write(tmp_path / "a.jsonl", corpus(120))
    build([src], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    rows = corpus(120)
    del rows[10:20]
    report = build([write(src, rows)], tmp_path / "s", embedder=FakeEmbedder(), prune=True, index_type="ivf")
    assert report.removed == 10 and report.embedded == 0
    assert "incremental" not in Store(tmp_path / "s").require_current().manifest["index"]
    build([write(tmp_path / "b.jsonl", rows)], tmp_path / "f", embedder=FakeEmbedder(), index_type="ivf")
    assert related_ids(tmp_path / "s") == related_ids(tmp_path / "f")
    assert all(np.array_equal(lexical_arrays(tmp_path / "s")[k], lexical_arrays(tmp_path / "f")[k]) for k in LEX_KEYS)


def test_a_reader_keeps_answering_through_updates_and_a_compaction(tmp_path: Path) -> None:
    """Generations share files by hard link; pruning one removes names, never bytes a reader holds."""
    n = 400
    src = tmp_path / "a.jsonl"
    build([write(src, corpus(n))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
    reader = Explorer(tmp_path / "s", embedder=FakeEmbedder())
    probes = ["p0", "p5", "p77", "p300"]
    before = [[h.paper.id for h in reader.related(p, k=5)] for p in probes]
    lexical_before = [[h.paper.id for h in reader.search("adam lora", mode="lexical", k=5)]]
    edited: set[int] = set()
    kinds = []
    for step in range(12):  # edits that drift to another domain: the check past 10% retrains
        edited |= set(range(step * 4, step * 4 + 4))
        build([write(src, reworded(n, edited, True))], tmp_path / "s", embedder=FakeEmbedder(), index_type="ivf")
        kinds.append("incremental" in Store(tmp_path / "s").require_current().manifest["index"])
        # The reader's generation directory is long gone (two are kept); its answers are unchanged.
        assert [[h.paper.id for h in reader.related(p, k=5)] for p in probes] == before
    assert [[h.paper.id for h in reader.search("adam lora", mode="lexical", k=5)]] == lexical_before
    assert False in kinds and True in kinds  # both updates and a retrain happened under the reader
    assert len(list((tmp_path / "s" / "generations").glob("g*"))) == 2
    reader.close()


@pytest.mark.parametrize("keep_bytes", [None, 0])  # 0: the scan keeps no line, the plan reads the inputs again
def test_every_reading_of_an_edited_id_is_merged_again_as_a_full_parse_merges_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep_bytes: int | None
) -> None:
    import paperscope.inputs

    keep = paperscope.inputs.KEEP_BYTES if keep_bytes is None else keep_bytes
    monkeypatch.setattr(paperscope.inputs, "KEEP_BYTES", keep)
    rows = corpus(40)
    first = [*rows, {**rows[3], "date": "2023-05-05"}, {**rows[9], "date": "2023-06-06"}]  # p3, p9 read twice
    edited = [
        *rows[:9],
        {**rows[9], "abstract": "the first reading of p9, edited: long enough to be an abstract"},
        *rows[10:],
        {**rows[3], "abstract": "another abstract for the second reading of p3, long enough"},
        first[-1],
    ]
    src = write(tmp_path / "a.jsonl", first)
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    # The second reading of p3 and the first of p9 are edited: only those ids' readings are parsed.
    report = build([write(src, edited)], tmp_path / "s", embedder=FakeEmbedder())
    assert (report.entries_read, report.entries_unchanged) == (4, 38)
    # The same papers as a full parse of the same edit (the line plan switched off).
    full = tmp_path / "full"
    build([write(src, first)], full, embedder=FakeEmbedder())
    monkeypatch.setattr(paperscope.inputs, "MAX_CHANGED_FRACTION", -1.0)
    assert build([write(src, edited)], full, embedder=FakeEmbedder()).entries_read == 42
    assert papers(tmp_path / "s", "a.jsonl") == papers(full, "a.jsonl")
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:
        assert ex.paper("p3").abstract.startswith("another abstract") and ex.paper("p3").date == "2023-05-05"
        assert ex.paper("p9").date == "2023-06-06" and ex.paper("p9").abstract == rows[9]["abstract"]
    # A second version of p5 (read once so far) is appended: its first reading is merged again too.
    appended = [*edited, {**rows[5], "abstract": "version two of p5, appended at the end of the file", "date": "2024"}]
    assert build([write(src, appended)], full, embedder=FakeEmbedder()).entries_read == 43
    monkeypatch.undo()
    monkeypatch.setattr(paperscope.inputs, "KEEP_BYTES", keep)
    report = build([write(src, appended)], tmp_path / "s", embedder=FakeEmbedder())
    # read: the new line, p5's first reading (a second pass), and p3's and p9's readings (read twice)
    assert (report.entries_read, report.entries_unchanged) == (6, 37)
    assert papers(tmp_path / "s", "a.jsonl") == papers(full, "a.jsonl")
    # Reordered lines change which reading of an id is last: everything is parsed.
    swapped = [edited[-1], *edited[:-1]]
    assert build([write(src, swapped)], tmp_path / "s", embedder=FakeEmbedder()).entries_read == 42
    # A bad line among the changed ones is named in its own file, at its own line.
    bad = src.read_text().splitlines()
    bad[7] = '{"id": "p7", "title": broken'
    src.write_text("\n".join(bad) + "\n")
    with pytest.raises(InputError, match=r"a\.jsonl:8: not valid JSON"):
        build([src], tmp_path / "s", embedder=FakeEmbedder())


@pytest.mark.parametrize("where", ["middle", "last, no newline"])
def test_an_over_long_line_makes_a_re_run_parse_everything(tmp_path: Path, where: str) -> None:
    """The scan cuts lines from large decompressed blocks; a line over the reader's cap is one the
    line plan cannot follow (the reader skips it), so the re-run parses every entry, as before."""
    from paperscope.corpus.lines import MAX_LINE_BYTES

    long_line = json.dumps({"id": "huge", "title": "t", "abstract": "x" * (MAX_LINE_BYTES + 10)})
    src = tmp_path / "a.jsonl.gz"

    def write_gz(rows: list[dict[str, object]]) -> Path:
        lines = [json.dumps(r) for r in rows]
        lines.insert(len(lines) // 2, long_line) if where == "middle" else lines.append(long_line)
        text = "\n".join(lines) + ("\n" if where == "middle" else "")
        with gzip.open(src, "wt", encoding="utf-8") as fh:
            fh.write(text)
        return src

    first = build([write_gz(corpus(30))], tmp_path / "s", embedder=FakeEmbedder())
    assert (first.papers, first.rows_skipped) == (30, 1)
    again = build([write_gz(corpus(30, {4}))], tmp_path / "s", embedder=FakeEmbedder())
    assert (again.changed, again.entries_read, again.rows_skipped) == (1, 31, 1)
    # A line just under the cap is a line like any other: only the edited entry is parsed.
    long_line = json.dumps({"id": "big", "title": "t", "abstract": "x " * (MAX_LINE_BYTES // 2 - 100)})
    assert build([write_gz(corpus(30, {4, 5}))], tmp_path / "s", embedder=FakeEmbedder()).entries_read == 31
    edited = build([write_gz(corpus(30, {4, 5, 7}))], tmp_path / "s", embedder=FakeEmbedder())
    assert (edited.changed, edited.entries_read, edited.entries_unchanged) == (1, 1, 30)
