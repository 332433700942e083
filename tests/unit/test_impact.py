"""Impact-ordered postings (lexical-impact.npz): the fast path against exhaustive scoring, old stores, verify."""

from __future__ import annotations

import dataclasses
import itertools
import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import FakeEmbedder

from paperscope import impact, index, kernels, rank
from paperscope.errors import DamagedError, InvalidArgument
from paperscope.explorer import Explorer
from paperscope.lexical import CarriedArrays, Carry, LexicalIndex, TermVector, carry_rows, unit_weights
from paperscope.pipeline import build
from paperscope.rank import Query, Ranker
from paperscope.store import Store
from paperscope.verify import sealed, verify


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("impact") / "s"
    build(None, path, embedder=FakeEmbedder())
    return path


@pytest.fixture(scope="module")
def ex(store: Path) -> Explorer:
    return Explorer(store, embedder=FakeEmbedder())


def agreement(ex: Explorer, budget: int, mode: str, rows: list[int]) -> tuple[float, int]:
    """Mean top-10 overlap of Ranker.rank (with this postings budget) and Ranker.rank_exact, and
    how many queries agree exactly (the same ten papers)."""
    base = ex.ranker
    ranker = Ranker(base.vectors, base.index, base.lex, base.postings, budget=budget)
    overlaps, same = [], 0
    for r in rows:
        q = ex.related_query(r)
        fast = {x.row for x in ranker.rank(q, 10, mode)}
        exact = {x.row for x in ranker.rank_exact(q, 10, mode)}
        overlaps.append(len(fast & exact) / 10)
        same += fast == exact
    return float(np.mean(overlaps)), same


def test_the_bundled_corpus_is_scored_exhaustively_at_the_default_budget(ex: Explorer) -> None:
    # Every query's postings fit in the default budget on 432 papers: the fast path is exact.
    rows = list(range(0, len(ex), 9))
    for mode in ("lexical", "hybrid"):
        mean, same = agreement(ex, impact.BUDGET, mode, rows)
        assert (mean, same) == (1.0, len(rows)), mode


@pytest.mark.parametrize("mode", ["lexical", "hybrid"])
def test_truncated_postings_still_find_the_exact_top_ten(ex: Explorer, mode: str) -> None:
    """With a budget of a tenth of a paper query's postings (median 3,280 here), candidates come
    from the heaviest terms and the heads of the others, and the exact rescoring must still find
    nearly the exhaustive top 10. Measured at budget 300 on 48 queries (score-at-a-time reading,
    round 16): lexical 0.987 mean overlap, 43 queries identical (200: 0.981, 40; 500: 1.000, 48;
    round 15's reading of whole lists then equal heads: 0.981, 41 at 300); hybrid 1.000, 48 (its
    pool covers this corpus). Thresholds a little below the measure."""
    rows = list(range(0, len(ex), 9))
    post = ex.ranker.postings
    sizes = [
        int((post.post_starts[q.ids + 1] - post.post_starts[q.ids]).sum())
        for q in (ex.related_query(r).lexical for r in rows)
    ]
    assert np.median(sizes) > 10 * 300  # the budget does truncate
    mean, same = agreement(ex, 300, mode, rows)
    assert mean >= 0.96 and same >= 0.75 * len(rows), (mean, same, len(rows))


