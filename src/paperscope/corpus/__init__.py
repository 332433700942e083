"""Stage 1 of the pipeline: read inputs into Paper records.

``read_papers(paths, report)`` streams Papers from files or directories of any supported
format; duplicates are merged later, by the store, so that memory stays bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from paperscope.corpus.hfpages import read_page
from paperscope.corpus.lines import MAX_LINE_BYTES, MAX_PAGE_BYTES, LongLine, bounded_lines
from paperscope.corpus.normalize import clean_text, normalise_title, title_id, too_long
from paperscope.corpus.records import ReadReport, merge
from paperscope.corpus.tabular import read_csv, read_jsonl
from paperscope.errors import InputError
from paperscope.files import DAMAGED_GZIP, open_input
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


def _one_or_many(paths: Iterable[str | Path] | str | os.PathLike[str]) -> list[Path]:
    """A single str or Path is one path (never an iterable of its characters)."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        paths = [paths]
    return [Path(os.fsdecode(p)) if isinstance(p, bytes) else Path(p) for p in paths]


def _inside(path: Path, directory: Path | None) -> bool:
    if directory is None:
        return False
    try:
        return path.resolve().is_relative_to(directory)
    except (OSError, RuntimeError):  # a symlink loop: not the store
        return False


def expand(paths: Iterable[str | Path] | str | Path, exclude: Path | None = None) -> list[Path]:
    """Files named directly, plus every supported file under named directories, sorted.

    Nothing under ``exclude`` (the store being written) is ever an input: a directory walk skips
    it wherever it lies, and naming a file inside it is an error.
    """
    skip = exclude.expanduser().resolve() if exclude is not None else None
    files: list[Path] = []
    for p in _one_or_many(paths):
        if p.is_dir():
            if _inside(p, skip):
                raise InputError(f"{p}: is inside the store being written ({exclude}); inputs must lie outside it")
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and not f.name.startswith(".")
                and f.name.lower().removesuffix(".gz").endswith(SUFFIXES)
                and not _inside(f, skip)
            )
            if not found:
                raise InputError(f"{p}: directory has no input files ({', '.join(SUFFIXES)})")
            files.extend(found)
        elif p.is_file():
            if _inside(p, skip):
                raise InputError(f"{p}: is inside the store being written ({exclude}); inputs must lie outside it")
            _kind(p)
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory")
    return files


def _page_lines(path: Path, fh: BinaryIO) -> list[str | LongLine]:
    """A saved page's lines, each bounded, the whole bounded by MAX_PAGE_BYTES (decompressed)."""
    out: list[str | LongLine] = []
    total = 0
    for lineno, line in enumerate(bounded_lines(fh), 1):
        total += line.nbytes if isinstance(line, LongLine) else len(line)
        if total > MAX_PAGE_BYTES:
            raise InputError(
                f"{path}: page larger than {MAX_PAGE_BYTES // 2**20} MiB; "
                "split it, or convert it to JSON Lines (streamed)"
            )
        if isinstance(line, LongLine):
            out.append(line)
            continue
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        try:
            # splitlines, as the page parser always did: CR-only pages and U+2028 split lines too.
            out.extend(line.decode("utf-8").splitlines() or [""])
        except UnicodeDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid UTF-8 (byte {line[e.start]:#04x})") from None
    return out


def _read_file(path: Path, report: ReadReport) -> Iterator[Paper]:
    kind = _kind(path)
    try:
        with open_input(path) as fh:
            head = fh.read(1)
            if not head:
                raise InputError(f"{path}: file is empty")
            fh.seek(0)
            if kind == ".txt":
                before = report.entries

                def skip(title: str, why: str) -> None:
                    report.entries += 1
                    report.skip(f"{path} ({title[:60]})", why)

                for paper in read_page(path, _page_lines(path, fh), skip):
                    report.entries += 1
                    if (why := too_long(paper.title, paper.abstract)) is not None:
                        report.skip(str(path), why)
                        continue
                    yield paper
                if report.entries == before:
                    raise InputError(
                        f"{path}: no paper entries found (expected title lines each followed by an abstract)"
                    )
            elif kind == ".csv":
                yield from read_csv(path, bounded_lines(fh), report)
            else:
                yield from read_jsonl(path, bounded_lines(fh), report)
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror or e})") from None
    except DAMAGED_GZIP as e:  # a truncated or damaged .gz
        raise InputError(f"{path}: damaged compressed file ({e})") from None


def read_papers(paths: Iterable[str | Path] | str | Path, report: ReadReport | None = None) -> Iterator[Paper]:
    """Stream every Paper in ``paths`` (files or directories). Raises InputError on bad input."""
    report = report if report is not None else ReadReport()
    for path in expand(paths):
        yield from _read_file(path, report)


def read_corpus(paths: Iterable[str | Path] | str | Path) -> list[Paper]:
    """All distinct papers in ``paths``, merged by id, in first-seen order (small corpora only)."""
    papers: dict[str, Paper] = {}
    for p in read_papers(paths):
        papers[p.id] = merge(papers[p.id], p) if p.id in papers else p
    return list(papers.values())


__all__ = [
    "MAX_LINE_BYTES",
    "ReadReport",
    "bundled_corpus",
    "clean_text",
    "expand",
    "merge",
    "normalise_title",
    "read_corpus",
    "read_papers",
    "title_id",
]
