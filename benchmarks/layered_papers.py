"""What a papers table held as a base and a delta costs a reader (paperscope.layered_papers).

    python benchmarks/layered_papers.py --store STORE [--delta 10000] [--repeat 20]

Takes the live generation's whole papers file (its base, when it is layered), writes a delta of
``--delta`` evenly spaced rows (their titles changed) into a temporary file beside nothing of the
store, and times the same statements through the view over the two and on the whole table:
lookups, ordered and filtered scans, counts, and the two ways a build may compare rows with the
previous generation's (a join with the view, which SQLite materialises; a correlated ``EXISTS``,
which it pushes into both halves). Median milliseconds of ``--repeat`` runs (one run of the joins).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from paperscope import layered_papers
from paperscope.store import PAPERS_DDL, Store, sqlite_uri


def timed(run: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--delta", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    gen = Store(args.store).require_current()
    whole = gen.file(layered_papers.BASE_FILE)
    whole = whole if whole.exists() else gen.file("papers.sqlite")
    uri = sqlite_uri(whole, mode="ro", immutable="1")
    with tempfile.TemporaryDirectory(prefix="layered-papers-") as tmp:
        delta = Path(tmp) / "delta.sqlite"
        con = sqlite3.connect(delta)
        con.executescript(layered_papers.delta_ddl(PAPERS_DDL))
        con.execute("ATTACH DATABASE ? AS src", (uri,))
        n = con.execute("SELECT coalesce(max(row), -1) + 1 FROM src.papers").fetchone()[0]
        step = max(1, n // max(1, args.delta))
        con.execute(
            f"INSERT INTO {layered_papers.DELTA_TABLE} SELECT row, id, title || ' (edited)', norm_title, abstract, "
            "authors, authors_count, date, upvotes, organisation, categories, sources, content_hash "
            "FROM src.papers WHERE row % ? = 0 LIMIT ?",
            (step, args.delta),
        )
        con.commit()
        con.close()
        view = sqlite3.connect(sqlite_uri(delta, mode="ro", immutable="1"), uri=True)
        layered_papers.attach(view, uri)
        plain = sqlite3.connect(uri, uri=True)
        ids = [r[0] for r in plain.execute("SELECT id FROM papers WHERE row % ? = 7 LIMIT 50", (max(1, n // 50),))]
        rows = [int(r) for r in range(3, n, max(1, n // 10))][:10]
        norm = plain.execute("SELECT norm_title FROM papers WHERE row = ?", (rows[0],)).fetchone()[0]
        for c in (view, plain):
            c.execute("CREATE TEMP TABLE touched (id TEXT PRIMARY KEY)")
            c.executemany("INSERT INTO touched VALUES (?)", [(i,) for i in ids])
        marks = ",".join("?" * len(rows))
        statements = [
            ("10 rows by row IN (...)", f"SELECT row, id, title FROM papers WHERE row IN ({marks})", rows, args.repeat),
            ("one paper by id", "SELECT row FROM papers WHERE id = ?", ids[:1], args.repeat),
            ("papers by norm_title", "SELECT row FROM papers WHERE norm_title = ?", [norm], args.repeat),
            ("every row ORDER BY row", "SELECT row, title, abstract FROM papers ORDER BY row", [], 3),
            ("filter scan (date)", "SELECT row FROM papers WHERE date >= '2020-01-01'", [], 3),
            (
                "source filter (json_each)",
                "SELECT row FROM papers WHERE EXISTS (SELECT 1 FROM json_each(papers.sources) s WHERE s.value = 'x')",
                [],
                3,
            ),
            (
                "title suggestion (LIKE, by length)",
                "SELECT id, title FROM papers WHERE norm_title LIKE 'deep learn%' ORDER BY length(title) LIMIT 10",
                [],
                3,
            ),
            ("count(*)", "SELECT count(*) FROM papers", [], 3),
            (
                "50 ids joined with the view (inner side)",
                "SELECT count(*) FROM temp.touched t CROSS JOIN papers p ON p.id = t.id",
                [],
                1,
            ),
            (
                "the same by correlated EXISTS",
                "SELECT count(*) FROM temp.touched t WHERE EXISTS (SELECT 1 FROM papers p WHERE p.id = t.id)",
                [],
                args.repeat,
            ),
        ]
        print(f"{n:,} papers, a delta of {args.delta:,} rows; median ms\n")
        print("| statement | view over base and delta | the whole table |\n| --- | --- | --- |")
        for name, sql, params, repeat in statements:
            a = timed(lambda sql=sql, params=params: view.execute(sql, params).fetchall(), repeat)
            b = timed(lambda sql=sql, params=params: plain.execute(sql, params).fetchall(), repeat)
            print(f"| {name} | {a:,.3f} | {b:,.3f} |")
        print(
            f"| last row of each half (what the build counts by) | {timed(lambda: layered_papers.count(view), args.repeat):,.3f} | |"
        )


if __name__ == "__main__":
    main()
