"""Parser for Hugging Face daily-papers search pages saved as text.

Two layouts occur. The *spaced* one separates blocks by blank lines: a title, its abstract,
then optional metadata lines (an organisation line such as ``naver-ai NAVER AI Lab``,
``• 6 authors``, ``·``, and a date such as ``Jun 13, 2022`` or ``Oct 17 2`` whose trailing
number is the upvote count). The *dense* one alternates title and abstract lines with no
blank lines and no metadata. Both start with page chrome (``Subscribe``, ``new``, ...), and
in the dense layout the first title can be glued to ``Subscribe``.

Blank lines are therefore not structural: an abstract is recognised as a long line, its
title is the line before it, and everything between one abstract and the next title is
that paper's metadata.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from paperscope.corpus.lines import LongLine
from paperscope.corpus.normalize import clean_text, title_id
from paperscope.paper import Paper

# Titles in the wild stay under ~170 characters and HF abstracts are full paragraphs; 200
# separates them on every bundled page. A shorter abstract would be read as page chrome.
ABSTRACT_MIN_CHARS = 200
MAX_COUNT = 10**6  # the same bound as counts in JSONL and CSV rows

CHROME = frozenset(
    {
        "new",
        "Subscribe",
        "Daily Papers",
        "byAK and the research community",
        "Get trending papers in your email inbox!",
        "Get trending papers in your email inbox once a day!",
    }
)
_GLUED_CHROME = re.compile(r"^Subscribe(?=[A-Z0-9\"'(\[])")
_AUTHORS = re.compile(r"^•\s*(\d+)\s+authors?$")
_MONTHS = {
    m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1)
}
# "Jun 13, 2022", "Jun 13, 2022 4" (4 upvotes), "Oct 17" or "Oct 17 2" (no year, 2 upvotes).
_DATE = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) (?P<day>\d{1,2})(?:, (?P<year>\d{4}))?(?: (?P<up>\d+))?$")


def parse_date(line: str) -> tuple[str, int | None] | None:
    """``'Sep 20, 2024 4'`` -> ``('2024-09-20', 4)``; ``'Oct 17'`` -> ``('--10-17', None)``.

    Returns None when the line is not a date line. A missing year stays missing (ISO 8601's
    ``--MM-DD`` form): it is never guessed from the page date.
    """
    m = _DATE.match(line)
    if not m or m["mon"] not in _MONTHS or not 1 <= int(m["day"]) <= 31:
        return None
    month, day = _MONTHS[m["mon"]], int(m["day"])
    date = f"{m['year']}-{month:02d}-{day:02d}" if m["year"] else f"--{month:02d}-{day:02d}"
    return date, _bounded(m["up"])


def _bounded(digits: str | None) -> int | None:
    """A count from the page, or None when absent or beyond any real count (SQLite holds 64-bit integers)."""
    return int(digits) if digits and len(digits) <= 7 and int(digits) <= MAX_COUNT else None


def _is_abstract(line: str | LongLine) -> bool:
    # A line over the reader's cap (only its length known) can only have been an abstract.
    return isinstance(line, LongLine) or len(line) >= ABSTRACT_MIN_CHARS


def _strip_chrome(line: str) -> str:
    return _GLUED_CHROME.sub("", line)


def parse_page(
    text: str | Sequence[str | LongLine], source: str, skip: Callable[[str, str], None] | None = None
) -> Iterator[Paper]:
    """Yield one Paper per entry on the page, in page order (duplicates are not merged here).

    ``text`` is the page, or its lines as read by :func:`paperscope.corpus.lines.bounded_lines`;
    an entry whose abstract line was over-long is passed to ``skip(title, why)`` instead.
    """
    raw = text.splitlines() if isinstance(text, str) else text
    lines: list[str | LongLine] = [x if isinstance(x, LongLine) else clean_text(x) for x in raw]
    lines = [x for x in lines if x]
    starts = [i for i in range(1, len(lines)) if _is_abstract(lines[i]) and not _is_abstract(lines[i - 1])]
    for n, i in enumerate(starts):
        if isinstance(lines[i - 1], LongLine):
            continue
        title = _strip_chrome(lines[i - 1])
        if not title or title in CHROME:
            continue
        abstract = lines[i]
        if isinstance(abstract, LongLine):
            if skip is not None:
                skip(title, abstract.reason())
            continue
        # Metadata runs from after the abstract up to the next entry's title line.
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(lines)
        meta = _parse_metadata([x for x in lines[i + 1 : end] if isinstance(x, str)])
        yield Paper(id=title_id(title), title=title, abstract=abstract, sources=(source,), **meta)


def _parse_metadata(block: list[str]) -> dict[str, object]:
    meta: dict[str, object] = {}
    for line in block:
        if line in CHROME or line == "·":
            continue
        if m := _AUTHORS.match(line):
            meta["authors_count"] = _bounded(m.group(1))
        elif (parsed := parse_date(line)) is not None:
            meta["date"], meta["upvotes"] = parsed
        elif "organisation" not in meta:
            meta["organisation"] = line
    return meta


def read_page(
    path: Path, text: str | Sequence[str | LongLine], skip: Callable[[str, str], None] | None = None
) -> Iterator[Paper]:
    """Parse one saved page; ``source`` is the file name so it is the same on every machine."""
    return parse_page(text, source=path.name, skip=skip)
