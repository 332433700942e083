"""Hostile inputs, fuzzed: the readers, a build into an existing store, and the CLI arguments.

Outcome every time: a correct result, or one clear error line naming the file (and line),
exit code 2 and no traceback at the CLI, and the store left exactly as it was.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder
from hostile import NASTY, csv_bytes, jsonl_bytes, page_bytes, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paperscope.cli import main
from paperscope.corpus import read_corpus, read_papers
from paperscope.corpus.normalize import MAX_ABSTRACT_CHARS, MAX_TITLE_CHARS
from paperscope.errors import InputError, PaperscopeError
from paperscope.explorer import Explorer
from paperscope.pipeline import build

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
KINDS = {"jsonl": jsonl_bytes(), "csv": csv_bytes(), "txt": page_bytes(), "bin": st.binary(max_size=400)}
A = "A long enough abstract about neural networks and data, repeated for length. " * 4


def _check_read(path: Path) -> None:
    try:
        papers = read_corpus([path])
    except InputError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith(str(path)), msg
        return
    for p in papers:
        assert p.id and p.title and p.abstract
        assert len(p.title) <= MAX_TITLE_CHARS and len(p.abstract) <= MAX_ABSTRACT_CHARS
        for text in (p.id, p.title, p.abstract, p.organisation or "", *p.authors):
            text.encode("utf-8")  # storable: no lone surrogates
            assert "\x00" not in text
        assert p.authors_count is None or 0 <= p.authors_count <= 10**6


@FUZZ
@given(kind=st.sampled_from(["jsonl", "csv", "txt"]), data=st.data(), gz=st.booleans())
def test_readers_give_papers_or_one_line_naming_the_file(
    tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject, gz: bool
) -> None:
    raw = data.draw(KINDS[kind] | KINDS["bin"])
    if gz:
        raw = gzip.compress(raw)
        if data.draw(st.booleans()):
            raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path_factory.mktemp("in") / (f"input.{kind}" + (".gz" if gz else ""))
    path.write_bytes(raw)
    _check_read(path)


@pytest.mark.parametrize(
    "name,content,expect",
    [
        # Each of these raised a bare Python exception (a traceback at the CLI) before issue 7.
        ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "deep.jsonl:1: JSON nested too deeply"),
        (
            "trunc.jsonl.gz",
            gzip.compress(json.dumps({"title": "t", "abstract": A}).encode() * 50)[:40],
            "trunc.jsonl.gz: damaged compressed file",
        ),
    ],
)
def test_regressions_are_one_line_errors(tmp_path: Path, name: str, content: bytes, expect: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match="^" + str(tmp_path)) as err:
        list(read_papers([path]))
    assert expect in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "count,expected",
    [("²", None), ("9" * 5000, None), (10**30, None), (-3, None), (True, None), ("12", 12), (7, 7), (" 4 ", 4)],
)
def test_author_counts_that_are_not_counts_are_unknown(tmp_path: Path, count: object, expected: int | None) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"title": "T", "abstract": A, "authors_count": count}) + "\n")
    assert [p.authors_count for p in read_corpus([path])] == [expected]


def test_non_text_fields_and_huge_abstracts_are_skipped_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    rows = [
        {"id": {"a": 1}, "title": "T1", "abstract": A},
        {"title": ["x"], "abstract": A},
        {"title": "Huge", "abstract": "z " * 25_000_000},
        {"title": "Fine", "abstract": A},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from paperscope.corpus import ReadReport

    report = ReadReport()
    papers = list(read_papers([path], report))
    assert [p.title for p in papers] == ["Fine"]
    assert report.skipped == 3
    assert "odd.jsonl:1: id is a JSON dict" in report.skip_examples[0]
    # A 50 MB line is skipped before it is decoded (issue 12, item 4), earlier than the length check.
    assert "line longer than 4,194,304 bytes" in report.skip_examples[2]


def test_csv_with_bom_and_long_field_reads(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbftitle,abstract\nLong one," + b"w " * 45_000 + b"\n")
    assert [len(p.abstract) for p in read_corpus([path])] == [len("w " * 45_000) - 1]


@pytest.fixture(scope="module")
def base_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("base") / "base.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"p{i}", "title": f"Paper {i} on {w}", "abstract": f"{w} {A}"}) + "\n"
            for i, w in enumerate(["graphs", "diffusion", "scaling", "robots", "speech"] * 4)
        )
    )
    store = tmp_path_factory.mktemp("s") / "store"
    build([src], store, embedder=FakeEmbedder())
    return store


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["jsonl", "csv", "txt"]), data=st.data())
def test_building_hostile_input_adds_correct_papers_or_changes_nothing(
    base_store: Path, tmp_path_factory: pytest.TempPathFactory, kind: str, data: st.DataObject
) -> None:
    raw = data.draw(KINDS[kind])
    path = tmp_path_factory.mktemp("in") / f"hostile.{kind}"
    path.write_bytes(raw)
    before = snapshot(base_store)
    try:
        expected = {p.id: p for p in read_corpus([path])}
    except InputError:
        expected = None
    try:
        build([path], base_store, embedder=FakeEmbedder())
    except PaperscopeError as e:
        assert "\n" not in str(e)
        assert snapshot(base_store) == before, "a failed build changed the store"
        return
    assert expected is not None, "the reader refused what the build accepted"
    with Explorer(base_store, embedder=FakeEmbedder()) as ex:
        for pid, p in expected.items():
            got = ex.paper(pid)
            assert (got.title, got.abstract) == (p.title, p.abstract)  # duplicates: the last reading wins
            assert all(h.paper.id != pid for h in ex.related(pid, k=5))


# ---- the CLI ------------------------------------------------------------------------------
def _cli(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback: never acceptable
    return result.exit_code, result.stdout, result.stderr


key_text = st.sampled_from(NASTY + ["p1", "Paper 1 on diffusion", "", "-k", "--", "p1\x00"]) | st.text(max_size=20)
k_value = st.sampled_from(["0", "-1", "1", "3", "20", str(10**9), str(10**30), "1.5", "x", "", " 2", "nan"])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    cmd=st.sampled_from(["related", "search", "recommend"]),
    key=key_text,
    k=k_value,
    mode=st.sampled_from([None, "lexical", "dense", "hybrid", "bogus"]),
    extra=st.lists(
        st.sampled_from(
            [
                "--why",
                "--json",
                "--date-from",
                "2024-13",
                "--where",
                "a=b",
                "--where",
                "=",
                "--min-authors",
                "-5",
                "--not",
                "p2",
                "--source",
                "\x00",
            ]
        ),
        max_size=3,
    ),
)
def test_cli_arguments_give_a_result_or_one_line_and_exit_2(
    base_store: Path, cmd: str, key: str, k: str, mode: str | None, extra: list[str]
) -> None:
    if cmd != "recommend":
        extra = [e for e in extra if e != "--not"]
    args = [cmd, "--store", str(base_store), "-k", k, *(["--mode", mode] if mode else []), *extra, "--", key]
    before = snapshot(base_store)
    code, out, err = _cli(args)
    assert snapshot(base_store) == before
    if code == 0:
        assert out
        if "--json" in args:
            assert len(json.loads(out)) <= int(k)
    else:
        assert code == 2, (args, code, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("paperscope: error:"), (args, err)
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "args", [["related", "a\rb\nc"], ["related", "\x1b[31mred"], ["related", "x", "\u202eevil"], ["related", "\u2028"]]
)
def test_error_echoing_user_text_stays_one_line(base_store: Path, args: list[str]) -> None:
    code, _, err = _cli([*args, "--store", str(base_store)])
    assert code == 2 and len(err.splitlines()) == 1 and err.isprintable() is False  # only the final newline
    assert all(c.isprintable() for c in err.rstrip("\n"))


@pytest.mark.parametrize("k", ["0", "-1", str(10**9)])
def test_absurd_k_is_one_line(base_store: Path, k: str) -> None:
    code, _, err = _cli(["related", "p1", "--store", str(base_store), "-k", k])
    assert code == 2 and err.count("\n") == 1 and "-k" in err


def test_json_output_keeps_markup_as_data(tmp_path: Path) -> None:
    src = tmp_path / "evil.jsonl"
    evil = "<script>alert(1)</script>\u202e\u0301"
    src.write_text(
        "".join(
            json.dumps({"id": f"e{i}", "title": f"{evil} {i}", "abstract": f"{evil} {A}"}) + "\n" for i in range(5)
        ),
        encoding="utf-8",
    )
    build([src], tmp_path / "s", embedder=FakeEmbedder())
    code, out, _ = _cli(["related", "e0", "--store", str(tmp_path / "s"), "--json", "-k", "2", "--mode", "lexical"])
    assert code == 0 and {h["title"] for h in json.loads(out)} <= {f"{evil} {i}" for i in range(1, 5)}


@pytest.mark.parametrize("name", ["huge.jsonl", "huge.txt", "huge.csv"])
def test_a_50_mb_single_line(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    body = "word " * 10_000_000  # 50 MB, one line
    if name.endswith(".jsonl"):
        path.write_text(
            json.dumps({"title": "Huge", "abstract": body}) + "\n" + json.dumps({"title": "Ok", "abstract": A}) + "\n"
        )
    elif name.endswith(".txt"):
        path.write_text(f"Subscribe\nHuge\n{body}\nOk\n{A}\n")
    else:
        path.write_text(f"title,abstract\nHuge,{body}\nOk,{A}\n")
    from paperscope.corpus import ReadReport

    report = ReadReport()
    try:
        papers = list(read_papers([path], report))
    except InputError as e:  # CSV: a field over the csv module's limit is refused, naming the line
        assert name.endswith(".csv") and f"{path}:2: malformed CSV" in str(e) and "\n" not in str(e)
        return
    assert [p.title for p in papers] == ["Ok"]
    assert report.skipped == 1 and "line longer than 4,194,304 bytes" in report.skip_examples[0]


@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 64, b"\xff\xfe{]", b'{"title": "t", "abstract": "a"}\n' + b"[" * 50_000]
)
def test_cli_index_of_hostile_input_is_one_line_and_creates_no_store(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(content)
    code, _, err = _cli(["index", str(path), "--store", str(tmp_path / "s"), "-q"])
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith(f"paperscope: error: {path}")
    assert not (tmp_path / "s" / "CURRENT").exists()


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    k=st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([0, -1, 1, 19, 20, 10**9, 2**63]),
    mode=st.sampled_from(["hybrid", "dense", "lexical"]),
)
def test_library_k_is_refused_below_1_and_capped_by_the_corpus(base_store: Path, k: int, mode: str) -> None:
    with Explorer(base_store, embedder=FakeEmbedder()) as ex:
        if k < 1:
            with pytest.raises(ValueError, match="k must be a positive integer"):
                ex.related("p1", k=k, mode=mode)
            return
        hits = ex.related("p1", k=k, mode=mode)
        assert len(hits) == min(k, len(ex) - 1) or mode == "lexical"
        assert len({h.paper.id for h in hits}) == len(hits) and "p1" not in {h.paper.id for h in hits}
