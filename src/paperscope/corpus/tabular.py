"""Row-based inputs: JSON Lines (including the arXiv metadata snapshot) and CSV, streamed."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from paperscope.corpus.lines import LongLine
from paperscope.corpus.normalize import MAX_ABSTRACT_CHARS, clean_text, title_id, too_long
from paperscope.corpus.records import ReadReport
from paperscope.errors import InputError
from paperscope.paper import Paper

_AUTHOR_SPLIT = re.compile(r",\s*|\s+and\s+")
_SCALAR = (str, int, float)
# SQLite stores 64-bit integers; no paper has more authors than this.
_MAX_COUNT = 10**6
# A CSV field may hold a long abstract (the csv module's default limit is 128 KiB).
_CSV_FIELD_LIMIT = 4 * MAX_ABSTRACT_CHARS + 1024


def _authors(value: object) -> tuple[str, ...]:
    """A list of names, or the arXiv snapshot's single string ``"A. One, B. Two and C. Three"``."""
    if isinstance(value, list):
        names = [clean_text(str(v)) for v in value if isinstance(v, _SCALAR) and not isinstance(v, bool)]
    elif isinstance(value, str):
        names = [clean_text(v) for v in _AUTHOR_SPLIT.split(value)]
    else:
        return ()
    return tuple(n for n in names if n)


def _count(value: object) -> int | None:
    """A non-negative count written as a number or ASCII digits; anything else is unknown (None)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) < 10:
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= _MAX_COUNT else None


def _categories(value: object) -> tuple[str, ...]:
    """The arXiv snapshot's ``"cs.LG stat.ML"`` or a JSON list of names, cleaned like every text field."""
    if isinstance(value, str):
        parts = value.split()
    elif isinstance(value, list):
        parts = [str(v) for v in value if isinstance(v, _SCALAR) and not isinstance(v, bool)]
    else:
        return ()
    return tuple(dict.fromkeys(c for c in (clean_text(p) for p in parts) if c))


def row_to_paper(row: Mapping[str, object], source: str, where: str, report: ReadReport) -> Paper | None:
    """Map one JSON object or CSV row to a Paper; None (counted as skipped) if it lacks text."""
    for key in ("id", "title", "abstract"):
        if not isinstance(row.get(key) or "", _SCALAR) or isinstance(row.get(key), bool):
            report.skip(where, f"{key} is a JSON {type(row.get(key)).__name__}, not text")
            return None
    if isinstance(row.get("id"), float):
        # 1706.03760 arrives as the float 1706.0376: the id would silently change. Ids are text.
        report.skip(where, f"id is a JSON number with a fraction ({row['id']!r}); write ids as strings")
        return None
    title = clean_text(str(row.get("title") or ""))
    abstract = clean_text(str(row.get("abstract") or ""))
    if not title or not abstract:
        report.skip(where, "no title" if not title else "no abstract")
        return None
    if (why := too_long(title, abstract)) is not None:
        report.skip(where, why)
        return None
    raw_id = clean_text(str(row.get("id") or ""))
    authors = _authors(row.get("authors"))
    authors_count = _count(row.get("authors_count"))
    if authors_count is None and authors:
        authors_count = len(authors)
    # arXiv snapshot rows carry update_date, generic rows may carry date; kept as written.
    date = clean_text(str(row.get("date") or row.get("update_date") or "")) or None
    categories = _categories(row.get("categories"))
    return Paper(
        id=raw_id or title_id(title),
        title=title,
        abstract=abstract,
        authors=authors,
        authors_count=authors_count,
        date=date,
        upvotes=_count(row.get("upvotes")),
        organisation=clean_text(org) or None if isinstance(org := row.get("organisation"), str) else None,
        categories=categories,
        sources=(source,),
    )


def _decoded_lines(path: Path, raw: Iterable[bytes | LongLine]) -> Iterator[tuple[int, str | LongLine]]:
    """Lines as text, numbered from 1; a byte-order mark opening the file is dropped (Excel, Notepad)."""
    for lineno, line in enumerate(raw, 1):
        if isinstance(line, LongLine):
            yield lineno, line
            continue
        if lineno == 1:
            line = line.removeprefix(b"\xef\xbb\xbf")
        try:
            yield lineno, line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path}:{lineno}: not valid UTF-8 (byte {line[e.start]:#04x} at column {e.start + 1})"
            ) from None


def read_jsonl(path: Path, raw: Iterable[bytes | LongLine], report: ReadReport) -> Iterator[Paper]:
    """Stream JSON Lines; a line that is not a JSON object is an error naming file and line.

    A line over the length cap is skipped and counted without being held (see corpus/lines.py).
    """
    for lineno, line in _decoded_lines(path, raw):
        if isinstance(line, LongLine):
            report.entries += 1
            report.skip(f"{path}:{lineno}", line.reason())
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        report.entries += 1
        if (paper := row_to_paper(obj, path.name, f"{path}:{lineno}", report)) is not None:
            yield paper


def read_csv(path: Path, raw: Iterable[bytes | LongLine], report: ReadReport) -> Iterator[Paper]:
    """Stream a CSV file with a header row naming at least ``title`` and ``abstract``.

    A quoted field may span lines, so an over-long line cannot be skipped alone: it is an error.
    """
    at = [0]  # the line being read: the csv module's line_num lags behind when it raises

    def numbered() -> Iterator[str]:
        for n, text in _decoded_lines(path, raw):
            at[0] = n
            if isinstance(text, LongLine):
                raise InputError(
                    f"{path}:{n}: malformed CSV ({text.reason().removesuffix(', skipped unread')}; "
                    "no row that long can be indexed)"
                )
            yield text

    lines = numbered()
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    try:
        reader = csv.DictReader(lines)
        header = reader.fieldnames or []
        missing = {"title", "abstract"} - {h.strip().lower() for h in header}
        if missing:
            raise InputError(
                f"{path}:1: CSV header lacks column(s) {', '.join(sorted(missing))} (has: {', '.join(header)})"
            )
        for row in reader:
            report.entries += 1
            norm = {(k or "").strip().lower(): v for k, v in row.items()}
            if (paper := row_to_paper(norm, path.name, f"{path}:{reader.line_num}", report)) is not None:
                yield paper
    except csv.Error as e:
        raise InputError(f"{path}:{at[0]}: malformed CSV ({e})") from None
