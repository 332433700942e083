"""The Explorer's public query path (nearest, rank, vector, row), its parts, and the error types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder

from paperscope.errors import (
    REPAIR,
    DamagedError,
    InvalidArgument,
    MissingExtraError,
    PaperscopeError,
    StoreError,
    require_extra,
)
from paperscope.explorer import Explorer
from paperscope.filters import Filter
from paperscope.pipeline import build


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Explorer:
    store = tmp_path_factory.mktemp("api") / "s"
    fake = FakeEmbedder()
    build(None, store, embedder=fake)
    return Explorer(store, embedder=fake)


def test_vector_is_the_stored_unit_vector_at_the_papers_row(ex: Explorer) -> None:
    row = ex.row(TENSOR_PROGRAMS_V)
    v = ex.vector(TENSOR_PROGRAMS_V)
    assert v.dtype == np.float32 and v.shape == (ex.dimension,)
    assert np.array_equal(v, np.asarray(ex.index.vectors[row]))
    assert abs(float(np.linalg.norm(v)) - 1.0) < 1e-5
    assert ex.paper(TENSOR_PROGRAMS_V).id == ex.table.fetch([row])[0].id


def test_nearest_by_vector_equals_dense_related(ex: Explorer) -> None:
    """related() is nearest() on the paper's own query: by vector (dense), the same ranking."""
    row = ex.row(TENSOR_PROGRAMS_V)
    by_vector = ex.nearest(ex.vector(TENSOR_PROGRAMS_V), k=10, exclude=[row])
    related = ex.related(TENSOR_PROGRAMS_V, k=10, mode="dense")
    assert [h.paper.id for h in by_vector] == [h.paper.id for h in related]
    assert [h.score for h in by_vector] == pytest.approx([h.score for h in related], abs=1e-6)
    # without the exclusion the paper itself comes first (cosine 1 with itself; score is the calibrated one)
    first = ex.nearest(ex.vector(TENSOR_PROGRAMS_V), k=1)[0]
    assert first.paper.title == TENSOR_PROGRAMS_V and first.dense == pytest.approx(1.0, abs=1e-5)
    assert first.score >= by_vector[0].score


def test_nearest_with_a_built_query_and_a_filter(ex: Explorer) -> None:
    q = ex.related_query(ex.row(TENSOR_PROGRAMS_V))
    source = "003_b496d529722dd834.txt"
    hits = ex.nearest(q, k=5, mode="hybrid", filter=Filter.make(source=source), why=True)
    assert len(hits) == 5 and all(h.terms is not None for h in hits)
    assert all(any(s.endswith(source) for s in h.paper.sources) for h in hits)
    assert [h.paper.id for h in hits] == [h.paper.id for h in ex.related(TENSOR_PROGRAMS_V, k=5, source=source)]


def test_rank_is_the_query_path_related_uses(ex: Explorer) -> None:
    row = ex.row(TENSOR_PROGRAMS_V)
    for mode in ("dense", "lexical", "hybrid"):
        rows = [r.row for r in ex.rank(ex.related_query(row), 10, mode)]
        assert rows == [ex.row(h.paper.id) for h in ex.related(TENSOR_PROGRAMS_V, k=10, mode=mode)]


@pytest.mark.parametrize(
    "call",
    [
        lambda ex: ex.nearest(np.ones(3, dtype=np.float32)),
        lambda ex: ex.nearest(ex.vector(TENSOR_PROGRAMS_V), mode="lexical"),
        lambda ex: ex.nearest(ex.vector(TENSOR_PROGRAMS_V), k=0),
        lambda ex: ex.related(TENSOR_PROGRAMS_V, mode="bm42"),
        lambda ex: ex.search("   "),
        lambda ex: ex.recommend([]),
    ],
)
def test_bad_arguments_are_invalid_argument_and_still_value_errors(ex: Explorer, call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidArgument) as info:
        call(ex)
    assert isinstance(info.value, ValueError) and isinstance(info.value, PaperscopeError)


def test_model_loaded_only_when_a_query_needs_it(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build(None, store, embedder=FakeEmbedder())
    with Explorer(store) as plain:
        plain.search("hyperparameter transfer", mode="lexical", k=3)
        plain.related(TENSOR_PROGRAMS_V, k=3)
        assert not plain.model_loaded


def test_table_columns_read_every_row_in_order(ex: Explorer) -> None:
    rows = list(ex.table.columns("id", "title", page=100))
    assert [r[0] for r in rows] == [p.id for p in ex.papers()] and len(rows) == len(ex)
    with pytest.raises(ValueError, match="unknown papers columns"):
        list(ex.table.columns("id; DROP TABLE papers"))


def test_damaged_error_is_one_constructor_naming_file_and_repair(tmp_path: Path) -> None:
    e = DamagedError(tmp_path / "vectors.npy", "damaged (bad header)")
    assert isinstance(e, StoreError)
    assert str(e) == f"{tmp_path / 'vectors.npy'}: damaged (bad header); {REPAIR}"
    assert REPAIR == "re-index to repair: paperscope index --rebuild"


def test_missing_extra_is_one_line_naming_the_pip_install() -> None:
    with pytest.raises(MissingExtraError) as info:
        require_extra(("json", "no_such_module_for_paperscope"), "static", "--backend static")
    msg = str(info.value)
    assert "\n" not in msg and msg.endswith('pip install "paperscope[static]"') and "no_such_module" in msg


def test_static_backend_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from paperscope.embed import registry
    from paperscope.embed.lock import load_lock

    monkeypatch.setitem(
        registry.REGISTRY, "static", replace(registry.REGISTRY["static"], modules=("no_such_module_for_paperscope",))
    )
    with pytest.raises(MissingExtraError, match=r'pip install "paperscope\[static\]"'):
        registry.load_embedder(registry.with_backend(load_lock(), "static"))
