"""The ASGI app: endpoints over a LiveExplorer, request parsing, one-line JSON errors, security headers."""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paperscope import kernels
from paperscope.errors import InvalidArgument, PaperscopeError, UnknownPaperError
from paperscope.explorer import Explorer
from paperscope.rank import COMPILED_ROWS, check_mode
from paperscope.serve.live import LiveExplorer
from paperscope.store import Store

log = logging.getLogger("paperscope.serve")

# The same policy the served page sets in its <meta> tag (API.md): only its own origin.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
MAX_K = 1000
MAX_QUERY = 1000
MAX_BODY = 1_000_000
MAX_PAPERS = 1000  # ids in one recommend body
# Host headers a loopback-bound server answers: a page on another site that points its own DNS
# name at 127.0.0.1 (DNS rebinding) sends its own name and is refused.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})
_PAGE_POINTS = 50_000  # as many points as the static page holds


class BadRequest(ValueError):
    """A bad request parameter or body: answered 422 with its one-line message."""


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

    out: dict[str, Any] = {
        "k": 10 if given("k") is None else _int(given("k"), "k", 1, MAX_K, parse=parse),
        "why": False if given("why") is None else _bool(given("why"), "why", parse=parse),
        "mode": check_mode(None if given("mode") is None else _text(given("mode"), "mode")),
    }
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
    return Response(body, status_code=status, media_type="application/json", headers={"cache-control": "no-store"})


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
                return {
                    "status": "ok",
                    "store": str(ex.store.path),
                    "generation": ex.generation.name,
                    "papers": len(ex),
                }

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
            raise BadRequest('body: expected a JSON object like {"positive": [ID, ...], "negative": [], "k": 10}')
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
                return _error(
                    404, f"{ex.store.path}: no saved map; draw one with: paperscope map --store {ex.store.path}"
                )
            from paperscope.map import LEVELS

            levels = {name: [int(t) for t in tm.levels[lv]] for lv, name in enumerate(LEVELS)}
            labels = {name: {str(t.id): t.label for t in tm.topics if t.level == lv} for lv, name in enumerate(LEVELS)}
            doc = {
                "generation": tm.generation,
                "ids": list(tm.ids),
                "x": [round(float(v), 5) for v in tm.coords[:, 0]],
                "y": [round(float(v), 5) for v in tm.coords[:, 1]],
                "levels": levels,
                "labels": labels,
                "topics": [t.to_dict() for t in tm.topics],
            }
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
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>paperscope</title></head><body>"
        f"<p>This store has no saved map yet: run <code>{cmd}</code>, then reload this page. "
        "The API works meanwhile: <a href='/api/health'>/api/health</a>.</p></body></html>"
    )


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
                    scope, receive, self._with_headers(send)
                )
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
    messages = {
        404: f"no such endpoint: {request.method} {request.url.path} (see /api/health)",
        405: f"method {request.method} not allowed on {request.url.path}",
    }
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


def create_app(
    store: str | Path | Store | LiveExplorer | None = None,
    *,
    embedder: Any = None,
    check_interval: float = 0.25,
    local_only: bool = True,
) -> Starlette:
    """The ASGI app serving ``store`` (or a given LiveExplorer): the page at ``/`` and the JSON API.

    ``embedder`` answers queries instead of the store's model (tests use a fake one).
    ``local_only`` answers only Host headers naming the loopback (see :data:`LOOPBACK_HOSTS`).
    The app's ``state.live`` is its LiveExplorer; :func:`warm` loads the slow parts ahead of requests.
    """
    live = (
        store
        if isinstance(store, LiveExplorer)
        else LiveExplorer(store, embedder=embedder, check_interval=check_interval)
    )
    site = _Site(live)
    routes = [
        Route("/", site.page, methods=["GET"]),
        Route("/api/health", site.health, methods=["GET"]),
        Route("/api/search", site.search, methods=["GET"]),
        Route("/api/related/{paper_id:path}", site.related, methods=["GET"]),
        Route("/api/paper/{paper_id:path}", site.paper, methods=["GET"]),
        Route("/api/recommend", site.recommend, methods=["POST"]),
        Route("/api/map", site.map_data, methods=["GET"]),
    ]
    handlers = {
        HTTPException: _http_error,
        BadRequest: _bad_request,
        InvalidArgument: _bad_request,  # a PaperscopeError too, but the user's value, not the store: 422
        ValueError: _bad_request,
        PaperscopeError: _paperscope_error,
        Exception: _server_error,
    }
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.add_middleware(_Guard, hosts=LOOPBACK_HOSTS if local_only else None)
    app.state.live = live
    app.state.site = site
    return app


def warm(app: Starlette) -> None:
    """Build the page and the map JSON, load the query model and (for a large store) the compiled
    query loops: the slow parts (seconds), which
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
    with site.live.use() as ex:
        large = len(ex) >= COMPILED_ROWS
    if large:
        kernels.load()  # the compiled query loops (half a second of CPU): now, not beside the first requests
