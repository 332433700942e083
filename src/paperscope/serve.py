"""``paperscope serve``: the map page and a JSON API over one store, on Starlette + uvicorn.

Read-only: the server opens Explorers and the saved map, and never writes the store. It follows
re-indexes (see :class:`LiveExplorer`). Every answer is JSON (or the page); an error is one
line of JSON, never a traceback. Needs the ``serve`` extra: ``pip install "paperscope[serve]"``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from paperscope.errors import PaperscopeError, StoreError, UnknownPaperError
from paperscope.explorer import Explorer
from paperscope.rank import check_mode
from paperscope.store import Store

try:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, Response
    from starlette.routing import Route
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError:  # the CLI turns this into its one line
    raise PaperscopeError('paperscope serve needs the serve extra: pip install "paperscope[serve]"') from None

log = logging.getLogger("paperscope.serve")

# The same policy the served page sets in its <meta> tag (API.md): only its own origin.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "no-referrer", "x-frame-options": "DENY"}
MAX_K = 1000
MAX_QUERY = 1000
MAX_BODY = 1_000_000
MAX_PAPERS = 1000  # ids in one recommend body
# Host headers a loopback-bound server answers: a page on another site that points its own DNS
# name at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_PAGE_POINTS = 50_000  # as many points as the static page holds
RETRY_FAILED_OPEN = 5.0  # seconds between tries of a new generation that failed to open


class BadRequest(ValueError):
    """A bad request parameter or body: answered 422 with its one-line message."""


# ---- the query model ---------------------------------------------------------------------------
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

    def __init__(self, fingerprint: str, dimension: int, *, model: Any = None,
                 loader: Callable[[], Any] | None = None, max_batch: int = 64):
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
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
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

    def __init__(self, store: str | Path | Store | None = None, *, embedder: Any = None,
                 check_interval: float = 0.25):
        self.store = store if isinstance(store, Store) else Store(store)
        self.check_interval = check_interval
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
        return ex

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
                    log.warning("paperscope serve: cannot open the new generation (%s); still serving %s",
                                _one_line(str(e)), old.generation.name)
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


# ---- request parsing ---------------------------------------------------------------------------
def _int(value: Any, name: str, lo: int, hi: int, *, parse: bool = True) -> int:
    if isinstance(value, str) and parse:  # query parameters are text; a JSON body must send a number
        try:
            value = int(value.strip())
        except ValueError:
            raise BadRequest(f"{name}: expected an integer from {lo} to {hi}, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise BadRequest(f"{name}: expected an integer from {lo} to {hi}, got {value!r}")
    return value


def _bool(value: Any, name: str, *, parse: bool = True) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and parse and value.strip().lower() in ("0", "1", "false", "true", ""):
        return value.strip().lower() in ("1", "true")
    raise BadRequest(f"{name}: expected 0/1 or true/false, got {value!r}")


def _text(value: Any, name: str, limit: int = MAX_QUERY) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{name}: expected a string, got {type(value).__name__}")
    if len(value) > limit:
        raise BadRequest(f"{name}: {len(value)} characters, at most {limit} allowed")
    return value


FILTERS = ("date_from", "date_to", "min_authors", "max_authors", "source")


def _options(get: Callable[[str], Any], *, parse: bool = True) -> dict[str, Any]:
    """k, mode, why and the filters from query parameters (``parse``: text to numbers) or a JSON body.

    An empty or null value means unset, so a page can send every field of its form.
    """
    def given(name: str) -> Any:
        value = get(name)
        return None if value is None or value == "" else value

    out: dict[str, Any] = {"k": 10 if given("k") is None else _int(given("k"), "k", 1, MAX_K, parse=parse),
                           "why": False if given("why") is None else _bool(given("why"), "why", parse=parse),
                           "mode": check_mode(None if given("mode") is None else _text(given("mode"), "mode"))}
    for name in ("date_from", "date_to", "source"):
        out[name] = None if given(name) is None else _text(given(name), name)
    for name in ("min_authors", "max_authors"):
        out[name] = None if given(name) is None else _int(given(name), name, 0, 1_000_000, parse=parse)
    return out


def _ids(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"{name}: expected a list of paper ids")
    if len(value) > MAX_PAPERS:
        raise BadRequest(f"{name}: {len(value)} papers, at most {MAX_PAPERS} allowed")
    return [_text(v, name) for v in value]


# ---- responses ---------------------------------------------------------------------------------
def _one_line(message: str) -> str:
    return " ".join(str(message).splitlines())


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    return Response(body, status_code=status, media_type="application/json",
                    headers={"cache-control": "no-store"})


def _error(status: int, message: str, **extra: Any) -> Response:
    return _json({"error": _one_line(message), **extra}, status)


def _hits(hits: Any) -> list[dict[str, Any]]:
    return [h.to_dict() for h in hits]


class _Site:
    """The endpoints, over one LiveExplorer; the page and map JSON are cached per generation and map."""

    def __init__(self, live: LiveExplorer):
        self.live = live
        self._page: tuple[tuple[str, str], bytes] | None = None
        self._map: tuple[tuple[str, str], bytes] | None = None
        self._cache_lock = threading.Lock()

    # Each endpoint runs its Explorer work in the threadpool: FAISS, SQLite and the model block.
    async def health(self, request: Request) -> Response:
        def work() -> dict[str, Any]:
            with self.live.use() as ex:
                return {"status": "ok", "store": str(ex.store.path), "generation": ex.generation.name,
                        "papers": len(ex)}
        return _json(await run_in_threadpool(work))

    async def search(self, request: Request) -> Response:
        params = request.query_params
        q = params.get("q")
        if q is None or not q.strip():
            raise BadRequest("q: missing or empty; give the text to search for, e.g. /api/search?q=scaling+laws")
        q = _text(q, "q")
        opts = _options(params.get)

        def work() -> dict[str, Any]:
            with self.live.use() as ex:
                if opts["mode"] != "lexical":  # embed now, batched with concurrent searches
                    self.live.embed_ahead(q)
                hits = ex.search(q, **opts)
                return {"query": q, "hits": _hits(hits), "note": hits.note}
        return _json(await run_in_threadpool(work))

    async def related(self, request: Request) -> Response:
        key = _text(request.path_params["paper_id"], "paper id")
        opts = _options(request.query_params.get)

        def work() -> dict[str, Any]:
            with self.live.use() as ex:
                paper = ex.paper(key)
                hits = ex.related(paper.id, **opts)
                return {"paper": paper.to_dict(), "hits": _hits(hits), "note": hits.note}
        return _json(await run_in_threadpool(work))

    async def paper(self, request: Request) -> Response:
        key = _text(request.path_params["paper_id"], "paper id")

        def work() -> dict[str, Any]:
            with self.live.use() as ex:
                return ex.paper(key).to_dict()
        return _json(await run_in_threadpool(work))

    async def recommend(self, request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY} bytes")
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _error(413, f"request body over {MAX_BODY} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as e:
            raise BadRequest(f"malformed JSON body ({e})") from None
        if not isinstance(body, dict):
            raise BadRequest("body: expected a JSON object like {\"positive\": [ID, ...], \"negative\": [], \"k\": 10}")
        allowed = {"positive", "negative", "k", "why", "mode", "negative_weight", *FILTERS}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise BadRequest(f"body: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
        positive = _ids(body.get("positive"), "positive")
        if not positive:
            raise BadRequest("positive: give at least one paper id")
        negative = _ids(body.get("negative", []), "negative")
        opts = _options(body.get, parse=False)
        weight = body.get("negative_weight", 0.5)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight <= 1:
            raise BadRequest(f"negative_weight: expected a number from 0 to 1, got {weight!r}")

        def work() -> dict[str, Any]:
            with self.live.use() as ex:
                hits = ex.recommend(positive, negative, negative_weight=float(weight), **opts)
                return {"hits": _hits(hits), "note": hits.note}
        return _json(await run_in_threadpool(work))

    def _map_key(self, ex: Explorer) -> tuple[str, str] | None:
        """(generation, saved map state) naming what the page and the map JSON show; None: no saved map."""
        try:
            state = (ex.store.map_dir / "CURRENT").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None  # checked before reading the map: loading paperscope.map costs seconds
        except OSError:
            state = "?"  # let saved_map() report the damage
        return ex.generation.name, state

    def map_response(self) -> Response:
        """The saved map as JSON (cached per generation and map state)."""
        with self.live.use() as ex:
            key = self._map_key(ex)
            with self._cache_lock:
                if self._map is not None and self._map[0] == key:
                    return Response(self._map[1], media_type="application/json")
            tm = ex.saved_map() if key is not None else None
            if tm is None:
                return _error(404, f"{ex.store.path}: no saved map; draw one with: paperscope map --store {ex.store.path}")
            from paperscope.map import LEVELS

            levels = {name: [int(t) for t in tm.levels[lv]] for lv, name in enumerate(LEVELS)}
            labels = {name: {str(t.id): t.label for t in tm.topics if t.level == lv} for lv, name in enumerate(LEVELS)}
            doc = {"generation": tm.generation, "ids": list(tm.ids),
                   "x": [round(float(v), 5) for v in tm.coords[:, 0]],
                   "y": [round(float(v), 5) for v in tm.coords[:, 1]],
                   "levels": levels, "labels": labels, "topics": [t.to_dict() for t in tm.topics]}
            body = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            with self._cache_lock:
                self._map = (key, body)
            return Response(body, media_type="application/json", headers={"cache-control": "no-store"})

    def page_response(self) -> Response:
        """The served page for the saved map (cached per generation and map state), or how to draw one."""
        with self.live.use() as ex:
            key = self._map_key(ex)
            with self._cache_lock:
                if self._page is not None and self._page[0] == key:
                    return HTMLResponse(self._page[1])
            tm = ex.saved_map() if key is not None else None
            if tm is None:
                return HTMLResponse(_no_map_page(ex.store.path))
            body = _page_html(tm, ex).encode("utf-8")
            with self._cache_lock:
                self._page = (key, body)
            return HTMLResponse(body)

    async def map_data(self, request: Request) -> Response:
        return await run_in_threadpool(self.map_response)

    async def page(self, request: Request) -> Response:
        return await run_in_threadpool(self.page_response)


def _page_html(tm: Any, ex: Explorer) -> str:
    """The served page (render.html.page_html); the static page as a fallback where it is missing."""
    import inspect

    from paperscope.map.topicmap import fit_sample
    from paperscope.render import html

    rows = None if len(tm) <= _PAGE_POINTS else fit_sample(tm.ids, _PAGE_POINTS)
    # Related papers come from /api/related when served: nothing precomputed.
    page_html = getattr(html, "page_html", None)
    if page_html is None:
        with tempfile.TemporaryDirectory(prefix="paperscope-page-") as tmp:
            return html.write_html(tm, Path(tmp) / "map.html", {}, rows=rows).read_text(encoding="utf-8")
    extra: dict[str, Any] = {}
    if "papers" in inspect.signature(page_html).parameters:  # dates and sources feed the page's filters
        if rows is None:
            on_map = set(tm.ids)
            extra["papers"] = {p.id: p for p in ex.papers() if p.id in on_map}
        else:  # a sample of a large store: fetch those alone
            extra["papers"] = {}
            for i in rows:
                with contextlib.suppress(UnknownPaperError):  # a map older than a re-index that removed it
                    extra["papers"][tm.ids[i]] = ex.paper(tm.ids[i])
    return page_html(tm, {}, rows=rows, served=True, **extra)


def _no_map_page(store: Path) -> str:
    from html import escape

    cmd = escape(f"paperscope map --store {store}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>paperscope</title></head><body>"
            f"<p>This store has no saved map yet: run <code>{cmd}</code>, then reload this page. "
            "The API works meanwhile: <a href='/api/health'>/api/health</a>.</p></body></html>")


# ---- the app -----------------------------------------------------------------------------------
class _Guard:
    """Security headers on every response; with ``hosts``, only those Host headers are answered."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None):
        self.app = app
        self.hosts = hosts
        self.headers = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.hosts is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name.lower() not in self.hosts:
                await _error(421, f"host {host!r} not served; this server answers 127.0.0.1 and localhost")(
                    scope, receive, self._with_headers(send))
                return
        await self.app(scope, receive, self._with_headers(send))

    def _with_headers(self, send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)
        return wrapped


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"no such endpoint: {request.method} {request.url.path} (see /api/health)",
                405: f"method {request.method} not allowed on {request.url.path}"}
    return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)))


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _error(422, str(exc))


