"""The Explorer of a store's current generation, following re-indexes, and the shared query model."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.errors import StoreError
from paperscope.explorer import Explorer
from paperscope.store import Store

log = logging.getLogger("paperscope.serve")
RETRY_FAILED_OPEN = 5.0  # seconds between tries of a new generation that failed to open


class _Slot:
    def __init__(self, text: str):
        self.text = text
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None


class QueryBatcher:
    """The query embedder shared by the server's Explorers: concurrent requests share model calls.

    A request thread calls :meth:`embed`; if no batch is running it runs one with every text
    waiting (up to ``max_batch``), else it waits and the next free thread takes the next batch.
    An idle server adds no delay; under load one model call serves many requests. The model is
    loaded at the first call (``loader``), or given. The vector just made for a thread is what
    the Explorer's own ``embed_batch([text])`` call then gets, at once.
    """

    def __init__(
        self,
        fingerprint: str,
        dimension: int,
        *,
        model: Any = None,
        loader: Callable[[], Any] | None = None,
        max_batch: int = 64,
    ):
        self.fingerprint = fingerprint
        self.dimension = dimension
        self.loader = loader
        self.max_batch = max_batch
        self._model = model
        self._load_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []
        self._busy = False
        self._made = threading.local()
        self.calls = 0  # model calls made (batches), for the logs and tests
        self.texts = 0

    def model(self) -> Any:
        with self._load_lock:
            if self._model is None:
                if self.loader is None:
                    raise StoreError("no query model for this store; pass embedder=")
                self._model = self.loader()
            return self._model

    def text(self, title: str, abstract: str) -> str:
        return self.model().text(title, abstract)

    def embed(self, text: str) -> np.ndarray:
        """The vector of ``text``, computed in a batch with the texts of concurrent callers."""
        slot = _Slot(text)
        with self._cond:
            self._pending.append(slot)
        while True:
            with self._cond:
                while self._busy and slot.vector is None and slot.error is None:
                    self._cond.wait()
                if slot.vector is not None or slot.error is not None:
                    break
                self._busy = True
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                vectors = self.model().embed_batch([b.text for b in batch])
                self.calls += 1
                self.texts += len(batch)
                for b, v in zip(batch, vectors, strict=True):
                    b.vector = v
            except BaseException as e:  # noqa: BLE001 - handed to every request of the batch
                for b in batch:
                    b.error = e
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        self._made.last = (text, slot.vector)
        return slot.vector

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        last = getattr(self._made, "last", None)
        if len(texts) == 1 and last is not None and last[0] == texts[0]:
            self._made.last = None
            return last[1][None, :]
        return np.stack([self.embed(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)


# ---- live data ---------------------------------------------------------------------------------
class _Handle:
    """One open Explorer and the requests using it; closed once retired and unused."""

    def __init__(self, explorer: Explorer):
        self.explorer = explorer
        self.users = 0
        self.retired = False


class LiveExplorer:
    """The Explorer of the store's current generation, following re-indexes by other processes.

    Each request takes the current Explorer with :meth:`use` and keeps it to the end, so a
    request in flight finishes on the generation it started on. At most every
    ``check_interval`` seconds a request stats the store's CURRENT pointer (one ``stat``); when
    it names another generation, that request opens and warms the new Explorer and swaps it in,
    while other requests go on with the old one. The old one is closed when its last request ends.
    Every Explorer queries through one :class:`QueryBatcher` (kept across generations of one model).
    """

    def __init__(
        self,
        store: str | Path | Store | None = None,
        *,
        embedder: Any = None,
        check_interval: float = 0.25,
        preload: bool = False,
    ):
        self.store = store if isinstance(store, Store) else Store(store)
        self.check_interval = check_interval
        # Map each generation's query pages in (Explorer.preload) in a thread once it is open.
        self.preload = preload
        self.preloaded: dict[str, tuple[int, float]] = {}  # generation -> (bytes, seconds), once done
        self._embedder = embedder  # a given embedder (tests) is used for every generation
        self.batcher: QueryBatcher | None = None
        self._lock = threading.Lock()  # guards the handle swap and the use counts
        self._refreshing = threading.Lock()  # one request at a time opens a new generation
        self._pointer = self.store.path / "CURRENT"
        self._seen = self._pointer_state()
        self._checked = time.monotonic()
        self._failed: tuple[int, int, int] | None = None  # a store state whose generation did not open
        self._handle = _Handle(self._open())

    def _pointer_state(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._pointer)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size  # a re-index replaces the file: a new inode

    def _open(self) -> Explorer:
        """Open the current generation and warm its cheap parts (lexical index, ranker, one query)."""
        for attempt in range(3):
            model = self.store.require_current().manifest["model"]
            batcher = self.batcher
            if batcher is None or batcher.fingerprint != model["fingerprint"]:
                fingerprint = model["fingerprint"] if self._embedder is None else self._embedder.fingerprint
                batcher = QueryBatcher(fingerprint, model["dimension"], model=self._embedder)
            try:
                ex = Explorer(self.store, embedder=batcher)
            except StoreError:
                if attempt == 2:
                    raise
                continue  # re-indexed with another model between the two reads: read again
            if batcher.loader is None and self._embedder is None:
                batcher.loader = ex.load_query_embedder
            self.batcher = batcher
            break
        first = next(ex.papers(), None)
        if first is not None:
            ex.related(first.id, k=1)  # loads lexical.npz and builds the ranker
        if self.preload:
            threading.Thread(target=self._preload, args=(ex,), name="paperscope-preload", daemon=True).start()
        return ex

    def _preload(self, ex: Explorer) -> None:
        """:meth:`Explorer.preload` off the request path (seconds to minutes at a million papers)."""
        t0 = time.perf_counter()
        try:
            mapped = ex.preload()  # the arrays hold their maps open even if the Explorer is retired meanwhile
        except Exception as e:  # noqa: BLE001 - queries still work, only their first touches cost more
            log.warning("paperscope serve: could not preload generation %s (%s)", ex.generation.name, e)
            return
        seconds = time.perf_counter() - t0
        self.preloaded[ex.generation.name] = (mapped, seconds)
        log.info(
            "paperscope serve: %.0f MB of generation %s mapped in %.2f s", mapped / 1e6, ex.generation.name, seconds
        )

    def embed_ahead(self, text: str) -> None:
        """Embed a search text now, batched with concurrent requests, for the Explorer's search to use."""
        if self.batcher is not None:
            self.batcher.embed(text.strip())

    def _maybe_refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_interval or not self._refreshing.acquire(blocking=False):
            return
        try:
            self._checked = now
            state = self._pointer_state()
            if state == self._seen:
                return
            old = self._handle.explorer
            try:
                name = self._pointer.read_text(encoding="utf-8").strip()
                if name == old.generation.name:
                    self._seen = state
                    return
                new = self._open()
            except Exception as e:  # noqa: BLE001 - keep answering from the open generation; retry later
                if state != self._failed:  # one warning per store state, not one per check
                    log.warning(
                        "paperscope serve: cannot open the new generation (%s); still serving %s",
                        " ".join(str(e).splitlines()),
                        old.generation.name,
                    )
                self._failed = state
                self._checked = now + RETRY_FAILED_OPEN - self.check_interval
                return
            self._seen = state
            with self._lock:
                retired, self._handle = self._handle, _Handle(new)
                retired.retired = True
                close = retired.users == 0
            if close:
                retired.explorer.close()
            log.info("paperscope serve: now serving generation %s", new.generation.name)
        finally:
            self._refreshing.release()

    @contextlib.contextmanager
    def use(self) -> Iterator[Explorer]:
        """The current Explorer, held open until the block ends (checks for a re-index first)."""
        self._maybe_refresh()
        with self._lock:
            handle = self._handle
            handle.users += 1
        try:
            yield handle.explorer
        finally:
            with self._lock:
                handle.users -= 1
                close = handle.retired and handle.users == 0
            if close:
                handle.explorer.close()

    def close(self) -> None:
        with self._lock:
            self._handle.retired = True
            close = self._handle.users == 0
        if close:
            self._handle.explorer.close()
