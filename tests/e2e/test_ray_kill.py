"""kill -9 during ``paperscope index --engine ray``: the re-run resumes from the checkpoint.

A real ``paperscope index --engine ray`` runs in a subprocess of its own (its own session and
process group, its own local 2-CPU Ray in a temp dir of its own), re-embedding the bundled corpus
with the torch backend in chunks of 16, at most 4 chunks out at once (``PAPERSCOPE_RAY_WINDOW``).
Once a window's worth of chunks is checkpointed (read through ``Store.staging()``), the whole
process group gets SIGKILL. Then: the previous generation is still live and ``verify`` passes; no
Ray process of that run is left; the re-run resumes every checkpointed vector and embeds only the
rest; the killed run had at most one window of work sent and not checkpointed, which is all a
re-run redoes (read from the engine's DEBUG trace of chunks sent and checkpointed).

The subprocess is ``paperscope.cli.main`` behind three lines that switch on that trace; torch is
pinned (``--backend torch --rebuild``) because it is the slowest backend: the kill must land
mid-embedding whatever the default backend is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rayprocs import TAG_VAR, ray_sandbox, wait_gone

from paperscope.embed import registry
from paperscope.embed.lock import load_lock
from paperscope.store import Store

pytestmark = [pytest.mark.model, pytest.mark.ray]

if os.environ.get("PAPERSCOPE_SKIP_RAY") == "1":
    pytest.skip("PAPERSCOPE_SKIP_RAY=1", allow_module_level=True)

PAPERS = 432  # the bundled corpus
CHUNK = 16
WINDOW = 4  # chunks out at once
TRACED_CLI = (
    "import logging, sys\n"
    "logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format='%(name)s %(message)s')\n"
    "logging.getLogger('paperscope.embed.ray_engine').setLevel(logging.DEBUG)\n"
    "from paperscope.cli import main\n"
    "main()\n"
)
SENT = re.compile(r"ray: sent call \d+ \((\d+) chunks, (\d+) texts\)")


def staged(store: Path, fingerprint: str) -> int:
    """Vectors in the store's build checkpoint (0 before the writer has created it)."""
    if not (store / "staging.sqlite").exists():
        return 0
    staging = Store(store).staging()
    try:
        return len(staging.has(fingerprint))
    finally:
        staging.close()


def index_command(store: Path, *extra: str) -> list[str]:
    return [sys.executable, "-c", TRACED_CLI, "index", "--store", str(store), "--engine", "ray"] + [
        "--backend",
        "torch",
        "--rebuild",
        "--chunk-size",
        str(CHUNK),
        *extra,
    ]


def verify(store: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "paperscope.cli", "verify", "--store", str(store)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)


def test_kill_9_mid_embedding_resumes_and_redoes_at_most_one_window(tmp_path: Path, real_store: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(real_store, store)
    live = Store(store).require_current().name
    fingerprint = registry.with_backend(load_lock(), "torch").fingerprint
    with ray_sandbox() as (tag, temp):
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(
            {TAG_VAR: tag, "RAY_TMPDIR": str(temp), "PAPERSCOPE_RAY_CPUS": "2", "PAPERSCOPE_RAY_WINDOW": str(WINDOW)}
        )
        log = tmp_path / "killed.log"
        with log.open("wb") as err:
            proc = subprocess.Popen(
                index_command(store, "-q"), stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True
            )
        try:
            deadline = time.monotonic() + 600
            while staged(store, fingerprint) < WINDOW * CHUNK:
                assert proc.poll() is None, f"index ended before the kill:\n{log.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no window checkpointed within 600 s"
                time.sleep(0.05)
            os.killpg(proc.pid, signal.SIGKILL)  # the driver, its local Ray and every actor
        finally:
            proc.kill()
            proc.wait()
        # Processes Ray re-parented out of the group would show here: none may outlive the kill.
        assert wait_gone(tag, 30) == [], "Ray processes of the killed run are still alive"

        kept = staged(store, fingerprint)
        sent = sum(int(m.group(2)) for m in SENT.finditer(log.read_text()))
        assert WINDOW * CHUNK <= kept < PAPERS, kept
        # Sent to an actor but not checkpointed when killed: what the re-run has to redo.
        assert 0 <= sent - kept <= WINDOW * CHUNK, (sent, kept)
        # The killed run changed nothing a reader sees.
        assert Store(store).require_current().name == live
        checked = verify(store, env)
        assert checked.returncode == 0, checked.stdout + checked.stderr

        rerun = subprocess.run(
            index_command(store, "--json"),
            capture_output=True,
            text=True,
            env=env,
            timeout=1200,
            start_new_session=True,
        )
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        report = json.loads(rerun.stdout)
        assert wait_gone(tag, 30) == [], "Ray processes left behind after a finished run"
    # Every checkpointed vector reused, only the rest embedded.
    assert (report["resumed"], report["embedded"], report["papers"]) == (kept, PAPERS - kept, PAPERS)
    assert sum(report["nodes"].values()) == PAPERS - kept
    assert report["generation"] != live and Store(store).require_current().name == report["generation"]
    assert staged(store, fingerprint) == 0  # the checkpoint is cleared once the generation is live
    checked = verify(store, env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