async def _paperscope_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownPaperError):
        return _error(404, str(exc), suggestions=[{"id": pid, "title": title} for pid, title in exc.suggestions])
    return _error(503, str(exc))  # a damaged store, a missing model: one line, saying how to repair


async def _server_error(request: Request, exc: Exception) -> Response:
    # The traceback goes to the server's log (uvicorn logs the re-raised exception), never to the client.
    response = _error(500, f"internal error ({type(exc).__name__}); see the server's log")
    response.headers.update(SECURITY_HEADERS)  # this handler sits outside the header middleware
    return response


def create_app(store: str | Path | Store | LiveExplorer | None = None, *, embedder: Any = None,
               check_interval: float = 0.25, local_only: bool = True) -> Starlette:
    """The ASGI app serving ``store`` (or a given LiveExplorer): the page at ``/`` and the JSON API.

    ``embedder`` answers queries instead of the store's model (tests use a fake one).
    ``local_only`` answers only Host headers naming the loopback (see :data:`LOOPBACK_HOSTS`).
    The app's ``state.live`` is its LiveExplorer; :func:`warm` loads the slow parts ahead of requests.
    """
    live = store if isinstance(store, LiveExplorer) else LiveExplorer(store, embedder=embedder,
                                                                      check_interval=check_interval)
    site = _Site(live)
    routes = [Route("/", site.page, methods=["GET"]),
              Route("/api/health", site.health, methods=["GET"]),
              Route("/api/search", site.search, methods=["GET"]),
              Route("/api/related/{paper_id:path}", site.related, methods=["GET"]),
              Route("/api/paper/{paper_id:path}", site.paper, methods=["GET"]),
              Route("/api/recommend", site.recommend, methods=["POST"]),
              Route("/api/map", site.map_data, methods=["GET"])]
    handlers = {HTTPException: _http_error, BadRequest: _bad_request, ValueError: _bad_request,
                PaperscopeError: _paperscope_error, Exception: _server_error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(_Guard, hosts=LOOPBACK_HOSTS if local_only else None)
    app.state.live = live
    app.state.site = site
    return app


# ---- the command -------------------------------------------------------------------------------
class _Server(uvicorn.Server):
    """uvicorn's server that says "ready" once listening, and stops on Ctrl-C without re-raising it."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]):
        super().__init__(config)
        self.on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.on_ready()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the captured SIGINT after shutdown (a KeyboardInterrupt traceback);
        # a stop asked for with Ctrl-C or SIGTERM is a clean exit here.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        return socket.create_server(address, family=family)
    except OSError as e:
        raise PaperscopeError(f"cannot listen on {host}:{port} ({e.strerror or e}); "
                              "pick another with --port, or stop what uses it") from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) resolves only to the loopback interface."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


def serve(store: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          embedder: Any = None, out: Any = None) -> None:
    """Serve ``store`` until Ctrl-C; prints the URL, then "ready" once it accepts connections."""
    t0 = time.perf_counter()
    out = out or sys.stdout
    local = is_loopback(host)
    live = LiveExplorer(store, embedder=embedder)
    try:
        sock = _bind(host, port)
    except BaseException:
        live.close()
        raise
    with live.use() as ex:
        where = f"{ex.store.path} (generation {ex.generation.name}, {len(ex)} papers)"
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    local_name = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(bound_host, shown)  # "all interfaces": this machine
    url = f"http://{local_name}:{bound_port}/"
    if not local:
        print(f"WARNING: listening on {host} ({shown}:{bound_port}), reachable from other machines; "
              "anyone who can connect can read every paper in the store (no authentication). "
              "Use --host 127.0.0.1 to keep it local.", file=sys.stderr, flush=True)
    print(f"paperscope serve: {where}", file=out, flush=True)
    print(f"serving on {url}  (Ctrl-C to stop)", file=out, flush=True)

    def ready() -> None:
        print(f"ready in {time.perf_counter() - t0:.2f} s", file=out, flush=True)
        # The query model is the slow part (seconds): load it now, after "ready", off the request path.
        threading.Thread(target=warm, args=(app,), name="paperscope-warm", daemon=True).start()
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    app = create_app(live, local_only=local)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                            server_header=False)
    try:
        _Server(config, ready).run(sockets=[sock])
    finally:
        sock.close()
        live.close()
    print("stopped", file=out, flush=True)


def warm(app: Starlette) -> None:
    """Build the page and the map JSON, and load the query model: the slow parts (seconds), which
    :func:`serve` runs in a thread once it is ready, so that the first page and search are quick."""
    site: _Site = app.state.site
    try:
        site.page_response()
        site.map_response()
    except Exception as e:  # noqa: BLE001 - the request for the page will report it
        log.warning("paperscope serve: could not build the page (%s)", e)
    try:
        with site.live.use() as ex:
            ex.embed_query("warm up")
    except Exception as e:  # noqa: BLE001 - searches will report it; lexical mode and related still work
        log.warning("paperscope serve: the query model did not load (%s); dense and hybrid search will fail", e)
