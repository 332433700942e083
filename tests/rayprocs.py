"""Ray processes a test started, found and ended by id: a tag in their environment, a temp dir of their own.

Every process of a Ray instance (GCS, raylet, agents, workers) inherits the environment of the
process that started it, so a unique variable set before ``ray.init`` (or in a ``paperscope
index`` subprocess's environment) marks exactly the processes this test started; their command
lines are renamed (``ray::IDLE``) and cannot be trusted for that.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TAG_VAR = "PAPERSCOPE_TEST_RAY_TAG"


def tagged(tag: str) -> list[int]:
    """Ids of live processes whose environment carries ``TAG_VAR=tag`` (zombies excluded)."""
    marker = f"{TAG_VAR}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and marker in environ.split(b"\0"):
            found.append(int(entry))
    return found


def wait_gone(tag: str, seconds: float) -> list[int]:
    """Wait up to ``seconds`` for the tagged processes to exit; the ids still alive then."""
    deadline = time.monotonic() + seconds
    while (alive := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.25)
    return alive


def kill_tagged(tag: str) -> list[int]:
    """SIGKILL, one id at a time, every process carrying the tag; the ids it found."""
    alive = tagged(tag)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return alive


@contextmanager
def ray_sandbox() -> Iterator[tuple[str, Path]]:
    """(tag, temp dir) for one test's Ray: a short dir (Unix socket paths are limited to 107 bytes).

    On exit any tagged process still alive is killed and the dir removed; callers assert on
    :func:`wait_gone` themselves before that, so a leak fails the test instead of being hidden.
    """
    tag = uuid.uuid4().hex[:12]
    temp = Path(tempfile.mkdtemp(prefix="psray-", dir="/tmp"))
    try:
        yield tag, temp
    finally:
        kill_tagged(tag)
        wait_gone(tag, 10)
        shutil.rmtree(temp, ignore_errors=True)
