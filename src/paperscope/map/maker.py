"""The map of an open store: reuse the saved one, or compute, render and save a new one.

What :meth:`paperscope.explorer.Explorer.topic_map` does, written against the few things it
needs from an open store (:class:`MapSource`), so the map layer never imports the facade; the
files are written by a ``writer`` the caller passes (``paperscope.render.write_outputs``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from paperscope.errors import StoreError
from paperscope.map.topicmap import MapParams, TopicMap, compute_map, fit_sample, from_record, to_record
from paperscope.store import Generation, Store

# The page holds at most this many papers (a fixed sample): a browser draws 50k points
# smoothly, and each needs its related papers computed here.
HTML_POINTS = 50_000

# writer(map, folder, related (id, score) pairs per paper id, page rows, papers by id) -> paths by kind
Writer = Callable[[TopicMap, Path, dict[str, list[tuple[str, float]]], Sequence[int], dict[str, Any]], dict[str, str]]


class _Table(Protocol):
    def columns(self, *names: str, page: int = ...) -> Any: ...


class _Index(Protocol):
    vectors: np.ndarray


class MapSource(Protocol):
    """What the map needs from an open store (an :class:`~paperscope.explorer.Explorer` is one)."""

    store: Store
    generation: Generation
    fingerprint: str
    table: _Table
    index: _Index

    def related(self, key: str, k: int = ...) -> Any: ...

    def paper(self, paper_id: str) -> Any: ...


def saved_map(store: Store) -> TopicMap | None:
    """The last map saved in the store (possibly of an older generation), or None."""
    record = store.read_map()
    if record is None:
        return None
    try:
        return from_record(*record)
    except (KeyError, ValueError, TypeError) as e:
        raise StoreError(f"{store.map_dir}: damaged map ({e}); re-run: paperscope map --refit") from None


def make_map(src: MapSource, out: str | Path | None = None, *, params: MapParams | None = None,
             refit: bool = False, writer: Writer | None = None, related_k: int = 5) -> TopicMap:
    """See :meth:`paperscope.explorer.Explorer.topic_map`; ``writer=None`` renders nothing."""
    params = params or MapParams()
    previous = None if refit else saved_map(src.store)
    if previous is not None and previous.stats.get("fingerprint") != src.fingerprint:
        previous = None  # other vectors: nothing of the old layout carries over
    fresh = not (previous is not None and previous.generation == src.generation.name
                 and previous.params == params)
    if fresh:
        tm = _compute(src, params, previous)
    else:
        assert previous is not None
        tm = previous
    tm.stats["cached"] = not fresh
    # Render before saving: a map whose outputs could not be written leaves the store as it was.
    outputs = None
    if writer is not None:
        rows = fit_sample(tm.ids, HTML_POINTS)
        related = {tm.ids[i]: [(h.paper.id, h.score) for h in src.related(tm.ids[i], k=related_k)] for i in rows}
        papers = {tm.ids[i]: src.paper(tm.ids[i]) for i in rows}  # the page's panel: authors, date, abstract
        outputs = writer(tm, Path(out) if out is not None else src.store.map_dir, related, rows, papers)
    if fresh:
        with src.store.writer():
            src.store.write_map(*to_record(tm))
    if outputs is not None:
        tm.stats["outputs"] = outputs
    return tm


def _compute(src: MapSource, params: MapParams, previous: TopicMap | None) -> TopicMap:
    ids, titles, texts, hashes = [], [], [], []
    for pid, title, abstract, chash in src.table.columns("id", "title", "abstract", "content_hash"):
        ids.append(pid)
        titles.append(title)
        texts.append(f"{title}. {abstract}")
        hashes.append(chash)
    tm = compute_map(ids, titles, texts, hashes, np.asarray(src.index.vectors), src.generation.name, params,
                     previous)
    tm.stats["fingerprint"] = src.fingerprint
    return tm
