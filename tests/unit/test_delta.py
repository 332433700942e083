"""Postings left in place: a re-run that tokenised a few rows writes only their postings (a delta)
over the base postings of the last full derivation, shared by hard link (``lexical-base.npz``)."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder

from paperscope import impact
from paperscope.cli import main
from paperscope.errors import DamagedError, PaperscopeError
from paperscope.explorer import Explorer
from paperscope.lexical import CarriedArrays, Carry, LexicalIndex, carry_rows
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify


def _rows(rng: np.random.Generator, words: list[str], n: int) -> list[tuple[Counter[str], Counter[str]]]:
    out = []
    for _ in range(n):
        counts = Counter(rng.choice(words, size=int(rng.integers(1, 12))).tolist())
        out.append((counts, Counter(dict.fromkeys(list(counts)[:2], 1))))
    return out


def _next(rng: np.random.Generator, rows: list, words: list[str], d: Path, prev: Path) -> tuple[list, Carry, int]:
    """An edit of ``rows`` (some rows rewritten in place, a term or two new, some rows appended),
    written as d/lexical.npz carried from prev/lexical.npz; returns (rows, carry, n)."""
    n_old = len(rows)
    n = n_old + int(rng.integers(0, 4))
    mapping = np.arange(n, dtype=np.int64)
    mapping[n_old:] = -1
    mapping[rng.choice(n_old, size=int(rng.integers(1, 5)), replace=False)] = -1
    fresh = _rows(rng, [*words, f"new{int(rng.integers(0, 3))}"], int((mapping < 0).sum()))
    it = iter(fresh)
    new_rows = [rows[m] if m >= 0 else next(it) for m in mapping]
    d.mkdir()
    carried = carry_rows(CarriedArrays.load(prev / "lexical.npz"), mapping, LexicalIndex.from_counts(fresh))
    carried.write(d / "lexical.npz")
    return new_rows, Carry(mapping, carried.old_to_new), n


def _same_lists(got: impact.Postings, want: impact.Postings, vocab: int) -> None:
    for t in range(vocab):
        g_rows, g_vals = got.term_postings(t)
        w_rows, w_vals = want.term_postings(t)
        assert sorted(zip(g_rows.tolist(), g_vals.tolist())) == sorted(zip(w_rows.tolist(), w_vals.tolist())), t
        assert (np.diff(g_vals) <= 0).all()  # impact order


@pytest.mark.parametrize("seed", range(4))
def test_a_chain_of_deltas_answers_as_the_merged_postings(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three edits in a row (rows edited again, terms new and gone, rows appended), each written as
    a delta and, beside it, merged list by list (:func:`impact.merge`): the same weights, the same
    postings per term, the same exact and partial scores, the same reference."""
    monkeypatch.setattr(impact, "IDF_CHECK", 1.0)  # no idf check
    monkeypatch.setattr(impact, "DELTA_MAX", 1.0)  # (this small index changes by more than 10% a step)
    monkeypatch.setattr(impact, "MARK_STRIDE", 2)  # marks in lists of 3 postings or more
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(40)] + ["two words", "μp"]
    rows = _rows(rng, words, 60)
    g0 = tmp_path / "g0"
    g0.mkdir()
    LexicalIndex.from_counts(rows).save(g0 / "lexical.npz")
    impact.derive(g0 / "lexical.npz", g0 / impact.DERIVED_FILE)
    base_inode = (g0 / impact.DERIVED_FILE).stat().st_ino
    prev_d = prev_m = g0
    truncated = marked_cut = 0
    for step in range(1, 4):
        rows, carry, n = _next(rng, rows, words, tmp_path / f"d{step}", prev_d)
        m = tmp_path / f"m{step}"
        m.mkdir()
        (m / "lexical.npz").write_bytes((tmp_path / f"d{step}" / "lexical.npz").read_bytes())
        d = tmp_path / f"d{step}"
        prev_base = prev_d / impact.BASE_FILE
        how = impact.derive(
            d / "lexical.npz",
            d / impact.DERIVED_FILE,
            (prev_d / "lexical.npz", prev_d / impact.DERIVED_FILE),
            carry,
            previous_base=prev_base if prev_base.exists() else None,
            base_out=d / impact.BASE_FILE,
        )
        assert how.how == "delta"
        # The base postings are the first generation's file, linked, never written again.
        assert (d / impact.BASE_FILE).stat().st_ino == base_inode
        merged, _ = impact.merge(prev_m / "lexical.npz", prev_m / impact.DERIVED_FILE, m / "lexical.npz", carry)
        assert merged is not None
        merged.save(m / impact.DERIVED_FILE)
        lex, got = impact.open_index(d / "lexical.npz", d / impact.DERIVED_FILE, n, d / impact.BASE_FILE)
        _, want = impact.open_index(m / "lexical.npz", m / impact.DERIVED_FILE, n)
        assert got.delta is not None and want.delta is None
        assert np.array_equal(got.idf, want.idf) and np.array_equal(got.unit, want.unit)
        _same_lists(got, want, len(lex.vocab))
        assert got.reference is not None and want.reference is not None
        assert np.allclose(got.reference, want.reference)
        for r in range(0, n, 7):
            q = lex.rows_vector([r])
            assert np.allclose(got.score_all(q), want.score_all(q))
            g_rows, g_sums, g_ex = got.partial(q)
            w_rows, w_sums, w_ex = want.partial(q)
            assert g_ex and w_ex and np.array_equal(g_rows, w_rows) and np.allclose(g_sums, w_sums)
            # A small budget reads heads of both parts: lower bounds of the exact scores.
            some, sums, exhaustive = got.partial(q, budget=6)
            assert len(some) and (sums <= got.score_all(q)[some] + 1e-5).all()
            truncated += not exhaustive
            assert len(set(some.tolist())) == len(some)
            # With one segment per budget (strides of 8), a pass placed from the marks of both parts
            # chooses what it chooses from the lists themselves.
            assert got.marks is not None and got.delta.marks is not None
            plain = dataclasses.replace(got, marks=None, delta=dataclasses.replace(got.delta, marks=None))
            with monkeypatch.context() as mp:
                mp.setattr(impact, "SAT_SAMPLES", 1)
                a, b = got.partial(q, budget=8), plain.partial(q, budget=8)
            assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
            marked_cut += not a[2]
        prev_d, prev_m = d, m
    assert truncated and marked_cut  # the budgets did cut some queries short


