"""Ranking modes, lexical index, filters, recommend and explanations, with the fake embedder."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.filters import Filter, parse_where
from paperscope.lexical import LexicalIndex, paper_counts, tokenize
from paperscope.paper import Hit, Paper
from paperscope.pipeline import build
from paperscope.rank import MODES, fuse
from paperscope.text import paper_text, ranking_terms

MODES_ = list(MODES)


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    store = tmp_path_factory.mktemp("rank") / "s"
    fake = FakeEmbedder()
    build(None, store, embedder=fake)
    return Explorer(store, embedder=fake)


# ---- tokenizer and lexical index ---------------------------------------------------------------
def test_tokenizer_keeps_domain_terms_and_drops_stop_words() -> None:
    assert tokenize("LoRA: Low-Rank Adaptation of Large Language Models") == [
        "lora",
        "low-rank",
        "low",
        "rank",
        "adaptation",
        "large",
        "language",
        "model",
    ]
    # Greek mu, the micro sign (NFKC), the spelled-out form and LaTeX markup all meet in one term.
    assert (
        tokenize("μP") == tokenize("muP") == tokenize("\u00b5P") == tokenize("$\\mu$P".replace("\\mu", "μ")) == ["μp"]
    )
    assert "3d" in tokenize("Text-to-3D generation with 3D Gaussians")
    assert "text-to-3d" in tokenize("Text-to-3D generation")
    assert tokenize("the of and we propose a novel method") == []
    assert tokenize("trained on 1000 images") == ["trained", "image"]


def test_lexical_round_trip_without_pickle(tmp_path: Path) -> None:
    idx = LexicalIndex.from_counts([Counter({"lora": 2, "adapter": 1}), Counter(), Counter({"μp": 3})])
    idx.save(tmp_path / "lexical.npz")
    with np.load(tmp_path / "lexical.npz", allow_pickle=False) as z:
        assert z["vocab_utf8"].dtype == np.uint8 and z["vocab_offsets"].dtype == np.int64  # no fixed-width strings
    back = LexicalIndex.load(tmp_path / "lexical.npz", 3)
    assert [back.row_counts(i)[0] for i in range(3)] == [
        Counter({"lora": 2, "adapter": 1}),
        Counter(),
        Counter({"μp": 3}),
    ]
    with pytest.raises(StoreError, match="expected 4"):
        LexicalIndex.load(tmp_path / "lexical.npz", 4)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(StoreError, match="bad.npz: damaged"):
        LexicalIndex.load(tmp_path / "bad.npz")


def test_tfidf_prefers_the_rare_shared_term() -> None:
    docs = [Counter({"model": 1, "lora": 1}), Counter({"model": 3}), Counter({"model": 1, "diffusion": 1})]
    idx = LexicalIndex.from_counts(docs)
    scores = idx.score_text(idx.text_vector("LoRA model"))
    assert int(np.argmax(scores)) == 0 and scores[2] < scores[0]
    assert idx.shared_terms(idx.text_vector("LoRA model"), 0, text_query=True)[0] == "lora"


def _jsonl(path: Path, papers: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in papers))
    return path


def test_lexical_index_is_updated_incrementally(tmp_path: Path, fake: FakeEmbedder) -> None:
    abstract = "An abstract long enough to be read as a paper about sparse attention kernels. " * 3
    papers = [{"id": f"p{i}", "title": f"Paper {i} on topic{i}", "abstract": abstract} for i in range(20)]
    store = tmp_path / "s"
    first = build([_jsonl(tmp_path / "a.jsonl", papers)], store, embedder=fake)
    assert first.tokenised == 20
    papers[3] = {**papers[3], "abstract": "Completely new words: hyperbolic embeddings of graphs. " * 4}
    papers.append({"id": "p99", "title": "A LoRA paper", "abstract": abstract})
    second = build([_jsonl(tmp_path / "b.jsonl", papers)], store, embedder=fake)
    assert second.tokenised == 2  # the changed paper and the new one; 19 reused from the previous generation
    ex = Explorer(store, embedder=fake)
    rebuilt = LexicalIndex.from_counts(paper_counts(p.title, p.abstract) for p in ex.papers())
    assert [ex.lexical.row_counts(i) for i in range(len(ex))] == [rebuilt.row_counts(i) for i in range(len(ex))]
    assert "hyperbolic" in ex.lexical.row_counts(ex.row("p3"))[0]
    assert build([_jsonl(tmp_path / "b.jsonl", papers)], store, embedder=fake).nothing_to_do


# ---- modes and fusion -----------------------------------------------------------------------------
def test_fuse_extremes_follow_one_side() -> None:
    dense, lex = np.array([0.9, 0.5, 0.1]), np.array([0.0, 2.0, 9.0])
    assert list(np.argsort(-fuse(dense, lex, 1.0))) == [0, 1, 2]
    assert list(np.argsort(-fuse(dense, lex, 0.0))) == [2, 1, 0]
    with pytest.raises(ValueError, match="weight"):
        fuse(dense, lex, 1.5)


def test_hybrid_at_the_extremes_equals_the_single_modes(ex: Explorer) -> None:
    q = ex.related_query(ex.row(TENSOR_PROGRAMS_V))
    dense = [r.row for r in ex.rank(q, 10, "dense")]
    lexical = [r.row for r in ex.rank(q, 10, "lexical")]
    assert [r.row for r in ex.rank(q, 10, "hybrid", weight=1.0, expand=0.0)] == dense
    assert [r.row for r in ex.rank(q, 10, "hybrid", weight=0.0, expand=0.0)] == lexical
    assert dense != lexical  # otherwise the test above says nothing


def test_unknown_mode_is_a_value_error(ex: Explorer) -> None:
    with pytest.raises(ValueError, match="unknown ranking mode 'bm42'"):
        ex.related(TENSOR_PROGRAMS_V, mode="bm42")


def test_lexical_search_needs_no_model(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    plain = Explorer(store)  # no embedder: a dense query would have to load the (real) model
    hits = plain.search("maximal update parametrization μP", mode="lexical", k=5)
    assert len(hits) == 5 and not plain.model_loaded
    assert all(
        "μp" in tokenize(f"{h.paper.title}. {h.paper.abstract}")
        or "parametrization" in tokenize(f"{h.paper.title}. {h.paper.abstract}")
        for h in hits
    )
    none = plain.search("zzzqqq", mode="lexical")
    assert list(none) == [] and "no indexed term in 'zzzqqq'" in (none.note or "")


# ---- filters ----------------------------------------------------------------------------------------
def _matches(p: Paper, f: Filter) -> bool:
    if f.date_from or f.date_to:
        if not p.date or not p.date[:4].isdigit():
            return False
        if f.date_from and p.date[: len(f.date_from)] < f.date_from:
            return False
        if f.date_to and p.date[: len(f.date_to)] > f.date_to:
            return False
    n = p.authors_count if p.authors_count is not None else len(p.authors)
    if f.min_authors is not None and n < f.min_authors:
        return False
    if f.max_authors is not None and n > f.max_authors:
        return False
    return not f.source or any(s == f.source or s.endswith("/" + f.source) for s in p.sources)


@settings(max_examples=25, deadline=None)
@given(
    i=st.integers(0, 431),
    k=st.integers(1, 60),
    mode=st.sampled_from(MODES_),
    year=st.sampled_from([None, "2019", "2022", "2023-06", "2024"]),
    min_a=st.sampled_from([None, 1, 3, 8]),
    max_a=st.sampled_from([None, 5, 20]),
    source=st.sampled_from([None, "003_b496d529722dd834.txt"]),
)
def test_filtered_related_has_exactly_k_when_k_match(
    ex: Explorer, i: int, k: int, mode: str, year: str | None, min_a: int | None, max_a: int | None, source: str | None
) -> None:
    assume(min_a is None or max_a is None or min_a <= max_a)
    papers = list(ex.papers())
    target = papers[i]
    f = Filter(date_from=year, min_authors=min_a, max_authors=max_a, source=source)
    matching = [p for p in papers if p.id != target.id and _matches(p, f)]
    hits = ex.related(target.id, k=k, mode=mode, date_from=year, min_authors=min_a, max_authors=max_a, source=source)
    assert len(hits) == min(k, len(matching))
    assert {h.paper.id for h in hits} <= {p.id for p in matching}
    assert len({h.paper.id for h in hits}) == len(hits)
    if not matching:
        assert hits.note and "no paper matches the filter" in hits.note


def test_filter_by_metadata_equality_and_date_range(ex: Explorer) -> None:
    papers = list(ex.papers())
    dated = [p for p in papers if p.date and p.date[:4].isdigit()]
    some = dated[0]
    hits = ex.related(TENSOR_PROGRAMS_V, k=500, where={"date": some.date})
    assert {h.paper.id for h in hits} == {p.id for p in papers if p.date == some.date} - {
        ex.paper(TENSOR_PROGRAMS_V).id
    }
    ranged = ex.search("neural network", k=500, mode="dense", date_from="2022-01", date_to="2022-12")
    assert ranged and all(h.paper.date and "2022-01" <= h.paper.date[:7] <= "2022-12" for h in ranged)
    assert len(ranged) == len([p for p in dated if p.date.startswith("2022")])


def test_empty_filter_result_is_explained_not_an_error(ex: Explorer) -> None:
    hits = ex.related(TENSOR_PROGRAMS_V, date_from="2099")
    assert list(hits) == [] and hits.note == "no paper matches the filter (date >= 2099)"
    hits = ex.search("diffusion", mode="dense", where={"organisation": "No Such Lab"})
    assert list(hits) == [] and "organisation = No Such Lab" in (hits.note or "")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"date_from": "notadate"}, "date_from: 'notadate' is not a date"),
        ({"date_to": "2023-13"}, "date_to: '2023-13' is not a date"),
        ({"min_authors": -1}, "min_authors: expected a non-negative integer"),
        ({"min_authors": 5, "max_authors": 2}, "author range is empty"),
        ({"date_from": "2024", "date_to": "2023"}, "date range is empty"),
        ({"where": {"colour": "red"}}, "where: unknown field 'colour'"),
    ],
)
def test_bad_filter_values_name_the_option(ex: Explorer, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ex.related(TENSOR_PROGRAMS_V, **kwargs)


def test_parse_where() -> None:
    assert parse_where(["organisation=Google", " upvotes = 3 "]) == {"organisation": "Google", "upvotes": "3"}
    with pytest.raises(ValueError, match="--where: expected KEY=VALUE, got 'oops'"):
        parse_where(["oops"])


# ---- recommend and explanations -------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES_)
def test_recommend_from_one_paper_is_related(ex: Explorer, mode: str) -> None:
    assert [h.paper.id for h in ex.recommend([TENSOR_PROGRAMS_V], k=10, mode=mode)] == [
        h.paper.id for h in ex.related(TENSOR_PROGRAMS_V, k=10, mode=mode)
    ]


def test_recommend_excludes_inputs_and_moves_away_from_negatives(ex: Explorer) -> None:
    papers = list(ex.papers())
    pos = [h.paper.id for h in ex.related(TENSOR_PROGRAMS_V, k=3, mode="dense")]
    neg = papers[0].id
    plain = ex.recommend(pos, k=20, mode="dense")
    pushed = ex.recommend(pos, [neg], k=20, mode="dense")
    assert len(pushed) == 20 and not ({h.paper.id for h in pushed} & set(pos + [neg]))
    vn = ex.vector(neg)

    def mean_sim(hits: list[Hit]) -> float:
        return float(np.mean([ex.vector(h.paper.id) @ vn for h in hits]))

    assert mean_sim(pushed) < mean_sim(plain)
    with pytest.raises(ValueError, match="at least one positive"):
        ex.recommend([], k=5)


def test_why_gives_shared_terms_and_dense_similarity(ex: Explorer) -> None:
    target = ex.paper(TENSOR_PROGRAMS_V)

    def terms_of(p: Paper) -> set[str]:  # words, compounds and phrases, as the lexical index reads them
        return set(ranking_terms(paper_text(p.title, p.abstract), phrases_too=True))

    q_terms = terms_of(target)
    for mode in MODES_:
        for h in ex.related(TENSOR_PROGRAMS_V, k=5, mode=mode, why=True):
            assert h.terms and set(h.terms) <= q_terms & terms_of(h.paper)
            expected = float(ex.vector(target.id) @ ex.vector(h.paper.id))
            assert h.dense == pytest.approx(expected, abs=1e-5)
            assert h.to_dict()["why"]["shared_terms"] == list(h.terms)
    plain = ex.related(TENSOR_PROGRAMS_V, k=3)
    assert all(h.terms is None and "why" not in h.to_dict() for h in plain)  # no explanation without --why
    # ... but each side's own score is always there
    assert all(
        h.dense is not None and h.lexical is not None and h.to_dict()["dense"] == round(h.dense, 6) for h in plain
    )


@pytest.mark.parametrize("mode", MODES_)
def test_overfetch_path_equals_exact_subset_path(ex: Explorer, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    # Large filtered stores ask FAISS for more and more neighbours instead of scoring the subset.
    import paperscope.rank as rank

    exact = ex.related(TENSOR_PROGRAMS_V, k=15, mode=mode, min_authors=3)
    monkeypatch.setattr(rank, "_BRUTE_FORCE_ROWS", 0)
    fetched = ex.related(TENSOR_PROGRAMS_V, k=15, mode=mode, min_authors=3)
    assert [h.paper.id for h in fetched] == [h.paper.id for h in exact] and len(exact) == 15


def test_cli_mode_choices_are_the_rankers() -> None:
    from paperscope.cli import related, search

    for command in (related, search):
        (mode,) = [p for p in command.params if p.name == "mode"]
        assert tuple(mode.type.choices) == MODES


def test_filtered_dense_on_an_approximate_index_still_gives_k(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IVF probes few lists: even asked for all n it may return fewer rows than a filter needs."""
    import paperscope.rank as rank_mod

    monkeypatch.setattr(rank_mod, "_BRUTE_FORCE_ROWS", 0)  # as on a store far larger than this one
    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake, index_type="ivf")
    with Explorer(store, embedder=fake) as ivf_ex:
        ivf_ex.index.faiss.nprobe = 1  # probe one list of many, as a large IVF index does
        source = "003_b496d529722dd834.txt"
        papers = list(ivf_ex.papers())
        target = papers[0]
        matching = {p.id for p in papers if p.id != target.id and any(s.endswith(source) for s in p.sources)}
        hits = ivf_ex.related(target.id, k=100, mode="dense", source=source)
        assert len(hits) == min(100, len(matching)) and {h.paper.id for h in hits} <= matching
        # and they are the exact best: the same as scoring every allowed paper
        vecs = np.asarray(ivf_ex.index.vectors)
        rows = {p.id: i for i, p in enumerate(papers)}
        exact = sorted(matching, key=lambda pid: -float(vecs[rows[pid]] @ vecs[rows[target.id]]))[: len(hits)]
        assert [h.paper.id for h in hits][:10] == exact[:10]


