"""Resource limits: a query never reads every abstract (the 1M figures are in benchmarks/resources_1m.py)."""

from __future__ import annotations

import re

import pytest
from conftest import FakeEmbedder

from paperscope.explorer import Explorer
from paperscope.pipeline import build


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    store = tmp_path_factory.mktemp("res") / "store"
    build(None, store, embedder=FakeEmbedder())
    ex = Explorer(store, embedder=FakeEmbedder())
    statements: list[str] = []
    ex.table.trace(statements.append)
    yield ex, statements
    ex.close()


def _abstract_reads(statements: list[str]) -> list[str]:
    return [s for s in statements if re.search(r"\babstract\b", s, re.I)]


@pytest.mark.parametrize(
    "call",
    [
        lambda ex, pid: ex.related(pid, k=10),
        lambda ex, pid: ex.related(pid, k=10, mode="dense"),
        lambda ex, pid: ex.related(pid, k=10, mode="lexical", why=True),
        lambda ex, pid: ex.related(pid, k=10, date_from="2023", min_authors=2),
        lambda ex, pid: ex.search("diffusion models for video", k=10),
        lambda ex, pid: ex.search("scaling laws", k=10, mode="lexical", source="000_148cc2af580f7f18.txt"),
        lambda ex, pid: ex.recommend([pid], k=10),
        lambda ex, pid: ex.paper(pid),
    ],
)
def test_queries_read_abstracts_of_the_answer_only(traced, call) -> None:  # type: ignore[no-untyped-def]
    ex, statements = traced
    pid = next(ex.papers()).id
    ex.lexical  # noqa: B018 - loaded from lexical.npz, not from SQLite
    statements.clear()
    call(ex, pid)
    reads = _abstract_reads(statements)
    assert reads, "the answer's papers are fetched with their abstracts"
    for sql in reads:
        # Only "WHERE row IN (<the k answer rows>)" or a lookup of one id: never a scan.
        rows = re.search(r"WHERE row IN \(([^)]*)\)", sql)
        assert rows is not None and len(rows.group(1).split(",")) <= 10, sql


def test_a_store_with_lexical_npz_never_rebuilds_counts_from_sqlite(traced, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from paperscope import lexical

    ex, _ = traced
    pid = next(ex.papers()).id

    def scan(*a: object) -> None:
        raise AssertionError("read every abstract to rebuild the lexical index")

    monkeypatch.setattr(lexical, "build_from_store", scan)
    with Explorer(ex.store, embedder=FakeEmbedder()) as fresh:
        assert len(fresh.related(pid, k=5)) == 5
