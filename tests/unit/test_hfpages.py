"""The Hugging Face page parser on the bundled pages and on generated pages."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from paperscope.corpus import read_corpus, read_papers
from paperscope.corpus.hfpages import parse_date, parse_page
from paperscope.corpus.normalize import normalise_title, title_id


def test_bundled_pages_hold_535_entries_and_432_distinct_papers(corpus_dir: Path) -> None:
    entries = list(read_papers([corpus_dir]))
    assert len(entries) == 535
    papers = read_corpus([corpus_dir])
    assert len(papers) == 432
    assert len({p.id for p in papers}) == 432
    # Every entry is remembered: sources over all papers add back up to the entries.
    assert sum(len(p.sources) for p in papers) == 535
    assert Counter(len(p.sources) for p in papers)[1] < 432


def test_each_page_yields_the_entries_it_shows(corpus_dir: Path) -> None:
    per_page = {f.name: len(list(read_papers([f]))) for f in sorted(corpus_dir.iterdir())}
    assert per_page == {
        "000_148cc2af580f7f18.txt": 76,
        "001_c00677aa7bbbe73a.txt": 226,
        "002_34ba832f8a3ec612.txt": 72,
        "003_b496d529722dd834.txt": 90,
        "004_2dbf35f10359cdb3.txt": 71,
    }


def test_dense_layout_title_glued_to_subscribe_is_recovered(corpus_dir: Path) -> None:
    titles = {p.title for p in read_papers([corpus_dir / "001_c00677aa7bbbe73a.txt"])}
    glued = "Over-parametrization via Lifting for Low-rank Matrix Sensing: Conversion of Spurious Solutions to Strict Saddle Points"
    assert glued in titles
    assert not any(t.startswith("Subscribe") for t in titles)


def test_spaced_layout_metadata(corpus_dir: Path) -> None:
    by_title = {p.title: p for p in read_papers([corpus_dir / "003_b496d529722dd834.txt"])}
    rl = by_title["RL makes MLLMs see better than SFT"]
    assert (rl.organisation, rl.date, rl.upvotes, rl.authors_count) == ("naver-ai NAVER AI Lab", "--10-17", 2, None)
    lst = by_title["LST: Ladder Side-Tuning for Parameter and Memory Efficient Transfer Learning"]
    assert (lst.authors_count, lst.date, lst.upvotes) == (3, "2022-06-13", None)
    vla = by_title["VLA-Adapter: An Effective Paradigm for Tiny-Scale Vision-Language-Action Model"]
    assert (vla.authors_count, vla.date, vla.upvotes) == (16, "--09-11", 6)


def test_duplicate_paper_remembers_every_page(corpus_dir: Path) -> None:
    papers = {p.title: p for p in read_corpus([corpus_dir])}
    peft = papers["Parameter-Efficient Fine-Tuning for Large Models: A Comprehensive Survey"]
    assert len(peft.sources) == 4
    # Metadata only shown on one page survives the merge with pages that lack it.
    assert peft.date == "2024-03-21" and peft.authors_count == 5


def test_ids_are_stable_title_hashes(corpus_dir: Path) -> None:
    papers = read_corpus([corpus_dir])
    tp5 = next(p for p in papers if p.title.startswith("Tensor Programs V:"))
    assert tp5.id == title_id(tp5.title) == "t-6b1401c46806"
    assert title_id("Tensor  programs V: tuning large neural networks via zero-shot hyperparameter transfer") == tp5.id


def test_parse_date_keeps_what_is_there() -> None:
    assert parse_date("Jun 13, 2022") == ("2022-06-13", None)
    assert parse_date("Sep 20, 2024 4") == ("2024-09-20", 4)
    assert parse_date("Oct 17 2") == ("--10-17", 2)
    assert parse_date("Oct 16") == ("--10-16", None)
    assert parse_date("Foo 16") is None
    assert parse_date("Oct 40") is None


_words = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), min_size=1, max_size=12
)
_title = (
    st.lists(_words, min_size=1, max_size=12)
    .map(" ".join)
    .filter(lambda t: len(t) < 150 and normalise_title(t) != "" and not t.startswith(("Subscribe", "•", "·")))
)
_abstract = st.lists(_words, min_size=60, max_size=120).map(" ".join).filter(lambda a: len(a) >= 200)


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.tuples(_title, _abstract, st.integers(1, 40), st.booleans()), min_size=1, max_size=6),
    spaced=st.booleans(),
)
def test_generated_pages_round_trip(entries: list[tuple[str, str, int, bool]], spaced: bool) -> None:
    lines = [
        "new",
        "Get trending papers in your email inbox!",
        "Subscribe",
        "byAK and the research community",
        "Mar 11",
    ]
    for title, abstract, authors, with_meta in entries:
        lines += [title, abstract]
        if spaced and with_meta:
            lines += [f"• {authors} authors", "·", "Jun 13, 2022"]
    page = ("\n\n" if spaced else "\n").join(lines)
    got = list(parse_page(page, "p.txt"))
    assert [(p.title, p.abstract) for p in got] == [
        (" ".join(t.split()), " ".join(a.split())) for t, a, _, _ in entries
    ]
    for p, (_, _, authors, with_meta) in zip(got, entries):
        assert p.authors_count == (authors if spaced and with_meta else None)
