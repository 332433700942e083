"""The map page's size and its open time in headless Chromium, at the bundled size and at 50,000 papers.

    python benchmarks/map_page.py [--n 50000] [--repeats 3] [--store DIR]

A synthetic map of ``--n`` papers (Gaussian clusters, 30 themes x 5 topics, titles drawn from a
3,000-word vocabulary, 5 related papers each with scores, authors, dates, two sources) is written
with :func:`paperscope.render.html.page_html`; Chromium (Debian's, headless, network off) opens it
``--repeats`` times and the page reports, on its first drawn frame, ``performance.now()`` (ms since
navigation start): the median is the open time. ``--store`` also measures the page of that store's
saved map (the bundled corpus gives the bundled page) with ``paperscope map``'s own renderer.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from paperscope.map import LEVELS, MapParams, Topic, TopicMap
from paperscope.paper import Paper
from paperscope.render.html import page_html

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/browser.py: the suite's Chromium setup


def synthetic_map(n: int, seed: int = 0) -> tuple[TopicMap, dict[str, list[tuple[str, float]]], dict[str, Paper]]:
    """A TopicMap of ``n`` papers in 150 Gaussian clusters, with related pairs and paper details."""
    rng = np.random.default_rng(seed)
    n_topics, per_theme = 150, 5
    centres = rng.normal(0, 10, size=(n_topics, 2))
    topic = rng.integers(0, n_topics, size=n)
    coords = (centres[topic] + rng.normal(0, 0.8, size=(n, 2))).astype(np.float32)
    words = [f"w{'abcdefghij'[i % 10]}{i}x" for i in range(3000)]
    ids = [f"24{i // 100000:02d}.{i % 100000:05d}" for i in range(n)]
    titles = [" ".join(words[j] for j in row).capitalize() for row in rng.integers(0, len(words), size=(n, 8))]
    topics = [
        Topic(
            id=t,
            level=0,
            label=f"Theme {t} " + " ".join(words[t * 7 : t * 7 + 2]),
            keywords=words[t * 7 : t * 7 + 3],
            size=int((topic // per_theme == t).sum()),
        )
        for t in range(n_topics // per_theme)
    ]
    topics += [
        Topic(
            id=t,
            level=1,
            label=f"Topic {t} " + words[t * 11],
            keywords=words[t * 11 : t * 11 + 3],
            size=int((topic == t).sum()),
            parent=t // per_theme,
        )
        for t in range(n_topics)
    ]
    tm = TopicMap(
        generation="g-synthetic",
        params=MapParams(),
        ids=ids,
        titles=titles,
        hashes=[""] * n,
        coords=coords,
        levels=[(topic // per_theme).astype(np.int32), topic.astype(np.int32)],
        margin=rng.uniform(0, 1, size=n).astype(np.float32),
        base=np.ones(n, dtype=bool),
        centroids=np.zeros((n_topics, 2), dtype=np.float32),
        centroid_ids=np.arange(n_topics),
        topics=topics,
    )
    rel, scores = rng.integers(0, n, size=(n, 5)), -np.sort(-rng.uniform(0.3, 0.9, size=(n, 5)))
    related = {ids[i]: [(ids[j], s) for j, s in zip(rel[i].tolist(), scores[i].tolist())] for i in range(n)}
    papers = {
        pid: Paper(
            id=pid,
            title=titles[i],
            abstract="An abstract. " * 40,
            authors=(f"Author {i % 997}", f"Author {i % 991}"),
            authors_count=2,
            date=f"20{18 + i % 7}-0{1 + i % 9}-1{i % 10}",
            sources=(f"source{i % 2}.jsonl",),
        )
        for i, pid in enumerate(ids)
    }
    assert len(LEVELS) == 2
    return tm, related, papers


def open_times(page: Path, repeats: int) -> list[float]:
    """ms from navigation start to the first drawn frame, one per fresh navigation."""
    from tests.browser import chromium

    out = []
    with tempfile.TemporaryDirectory() as profile, chromium(Path(profile)) as driver:
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(page.as_uri())
            deadline = time.monotonic() + 60
            first = "return window.paperscopeMap && window.paperscopeMap.firstDrawMs"
            while (ms := driver.execute_script(first)) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{page}: no first draw within 60 s")
                time.sleep(0.02)
            out.append(float(ms))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--store", type=Path, default=None, help="also measure this store's map page")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.store is not None:
            from paperscope.explorer import Explorer

            with Explorer(args.store) as ex:
                tm = ex.topic_map(Path(tmp) / "store-map")
            page = Path(tm.stats["outputs"]["html"])
            times = open_times(page, args.repeats)
            print(
                f"store page: {len(tm)} papers, {page.stat().st_size / 1e6:.3f} MB, open (first draw) median "
                f"{statistics.median(times):.0f} ms of {[round(t) for t in times]}"
            )
        t0 = time.perf_counter()
        tm, related, papers = synthetic_map(args.n)
        t1 = time.perf_counter()
        html = page_html(tm, related, papers=papers)
        t2 = time.perf_counter()
        page = Path(tmp) / "synthetic.html"
        page.write_text(html, encoding="utf-8")
        times = open_times(page, args.repeats)
        print(
            f"synthetic page: {args.n} papers, {page.stat().st_size / 1e6:.2f} MB, page_html {t2 - t1:.2f} s "
            f"(data {t1 - t0:.2f} s), open (first draw) median {statistics.median(times):.0f} ms of "
            f"{[round(t) for t in times]}"
        )


if __name__ == "__main__":
    main()
