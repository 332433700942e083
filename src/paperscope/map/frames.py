"""A TopicMap in a notebook: DataFrames, a short summary, and the interactive page inline.

Kept apart from topicmap.py (which fits maps) so that module stays about computing.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import numpy as np

from paperscope.frames import esc, pandas, short, table
from paperscope.map.levels import LEVELS

# paperscope.map.topicmap.TopicMap and Topic: not imported, since topicmap imports this module.
TopicMap = Any
Topic = Any


def map_frame(tm: TopicMap, rows: np.ndarray | None = None) -> Any:
    """One row per paper: id, title, x, y, theme and topic ids and labels, margin, low_confidence."""
    from paperscope.map import cluster

    pd = pandas()
    idx = np.arange(len(tm)) if rows is None else np.asarray(rows)
    label = {(t.level, t.id): t.label for t in tm.topics}
    coarse, fine = tm.levels
    return pd.DataFrame(
        {
            "id": [tm.ids[i] for i in idx],
            "title": [tm.titles[i] for i in idx],
            "x": tm.coords[idx, 0],
            "y": tm.coords[idx, 1],
            "theme": coarse[idx],
            "theme_label": [label[(0, int(coarse[i]))] for i in idx],
            "topic": fine[idx],
            "topic_label": [label[(1, int(fine[i]))] for i in idx],
            "margin": tm.margin[idx],
            "low_confidence": tm.margin[idx] < cluster.LOW_MARGIN,
        }
    )


def examples(tm: TopicMap, topic: Topic, n: int = 3) -> list[str]:
    """Titles of the ``n`` members most firmly in the topic (highest margin): what it is about."""
    members = np.flatnonzero(tm.levels[topic.level] == topic.id)
    best = members[np.argsort(-tm.margin[members], kind="stable")[:n]]
    return [tm.titles[i] for i in best]


def topics_frame(tm: TopicMap) -> Any:
    """One row per topic: level, id, label, keywords, size, parent theme, three example titles."""
    pd = pandas()

    rows = [
        {
            "level": LEVELS[t.level],
            "id": t.id,
            "label": t.label,
            "keywords": ", ".join(t.keywords),
            "size": t.size,
            "parent": t.parent,
            "examples": " | ".join(examples(tm, t)),
        }
        for t in sorted(tm.topics, key=lambda t: (t.level, -t.size, t.id))
    ]
    return pd.DataFrame(rows)


def summary(tm: TopicMap) -> str:
    """A few lines: counts, generation, and the themes with their sizes."""
    themes = sorted((t for t in tm.topics if t.level == 0), key=lambda t: -t.size)
    head = (
        f"TopicMap({len(tm)} papers, {len(themes)} themes, {sum(t.level == 1 for t in tm.topics)} topics, "
        f"{tm.low_confidence} low-confidence, generation {tm.generation!r}, seed {tm.params.seed})"
    )
    return "\n".join(
        [head]
        + [f"  theme {t.id:>2} {t.size:>5}  {short(t.label, 60)}" for t in themes[:12]]
        + ([f"  … {len(themes) - 12} more themes"] if len(themes) > 12 else [])
    )


# The page renderer sits above the map layer, so map/ never imports it: paperscope.render.html
# registers its page function here when it is imported (the Explorer imports it before handing
# out a map), and a map shown in a notebook embeds the page through it.
_page_maker: Callable[..., str] | None = None


def register_page_maker(maker: Callable[..., str]) -> None:
    """Called by paperscope.render.html: ``maker(tm, related, rows=...)`` returns the page as a string."""
    global _page_maker
    _page_maker = maker


def page_html(tm: TopicMap, rows: np.ndarray | None = None, related: dict[str, list[str]] | None = None) -> str | None:
    """The interactive map page as a string (``rows`` limits the papers); None when no renderer is loaded."""
    if _page_maker is None:
        return None
    return _page_maker(tm, related or {}, rows=None if rows is None else list(rows))


def iframe(page: str | None, height: int = 620) -> str:
    """``page`` inline in a notebook: an iframe whose srcdoc holds it (no file, no server)."""
    if page is None:
        return "<p><i>import paperscope.render to show the interactive map here</i></p>"
    return (
        f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width:100%;height:{height}px;'
        f'border:1px solid #ddd" sandbox="allow-scripts"></iframe>'
    )


def summary_html(tm: TopicMap) -> str:
    themes = sorted((t for t in tm.topics if t.level == 0), key=lambda t: -t.size)
    rows = [(t.id, t.label, t.size, ", ".join(t.keywords[:5])) for t in themes]
    return (
        f"<p><b>{esc(len(tm))} papers</b> · {esc(len(themes))} themes · "
        f"{esc(sum(t.level == 1 for t in tm.topics))} topics · {esc(tm.low_confidence)} low-confidence</p>"
        + table(("theme", "label", "papers", "keywords"), rows)
    )


class Members(list[str]):
    """Ids of one topic's papers (a plain list, as before), shown as a table; ``to_pandas()`` for a DataFrame."""

    def __init__(self, tm: TopicMap, rows: np.ndarray):
        super().__init__(tm.ids[i] for i in rows)
        self._tm = tm
        self.rows = rows

    def __repr__(self) -> str:
        lines = [f"Members({len(self)} papers)"] + [
            f"  {self._tm.ids[i]}  {short(self._tm.titles[i], 80)}" for i in self.rows[:10]
        ]
        return "\n".join(lines + ([f"  … {len(self) - 10} more"] if len(self) > 10 else []))

    def _repr_html_(self) -> str:
        return table(
            ("id", "title"), ((self._tm.ids[i], self._tm.titles[i]) for i in self.rows), caption=f"{len(self)} papers"
        )

    def to_pandas(self) -> Any:
        """The map's rows for these papers (see :meth:`TopicMap.to_pandas`)."""
        return map_frame(self._tm, self.rows).reset_index(drop=True)

    def view(self, height: int = 620) -> MapView:
        """The interactive map with only these papers."""
        return MapView(self._tm, self.rows, height)


class MapView:
    """Something a notebook shows as the interactive map (all papers or some)."""

    def __init__(self, tm: TopicMap, rows: np.ndarray | None = None, height: int = 620):
        self.tm, self.rows, self.height = tm, rows, height

    def __repr__(self) -> str:
        n = len(self.tm) if self.rows is None else len(self.rows)
        return f"MapView({n} of {len(self.tm)} papers)"

    def _repr_html_(self) -> str:
        return iframe(page_html(self.tm, self.rows), self.height)
