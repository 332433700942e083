"""The map of an open store: reuse the saved one, or compute, render and save a new one.

What :meth:`paperscope.explorer.Explorer.topic_map` does, written against the few things it
needs from an open store (:class:`MapSource`), so the map layer never imports the facade; the
files are written by a ``writer`` the caller passes (``paperscope.render.write_outputs``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from paperscope.errors import PaperscopeError, StoreError
from paperscope.map.topicmap import STEPS, MapParams, TopicMap, compute_map, fit_sample, from_record, to_record
from paperscope.store import Generation, Store

# The page holds at most this many papers (a fixed sample): a browser draws 50k points
# smoothly, and each needs its related papers computed here.
HTML_POINTS = 50_000

# Related lists for the page cost one ranked (hybrid) query per page paper: tens of milliseconds at
# 20k papers, far more at 1M, so 50,000 of them would take hours. Above this many page papers the
# lists come from one batched dense search of the store's FAISS index instead (ids only, no score;
# the page then shows no score). docs/performance.md has the figures.
PAGE_HYBRID_RELATED = 5_000

# writer(map, folder, related (id, score) pairs per paper id, page rows, papers by id) -> paths by kind
Writer = Callable[[TopicMap, Path, dict[str, list[tuple[str, float]]], Sequence[int], dict[str, Any]], dict[str, str]]


class _Table(Protocol):
    def columns(self, *names: str, page: int = ...) -> Any: ...


class _Index(Protocol):
    vectors: np.ndarray
    faiss: Any


class MapSource(Protocol):
    """What the map needs from an open store (an :class:`~paperscope.explorer.Explorer` is one)."""

    store: Store
    generation: Generation
    fingerprint: str
    table: _Table
    index: _Index

    def related(self, key: str, k: int = ...) -> Any: ...

    def paper(self, paper_id: str) -> Any: ...

    def map_inputs(self) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]: ...


def saved_map(store: Store) -> TopicMap | None:
    """The last map saved in the store (possibly of an older generation), or None."""
    record = store.read_map()
    if record is None:
        return None
    try:
        return from_record(*record)
    except (KeyError, ValueError, TypeError) as e:
        raise StoreError(f"{store.map_dir}: damaged map ({e}); re-run: paperscope map --refit") from None


def make_map(
    src: MapSource,
    out: str | Path | None = None,
    *,
    params: MapParams | None = None,
    refit: bool = False,
    writer: Writer | None = None,
    related_k: int = 5,
    lock_wait: float = 0.0,
    progress: bool | None = None,
) -> TopicMap:
    """See :meth:`paperscope.explorer.Explorer.topic_map`; ``writer=None`` renders nothing.

    A map that must be saved takes the store's writer lock first (waiting up to ``lock_wait``
    seconds for a running index), so a busy store is refused before any work is done. The
    outputs are rendered into a temporary folder beside their final place and renamed into
    place after the map state is saved: an interrupted run leaves the previous files whole.
    ``progress`` shows a bar over the steps (default: in a notebook only).
    """
    params = params or MapParams()
    out_dir = Path(out) if out is not None else src.store.map_dir
    _check_out(src.store, out_dir)
    previous = _usable(src, None if refit else saved_map(src.store))
    if previous is not None and previous.generation == src.generation.name and previous.params == params:
        previous.stats["cached"] = True
        return _render_save_publish(src, previous, out_dir, writer, related_k, save=False)
    with src.store.writer(wait=lock_wait):
        # Read again under the lock: another map may have been saved meanwhile.
        bar = _steps_bar(progress, render=writer is not None)
        try:
            tm = _compute(src, params, _usable(src, None if refit else saved_map(src.store)), bar)
            tm.stats["cached"] = False
            if bar is not None:
                bar.set_postfix_str("render")
                bar.update(1)
            return _render_save_publish(src, tm, out_dir, writer, related_k, save=True)
        finally:
            if bar is not None:
                bar.update(bar.total - bar.n)
                bar.close()


def _steps_bar(progress: bool | None, render: bool) -> Any:
    """A tqdm.auto bar over compute_map's steps (and rendering), or None: by default only in a notebook."""
    from paperscope.progress import in_notebook

    if not (progress or (progress is None and in_notebook())):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=len(STEPS) + int(render), desc="topic map", unit="step")


def _usable(src: MapSource, previous: TopicMap | None) -> TopicMap | None:
    """The saved map if its layout may carry over (other vectors: nothing of the old layout does)."""
    if previous is not None and previous.stats.get("fingerprint") != src.fingerprint:
        return None
    return previous


def _check_out(store: Store, out: Path) -> None:
    """Map outputs never go inside the store's generations (they would be taken for one)."""
    try:
        inside = out.resolve().is_relative_to(store.generations_dir.resolve())
    except OSError:
        inside = False
    if inside:
        raise PaperscopeError(
            f"{out}: inside the store's generations directory; choose another --out (default: {store.map_dir})"
        )


def _render_save_publish(
    src: MapSource, tm: TopicMap, out: Path, writer: Writer | None, related_k: int, save: bool
) -> TopicMap:
    """Render into a temporary folder, save the map state, then rename each output into ``out``."""
    staging = out / f".tmp-map-{os.getpid()}"
    try:
        staged = None
        if writer is not None:
            rows = fit_sample(tm.ids, HTML_POINTS)
            related = page_related(src, tm, rows, related_k)
            papers = {tm.ids[i]: src.paper(tm.ids[i]) for i in rows}  # the page's panel: authors, date, abstract
            staged = writer(tm, staging, related, rows, papers)
        if save:
            try:
                src.store.write_map(*to_record(tm))
            except OSError as e:
                raise StoreError(
                    f"{e.filename or src.store.map_dir}: cannot save the map ({e.strerror or e}); "
                    "the previous map is unchanged"
                ) from None
        if staged is not None:
            published = {}
            for kind, path in staged.items():
                final = out / Path(path).name
                os.replace(path, final)  # readers see the old file or the new, never a part
                published[kind] = str(final)
            tm.stats["outputs"] = published
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tm


def page_related(src: MapSource, tm: TopicMap, rows: Sequence[int], k: int) -> dict[str, list[Any]]:
    """The related papers the static page carries for each of its papers (see PAGE_HYBRID_RELATED)."""
    vectors = src.index.vectors
    if len(rows) <= PAGE_HYBRID_RELATED or vectors.shape[0] != len(tm.ids):
        return {tm.ids[i]: [(h.paper.id, h.score) for h in src.related(tm.ids[i], k=k)] for i in rows}
    out: dict[str, list[Any]] = {}
    order = np.asarray(rows, dtype=np.int64)
    for start in range(0, len(order), 4096):
        chunk = order[start : start + 4096]
        _, nearest = src.index.faiss.search(np.ascontiguousarray(vectors[chunk], dtype=np.float32), k + 1)
        for i, found in zip(chunk.tolist(), nearest.tolist()):
            out[tm.ids[i]] = [tm.ids[j] for j in found if 0 <= j != i][:k]
    return out


def _compute(src: MapSource, params: MapParams, previous: TopicMap | None, bar: Any = None) -> TopicMap:
    def step(name: str) -> None:
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(0 if name == STEPS[0] else 1)

    ids, titles, texts, hashes, vectors = src.map_inputs()
    tm = compute_map(ids, titles, texts, hashes, vectors, src.generation.name, params, previous, step=step)
    tm.stats["fingerprint"] = src.fingerprint
    return tm
