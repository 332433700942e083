"""Query properties on the bundled corpus, with the fake embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder, resident_kb
from hypothesis import given, settings
from hypothesis import strategies as st

from paperscope.errors import StoreError, UnknownPaperError
from paperscope.explorer import Explorer
from paperscope.lexical import release_pages
from paperscope.pipeline import build


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    store = tmp_path_factory.mktemp("fake") / "s"
    fake = FakeEmbedder()
    build(None, store, embedder=fake)
    return Explorer(store, embedder=fake)


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, 431), k=st.integers(1, 500))
def test_related_properties(ex: Explorer, i: int, k: int) -> None:
    target = list(ex.papers())[i]
    hits = ex.related(target.id, k=k)
    assert len(hits) == min(k, len(ex) - 1)
    assert target.id not in {h.paper.id for h in hits}
    assert len({h.paper.id for h in hits}) == len(hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_related_by_exact_title_equals_by_id(ex: Explorer) -> None:
    tp5 = ex.paper(TENSOR_PROGRAMS_V)
    assert [h.paper.id for h in ex.related(TENSOR_PROGRAMS_V.upper(), k=5)] == [
        h.paper.id for h in ex.related(tp5.id, k=5)
    ]


def test_unknown_paper_suggests_close_titles(ex: Explorer) -> None:
    with pytest.raises(UnknownPaperError) as err:
        ex.related("Tensor Programs", k=3)
    assert "Tensor Programs V" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UnknownPaperError):
        ex.paper("t-000000000000")


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_bad_k_is_refused(ex: Explorer, k: object) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        ex.related(TENSOR_PROGRAMS_V, k=k)  # type: ignore[arg-type]


def test_search_returns_k_sorted_hits_of_the_same_shape(ex: Explorer) -> None:
    hits = ex.search("maximal update parametrization hyperparameter transfer", k=7)
    assert len(hits) == 7 and [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(set(h.to_dict()) >= {"id", "title", "score", "rank"} for h in hits)
    with pytest.raises(ValueError):
        ex.search("   ")


def test_tiny_store_returns_fewer_only_when_corpus_has_fewer(tmp_path: Path, fake: FakeEmbedder) -> None:
    (tmp_path / "two.jsonl").write_text(
        '{"id": "a", "title": "A", "abstract": "alpha text"}\n{"id": "b", "title": "B", "abstract": "beta text"}\n'
    )
    build([tmp_path / "two.jsonl"], tmp_path / "s", embedder=fake)
    small = Explorer(tmp_path / "s", embedder=fake)
    assert [h.paper.id for h in small.related("a", k=10)] == ["b"]
    assert len(small.search("alpha", k=10)) == 2


def test_opening_a_missing_store_says_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="paperscope index --store"):
        Explorer(tmp_path / "nothing")


def test_top_level_api_build_then_open(tmp_path: Path, fake: FakeEmbedder) -> None:
    import paperscope

    (tmp_path / "p.jsonl").write_text(
        '{"id": "a", "title": "A", "abstract": "alpha text"}\n{"id": "b", "title": "B", "abstract": "beta text"}\n'
    )
    for _ in range(2):  # the second call must still find the function, not a submodule
        ex = paperscope.build([tmp_path / "p.jsonl"], store=tmp_path / "s", embedder=fake)
        assert isinstance(ex, paperscope.Explorer) and len(ex) == 2
    assert paperscope.open(tmp_path / "s", embedder=fake).paper("b").title == "B"


def test_preload_maps_the_query_files_and_changes_no_answer(tmp_path: Path, fake: FakeEmbedder) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    with Explorer(store, embedder=fake) as ex:
        vectors = ex.generation.file("vectors.npy")
        before = [h.paper.id for h in ex.related(TENSOR_PROGRAMS_V, k=10)]
        release_pages(ex.index.vectors)  # unmapped from this process (the file's pages stay cached)
        resident = resident_kb(vectors)
        if resident is None:
            pytest.skip("needs /proc/self/smaps (Linux)")
        assert resident == 0
        mapped = ex.preload()
        assert mapped >= ex.index.vectors.nbytes + ex.ranker.postings.unit.nbytes
        assert resident_kb(vectors) >= vectors.stat().st_size // 1024 - 4  # every page, the header's aside
        assert [h.paper.id for h in ex.related(TENSOR_PROGRAMS_V, k=10)] == before
