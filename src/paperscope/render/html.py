"""The interactive map: one self-contained HTML file (no CDN, no server, works offline).

All corpus text travels as JSON inside a ``<script type="application/json">`` block with
``<``, ``>`` and ``&`` escaped, and the page only ever puts it into the DOM with
``textContent``: a title like ``<img src=x onerror=...>`` shows as text and never runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from paperscope.map import TopicMap
from paperscope.render.png import PALETTE
from paperscope.render.topics_json import topics_document


def _safe_json(data: object) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, "</script>" or "<!--" in a title would end or confuse the block.
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def write_html(tm: TopicMap, path: Path, related: dict[str, list[str]], *, title: str = "paperscope topic map",
               rows: Sequence[int] | None = None) -> Path:
    """Write the page; ``related`` maps each paper id to its precomputed related paper ids.

    ``rows`` limits the page to those papers (for very large maps).
    """
    doc = topics_document(tm, related, rows)
    doc["palette"] = PALETTE
    template = (resources.files("paperscope.render") / "map.html").read_text(encoding="utf-8")
    page = (template.replace("__TITLE__", _escape_text(title))
            .replace("__DATA__", _safe_json(doc)))
    path.write_text(page, encoding="utf-8")
    return path


def _escape_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# Public for the tests that check the page's escaping of </script> and friends.
safe_json = _safe_json
