"""``paperscope serve``: the map page and a JSON API over one store, on Starlette + uvicorn.

Read-only: the server opens Explorers and the saved map, and never writes the store. It follows
re-indexes (see :class:`LiveExplorer`). Every answer is JSON (or the page); an error is one
line of JSON, never a traceback. Needs the ``serve`` extra: ``pip install "paperscope[serve]"``.

Parts: :mod:`.live` (the Explorer that follows the store, the shared query model),
:mod:`.app` (the ASGI app: endpoints, parsing, errors, headers), :mod:`.command` (the command).
"""

from __future__ import annotations

from importlib.util import find_spec

from paperscope.errors import PaperscopeError

if find_spec("starlette") is None or find_spec("uvicorn") is None:  # the CLI turns this into its one line
    raise PaperscopeError('paperscope serve needs the serve extra: pip install "paperscope[serve]"')

from paperscope.serve.app import CSP, SECURITY_HEADERS, BadRequest, create_app, warm
from paperscope.serve.command import is_loopback, serve
from paperscope.serve.live import LiveExplorer, QueryBatcher

__all__ = [
    "CSP",
    "SECURITY_HEADERS",
    "BadRequest",
    "LiveExplorer",
    "QueryBatcher",
    "create_app",
    "is_loopback",
    "serve",
    "warm",
]
