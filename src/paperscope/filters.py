"""Metadata filters for ``related``, ``search`` and ``recommend``: which paper rows may be returned.

A filter is checked once, when it is made, so a bad value fails with a message naming the
option and the value before any query runs. It is evaluated in SQLite into the set of allowed
rows; ranking then only ever considers those rows, which is what makes "exactly k results when
k papers match" hold for every index type.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from paperscope.errors import InvalidArgument

_DATE = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?$")
# Columns a --where KEY=VALUE may name; list-valued ones match when any element equals VALUE.
SCALAR_KEYS = ("id", "title", "date", "organisation", "upvotes", "authors_count")
LIST_KEYS = ("authors", "categories", "sources")


def parse_date(value: str) -> str:
    """``value`` stripped, if it is a date (YYYY, YYYY-MM or YYYY-MM-DD); InvalidArgument otherwise."""
    value = str(value).strip()
    if not _DATE.match(value):
        raise InvalidArgument(f"{value!r} is not a date; use YYYY, YYYY-MM or YYYY-MM-DD")
    return value


def _check_date(option: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_date(value)
    except InvalidArgument as e:
        raise InvalidArgument(f"{option}: {e}") from None


def _check_count(option: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidArgument(f"{option}: expected a non-negative integer, got {value!r}")
    # SQLite integers are 64-bit: a larger bound means the same as this one (no paper has 2**62 authors).
    return min(int(value), _COUNT_CAP)


_COUNT_CAP = 2**62


@dataclass(frozen=True)
class Filter:
    """Conditions a returned paper must meet; every condition left as None/empty is not applied.

    ``date_from``/``date_to`` take YYYY, YYYY-MM or YYYY-MM-DD and are inclusive at the given
    precision (``date_to="2023"`` keeps all of 2023). Papers whose page showed no year (dates
    like ``--10-17``) or no date are left out whenever a date bound is set: they cannot be
    placed in the range. ``source`` keeps papers read from that page or file (full path or
    just its file name). ``where`` maps a metadata field to the value it must equal.
    """

    date_from: str | None = None
    date_to: str | None = None
    min_authors: int | None = None
    max_authors: int | None = None
    source: str | None = None
    where: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "date_from", _check_date("date_from", self.date_from))
        object.__setattr__(self, "date_to", _check_date("date_to", self.date_to))
        object.__setattr__(self, "min_authors", _check_count("min_authors", self.min_authors))
        object.__setattr__(self, "max_authors", _check_count("max_authors", self.max_authors))
        if self.date_from and self.date_to and self.date_from[: len(self.date_to)] > self.date_to:
            raise InvalidArgument(f"date range is empty: date_from {self.date_from} is after date_to {self.date_to}")
        if self.min_authors is not None and self.max_authors is not None and self.min_authors > self.max_authors:
            raise InvalidArgument(
                f"author range is empty: min_authors {self.min_authors} > max_authors {self.max_authors}"
            )
        for key in self.where:
            if key not in SCALAR_KEYS + LIST_KEYS:
                raise InvalidArgument(f"where: unknown field {key!r}; use one of {', '.join(SCALAR_KEYS + LIST_KEYS)}")
        object.__setattr__(self, "where", dict(self.where))
        for name, value in [("source", self.source), *((f"where {k}", v) for k, v in self.where.items())]:
            try:  # a name with bytes that are not UTF-8 (a surrogate escape) cannot be matched in SQLite
                str(value).encode("utf-8") if value is not None else None
            except UnicodeEncodeError:
                raise InvalidArgument(
                    f"{name}: {ascii(value)} is not valid UTF-8; name the file by its path or a UTF-8 part of its name"
                ) from None

    @classmethod
    def make(cls, **options: Any) -> Filter | None:
        """A Filter from query keyword options, or None when none was given."""
        f = cls(**{k: v for k, v in options.items() if v is not None})
        return f if f.active else None

    @property
    def active(self) -> bool:
        return any(
            v not in (None, {})
            for v in (self.date_from, self.date_to, self.min_authors, self.max_authors, self.source, self.where or None)
        )

    def describe(self) -> str:
        """The conditions in words, for the 'no paper matches' message."""
        parts = []
        if self.date_from:
            parts.append(f"date >= {self.date_from}")
        if self.date_to:
            parts.append(f"date <= {self.date_to}")
        if self.min_authors is not None:
            parts.append(f"authors >= {self.min_authors}")
        if self.max_authors is not None:
            parts.append(f"authors <= {self.max_authors}")
        if self.source:
            parts.append(f"source = {self.source}")
        parts.extend(f"{k} = {v}" for k, v in self.where.items())
        return ", ".join(parts)

    def sql(self) -> tuple[str, list[Any]]:
        """A WHERE clause over the papers table and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.date_from or self.date_to:
            clauses.append("date GLOB '[0-9][0-9][0-9][0-9]*'")
        if self.date_from:
            clauses.append("substr(date, 1, ?) >= ?")
            params += [len(self.date_from), self.date_from]
        if self.date_to:
            clauses.append("substr(date, 1, ?) <= ?")
            params += [len(self.date_to), self.date_to]
        # authors_count is what the page reported; fall back to the listed authors when it is missing.
        n_authors = "coalesce(authors_count, json_array_length(authors))"
        if self.min_authors is not None:
            clauses.append(f"{n_authors} >= ?")
            params.append(self.min_authors)
        if self.max_authors is not None:
            clauses.append(f"{n_authors} <= ?")
            params.append(self.max_authors)
        if self.source:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(papers.sources) s WHERE s.value = ? OR s.value LIKE ? ESCAPE '\\')"
            )
            escaped = self.source.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params += [self.source, "%/" + escaped]
        for key, value in self.where.items():
            if key in LIST_KEYS:
                clauses.append(f"EXISTS (SELECT 1 FROM json_each(papers.{key}) e WHERE e.value = ?)")
            else:
                clauses.append(f"CAST({key} AS TEXT) = ?")
            params.append(str(value))
        return " AND ".join(clauses) or "1", params

    def allowed_rows(self, con: sqlite3.Connection, n: int) -> np.ndarray:
        """A boolean mask over rows 0..n-1: True where the paper meets every condition."""
        where, params = self.sql()
        mask = np.zeros(n, dtype=bool)
        rows = [r for (r,) in con.execute(f"SELECT row FROM papers WHERE {where}", params)]
        if rows:
            mask[np.asarray(rows, dtype=np.int64)] = True
        return mask


def parse_where(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (the CLI's ``--where``) to a dict; a missing ``=`` is an error."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument(f"--where: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out
