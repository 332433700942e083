"""topics.json: every paper's position and topics, and every topic's label, keywords and size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paperscope.map import LEVELS, TopicMap


def _paper(tm: TopicMap, i: int, related: dict[str, list[str]] | None) -> dict[str, Any]:
    pid = tm.ids[i]
    entry: dict[str, Any] = {
        "id": pid,
        "title": tm.titles[i],
        "x": round(float(tm.coords[i, 0]), 5),
        "y": round(float(tm.coords[i, 1]), 5),
        "topics": {LEVELS[lv]: int(tm.levels[lv][i]) for lv in range(len(LEVELS))},
        "low_confidence": bool(tm.margin[i] < 0.1),
    }
    if related is not None:
        entry["related"] = related.get(pid, [])
    return entry


def topics_document(
    tm: TopicMap, related: dict[str, list[str]] | None = None, rows: Sequence[int] | None = None
) -> dict[str, Any]:
    """The JSON document: ``papers`` (id, title, x, y, topics per level, low_confidence) and ``topics``.

    ``rows`` limits the papers listed (the topics still describe the whole map).
    """
    return {
        "generation": tm.generation,
        "levels": list(LEVELS),
        "params": tm.params.__dict__,
        "stats": tm.stats,
        "topics": [t.to_dict() for t in tm.topics],
        "papers": [_paper(tm, i, related) for i in (range(len(tm)) if rows is None else rows)],
    }


def write_topics_json(tm: TopicMap, path: Path, related: dict[str, list[str]] | None = None) -> Path:
    """Write :func:`topics_document` to ``path``: the head indented, then one compact line per paper.

    The papers are streamed. At a million papers the whole document indented was 236 MB, built in
    memory as one string.
    """
    head = json.dumps(topics_document(tm, related, rows=[]), ensure_ascii=False, indent=1)
    before, after = head.rsplit('"papers": []', 1)  # "papers" is the document's last key
    last = len(tm) - 1
    with path.open("w", encoding="utf-8") as fh:
        fh.write(before + '"papers": [\n')
        for i in range(len(tm)):
            line = json.dumps(_paper(tm, i, related), ensure_ascii=False, separators=(",", ":"))
            fh.write(line + (",\n" if i < last else "\n"))
        fh.write("]" + after + "\n")
    return path