def test_a_pool_larger_than_the_probed_lists_probes_more_lists_not_every_vector(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hybrid asks FAISS for a pool of hundreds; an index tuned to probe few short lists holds
    fewer. More lists are probed then; scanning every vector exactly (what it did: 0.6 s a query
    on 1M synthetic vectors, an index at nprobe 2) stays for an index that cannot say."""

    class Counting(np.ndarray):
        """The stored vectors, counting the rows read from them (FAISS reads its own lists)."""

        reads = 0

        def __getitem__(self, key: object) -> object:
            out = super().__getitem__(key)
            if isinstance(out, np.ndarray) and out.ndim == 2:
                Counting.reads += out.shape[0]
            return out

    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake, index_type="ivf")
    with Explorer(store, embedder=fake) as ivf_ex:
        ivf_ex.index.faiss.nprobe = 1
        assert ivf_ex.index.faiss.nlist >= 8  # one list holds an eighth of the papers at most, on average
        rk = ivf_ex.ranker
        vectors = np.asarray(rk.vectors)
        rk.vectors = vectors.view(Counting)
        m = len(ivf_ex) // 2
        for row in (0, 100, 300):
            others = np.ones(len(ivf_ex), dtype=bool)
            others[row] = False  # the query paper itself, as related excludes it
            Counting.reads = 0
            rows, scores = rk.dense_top(ivf_ex.related_query(row), m, others, exact=False)
            assert Counting.reads == 0  # no exact scan: FAISS's own scores, from more lists
            assert len(rows) == m == len(set(rows.tolist())) and row not in rows.tolist()
            assert np.all(np.diff(scores) <= 1e-6)
            exact = [r for r in np.argsort(-(vectors @ vectors[row])).tolist() if r != row]
            assert set(rows[:10].tolist()) <= set(exact[:20])
        # A filter that the probed lists cannot satisfy: more lists, then more rows from each.
        monkeypatch.setattr("paperscope.rank._BRUTE_FORCE_ROWS", 0)  # as on a store far larger
        few = np.zeros(len(ivf_ex), dtype=bool)
        few[::3] = True
        rows, _ = rk.dense_top(ivf_ex.related_query(1), int(few.sum()), few, exact=False)
        assert sorted(rows.tolist()) == np.flatnonzero(few).tolist() and Counting.reads == 0


class _Clustered(FakeEmbedder):
    """Each "Group g" paper near its group's centre, spread along the group's own 8 directions:
    groups of near copies with varied similarity between them, like clustered sentence vectors."""

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            match = re.search(r"Group (\d+)", t)
            assert match is not None
            group = np.random.default_rng(int(match.group(1)))
            centre, dirs = group.standard_normal(self.dimension), group.standard_normal((8, self.dimension))
            own = np.random.default_rng(int(hashlib.md5(t.encode()).hexdigest()[:8], 16))
            v = centre + 0.8 * own.standard_normal(8) @ dirs / np.sqrt(8) + 0.3 * own.standard_normal(self.dimension)
            out[i] = v / np.linalg.norm(v)
        return out


def test_related_among_many_near_copies_gives_the_same_first_hits_for_any_k(tmp_path: Path) -> None:
    """Query expansion scores a feedback paper's near copies without it, which lowers them; the
    rows read must then go deeper, or the first ten of k=10 and k=20 differ (they did in 9 of 40
    queries here, and in nearly every query of benchmarks/related_1m.py's synthetic store)."""
    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(3000)]
    rows = []
    for g in range(20):
        topic = rng.choice(words, size=60)
        for i in range(20):
            text = " ".join(rng.choice(topic, size=30)) + " " + " ".join(rng.choice(words, size=30))
            rows.append({"id": f"g{g}-{i}", "title": f"Group {g} paper {i}", "abstract": text})
    src = tmp_path / "near.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    emb = _Clustered()
    build([src], tmp_path / "s", embedder=emb)
    with Explorer(tmp_path / "s", embedder=emb) as ex:
        rk = ex.ranker
        for row in range(0, len(ex), 10):
            q = ex.related_query(row)
            first = [r.row for r in rk.rank(q, 10, "hybrid")]
            assert first == [r.row for r in rk.rank(q, 20, "hybrid")][:10], row
            assert first == [r.row for r in rk.rank_exact(q, 10, "hybrid")], row
            assert first == [r.row for r in rk.rank_exact(q, 20, "hybrid")][:10], row
