"""File helpers at the bottom of the layers: content digests, durable and atomic writes."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import zlib
from pathlib import Path
from typing import IO, Any

import xxhash

try:  # ISA-L's inflate (python-isal): 3x zlib's speed on the 1M corpus (benchmarks/RESULTS.md, round 9)
    from isal import igzip as _gzip
    from isal.isal_zlib import error as _isal_error

    DAMAGED_GZIP: tuple[type[BaseException], ...] = (EOFError, zlib.error, _isal_error)
except ImportError:  # the same bytes from the standard library, slower
    _gzip = gzip  # type: ignore[no-redef]
    DAMAGED_GZIP = (EOFError, zlib.error)


# The digest a store records for each file it writes: XXH3-128 (python-xxhash), 5.9 GB/s here against
# sha256's 1.5 GB/s from the page cache (benchmarks/digest_speed.py; RESULTS.md, round 14). A check against damage, not a signature: whoever
# can rewrite a store file can rewrite the manifest beside it, so a cryptographic hash buys nothing here,
# while every build hashes the generation it writes and the one it reuses (17.6 GB at 1M papers).
STORE_DIGEST = "xxh3_128"
# Model weights, ONNX exports and input files keep sha256: they are named across machines (models.lock).
DIGESTS: dict[str, Any] = {"sha256": hashlib.sha256, "xxh3_128": xxhash.xxh3_128}


def file_digest(path: Path, algorithm: str = STORE_DIGEST) -> str:
    """Hex digest (one of :data:`DIGESTS`) of a file's bytes, read in 4 MiB blocks into one buffer."""
    h = DIGESTS[algorithm]()
    buf = bytearray(1 << 22)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
    return str(h.hexdigest())


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return file_digest(path, "sha256")


def recorded_digest(meta: dict[str, Any], prefix: str = "") -> tuple[str, str] | None:
    """(algorithm, hex digest) a manifest entry records under ``prefix + algorithm``: the store's
    digest, else sha256 (stores written before round 14); None when it records neither as text."""
    for algorithm in (STORE_DIGEST, "sha256"):
        value = meta.get(prefix + algorithm)
        if isinstance(value, str):
            return algorithm, value
    return None


def is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def open_input(path: Path, digest: Any = None) -> IO[bytes]:
    """An input file's bytes, decompressed when its name ends in ``.gz``.

    With ``digest`` (a ``hashlib`` object), every byte read from the file on disk (compressed, as
    stored) updates it: reading to the end (gzip reads on to the file's end, for further members)
    gives the file's digest with no second pass. A truncated or damaged ``.gz`` raises one of
    :data:`DAMAGED_GZIP`.
    """
    raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - returned open, closed by the caller
    if digest is not None:
        raw = io.BufferedReader(_Digesting(raw, digest), buffer_size=1 << 20)
    if not is_gzip(path):
        return raw
    try:
        gz = _gzip.GzipFile(fileobj=raw, mode="rb")
    except BaseException:
        raw.close()
        raise
    gz.myfileobj = raw  # closed with it (a GzipFile leaves a file object it was given open)
    return gz  # type: ignore[return-value]


class _Digesting(io.RawIOBase):
    """A raw file whose bytes, as they are read, update a digest."""

    def __init__(self, fh: IO[bytes], digest: Any) -> None:
        self._fh, self._digest = fh, digest

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._fh.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._digest.update(memoryview(b)[:n])
        return n or 0

    def close(self) -> None:
        self._fh.close()
        super().close()


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable (the directory's own metadata)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a written file's bytes to disk."""
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def write_atomic(path: Path, data: str, after_replace: list[str] | None = None) -> None:
    """Write a small text file so that readers see the old content or the new, never a part.

    With ``after_replace`` a failure after the rename (syncing the directory) is appended there
    as a warning instead of raised: the new content is in place by then.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        fsync_dir(path.parent)
    except OSError as e:
        if after_replace is None:
            raise
        after_replace.append(f"{path.parent}: could not sync the directory ({e.strerror or e})")
