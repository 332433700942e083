"""Write every map output (PNG, HTML page, topics.json) into one folder; one error names the folder."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from paperscope.errors import PaperscopeError
from paperscope.map import TopicMap
from paperscope.paper import Paper
from paperscope.render.html import write_html
from paperscope.render.png import write_png
from paperscope.render.topics_json import write_topics_json


def write_outputs(
    tm: TopicMap,
    out: Path,
    related: Mapping[str, Sequence[tuple[str, float]]],
    rows: Sequence[int],
    papers: Mapping[str, Paper] | None = None,
) -> dict[str, str]:
    """The map's files in ``out`` (created); their paths by kind. ``rows`` are the papers on the page,
    ``papers`` their details for the page's panel."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        return {
            "png": str(write_png(tm, out / "map.png")),
            "html": str(write_html(tm, out / "map.html", related, rows=rows, papers=papers)),
            "topics": str(write_topics_json(tm, out / "topics.json")),
        }
    except OSError as e:
        raise PaperscopeError(
            f"{e.filename or out}: cannot write the map there ({e.strerror or e}); the previous map files are unchanged"
        ) from None
