"""Stage 1 of the pipeline: read inputs into Paper records.

``read_papers(paths, report)`` streams Papers from files or directories of any supported
format; duplicates are merged later, by the store, so that memory stays bounded.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path

from paperscope.corpus.hfpages import read_page
from paperscope.corpus.normalize import clean_text, normalise_title, title_id, too_long
from paperscope.corpus.records import ReadReport, merge
from paperscope.corpus.tabular import read_csv, read_jsonl
from paperscope.errors import InputError
from paperscope.paper import Paper

SUFFIXES = (".txt", ".jsonl", ".ndjson", ".json", ".csv")


def bundled_corpus() -> Path:
    """The Hugging Face pages shipped inside the package (the default corpus)."""
    return Path(str(resources.files("paperscope") / "data" / "hf-papers"))


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return suffix
    raise InputError(f"{path}: unsupported file type (expected one of {', '.join(SUFFIXES)}, optionally .gz)")


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus every supported file under named directories, sorted."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")
                           and f.name.lower().removesuffix(".gz").endswith(SUFFIXES))
            if not found:
                raise InputError(f"{p}: directory has no input files ({', '.join(SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            _kind(p)
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return files


def _read_file(path: Path, report: ReadReport) -> Iterator[Paper]:
    kind = _kind(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(1)
            if not head:
                raise InputError(f"{path}: file is empty")
            fh.seek(0)
            if kind == ".txt":
                data = fh.read()
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError as e:
                    line = data.count(b"\n", 0, e.start) + 1
                    raise InputError(f"{path}:{line}: not valid UTF-8 (byte {data[e.start]:#04x})") from None
                before = report.entries
                for paper in read_page(path, text):
                    report.entries += 1
                    if (why := too_long(paper.title, paper.abstract)) is not None:
                        report.skip(str(path), why)
                        continue
                    yield paper
                if report.entries == before:
                    raise InputError(f"{path}: no paper entries found (expected title lines each followed by an abstract)")
            elif kind == ".csv":
                yield from read_csv(path, fh, report)
            else:
                yield from read_jsonl(path, fh, report)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except (EOFError, zlib.error) as e:  # a truncated or damaged .gz
        raise InputError(f"{path}: damaged compressed file ({e})") from None


def read_papers(paths: Iterable[str | Path], report: ReadReport | None = None) -> Iterator[Paper]:
    """Stream every Paper in ``paths`` (files or directories). Raises InputError on bad input."""
    report = report if report is not None else ReadReport()
    for path in expand(paths):
        yield from _read_file(path, report)


def read_corpus(paths: Iterable[str | Path]) -> list[Paper]:
    """All distinct papers in ``paths``, merged by id, in first-seen order (small corpora only)."""
    papers: dict[str, Paper] = {}
    for p in read_papers(paths):
        papers[p.id] = merge(papers[p.id], p) if p.id in papers else p
    return list(papers.values())


__all__ = ["ReadReport", "bundled_corpus", "clean_text", "expand", "merge", "normalise_title",
           "read_corpus", "read_papers", "title_id"]
