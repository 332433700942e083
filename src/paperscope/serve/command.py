"""The command: bind, print the URL and "ready", run uvicorn until Ctrl-C."""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from paperscope.errors import PaperscopeError
from paperscope.serve.app import create_app, warm
from paperscope.serve.live import LiveExplorer


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
        raise PaperscopeError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another with --port, or stop what uses it"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address) resolves only to the loopback interface."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
        return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)
    except (OSError, ValueError):
        return False


# How long stopping waits for the warm-up thread to finish what it is loading.
WARM_JOIN_SECONDS = 60.0


def serve(
    store: str | Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = False,
    embedder: Any = None,
    out: Any = None,
    preload: bool = True,
) -> None:
    """Serve ``store`` until Ctrl-C; prints the URL, then "ready" once it accepts connections.

    ``preload``: map the pages queries read into the process in a thread (``Explorer.preload``),
    so that no query pays a first touch of a page later (p95 at a million papers)."""
    t0 = time.perf_counter()
    out = out or sys.stdout
    local = is_loopback(host)
    live = LiveExplorer(store, embedder=embedder, preload=preload)
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
        print(
            f"WARNING: listening on {host} ({shown}:{bound_port}), reachable from other machines; "
            "anyone who can connect can read every paper in the store (no authentication). "
            "Use --host 127.0.0.1 to keep it local.",
            file=sys.stderr,
            flush=True,
        )
    print(f"paperscope serve: {where}", file=out, flush=True)
    print(f"serving on {url}  (Ctrl-C to stop)", file=out, flush=True)

    warming: list[threading.Thread] = []

    def ready() -> None:
        print(f"ready in {time.perf_counter() - t0:.2f} s", file=out, flush=True)
        # The query model is the slow part (seconds): load it now, after "ready", off the request path.
        warming.append(threading.Thread(target=warm, args=(app,), name="paperscope-warm", daemon=True))
        warming[-1].start()
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    app = create_app(live, local_only=local)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=5, server_header=False
    )
    try:
        _Server(config, ready).run(sockets=[sock])
    finally:
        sock.close()
        # A Ctrl-C soon after "ready" must not end the interpreter under the warm-up thread: in the
        # middle of an import (the page's scikit-learn, the model) that aborted the process
        # ("can't register atexit after shutdown", then SIGABRT). It takes seconds at most.
        for thread in warming:
            thread.join(timeout=WARM_JOIN_SECONDS)
        live.close()
    print("stopped", file=out, flush=True)
