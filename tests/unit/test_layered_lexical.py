"""The lexical forward index as a shared base and a delta of rows (paperscope.layered_lexical): a
chain of small edits against the same edits written whole, array for array and query for query."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder, live_lexical

from paperscope import layered_lexical
from paperscope.cli import main
from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.lexical import CarriedArrays, LexicalIndex, mmap_npz
from paperscope.pipeline import build
from paperscope.store import Store
from paperscope.verify import verify

FORWARD = (layered_lexical.FORWARD_FILE, layered_lexical.FORWARD_UNIT_FILE)


def corpus(n: int, edited: dict[int, int]) -> list[dict[str, object]]:
    """Paper i: a few shared words and its own; an edit replaces its abstract with words no paper
    used before (new terms) and drops its own (terms no row uses any more); an edit marked -1 takes
    the next paper's abstract (the same words in other rows: the idf stays where it was)."""

    def plain(i: int) -> str:
        return f"shared topic{i % 7} words about model{i % 11} and own{i} term{i % 13}"

    rows = []
    for i in range(n):
        abstract = plain(i)
        if i in edited and edited[i] < 0:
            abstract = plain(i + 1)
        elif i in edited:
            abstract = f"shared topic{i % 7} rewritten novel{edited[i]} fresh{i}x{edited[i]} about model{i % 5}"
        rows.append(
            {
                "id": f"p{i}",
                "title": f"Paper {i} on topic{i % 7}",
                "abstract": abstract,
                "date": f"2023-0{1 + i % 9}-01",
            }
        )
    return rows


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def arrays(store: Path) -> dict[str, object]:
    """Everything a query reads of the live generation's lexical index, as whole arrays."""
    gen = Store(store).require_current()
    lex, post = live_lexical(store)
    whole = lex.whole()
    out: dict[str, object] = {
        "vocab": list(lex.vocab),
        "indptr": np.asarray(whole.indptr),
        "terms": np.asarray(whole.terms),
        "counts": np.asarray(whole.counts),
        "titles": np.asarray(whole.title_counts),
        "unit": np.asarray(whole.unit()),
        "idf": np.asarray(lex.idf()),
        "reference": post.reference,
        "df": np.asarray(mmap_npz(gen.file("lexical.npz"))["df"]),
    }
    for t in range(len(lex.vocab)):
        rows, vals = post.term_postings(t)
        out[f"postings {t}"] = (rows.tolist(), vals.tolist())
    return out


def answers(store: Path) -> list[object]:
    fake = FakeEmbedder()
    with Explorer(store, embedder=fake) as ex:
        out: list[object] = []
        for i in ("p1", "p2", "p9", "p60", "p150", "p203"):
            if i == "p203" and len(ex) < 204:
                continue
            out.append([(h.paper.id, h.score, h.dense, h.lexical, h.terms) for h in ex.related(i, k=8, why=True)])
        for text in ("shared words", "rewritten novel3", "own17 term4 model2"):
            out.append([(h.paper.id, h.score, h.lexical) for h in ex.search(text, k=8, mode="lexical")])
            out.append([(h.paper.id, h.score, h.dense, h.lexical) for h in ex.search(text, k=8)])
        out.append([(h.paper.id, h.score) for h in ex.recommend(["p4", "p60"], ["p5"], k=6)])
    return out


