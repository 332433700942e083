"""topics.json: every paper's position and topics, and every topic's label, keywords and size."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from paperscope.map import LEVELS, TopicMap


def topics_document(
    tm: TopicMap, related: dict[str, list[str]] | None = None, rows: Sequence[int] | None = None
) -> dict[str, Any]:
    """The JSON document: ``papers`` (id, title, x, y, topics per level, low_confidence) and ``topics``.

    ``rows`` limits the papers listed (the topics still describe the whole map).
    """
    papers = []
    for i in range(len(tm)) if rows is None else rows:
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
        papers.append(entry)
    return {
        "generation": tm.generation,
        "levels": list(LEVELS),
        "params": tm.params.__dict__,
        "stats": tm.stats,
        "topics": [t.to_dict() for t in tm.topics],
        "papers": papers,
    }


def write_topics_json(tm: TopicMap, path: Path, related: dict[str, list[str]] | None = None) -> Path:
    path.write_text(json.dumps(topics_document(tm, related), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path
