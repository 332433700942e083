"""The interactive map: one self-contained HTML page (no CDN, works offline, or served by ``paperscope serve``).

All corpus text travels as JSON inside a ``<script type="application/json">`` block with
``<``, ``>`` and ``&`` escaped, and the page only ever puts it into the DOM with
``textContent``: a title like ``<img src=x onerror=...>`` shows as text and never runs.

The static page carries everything it shows: coordinates, topics, titles, authors, dates,
sources, abstracts (up to :data:`ABSTRACT_LIMIT` papers), the related papers with their
scores, and a BM25 inverted index over title + abstract built here with paperscope's own
lexical tokenizer, so the page's search ranks as ``paperscope search --mode lexical`` does
(the page tokenizes the query with a JavaScript port of :func:`paperscope.lexical.tokenize`).
The served page (``served=True``) carries only the map and asks the server's JSON API for the rest.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from paperscope.map import LEVELS, TopicMap
from paperscope.map.frames import register_page_maker
from paperscope.paper import Paper
from paperscope.render.png import PALETTE
from paperscope.text import STOP_WORDS, paper_text, tokenize

# Above this many papers the static page leaves out abstracts (and indexes titles only): 50,000
# abstracts would make a page of 60+ MB. The page says so; `paperscope serve` has them all.
# The page ranks its own search with BM25 over this index (small, and simple to score in JavaScript);
# the terms are paperscope's own (paperscope.text), so a query finds what `--mode lexical` finds.
K1, B = 1.2, 0.75
ABSTRACT_LIMIT = 5_000
ABSTRACT_CHARS = 3_000  # a longer abstract is cut here (with an ellipsis) on the static page
AUTHORS_SHOWN = 12  # more authors are summarised as "+ N more"
LOW_MARGIN = 0.1  # the same threshold as topics.json's low_confidence

STATIC_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
SERVED_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)

Related = Mapping[str, Sequence[str] | Sequence[tuple[str, float]] | Sequence[Sequence[Any]]]


def _safe_json(data: object) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, "</script>" or "<!--" in a title would end or confuse the block.
    return (
        text.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _escape_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def search_index(texts: Sequence[str]) -> dict[str, Any]:
    """A compact BM25 inverted index of ``texts`` (one per page row), tokenized by :func:`tokenize`.

    ``vocab`` lists the terms; ``post[t]`` is term t's postings as one string of comma-separated
    entries, each the base-36 gap to the previous row, then ``:tf`` (base 36) when the term occurs
    more than once; ``dl`` is each row's number of distinct terms (the document length
    :class:`~paperscope.lexical.LexicalIndex` uses), and ``k1``/``b`` the BM25 constants.
    """
    postings: dict[str, list[tuple[int, int]]] = {}
    dl = []
    for row, text in enumerate(texts):
        counts = Counter(tokenize(text))
        dl.append(len(counts))
        for term, tf in counts.items():
            postings.setdefault(term, []).append((row, tf))
    vocab = sorted(postings)
    post = []
    for term in vocab:
        prev, parts = 0, []
        for row, tf in postings[term]:
            parts.append(_b36(row - prev) + (":" + _b36(tf) if tf > 1 else ""))
            prev = row
        post.append(",".join(parts))
    return {"vocab": vocab, "post": post, "dl": dl, "k1": K1, "b": B}


def _related_rows(items: Sequence[Any], row_of: Mapping[str, int], extra: dict[str, int]) -> list[float | int]:
    """[row, score, row, score, ...]; score -1 when not given. A related paper that is not on the page (a
    sampled map) gets a row past the page's papers, numbered in ``extra`` (filled here)."""
    flat: list[float | int] = []
    for item in items:
        rid, score = (item, None) if isinstance(item, str) else (item[0], item[1])
        j = row_of.get(rid)
        if j is None:
            j = len(row_of) + extra.setdefault(rid, len(extra))
        flat += [j, -1 if score is None else round(float(score), 4)]
    return flat