def test_past_the_delta_limit_a_new_base_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the delta would hold more than DELTA_MAX of the rows, the re-run writes the postings whole
    again (a new base, under the carried idf) and the next edit starts a delta over it."""
    monkeypatch.setattr(impact, "IDF_CHECK", 1.0)
    monkeypatch.setattr(impact, "DELTA_MAX", 0.1)
    rng = np.random.default_rng(7)
    words = [f"w{i}" for i in range(30)]
    rows = _rows(rng, words, 50)
    prev = tmp_path / "g0"
    prev.mkdir()
    LexicalIndex.from_counts(rows).save(prev / "lexical.npz")
    impact.derive(prev / "lexical.npz", prev / impact.DERIVED_FILE)
    seen = []
    for step in range(1, 7):
        rows, carry, n = _next(rng, rows, words, tmp_path / f"g{step}", prev)
        g = tmp_path / f"g{step}"
        prev_base = prev / impact.BASE_FILE
        how = impact.derive(
            g / "lexical.npz",
            g / impact.DERIVED_FILE,
            (prev / "lexical.npz", prev / impact.DERIVED_FILE),
            carry,
            previous_base=prev_base if prev_base.exists() else None,
            base_out=g / impact.BASE_FILE,
        ).how
        seen.append(how)
        assert (how == "delta") == (g / impact.BASE_FILE).exists()
        lex, post = impact.open_index(
            g / "lexical.npz", g / impact.DERIVED_FILE, n, g / impact.BASE_FILE if how == "delta" else None
        )
        # Whatever the layout, the lists are those of a full derivation under the same weights.
        want_lex = LexicalIndex.open(g / "lexical.npz", n)
        want_lex.attach_weights(np.array(post.unit), np.array(post.idf))
        _same_lists(post, impact.Postings.build(want_lex, reference=False), len(lex.vocab))
        prev = g
    assert "merged" in seen and seen[0] == "delta", seen
    assert seen[seen.index("merged") + 1] == "delta", seen


WORDS = (
    "model training scaling attention transformer diffusion image language reasoning agent retrieval "
    "benchmark dataset fine tuning adapter lora quantization token video robot policy reward"
).split()


def _corpus(n: int, edited: set[int] = frozenset()) -> str:
    rng = random.Random(0)
    lines = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(80))
        if i in edited:  # written again from the same words: an edit that leaves the idf where it was
            again = random.Random(1000 + i)
            words = " ".join(again.choice(WORDS) for _ in range(80))
        lines.append(json.dumps({"id": f"p{i}", "title": f"Paper {i} on {rng.choice(WORDS)}", "abstract": words}))
    return "\n".join(lines) + "\n"


def _hits(store: Path) -> list[list[tuple[str, float, float, float]]]:
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        ids = [p.id for p in ex.papers()][::9]
        out = [[(h.paper.id, h.score, h.dense, h.lexical) for h in ex.related(i, k=8)] for i in ids]
        out += [[(h.paper.id, h.score, h.dense, h.lexical) for h in ex.search(w, k=8)] for w in WORDS[:5]]
    return out


def test_a_store_edited_twice_shares_its_base_and_ranks_as_a_merged_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two 1% edits: each generation's lexical-base.npz is the first generation's lexical-impact.npz
    (one inode, its digest carried, written_by g000001), also after that generation is pruned;
    verify passes. Then an edit past the idf check (IDF_CHECK of the rows): the check runs, keeps
    the idf and writes the postings whole (a new base); the next edit is a delta over that one.
    At every step each hit and score equals that of a store whose postings were merged."""
    src = tmp_path / "a.jsonl"
    stores = {"delta": tmp_path / "delta", "merged": tmp_path / "merged"}
    edits = [{3, 50}, {3, 50, 120, 199}, set(range(0, 200, 7)), set(range(0, 200, 7)) | {11}]
    expected = {"delta": ["delta", "delta", "merged", "delta"], "merged": ["merged"] * 4}
    hits: dict[str, list] = {}
    for how, store in stores.items():
        if how == "merged":
            monkeypatch.setattr(impact, "DELTA_MAX", 0.0)
        src.write_text(_corpus(200), encoding="utf-8")
        build([src], store, embedder=FakeEmbedder())
        seen, checks = [], []
        for step, edited in enumerate(edits):
            src.write_text(_corpus(200, edited), encoding="utf-8")
            build([src], store, embedder=FakeEmbedder())
            gen = Store(store).require_current()
            seen.append(gen.manifest["lexical"]["derivation"])
            checks.append(gen.manifest["lexical"].get("idf_check", {}).get("decision"))
            hits.setdefault(how, []).append(_hits(store))
            if how == "delta" and step < 2:  # the delta holds the rows edited since the base: 2, then 4
                assert gen.manifest["lexical"]["delta_rows"] == len(edited)
                shown = CliRunner().invoke(main, ["info", "--store", str(store)]).output
                assert f"postings: the base written by g000001 and a delta of {len(edited)} rows" in shown
            if how == "delta" and step == 1:
                entry = gen.manifest["files"][impact.BASE_FILE]
                assert gen.name == "g000003" and entry["written_by"] == "g000001"
                assert not (store / "generations" / "g000001").exists()  # pruned; its postings live on
                # g000002's and g000003's names, each as the base postings and the forward base's weights
                assert gen.file(impact.BASE_FILE).stat().st_nlink == 4
                assert verify(Store(store)).ok
            if how == "delta" and step == 2:
                assert impact.BASE_FILE not in gen.manifest["files"]
        assert seen == expected[how]
        assert checks == [None, None, "kept", None]
    assert verify(Store(stores["delta"])).ok
    assert hits["delta"] == hits["merged"]


