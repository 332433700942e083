"""A real uvicorn server on a free 127.0.0.1 port, in a thread of the test process (shared by the serve tests)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def running(store: Path, embedder: Any = None, *, check_interval: float = 0.05) -> Iterator[str]:
    """Serve ``store`` with :func:`paperscope.serve.create_app`; yields the base URL (no trailing slash)."""
    import uvicorn

    from paperscope.serve import create_app

    app = create_app(store, embedder=embedder, check_interval=check_interval)
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.state.live.close()
