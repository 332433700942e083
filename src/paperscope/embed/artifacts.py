"""Derived model files (ONNX exports, static distillations) built locally and cached with sha256.

A derived model is built once from the pinned, verified weights and written to
``$PAPERSCOPE_CACHE`` (else ``$XDG_CACHE_HOME/paperscope``, else ``~/.cache/paperscope``) in a
directory named after the backend and the lock's fingerprint. ``artifact.json``, written last,
records the sha256 of every file; a cached artefact whose files no longer match is refused
(never silently rebuilt or used), so a tampered or half-written model cannot produce vectors.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paperscope.embed.lock import ModelLock
from paperscope.errors import ModelLockError
from paperscope.files import sha256_file

CACHE_ENV = "PAPERSCOPE_CACHE"
MANIFEST = "artifact.json"


def cache_root() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "paperscope"


def weights_key(lock: ModelLock) -> str:
    """16 hex digits naming the pinned files (not the backend or dimension derived from them)."""
    import hashlib

    blob = json.dumps({"files": lock.files, "max_seq_length": lock.max_seq_length}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def artifact_dir(kind: str, lock: ModelLock) -> Path:
    """Where the ``kind`` artefact of the weights pinned by ``lock`` lives."""
    return cache_root() / f"{kind}-{weights_key(lock)}"


def verify(directory: Path) -> dict[str, Any]:
    """The artefact's manifest, after checking every file's sha256; ModelLockError otherwise."""
    try:
        meta = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        files = meta["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLockError(f"{directory}: damaged model cache ({e}); delete that directory to rebuild it") from None
    for rel, expected in sorted(files.items()):
        f = directory / rel
        actual = sha256_file(f) if f.is_file() else "missing"
        if actual != expected:
            raise ModelLockError(
                f"{f}: sha256 {actual[:12]}… does not match its cache record ({expected[:12]}…); "
                f"delete {directory} to rebuild it from the pinned weights"
            )
    return meta


def ensure(kind: str, lock: ModelLock, make: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """The verified cached artefact, built with ``make(tmpdir) -> info`` when absent.

    ``make`` writes its files into an empty temporary directory; the directory is hashed,
    described in ``artifact.json`` and renamed into place, so readers never see half a model.
    """
    target = artifact_dir(kind, lock)
    if (target / MANIFEST).is_file():
        return target, verify(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=target.parent))
    except OSError as e:  # the cache, not the store: say which, and the two ways out
        where = os.fsdecode(e.filename) if e.filename is not None else str(target.parent)
        raise ModelLockError(
            f"{where}: cannot write the model cache ({e.strerror or e}); set {CACHE_ENV} to a writable "
            "directory (or index with --backend torch, which needs no cache) and re-run"
        ) from None
    try:
        info = make(tmp)
        files = {str(f.relative_to(tmp)): sha256_file(f) for f in sorted(tmp.rglob("*")) if f.is_file()}
        meta = {"kind": kind, "weights": weights_key(lock), "files": files, **info}
        (tmp / MANIFEST).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # lost a race to another process: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target, verify(target)


def digest(meta: dict[str, Any]) -> str:
    """One sha256 naming an artefact's content (the hash of its sorted file hashes)."""
    import hashlib

    blob = json.dumps(meta["files"], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()