def test_a_base_without_marks_is_written_again_at_the_next_edit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose base postings hold no marks the code can use (written before them, or for
    another MARK_STRIDE: both are read as lists without marks) gets a new base, with them, at its
    next edit instead of a delta; the edit after that is a delta again. The answers are those of a
    store that had the marks all along."""
    src = tmp_path / "a.jsonl"
    stores = {"old": tmp_path / "old", "new": tmp_path / "new"}
    hits: dict[str, list] = {}
    for how, store in stores.items():
        src.write_text(_corpus(200), encoding="utf-8")
        with monkeypatch.context() as mp:
            if how == "old":
                mp.setattr(impact, "MARK_STRIDE", 1024)  # marks this code does not read
            build([src], store, embedder=FakeEmbedder())
        gen = Store(store).require_current()
        _, post = impact.open_index(gen.file("lexical.npz"), gen.file(impact.DERIVED_FILE), 200)
        assert (post.marks is None) == (how == "old")
        seen = []
        for edited in ({3, 50}, {3, 50, 120}):
            src.write_text(_corpus(200, edited), encoding="utf-8")
            build([src], store, embedder=FakeEmbedder())
            gen = Store(store).require_current()
            seen.append(gen.manifest["lexical"]["derivation"])
            base = gen.file(impact.BASE_FILE) if impact.BASE_FILE in gen.manifest["files"] else None
            _, post = impact.open_index(gen.file("lexical.npz"), gen.file(impact.DERIVED_FILE), 200, base)
            assert post.marks is not None
        assert seen == (["merged", "delta"] if how == "old" else ["delta", "delta"])
        assert verify(Store(store)).ok
        hits[how] = _hits(store)
    assert hits["old"] == hits["new"]


def test_damage_in_the_base_postings_is_found_and_named(tmp_path: Path) -> None:
    """A flipped byte in the shared base file: verify names it; a missing one: the open names it."""
    src = tmp_path / "a.jsonl"
    store = tmp_path / "s"
    src.write_text(_corpus(120), encoding="utf-8")
    build([src], store, embedder=FakeEmbedder())
    src.write_text(_corpus(120, {5}), encoding="utf-8")
    build([src], store, embedder=FakeEmbedder())
    gen = Store(store).require_current()
    base = gen.file(impact.BASE_FILE)
    n = gen.manifest["counts"]["papers"]
    with pytest.raises(DamagedError, match=impact.BASE_FILE):  # a delta opened without its base
        impact.open_index(gen.file("lexical.npz"), gen.file(impact.DERIVED_FILE), n)
    data = bytearray(base.read_bytes())
    base.unlink()  # the other generation keeps its own name for the bytes
    data[-20] ^= 0xFF
    base.write_bytes(bytes(data))
    report = verify(Store(store))
    assert not report.ok and any(impact.BASE_FILE in f.path and not f.ok for f in report.findings)
    base.unlink()
    with pytest.raises(PaperscopeError, match=impact.BASE_FILE), Explorer(store, embedder=FakeEmbedder()) as ex:
        ex.related("p1")


def test_rows_removed_after_a_delta_write_the_postings_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run that renumbers rows (papers removed, ``--prune``) over a delta: no delta (the base's
    row numbers would be wrong), the postings sorted afresh under the carried weights."""
    monkeypatch.setattr(impact, "IDF_CHECK", 1.0)
    monkeypatch.setattr(impact, "DELTA_MAX", 1.0)
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(30)]
    rows = _rows(rng, words, 50)
    g0, g1, g2 = (tmp_path / f"g{i}" for i in range(3))
    g0.mkdir()
    LexicalIndex.from_counts(rows).save(g0 / "lexical.npz")
    impact.derive(g0 / "lexical.npz", g0 / impact.DERIVED_FILE)
    rows, carry, n = _next(rng, rows, words, g1, g0)
    prev = (g0 / "lexical.npz", g0 / impact.DERIVED_FILE)
    assert (
        impact.derive(g1 / "lexical.npz", g1 / impact.DERIVED_FILE, prev, carry, base_out=g1 / impact.BASE_FILE).how
        == "delta"
    )
    mapping = np.delete(np.arange(n, dtype=np.int64), [0, 7, 20])  # three papers gone, the rest renumbered
    g2.mkdir()
    carried = carry_rows(CarriedArrays.load(g1 / "lexical.npz"), mapping, LexicalIndex.from_counts([]))
    carried.write(g2 / "lexical.npz")
    how = impact.derive(
        g2 / "lexical.npz",
        g2 / impact.DERIVED_FILE,
        (g1 / "lexical.npz", g1 / impact.DERIVED_FILE),
        Carry(mapping, carried.old_to_new),
        previous_base=g1 / impact.BASE_FILE,
        base_out=g2 / impact.BASE_FILE,
    )
    assert how.how == "merged" and not (g2 / impact.BASE_FILE).exists()
    lex, post = impact.open_index(g2 / "lexical.npz", g2 / impact.DERIVED_FILE, n - 3)
    _, before = impact.open_index(g1 / "lexical.npz", g1 / impact.DERIVED_FILE, n, g1 / impact.BASE_FILE)
    assert post.delta is None
    want_lex = LexicalIndex.open(g2 / "lexical.npz", n - 3)
    want_lex.attach_weights(np.array(post.unit), np.array(post.idf))
    _same_lists(post, impact.Postings.build(want_lex, reference=False), len(lex.vocab))
    # Carried rows keep their weights: row r here is row mapping[r] before.
    for r in range(0, n - 3, 5):
        a, b = int(post.indptr[r]), int(post.indptr[r + 1])
        c, e = int(before.indptr[mapping[r]]), int(before.indptr[mapping[r] + 1])
        assert np.array_equal(post.unit[a:b], before.unit[c:e])


