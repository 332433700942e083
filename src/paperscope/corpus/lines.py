"""Reading input lines with a bound on memory, whatever the file holds.

A line is read with ``readline(cap + 1)``: at most ``MAX_LINE_BYTES`` (plus one) bytes are ever
held for one line, also from a ``.gz`` whose few compressed bytes inflate to one huge line. An
over-long line is consumed in 1 MiB pieces that are dropped at once, and reported as a
:class:`LongLine` so the reader can skip and count it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from paperscope.corpus.normalize import MAX_ABSTRACT_CHARS, MAX_TITLE_CHARS

# The longest legal row: a 100,000-character abstract and a 2,000-character title written as
# JSON \\uXXXX\\uXXXX surrogate pairs (12 bytes per character) is about 1.2 MB; 4 MiB leaves room
# for metadata. No line longer than this can hold a paper that passes the length limits.
MAX_LINE_BYTES = 4 * 1024 * 1024
assert MAX_LINE_BYTES > 12 * (MAX_ABSTRACT_CHARS + MAX_TITLE_CHARS)
# A saved page (.txt) is parsed whole (its blocks span lines); pages are a few hundred KB.
MAX_PAGE_BYTES = 64 * 1024 * 1024
_PIECE = 1024 * 1024


@dataclass(frozen=True)
class LongLine:
    """Stands for a line longer than the cap; only its length in bytes is kept."""

    nbytes: int

    def reason(self) -> str:
        return f"line longer than {MAX_LINE_BYTES:,} bytes ({self.nbytes:,}), skipped unread"


def bounded_lines(fh: BinaryIO, cap: int = MAX_LINE_BYTES) -> Iterator[bytes | LongLine]:
    """Each line of ``fh`` (with its newline), or a LongLine for one over ``cap`` bytes."""
    while True:
        line = fh.readline(cap + 1)
        if not line:
            return
        if len(line) <= cap or line.endswith(b"\n"):
            yield line
            continue
        n = len(line)
        del line
        while True:
            piece = fh.readline(_PIECE)
            n += len(piece)
            if not piece or piece.endswith(b"\n"):
                break
        yield LongLine(n)