def page_document(
    tm: TopicMap,
    related: Related | None,
    *,
    rows: Sequence[int] | None = None,
    served: bool = False,
    papers: Mapping[str, Paper] | None = None,
    title: str = "paperscope topic map",
) -> dict[str, Any]:
    """The data object the page reads (column arrays: 50,000 papers as objects would double the page).

    ``related`` maps a paper id to its related papers, either ids or ``(id, score)`` pairs; ``papers``
    maps ids to :class:`Paper` for authors, date, sources and abstract (absent: titles only).
    """
    rows = list(range(len(tm)) if rows is None else rows)
    ids = [tm.ids[i] for i in rows]
    row_of = {pid: j for j, pid in enumerate(ids)}
    meta = [papers.get(pid) if papers is not None else None for pid in ids]
    # The served page asks the API for abstracts; the static page carries them up to ABSTRACT_LIMIT papers.
    with_abstracts = papers is not None and len(rows) <= ABSTRACT_LIMIT and not served
    small = len(rows) <= ABSTRACT_LIMIT
    sources = sorted({s for p in meta if p is not None for s in p.sources})
    source_id = {s: i for i, s in enumerate(sources)}

    def authors(p: Paper | None) -> list[str]:
        return [] if p is None else list(p.authors[: AUTHORS_SHOWN if small else 3])

    def more_authors(p: Paper | None) -> int:  # authors not named on the page (or not named by the source)
        return 0 if p is None else max(len(p.authors), p.authors_count or 0) - len(authors(p))

    def abstract(p: Paper | None) -> str:
        if p is None:
            return ""
        a = p.abstract
        return a if len(a) <= ABSTRACT_CHARS else a[:ABSTRACT_CHARS].rstrip() + "…"

    doc: dict[str, Any] = {
        "served": bool(served),
        "title": title,
        "generation": tm.generation,
        "levels": list(LEVELS),
        "stats": {"papers": len(tm), "low_confidence": tm.low_confidence},
        "palette": PALETTE,
        "topics": [t.to_dict() for t in tm.topics],
        "ids": ids,
        "titles": [tm.titles[i] for i in rows],
        "x": [round(float(tm.coords[i, 0]), 4) for i in rows],
        "y": [round(float(tm.coords[i, 1]), 4) for i in rows],
        "topic_of": {LEVELS[lv]: [int(tm.levels[lv][i]) for i in rows] for lv in range(len(LEVELS))},
        "low": [j for j, i in enumerate(rows) if tm.margin[i] < LOW_MARGIN],
        "dates": [p.date if p is not None else None for p in meta],
        "sources": sources,
        "source_of": [[source_id[s] for s in p.sources] if p is not None else [] for p in meta],
        "authors": [authors(p) for p in meta],
        "more_authors": {str(j): m for j, p in enumerate(meta) if (m := more_authors(p)) > 0},
        "abstracts": [abstract(p) for p in meta] if with_abstracts else None,
        "note": None,
    }
    if papers is not None and not with_abstracts and not served:
        doc["note"] = (
            f"This page holds {len(rows):,} papers: abstracts are left out above {ABSTRACT_LIMIT:,} "
            "papers and the search reads titles only (paperscope show ID, or paperscope serve, has them)."
        )
    if served:
        doc["related"] = None
        doc["index"] = None
    else:
        extra: dict[str, int] = {}
        doc["related"] = [_related_rows((related or {}).get(pid, []), row_of, extra) for pid in ids]
        # Related papers outside the page's sample: id and title only (row len(ids) + k is extra[k]).
        title_of = {pid: tm.titles[i] for i, pid in enumerate(tm.ids)} if extra else {}
        doc["extra"] = [[rid, title_of.get(rid, rid)] for rid in extra]
        texts = [paper_text(t, a) for t, a in zip(doc["titles"], doc["abstracts"])] if with_abstracts else doc["titles"]
        doc["index"] = search_index(texts)
        doc["stop_words"] = sorted(STOP_WORDS)  # the page's query tokenizer drops the same words
    return doc


def page_html(
    tm: TopicMap,
    related: Related | None,
    *,
    rows: Sequence[int] | None = None,
    served: bool = False,
    papers: Mapping[str, Paper] | None = None,
    title: str = "paperscope topic map",
) -> str:
    """The map page as a string: static (self-contained, no network) or ``served`` (talks to /api/...).

    ``related`` maps each paper id to its related papers (ids, or ``(id, score)`` pairs); ``rows``
    limits the page to those papers (for very large maps); ``papers`` supplies authors, date,
    sources and abstracts for the static page's panel and search.
    """
    doc = page_document(tm, related, rows=rows, served=served, papers=papers, title=title)
    template = (resources.files("paperscope.render") / "map.html").read_text(encoding="utf-8")
    values = {
        "__CSP__": SERVED_CSP if served else STATIC_CSP,
        "__TITLE__": _escape_text(title),
        "__DATA__": _safe_json(doc),
    }
    # One pass, so a title containing "__DATA__" is never substituted again.
    return re.sub("__CSP__|__TITLE__|__DATA__", lambda m: values[m.group()], template)


def write_html(
    tm: TopicMap,
    path: Path,
    related: Related | None,
    *,
    title: str = "paperscope topic map",
    rows: Sequence[int] | None = None,
    papers: Mapping[str, Paper] | None = None,
) -> Path:
    """Write the static page; ``related`` maps each paper id to its related ids or (id, score) pairs.

    ``rows`` limits the page to those papers (for very large maps); ``papers`` adds their details.
    """
    path.write_text(page_html(tm, related, rows=rows, papers=papers, title=title), encoding="utf-8")
    return path


# Public for the tests that check the page's escaping of </script> and friends.
safe_json = _safe_json


register_page_maker(page_html)  # lets a TopicMap shown in a notebook embed this page