def test_small_edits_keep_the_forward_index_a_delta_with_the_answers_of_one_written_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run of small edits writes only the rows tokenised since the forward base (new terms,
    terms dropped, papers added, a metadata-only change that links every file); a run past the idf
    check writes everything whole from the layered files, and the next is a delta over that. At
    every step every array a query reads, and every answer, equals the same run's written whole."""
    n = 200
    # (edited texts, papers): forward delta 3, 9 (5 new papers), 9 (dates only), 10, whole (the idf check), 2
    steps = [({1, 2, 3}, n), ({50, 2}, n + 5), (set(), n + 5), ({9}, n + 5), (set(range(60, 80)), n + 5), ({10}, n + 6)]
    # then 26 papers take their neighbours' abstracts: the check keeps the idf, the rows are carried
    # whole from layered ones; then a delta again
    steps += [(set(range(100, 126)), n + 6), ({12}, n + 6)]
    forward_rows = [3, 9, 9, 10, None, 2, None, 1]
    # the first check finds the idf drifted (novel words), the second keeps it
    how = ["delta", "delta", "linked", "delta", "derived", "delta", "merged", "delta"]
    stores = {"layered": tmp_path / "layered", "whole": tmp_path / "whole"}
    fake = FakeEmbedder()
    for name, store in stores.items():
        build([write(tmp_path / "in" / name / "a.jsonl", corpus(n, {}))], store, embedder=fake)
    edited: dict[int, int] = {}
    first = Store(stores["layered"]).require_current().file("lexical.npz").stat().st_ino
    for k, (texts, size) in enumerate(steps):
        edited.update(dict.fromkeys(texts, -1 if k == 6 else k))
        rows = corpus(size, edited)
        if k == 2:
            for r in rows[7:9]:
                r["date"] = "2024-06-01"
        seen = {}
        for name, store in stores.items():
            with monkeypatch.context() as mp:
                mp.setattr(layered_lexical, "ENABLED", name == "layered")
                build([write(tmp_path / "in" / name / "a.jsonl", rows)], store, embedder=fake)
            seen[name] = (arrays(store), answers(store))
            assert verify(Store(store)).ok
        a, b = seen["layered"][0], seen["whole"][0]
        assert a.keys() == b.keys()
        for key in a:
            assert np.array_equal(a[key], b[key]) if isinstance(a[key], np.ndarray) else a[key] == b[key], key
        assert seen["layered"][1] == seen["whole"][1]
        gen = Store(stores["layered"]).require_current()
        lexical = gen.manifest["lexical"]
        assert (
            lexical["derivation"]
            == how[k]
            == Store(stores["whole"]).require_current().manifest["lexical"]["derivation"]
        )
        assert lexical.get("forward_rows") == forward_rows[k]
        shown = CliRunner().invoke(main, ["info", "--store", str(stores["layered"])]).output
        if forward_rows[k] is not None:
            assert all(f in gen.manifest["files"] for f in FORWARD)
            if k < 4:  # the first generation's lexical.npz is every one's forward base until the idf check
                assert gen.file(layered_lexical.FORWARD_FILE).stat().st_ino == first
                assert gen.manifest["files"][layered_lexical.FORWARD_FILE]["written_by"] == "g000001"
            # the forward index's files are a small part of the base's
            own = gen.file("lexical.npz").stat().st_size
            assert own < gen.file(layered_lexical.FORWARD_FILE).stat().st_size
            base = gen.manifest["files"][layered_lexical.FORWARD_FILE]["written_by"]
            assert f"; term rows: the base written by {base} and a delta of {forward_rows[k]}\n" in shown
        else:
            assert not any(f in gen.manifest["files"] for f in FORWARD)
            assert not gen.file(layered_lexical.FORWARD_FILE).exists() and "; term rows:" not in shown


def test_a_paperscope_from_before_refuses_a_layered_index_and_damage_is_named(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    src, store = tmp_path / "a.jsonl", tmp_path / "s"
    build([write(src, corpus(80, {}))], store, embedder=fake)
    build([write(src, corpus(80, {5: 1}))], store, embedder=fake)
    gen = Store(store).require_current()
    assert gen.manifest["lexical"]["forward_rows"] == 1
    # What older code reads: a lexical.npz without the whole CSR arrays is not an index it knows.
    with pytest.raises(StoreError, match="lexical.npz: damaged"):
        LexicalIndex.open(gen.file("lexical.npz"), 80)
    with pytest.raises(StoreError, match="lexical.npz: damaged"):
        CarriedArrays.load(gen.file("lexical.npz"))
    base = gen.file(layered_lexical.FORWARD_FILE)
    data = bytearray(base.read_bytes())
    data[:16] = b"not a zip file!!"  # same size: the open's checks or the digest find it
    base.write_bytes(bytes(data))  # the first generation's lexical.npz too: the same inode
    with pytest.raises(StoreError, match=rf"{layered_lexical.FORWARD_FILE}: damaged"):
        Explorer(store, embedder=fake)
    found = verify(Store(store))
    assert not found.ok and layered_lexical.FORWARD_FILE in [Path(f.path).name for f in found.damaged]