def _counting(ranker: Ranker) -> list[int]:
    """Wrap the ranker's exact lexical scoring to record how many rows each call scores."""
    sizes: list[int] = []
    exact = ranker.lexical_rows

    def counted(q: Query, rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        return exact(q, rows)

    ranker.lexical_rows = counted  # type: ignore[method-assign]
    return sizes


def test_rescoring_part_of_the_pool_changes_nothing_when_the_postings_are_read_whole(ex: Explorer) -> None:
    # At the default budget every query here is exhaustive: the partial sums are the exact lexical
    # scores, so the whole pool is scored as before and the answers are those of rescore=0.
    base = ex.ranker
    whole = Ranker(base.vectors, base.index, base.lex, base.postings)
    part = Ranker(base.vectors, base.index, base.lex, base.postings, rescore=50)
    sizes = _counting(part)
    for r in range(0, len(ex), 27):
        for q in (ex.related_query(r), Query(base.vectors[r], base.lex.text_vector("diffusion models"), text=True)):
            a, b = whole.rank(q, 10, "hybrid"), part.rank(q, 10, "hybrid")
            assert [(h.row, h.z) for h in a] == [(h.row, h.z) for h in b]
    assert max(sizes) > 50  # nothing was cut


def test_rescoring_part_of_a_truncated_pool_scores_its_hits_exactly(ex: Explorer) -> None:
    """Under a budget that truncates the postings, only the ``rescore`` best of the pool by an
    approximate fused score (exact cosine, partial lexical sum) are scored exactly on the lexical
    side. Every shown figure stays exact, and the top 10 still nearly agree with exhaustive
    scoring. Measured on these 48 queries at budget 300 (the fake embedder's vectors): rescore 120
    of the pool agrees at 0.981, 41 queries identical (30: 0.821; 60: 0.919; 200: 0.996; rescore 0,
    the whole pool: 1.000). Thresholds a little below."""
    base = ex.ranker
    ranker = Ranker(base.vectors, base.index, base.lex, base.postings, budget=300, rescore=120)
    sizes = _counting(ranker)
    rows = list(range(0, len(ex), 9))
    overlaps, same = [], 0
    for r in rows:
        q = ex.related_query(r)
        hits = ranker.rank(q, 10, "hybrid")
        exact = {x.row for x in ranker.rank_exact(q, 10, "hybrid")}
        overlaps.append(len({h.row for h in hits} & exact) / 10)
        same += {h.row for h in hits} == exact
        got = np.array([h.row for h in hits])
        lex = base.lexical_rows(q, got)
        assert [h.lexical for h in hits] == pytest.approx(lex.tolist(), abs=1e-6)
        assert [h.dense for h in hits] == pytest.approx((base.vectors[got] @ q.dense).tolist(), abs=1e-6)
    # every exact lexical scoring covered at most `rescore` rows (ties aside), where the whole pool
    # (this store's 432 papers) was scored before
    assert sizes and max(sizes) <= 120 + 5
    assert float(np.mean(overlaps)) >= 0.96 and same >= 0.7 * len(rows), (float(np.mean(overlaps)), same)
    with pytest.raises(InvalidArgument, match="rescore"):
        Ranker(base.vectors, base.index, base.lex, base.postings, rescore=-1)


def test_a_free_text_pass_reads_its_own_budget(ex: Explorer) -> None:
    # A few words' hybrid pass reads rank.TEXT_BUDGET postings, a paper query's impact.BUDGET: each
    # pass asks the postings for its own, and a text query ranks as under a budget of that size.
    base = ex.ranker
    ranker = Ranker(base.vectors, base.index, base.lex, base.postings, budget=300, text_budget=77)
    asked: list[int] = []
    partial = base.postings.partial

    def recorded(q: TermVector, mask: np.ndarray | None = None, budget: int = impact.BUDGET) -> tuple:
        asked.append(budget)
        return partial(q, mask, budget)

    text = Query(base.vectors[4], base.lex.text_vector("low-rank adaptation of language models"), text=True)
    try:
        base.postings.partial = recorded  # type: ignore[method-assign]
        ranker.rank(ex.related_query(4), 10, "hybrid")
        paper_passes, asked[:] = list(asked), []
        got = ranker.rank(text, 10, "hybrid")
        text_passes = list(asked)
    finally:
        del base.postings.partial
    assert paper_passes and set(paper_passes) == {300}
    assert text_passes == [77]
    same = Ranker(base.vectors, base.index, base.lex, base.postings, budget=77, text_budget=77).rank(text, 10, "hybrid")
    assert [(h.row, h.z) for h in got] == [(h.row, h.z) for h in same]
    assert rank.TEXT_BUDGET < impact.BUDGET


def test_a_truncated_pass_reads_the_postings_that_add_the_most(ex: Explorer) -> None:
    # Score-at-a-time: under a budget the pass reads the postings with the highest contributions
    # (query weight x impact), so the partial sums hold as much score as any choice of that many
    # postings can. Measured at budget 300 on these 48 queries: 1.000 of the best in every one.
    post = ex.ranker.postings
    for r in range(0, len(ex), 9):
        q = ex.related_query(r).lexical
        _, sums, exhaustive = post.partial(q, None, 300)
        assert not exhaustive
        contributions = np.concatenate(
            [post.term_postings(int(t))[1].astype(np.float64) * float(w) for t, w in zip(q.ids, q.values) if w > 0]
        )
        best = float(np.sort(contributions)[::-1][:300].sum())
        assert float(sums.sum()) == pytest.approx(best, rel=1e-4), r


@pytest.fixture
def marked(ex: Explorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> impact.Postings:
    """The test store's postings saved and opened with a mark every 4 postings (MARK_STRIDE 4) and
    8 segments per budget (SAT_SAMPLES 8): a pass of 320 postings then reads in strides of 40, which
    the marks serve, as they serve 150,000 postings in strides of 512 at 1M papers."""
    monkeypatch.setattr(impact, "MARK_STRIDE", 4)
    monkeypatch.setattr(impact, "SAT_SAMPLES", 8)
    gen = ex.generation
    impact.Postings.build(LexicalIndex.load(gen.file("lexical.npz"))).save(tmp_path / impact.DERIVED_FILE)
    _, post = impact.open_index(gen.file("lexical.npz"), tmp_path / impact.DERIVED_FILE, len(ex))
    return post


def test_the_marks_hold_every_strides_last_impact_and_each_lists_last(marked: impact.Postings) -> None:
    assert marked.marks is not None and not marked.marks.flags.owndata  # memory-mapped
    stride, checked = impact.MARK_STRIDE, 0
    for term in range(len(marked.idf)):
        lo, vals = int(marked.post_starts[term]), marked.term_postings(term)[1]
        if len(vals) <= stride:
            continue
        ends = np.minimum(np.arange(1, -(-len(vals) // stride) + 1) * stride, len(vals)) - 1
        slots = lo // stride + term + np.arange(len(ends))
        assert np.array_equal(marked.marks[slots], vals[ends]), term
        checked += 1
    assert checked > 1000


class _Reads(np.ndarray):
    """An array that records the positions fancy indexing reads (the numpy loops index this way)."""

    log: list[np.ndarray]

    def __getitem__(self, key: object) -> object:
        if isinstance(key, np.ndarray) and key.dtype.kind in "iu":
            self.log.append(key.ravel().copy())
        return np.asarray(self)[key]  # type: ignore[index]


def _recording(a: np.ndarray) -> _Reads:
    r = np.asarray(a).view(_Reads)
    r.log = []
    return r


def _read_positions(log: list[np.ndarray], post: impact.Postings, ids: np.ndarray) -> dict[int, np.ndarray]:
    """Per query term, the positions in its list (from its head) that were read."""
    if not log:
        return {int(t): np.zeros(0, dtype=np.int64) for t in ids}
    at = np.unique(np.concatenate(log))
    out = {}
    for t in ids:
        lo, hi = int(post.post_starts[t]), int(post.post_starts[t + 1])
        out[int(t)] = at[(at >= lo) & (at < hi)] - lo
    return out


@pytest.mark.parametrize("budget", [320, 640])
def test_a_pass_chooses_the_same_postings_from_the_marks_and_reads_no_head_it_does_not_sum(
    marked: impact.Postings, ex: Explorer, budget: int
) -> None:
    """The threshold placed from the marks is the one the lists give (the same partial sums, bit
    for bit), and past a list's first MARK_STRIDE postings the pass reads only what it sums and
    the one segment (a stride) after it, where the binary search ends. Placing it from the lists
    reads each long list's head to the budget: on a cold store, every page of every head (the
    check below fails without the marks)."""
    stride = impact.MARK_STRIDE * (budget // impact.SAT_SAMPLES // impact.MARK_STRIDE)
    lists = dataclasses.replace(marked, marks=None)
    beyond = 0
    for r in range(0, len(ex), 27):
        q = ex.related_query(r).lexical
        want = lists.partial(q, None, budget)
        assert not want[2]
        rows, vals = _recording(marked.post_rows), _recording(marked.post_vals)
        probe = dataclasses.replace(marked, post_rows=rows, post_vals=vals)
        with kernels.numpy_only():
            got = probe.partial(q, None, budget)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), r
        summed = _read_positions(rows.log, marked, q.ids)
        for t, at in _read_positions(vals.log, marked, q.ids).items():
            took = int(summed[t].max()) + 1 if len(summed[t]) else 0
            far = at[at >= impact.MARK_STRIDE]
            assert (far < max(took, impact.MARK_STRIDE) + stride).all(), (r, t, took, far.max())
            length = int(marked.post_starts[t + 1] - marked.post_starts[t])
            beyond += length > max(took, impact.MARK_STRIDE) + stride
    assert beyond > 20  # lists whose heads the lists-only placing would have read past that


def test_candidates_report_whether_they_are_exhaustive(ex: Explorer) -> None:
    post = ex.ranker.postings
    q = ex.related_query(5).lexical
    full, exhaustive = post.candidates(q, 10_000)
    assert exhaustive
    scores = post.score_all(q)
    assert set(full.tolist()) == set(np.flatnonzero(scores > 0).tolist())
    some, exhaustive = post.candidates(q, 50, budget=300)
    assert not exhaustive and 0 < len(some) <= 60
    assert np.allclose(post.score_rows(q, some), scores[some])
    # The same rows again with other queries (their entries are reused) and other rows after them.
    other = ex.related_query(9).lexical
    assert np.allclose(post.score_rows(other, some), post.score_all(other)[some])
    assert np.allclose(post.score_rows(q, some), scores[some])
    fewer = some[:-1]
    assert np.allclose(post.score_rows(other, fewer), post.score_all(other)[fewer])
    assert np.allclose(post.score_rows(q, some[::-1]), scores[some[::-1]])


def test_partial_scores_are_exact_when_exhaustive_and_lower_bounds_when_not(ex: Explorer) -> None:
    # The joint candidates of a text search read a row's lexical side from these partial sums.
    post = ex.ranker.postings
    q = ex.related_query(5).lexical
    scores = post.score_all(q)
    rows, sums, exhaustive = post.partial(q)
    assert exhaustive and np.all(np.diff(rows) > 0)
    assert rows.tolist() == np.flatnonzero(scores > 0).tolist() and np.allclose(sums, scores[rows])
    rows, sums, exhaustive = post.partial(q, budget=300)
    assert not exhaustive and np.all(np.diff(rows) > 0)
    assert np.all(sums <= scores[rows] + 1e-6) and (sums < scores[rows] - 1e-6).any()
    mask = np.zeros(len(ex), dtype=bool)
    mask[::2] = True
    masked, masked_sums, _ = post.partial(q, mask, budget=300)
    assert masked.tolist() == rows[mask[rows]].tolist() and np.allclose(masked_sums, sums[mask[rows]])


def test_derived_file_is_a_pure_function_of_lexical_npz(ex: Explorer, tmp_path: Path) -> None:
    gen = ex.generation
    impact.derive(gen.file("lexical.npz"), tmp_path / "again.npz")
    assert (tmp_path / "again.npz").read_bytes() == gen.file(impact.DERIVED_FILE).read_bytes()


def test_open_maps_what_build_derives(ex: Explorer) -> None:
    gen = ex.generation
    lex, post = impact.open_index(gen.file("lexical.npz"), gen.file(impact.DERIVED_FILE), len(ex))
    mem = impact.Postings.build(LexicalIndex.load(gen.file("lexical.npz")))
    for name in ("unit", "idf", "post_starts", "post_rows", "post_vals"):
        assert np.array_equal(getattr(post, name), getattr(mem, name)), name
        assert not getattr(post, name).flags.owndata  # a view of the memory map, not a copy
    assert post.reference == mem.reference and post.reference is not None
    # text queries find their terms in the memory-mapped vocabulary as in the in-memory one
    text = "sparse mixture of experts routing"
    a, b = lex.text_vector(text), LexicalIndex.load(gen.file("lexical.npz")).text_vector(text)
    assert a.nnz > 0 and np.array_equal(a.ids, b.ids) and np.allclose(a.values, b.values)


def test_an_unsorted_vocabulary_is_searched_through_its_order(tmp_path: Path) -> None:
    lex = LexicalIndex(
        ["zeta", "alpha", "mu"],
        np.array([0, 2, 3], dtype=np.int64),
        np.array([0, 2, 1], dtype=np.int32),
        np.array([1, 2, 1], dtype=np.int32),
        np.array([1, 0, 0], dtype=np.int32),
    )
    lex.save(tmp_path / "lexical.npz")
    impact.derive(tmp_path / "lexical.npz", tmp_path / "d.npz")
    opened, _ = impact.open_index(tmp_path / "lexical.npz", tmp_path / "d.npz", 2)
    for word, tid in (("zeta", 0), ("alpha", 1), ("mu", 2), ("nu", None)):
        assert opened.term_id(word) == tid


def test_a_derived_file_that_does_not_match_is_named(ex: Explorer, tmp_path: Path) -> None:
    gen = ex.generation
    other = LexicalIndex.load(gen.file("lexical.npz"))
    cut = int(other.indptr[-2])  # the same papers but the last: derived from another lexical.npz
    impact.Postings.build(
        LexicalIndex(other.vocab, other.indptr[:-1], other.terms[:cut], other.counts[:cut], other.title_counts[:cut])
    ).save(tmp_path / "d.npz")
    with pytest.raises(DamagedError, match="d.npz: damaged"):
        impact.open_index(gen.file("lexical.npz"), tmp_path / "d.npz", len(ex))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DamagedError, match="junk.npz: damaged"):
        impact.open_index(gen.file("lexical.npz"), tmp_path / "junk.npz", len(ex))


def test_verify_hashes_the_derived_file(tmp_path: Path) -> None:
    path = tmp_path / "s"
    build(None, path, embedder=FakeEmbedder())
    gen = Store(path).require_current()
    assert impact.DERIVED_FILE in gen.manifest["files"]
    target = gen.file(impact.DERIVED_FILE)
    data = bytearray(target.read_bytes())
    data[-100] ^= 0xFF  # inside the last array: the size stays, only the hash can tell
    target.write_bytes(bytes(data))
    report = verify(Store(path))
    assert [Path(f.path).name for f in report.damaged] == [impact.DERIVED_FILE]


def old_store(path: Path) -> Path:
    """A store as an older paperscope wrote it: no lexical-impact.npz in the generation or manifest."""
    build(None, path, embedder=FakeEmbedder())
    gen = Store(path).require_current()
    gen.file(impact.DERIVED_FILE).unlink()
    manifest = {k: v for k, v in gen.manifest.items() if k != "manifest_sha256"}
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k != impact.DERIVED_FILE}
    gen.file("manifest.json").write_text(json.dumps(sealed(manifest), indent=2), encoding="utf-8")
    return path


def test_an_old_store_opens_derives_in_memory_and_is_upgraded_by_index(tmp_path: Path, ex: Explorer) -> None:
    path = old_store(tmp_path / "old")
    fake = FakeEmbedder()
    key = ex.table.fetch([7])[0].id
    with Explorer(path, embedder=fake) as old, pytest.warns(UserWarning, match="no lexical-impact.npz"):
        hits = old.related(key, 10)
    # the same papers and scores as the store whose derived file was written at build
    expected = ex.related(key, 10)
    assert [(h.paper.id, round(h.score, 9)) for h in hits] == [(h.paper.id, round(h.score, 9)) for h in expected]
    report = build(None, path, embedder=fake)  # nothing changed but the derived file: a new generation
    assert not report.nothing_to_do and report.embedded == 0
    assert impact.DERIVED_FILE in Store(path).require_current().manifest["files"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Explorer(path, embedder=fake) as upgraded:
            assert len(upgraded.related(key, 10)) == 10


def test_term_vector_queries_with_negative_weights_are_scored_exactly(ex: Explorer) -> None:
    # recommend's negative papers give negative query weights: candidates ignore them, the scores do not
    pos, neg = 3, 4
    q = Query(
        dense=ex.index.mean([pos]),
        lexical=ex.lexical.rows_vector([pos], [neg], 0.5),
        exclude=frozenset([pos, neg]),
    )
    assert (q.lexical.values < 0).any()
    fast = ex.ranker.rank(q, 10, "lexical")
    exact = ex.ranker.rank_exact(q, 10, "lexical")
    assert [r.row for r in fast] == [r.row for r in exact]
    assert np.allclose([r.lexical for r in fast], [r.lexical for r in exact])
    empty = TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    rows, exhaustive = ex.ranker.postings.candidates(empty, 10)
    assert len(rows) == 0 and exhaustive


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_a_memory_mapped_faiss_index_answers_as_a_read_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / kind
    fake = FakeEmbedder()
    build(None, path, embedder=fake, index_type=kind)
    with Explorer(path, embedder=fake) as read:
        keys = [p.id for p in read.table.fetch([0, 50, 100, 200])]
        expected = [[(h.paper.id, h.score) for h in read.related(key, 10)] for key in keys]
    monkeypatch.setattr(index, "MMAP_BYTES", 0)  # map even this small file
    with Explorer(path, embedder=fake) as mapped:
        assert [[(h.paper.id, h.score) for h in mapped.related(key, 10)] for key in keys] == expected


def test_reference_sampled_over_evenly_spaced_papers_matches_all_papers(
    ex: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lex, post = ex.ranker.lex, ex.ranker.postings
    full = impact.lexical_reference(lex, post)
    monkeypatch.setattr(impact, "REFERENCE_TARGETS", 150)  # a third of the papers, as at 25k+ papers
    sampled = impact.lexical_reference(lex, post)
    assert sampled != full and np.allclose(sampled, full, rtol=0.2), (sampled, full)


def test_reference_over_sampled_targets_is_each_query_scored_against_the_others(
    ex: Explorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference scores every target and drops the query's own row (so the targets' entries are
    read once and reused): bit for bit the figures of scoring every target but that row."""
    lex, post = ex.ranker.lex, ex.ranker.postings
    monkeypatch.setattr(impact, "REFERENCE_TARGETS", 150)
    got = impact.lexical_reference(lex, post)
    n = lex.n
    qrows = np.unique(np.linspace(0, n - 1, min(n, impact.REFERENCE_QUERIES)).astype(np.int64))
    targets = np.unique(np.linspace(0, n - 1, 150).astype(np.int64))
    lx = [post.score_rows(lex.rows_vector([r]), targets[targets != r]) for r in qrows.tolist()]
    tx = [post.score_rows(lex.title_vector(r), targets[targets != r]) for r in qrows.tolist()]
    lv, xv = np.concatenate(lx), np.concatenate(tx)
    assert got == (float(lv.mean()), max(float(lv.std()), 1e-6), float(xv.mean()), max(float(xv.std()), 1e-6))


def _rows(rng: np.random.Generator, words: list[str], n: int) -> list[tuple[Counter[str], Counter[str]]]:
    out = []
    for _ in range(n):
        counts = Counter(rng.choice(words, size=int(rng.integers(1, 12))).tolist())
        out.append((counts, Counter(dict.fromkeys(list(counts)[:2], 1))))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_a_merged_derivation_is_a_full_one_under_the_carried_idf(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carried rows keep their weights and postings; fresh rows are weighted with the previous idf
    (a new term with its own) and merged into the lists: per list the same (row, weight) entries
    as a full derivation with that idf, in impact order."""
    monkeypatch.setattr(impact, "CHUNK", [1 << 24, 7][seed % 2])  # 7: many blocks of terms
    monkeypatch.setattr(impact, "IDF_CHECK", 1.0)  # no idf check
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(60)] + ["two words", "μp"]
    old_rows = _rows(rng, words, 80)
    LexicalIndex.from_counts(old_rows).save(tmp_path / "old.npz")
    assert impact.derive(tmp_path / "old.npz", tmp_path / "old-d.npz").how == "derived"
    # Edit some rows in place (a few with terms the store never had), append some.
    n = 80 + int(rng.integers(0, 6))
    mapping = np.arange(n, dtype=np.int64)
    mapping[80:] = -1
    mapping[rng.choice(80, size=int(rng.integers(1, 9)), replace=False)] = -1
    if seed >= 3:  # rows removed too (--prune): the carried rows are renumbered
        mapping = np.delete(mapping, rng.choice(np.flatnonzero(mapping >= 0), size=5, replace=False))
        n = len(mapping)
    fresh = _rows(rng, [*words, "brand new", "ńovel"], int((mapping < 0).sum()))
    it = iter(fresh)
    new_rows = [old_rows[m] if m >= 0 else next(it) for m in mapping]
    carried = carry_rows(CarriedArrays.of(LexicalIndex.from_counts(old_rows)), mapping, LexicalIndex.from_counts(fresh))
    carried.write(tmp_path / "new.npz")
    carry = Carry(mapping, carried.old_to_new)
    how = impact.derive(
        tmp_path / "new.npz", tmp_path / "new-d.npz", (tmp_path / "old.npz", tmp_path / "old-d.npz"), carry
    )
    assert how.how == "merged" and how.idf_check is None
    lex, got = impact.open_index(tmp_path / "new.npz", tmp_path / "new-d.npz", n)
    old_lex, old_post = impact.open_index(tmp_path / "old.npz", tmp_path / "old-d.npz", 80)
    # The idf is the previous one for every term still used; a new term gets its own.
    for t in range(len(lex.vocab)):
        prev = old_lex.term_id(lex.vocab[t])
        if prev is not None:
            assert got.idf[t] == old_post.idf[prev]
    want_lex = LexicalIndex.from_counts(new_rows)
    idf = np.array(got.idf)  # a full derivation under the same idf
    assert want_lex.title_counts is not None
    want_lex.attach_weights(
        unit_weights(want_lex.indptr, want_lex.terms, want_lex.counts, want_lex.title_counts, idf), idf
    )
    want = impact.Postings.build(want_lex)
    assert np.array_equal(got.unit, want.unit)
    assert np.array_equal(got.post_starts, want.post_starts)
    for t in range(len(lex.vocab)):
        lo, hi = int(got.post_starts[t]), int(got.post_starts[t + 1])
        assert sorted(zip(got.post_rows[lo:hi].tolist(), got.post_vals[lo:hi].tolist())) == sorted(
            zip(want.post_rows[lo:hi].tolist(), want.post_vals[lo:hi].tolist())
        )
        assert (np.diff(got.post_vals[lo:hi]) <= 0).all()  # impact order
    assert got.reference is not None and np.allclose(got.reference, want.reference)
    # Scores are those of the full derivation under that idf.
    q = lex.rows_vector([3])
    assert np.allclose(got.score_all(q), want.score_all(want_lex.rows_vector([3])))


@pytest.mark.parametrize("drift", [False, True])
def test_the_idf_is_checked_once_enough_rows_changed_and_derived_again_only_when_it_drifted(
    tmp_path: Path, drift: bool
) -> None:
    """Every IDF_CHECK (10%) of rows changed, the carried idf is compared with this generation's.
    Edits that leave the document frequencies alone keep it (and restart the count); a term that
    was new and rare in 3 rows and is now in 6 (then 12) with a heavy count makes it derive again."""
    assert impact.IDF_CHECK == 0.1
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)]
    rows = _rows(rng, words, 50)
    LexicalIndex.from_counts(rows).save(tmp_path / "g0.npz")
    impact.derive(tmp_path / "g0.npz", tmp_path / "g0-d.npz")
    done = []
    for g in range(1, 5):  # 3 rows of 50 edited per generation: 6%, 12% (checked), 6%, 12% (checked)
        edited = [g, g + 10, g + 20]
        mapping = np.arange(50, dtype=np.int64)
        mapping[edited] = -1
        if drift:  # each edited row gains a heavy new term
            fresh = [(rows[i][0] + Counter({"zz": 3}), rows[i][1]) for i in edited]
        else:  # the edited rows' texts move among them: every document frequency stays
            fresh = [rows[edited[1]], rows[edited[2]], rows[edited[0]]]
        rows = [*rows]
        for i, r in zip(edited, fresh):
            rows[i] = r
        prev = LexicalIndex.load(tmp_path / f"g{g - 1}.npz")
        carried = carry_rows(CarriedArrays.of(prev), mapping, LexicalIndex.from_counts(fresh))
        carried.write(tmp_path / f"g{g}.npz")
        done.append(
            impact.derive(
                tmp_path / f"g{g}.npz",
                tmp_path / f"g{g}-d.npz",
                (tmp_path / f"g{g - 1}.npz", tmp_path / f"g{g - 1}-d.npz"),
                Carry(mapping, carried.old_to_new),
            )
        )
    checks = [d.idf_check for d in done]
    assert checks[0] is None and checks[2] is None  # 6%: no check
    assert checks[1] is not None and checks[3] is not None
    assert (checks[1]["rows_since_check"], checks[1]["sample_rows"]) == (6, 50)
    if drift:
        assert [d.how for d in done] == ["merged", "derived", "merged", "derived"]
        assert all(c["decision"] == "refreshed" and c["row_cosine_p1"] < impact.IDF_MIN_COSINE for c in checks[1::2])
        full = tmp_path / "full.npz"
        impact.derive(tmp_path / "g4.npz", full)
        assert full.read_bytes() == (tmp_path / "g4-d.npz").read_bytes()  # a refresh is a full derivation
    else:
        assert [d.how for d in done] == ["merged"] * 4
        assert all(c["decision"] == "kept" and c["row_cosine_p1"] >= impact.IDF_MIN_COSINE for c in checks[1::2])
        # The idf is still the first generation's (computed on 50 papers); the count restarted at each check.
        with np.load(tmp_path / "g0-d.npz") as a, np.load(tmp_path / "g4-d.npz") as b:
            assert np.array_equal(a["idf"], b["idf"])
        for g, basis in ((1, [50, 3]), (2, [50, 0]), (3, [50, 3]), (4, [50, 0])):
            with np.load(tmp_path / f"g{g}-d.npz") as z:
                assert z["idf_basis"].tolist() == basis
        assert (checks[3]["rows_since_check"], checks[3]["computed_at"]) == (6, 50)


def _vm_flags(path: Path) -> list[set[str]]:
    """The VmFlags of every mapping of ``path`` in this process (/proc/self/smaps)."""
    out, current = [], False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            current = len(head) >= 6 and head[5] == str(path)
        elif current and line.startswith("VmFlags:"):
            out.append(set(head[1:]))
    return out


@pytest.mark.skipif(not Path("/proc/self/smaps").is_file(), reason="needs Linux /proc")
def test_the_query_maps_are_read_at_random(store: Path) -> None:
    # MADV_RANDOM ("rr"): a cold page fault reads the page, not the device's read-ahead window
    # (8 MB here: 64 random rows of a cold 1M vectors.npy took 0.43 s, 0.006 s advised).
    with Explorer(store, embedder=FakeEmbedder()) as fresh:
        assert fresh.related(fresh.papers().__next__().id, k=3)
        for name in ("vectors.npy", "lexical.npz", impact.DERIVED_FILE):
            flags = _vm_flags(fresh.generation.file(name).resolve())
            assert flags and all("rr" in f for f in flags), (name, flags)


@pytest.mark.parametrize("chunk", [impact.CHUNK, 7])
def test_postings_are_in_weight_order_with_ties_in_row_order(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Rows with the same text give the same weight to each term: those ties keep row order, as
    the merge of a later re-index assumes, whether the terms are sorted in one block or many."""
    from paperscope.lexical import paper_counts

    monkeypatch.setattr(impact, "CHUNK", chunk)
    texts = [("Low-rank adapters", "Adapters of low rank tune large models."), ("Diffusion", "Noise to images.")]
    texts += [(f"Paper {i}", f"Adapters and diffusion, variant {i % 3}.") for i in range(6)]
    rows = [texts[i % len(texts)] for i in (0, 1, 2, 0, 3, 1, 4, 0, 5, 6, 7, 2, 0, 3)]
    lex = LexicalIndex.from_counts(paper_counts(t, a) for t, a in rows)
    post = impact.Postings.build(lex, reference=False)
    unit = np.asarray(post.unit)
    ties = 0
    for term in range(len(post.idf)):
        lo, hi = int(post.post_starts[term]), int(post.post_starts[term + 1])
        got = list(zip(np.asarray(post.post_rows[lo:hi]).tolist(), np.asarray(post.post_vals[lo:hi]).tolist()))
        want = sorted(
            (
                (r, float(unit[e]))
                for r in range(lex.n)
                for e in range(int(lex.indptr[r]), int(lex.indptr[r + 1]))
                if int(lex.terms[e]) == term
            ),
            key=lambda rv: (-rv[1], rv[0]),
        )
        assert got == want, term
        ties += sum(a[1] == b[1] for a, b in itertools.pairwise(got))
    assert ties > 10  # the case under test is there