def test_a_metadata_only_change_links_the_delta_and_its_base(tmp_path: Path) -> None:
    """After a delta, a change that leaves every title and abstract alone links lexical.npz, the
    delta file and the base: the same inodes, the same answers, verify passes."""
    src = tmp_path / "a.jsonl"
    store = tmp_path / "s"
    src.write_text(_corpus(120), encoding="utf-8")
    build([src], store, embedder=FakeEmbedder())
    src.write_text(_corpus(120, {5, 6}), encoding="utf-8")
    build([src], store, embedder=FakeEmbedder())
    before = Store(store).require_current()
    answers = _hits(store)
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[9] = json.dumps({**json.loads(lines[9]), "date": "2024-02-02"})
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = build([src], store, embedder=FakeEmbedder())
    gen = Store(store).require_current()
    assert report.updated == 1 and gen.name != before.name
    assert gen.manifest["lexical"]["derivation"] == "linked" and gen.manifest["lexical"]["delta_rows"] == 2
    for name in ("lexical.npz", impact.DERIVED_FILE, impact.BASE_FILE):
        assert gen.file(name).stat().st_ino == before.file(name).stat().st_ino, name
    assert gen.manifest["files"][impact.BASE_FILE]["written_by"] == "g000001"
    assert verify(Store(store)).ok
    assert _hits(store) == answers
