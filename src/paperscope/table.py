"""PaperTable: the papers of one store generation in SQLite (rows, id and title lookup, suggestions)."""

from __future__ import annotations

import difflib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from paperscope.corpus.normalize import normalise_title, title_id
from paperscope.errors import DamagedError, UnknownPaperError
from paperscope.filters import Filter
from paperscope.paper import Paper
from paperscope.store import PAPER_COLUMNS, Generation, paper_from_row

_COLS = ", ".join(PAPER_COLUMNS)
# Above this many papers, suggestions for an unknown title come from a prefix match in SQLite
# instead of fuzzy matching every title in memory.
FUZZY_LIMIT = 200_000
# Columns :meth:`PaperTable.columns` may read (the papers table's own plus the derived ones).
READABLE = frozenset(PAPER_COLUMNS) | {"row", "norm_title", "content_hash"}


class PaperTable:
    """Read-only access to ``papers.sqlite`` of one generation; safe to share between threads.

    Rows are numbered 0..n-1 in store order, the same numbering as the vectors. A page damaged
    on disk is only found when a query reads it: it becomes a :class:`DamagedError` naming the file.
    """

    def __init__(self, generation: Generation, n: int):
        self.generation = generation
        self.path = generation.file("papers.sqlite")
        self.n = n
        self._con = generation.connect()
        self._lock = threading.Lock()

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """All rows of one SQL statement (read-only connection)."""
        with self._lock:
            try:
                return self._con.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:  # a damaged page is only found when a query reads it
                raise DamagedError(self.path, f"damaged ({e})") from None

    def with_connection(self, use: Callable[[sqlite3.Connection], Any]) -> Any:
        """``use(connection)`` under the table's lock, a damaged page named as in :meth:`query`."""
        with self._lock:
            try:
                return use(self._con)
            except sqlite3.DatabaseError as e:
                raise DamagedError(self.path, f"damaged ({e})") from None

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback`` with every SQL statement run from now on (None stops); for resource tests."""
        self._con.set_trace_callback(callback)

    # ---- lookups -------------------------------------------------------------------------
    def row_of(self, key: str) -> int:
        """The row of the paper with this id (or exact title); UnknownPaperError with suggestions otherwise."""
        key = key.strip()
        try:  # a lone surrogate (bytes that were not UTF-8) can be no stored id or title
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise UnknownPaperError(ascii(key), []) from None
        found = self.query("SELECT row FROM papers WHERE id = ?", (key,))
        norm = normalise_title(key)
        if not found:  # the id this title would get (titles that normalise to nothing have one too)
            found = self.query("SELECT row FROM papers WHERE id = ?", (title_id(key),))
        if not found and norm:  # a key of only punctuation or emoji matches no title by its (empty) normal form
            same = self.query("SELECT row, id, title FROM papers WHERE norm_title = ? ORDER BY row LIMIT 100", (norm,))
            # Titles that differ only in meaningful symbols (C++ / C, = / ≠) share a normal form but not an
            # id: prefer the exact title, then the one whose id this key would get, then the first.
            tid = title_id(key)
            found = ([r for r in same if r[2] == key] or [r for r in same if r[1] == tid] or same)[:1]
        if not found:
            raise UnknownPaperError(key, self.suggest(key))
        return int(found[0][0])

    def suggest(self, key: str, n: int = 3) -> list[tuple[str, str]]:
        """(id, title) of titles containing the key, then (small stores) the closest by edit similarity."""
        norm = normalise_title(key)
        if not norm:
            return []
        pattern = "%" + norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [
            (r[0], r[1])
            for r in self.query(
                "SELECT id, title FROM papers WHERE norm_title LIKE ? ESCAPE '\\' ORDER BY length(title) LIMIT ?",
                (pattern, n),
            )
        ]
        if len(found) < n and self.n <= FUZZY_LIMIT:
            by_norm = {r[2]: (r[0], r[1]) for r in self.query("SELECT id, title, norm_title FROM papers")}
            for m in difflib.get_close_matches(norm, list(by_norm), n=n, cutoff=0.5):
                if by_norm[m] not in found:
                    found.append(by_norm[m])
        return found[:n]

    def fetch(self, rows: list[int]) -> list[Paper]:
        """The papers at these rows, in the given order; DamagedError if a row has no paper."""
        if not rows:
            return []
        got = self.query(f"SELECT row, {_COLS} FROM papers WHERE row IN ({','.join('?' * len(rows))})", tuple(rows))
        by_row = {r[0]: paper_from_row(r[1:]) for r in got}
        missing = [r for r in rows if r not in by_row]
        if missing:
            raise DamagedError(self.path, f"rows {missing[:3]} missing for indexed vectors")
        return [by_row[r] for r in rows]

    def papers(self, page: int = 1000) -> Iterator[Paper]:
        """Every paper, in store order, fetched in pages (never all abstracts at once)."""
        for start in range(0, self.n, page):
            for r in self.query(
                f"SELECT {_COLS} FROM papers WHERE row >= ? AND row < ? ORDER BY row", (start, start + page)
            ):
                yield paper_from_row(r)

    def columns(self, *names: str, page: int = 5000) -> Iterator[tuple[Any, ...]]:
        """Tuples of the named columns for every paper in row order, fetched in pages.

        For whole-corpus passes (the map, benchmarks) without writing SQL against the store.
        """
        unknown = [c for c in names if c not in READABLE]
        if unknown or not names:
            raise ValueError(f"unknown papers columns {unknown}; readable: {', '.join(sorted(READABLE))}")
        cols = ", ".join(names)
        for start in range(0, self.n, page):
            yield from self.query(
                f"SELECT {cols} FROM papers WHERE row >= ? AND row < ? ORDER BY row", (start, start + page)
            )

    def allowed(self, filt: Filter) -> np.ndarray:
        """Boolean mask over rows of the papers that pass ``filt``."""
        return self.with_connection(lambda con: filt.allowed_rows(con, self.n))

    def close(self) -> None:
        self._con.close()
