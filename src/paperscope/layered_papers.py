"""A generation's papers table as a shared base file and a small delta of rows (SQL only).

A re-index that changed 1% of the papers copied the whole ``papers.sqlite`` and updated the copy
(2.49 GB at a million papers, every run). Instead, while the rows written since the last whole
file stay under :data:`DELTA_MAX` of the papers, a generation holds:

* ``papers-base.sqlite``: a hard link to the last whole ``papers.sqlite`` (the *base*, shared by
  every generation since), which may have fewer rows than the generation;
* ``papers.sqlite``: the rows written since the base (table ``papers_delta``, the papers table's
  columns and indexes; every row past the base's count among them) and this generation's input
  record. It has no table named ``papers``: a paperscope from before this refuses the generation
  (``no such table: papers``) instead of answering from the delta alone.

A connection sees one table: :func:`attach` attaches the base and creates the TEMP VIEW ``papers``
over both (SQLite resolves an unqualified name in ``temp`` before ``main``), so a reader's SQL is
unchanged. SQLite (3.40 here) pushes a query's own constraints into both halves of the view (a
lookup by row, id or title reads each half's index) and merges the two ordered halves of a scan
by row. It does **not** push a join's constraint into them: a join against the view materialises
it (4 to 12 s a statement at a million papers), so the build's comparisons with the previous
generation read it by lists of constants or by correlated ``EXISTS``, never by a join.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

__all__ = [
    "BASE_FILE",
    "DELTA_MAX",
    "DELTA_TABLE",
    "SCHEMAS",
    "attach",
    "batches",
    "count",
    "delta_ddl",
    "delta_rows",
    "is_delta",
    "rows_of",
]

BASE_FILE = "papers-base.sqlite"
DELTA_TABLE = "papers_delta"
# A previous generation whose delta holds more rows than this share of its papers is written out
# whole by the next re-index (a new base): lookups stay two index reads, scans stay one merge.
DELTA_MAX = 0.10
# The databases behind each view a build reads: (delta or whole table's schema, base's schema).
SCHEMAS = {"papers": ("main", "base"), "old_papers": ("old", "oldbase")}


def batches(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """``values`` in slices of at most ``size``: the lists of constants the build reads rows by
    (SQLite's bound-parameter limit; a view is read by them, never by a join)."""
    for i in range(0, len(values), size):
        yield values[i : i + size]


def delta_ddl(papers_ddl: str) -> str:
    """The papers table's DDL for the delta table: the same columns and indexes under other names."""
    return (
        papers_ddl.replace("CREATE TABLE papers (", f"CREATE TABLE {DELTA_TABLE} (")
        .replace("INDEX papers_", f"INDEX {DELTA_TABLE}_")
        .replace(" ON papers(", f" ON {DELTA_TABLE}(")
    )


def is_delta(con: sqlite3.Connection, schema: str = "main") -> bool:
    """Whether the database attached as ``schema`` holds a delta table (not a whole papers table)."""
    found = con.execute(f"SELECT 1 FROM {schema}.sqlite_master WHERE type = 'table' AND name = ?", (DELTA_TABLE,))
    return found.fetchone() is not None


def union(delta: str, base: str) -> str:
    """SELECT of every row: the delta's, then the base's rows the delta does not replace."""
    return (
        f"SELECT * FROM {delta}.{DELTA_TABLE} UNION ALL SELECT * FROM {base}.papers b "
        f"WHERE NOT EXISTS (SELECT 1 FROM {delta}.{DELTA_TABLE} d WHERE d.row = b.row)"
    )


def attach(
    con: sqlite3.Connection, base_uri: str, *, delta: str = "main", base: str = "base", view: str = "papers"
) -> None:
    """Attach the base (``base_uri``) as ``base`` and create the TEMP VIEW ``view`` over it and the
    delta table of the database attached as ``delta``."""
    con.execute("ATTACH DATABASE ? AS " + base, (base_uri,))
    con.execute(f"CREATE TEMP VIEW {view} AS {union(delta, base)}")


def count(con: sqlite3.Connection, *, delta: str = "main", base: str = "base") -> int:
    """The rows of the view over ``delta`` and ``base``: the base's (numbered 0..n-1) and the delta's past them.

    Counting through the view reads every row of the base (a second at a million papers)."""
    end = con.execute(f"SELECT coalesce(max(row), -1) + 1 FROM {base}.papers").fetchone()[0]
    added = con.execute(f"SELECT count(*) FROM {delta}.{DELTA_TABLE} WHERE row >= ?", (end,)).fetchone()[0]
    return int(end + added)


def delta_rows(con: sqlite3.Connection, schema: str = "main") -> int:
    """The rows the delta table of ``schema`` holds."""
    return int(con.execute(f"SELECT count(*) FROM {schema}.{DELTA_TABLE}").fetchone()[0])


def rows_of(con: sqlite3.Connection, view: str = "papers") -> int:
    """The rows (numbered 0..n-1) behind ``view`` (a key of :data:`SCHEMAS`), layered or whole,
    from the last row of each part: never a count through the view."""
    delta, base = SCHEMAS[view]
    if is_delta(con, delta):
        return count(con, delta=delta, base=base)
    return int(con.execute(f"SELECT coalesce(max(row), -1) + 1 FROM {delta}.papers").fetchone()[0])
