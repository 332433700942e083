"""JSONL, CSV and arXiv-snapshot readers, and one-line errors for bad input."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from paperscope.corpus import ReadReport, read_corpus, read_papers
from paperscope.errors import InputError

ABS = "We study things. " * 5


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_jsonl_with_optional_fields(tmp_path: Path) -> None:
    f = write(
        tmp_path / "p.jsonl",
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "id": "2203.03466",
                    "title": "Tensor Programs V",
                    "abstract": ABS,
                    "authors": ["Greg Yang", "Edward Hu"],
                    "date": "2022-03-07",
                },
                {"title": "No id here", "abstract": ABS},
            ]
        )
        + "\n\n",
    )
    a, b = read_papers([f])
    assert (a.id, a.authors, a.authors_count, a.date, a.sources) == (
        "2203.03466",
        ("Greg Yang", "Edward Hu"),
        2,
        "2022-03-07",
        ("p.jsonl",),
    )
    assert b.id.startswith("t-") and b.date is None


def test_arxiv_snapshot_rows(tmp_path: Path) -> None:
    row = {
        "id": "0704.0001",
        "submitter": "P. Bal",
        "authors": "C. Bal\\'azs, E. L. Berger and P. M. Nadolsky",
        "title": "Calculation of prompt\n  diphoton production",
        "abstract": "  A fully differential\n calculation " + ABS,
        "categories": "hep-ph math.CO",
        "update_date": "2008-11-13",
    }
    f = tmp_path / "arxiv-metadata-oai-snapshot.json.gz"
    with gzip.open(f, "wt") as fh:
        fh.write(json.dumps(row) + "\n")
    (p,) = read_papers([f])
    assert p.id == "0704.0001"
    assert p.title == "Calculation of prompt diphoton production"
    assert p.abstract.startswith("A fully differential calculation")
    assert p.authors_count == 3 and p.categories == ("hep-ph", "math.CO") and p.date == "2008-11-13"


def test_csv_rows_and_skips(tmp_path: Path) -> None:
    f = write(tmp_path / "p.csv", f'Title,Abstract,authors\n"A, with comma","{ABS}",x\n,"{ABS}",\nOnly title,,\n')
    report = ReadReport()
    papers = list(read_papers([f], report))
    assert [p.title for p in papers] == ["A, with comma"]
    assert report.entries == 3 and report.skipped == 2
    assert report.skip_examples[0].startswith(f"{f}:3")


def test_directory_is_read_recursively_and_dedupes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "a.jsonl", json.dumps({"title": "Same paper", "abstract": ABS}) + "\n")
    write(tmp_path / "sub" / "b.csv", f'title,abstract\nSame  Paper,"{ABS}"\n')
    (p,) = read_corpus([tmp_path])
    assert p.sources == ("a.jsonl", "b.csv")


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("missing.jsonl", None, "missing.jsonl: no such file or directory"),
        ("empty.jsonl", b"", "empty.jsonl: file is empty"),
        ("bad.jsonl", b'{"title": "a", "abstract": "b"}\n{not json\n', "bad.jsonl:2: not valid JSON"),
        ("list.jsonl", b"[1, 2]\n", "list.jsonl:1: expected a JSON object"),
        (
            "latin1.jsonl",
            b'{"title": "ok", "abstract": "ok"}\n{"title": "caf\xe9"}\n',
            "latin1.jsonl:2: not valid UTF-8 (byte 0xe9",
        ),
        ("latin1.txt", b"Title\n\n" + b"x" * 300 + b"\n\xff\n", "latin1.txt:4: not valid UTF-8 (byte 0xff"),
        ("noheader.csv", b"name,text\na,b\n", "noheader.csv:1: CSV header lacks column(s) abstract, title"),
        ("page.txt", b"just a line\nanother\n", "page.txt: no paper entries found"),
        ("data.parquet", b"PAR1", "data.parquet: unsupported file type"),
    ],
)
def test_bad_input_is_one_line_naming_file_and_line(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        list(read_papers([path]))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(path)) and message in text
