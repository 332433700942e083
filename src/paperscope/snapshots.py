"""One snapshot mechanism: numbered directories, a pointer file, an atomic swap, pruning.

Store generations (``generations/g000007`` + ``CURRENT``) and saved maps (``map/state-000003``
+ ``map/CURRENT``) are both :class:`Snapshots`: the next one is written in ``.tmp-NAME`` beside
the live one, renamed into place, and the pointer is replaced atomically, so a reader sees the
previous complete snapshot or the next one, never a half-written one.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from paperscope.errors import REPAIR, DamagedError, StoreError
from paperscope.files import fsync_dir, write_atomic

DIGITS = 6
# Reads of a snapshot that commits pruned meanwhile, retried on the new one; each retry needs two
# more commits during one read, so a third failure is not a race but damage.
READ_ATTEMPTS = 3

T = TypeVar("T")


@dataclass(frozen=True)
class Snapshots:
    """Snapshots named ``{prefix}{number:06d}`` in ``directory``, the live one named in ``pointer``.

    ``keep`` snapshots are kept after a commit (readers may still hold the previous one open);
    ``what`` and ``repair`` word the error for a damaged pointer.
    """

    directory: Path
    prefix: str
    pointer: Path
    keep: int = 2
    what: str = "snapshot"
    repair: str = REPAIR

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.prefix)}\d{{{DIGITS}}}$")

    def names(self) -> list[str]:
        """Existing snapshot names, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if self.pattern.match(p.name) and p.is_dir())

    def begin(self) -> tuple[str, Path]:
        """The next snapshot's name and a fresh temporary directory for it (stale ones removed)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.glob(f".tmp-{self.prefix}*"):
            shutil.rmtree(stale, ignore_errors=True)
        numbers = [int(n[len(self.prefix) :]) for n in self.names()]
        name = f"{self.prefix}{max(numbers, default=0) + 1:0{DIGITS}d}"
        tmp = self.directory / f".tmp-{name}"
        tmp.mkdir()
        return name, tmp

    def commit(self, name: str, tmp: Path, warnings: list[str] | None = None) -> Path:
        """Rename ``tmp`` into place, point the pointer at it, prune all but the last ``keep``.

        Once the pointer names the new snapshot the commit has happened: with ``warnings`` given,
        what fails after that (syncing the directory, pruning) is appended there, never raised.
        """
        final = self.directory / name
        os.replace(tmp, final)
        fsync_dir(self.directory)
        write_atomic(self.pointer, name + "\n", after_replace=warnings)
        try:
            for old in self.names()[: -self.keep]:
                if old != name:
                    shutil.rmtree(self.directory / old, ignore_errors=True)
        except OSError as e:
            if warnings is None:
                raise
            warnings.append(f"{self.directory}: could not remove old snapshots ({e.strerror or e})")
        return final

    def pointed(self) -> str | None:
        """The pointer's raw text (None when unreadable): compared before and after a read to see
        whether a commit happened meanwhile."""
        try:
            return self.pointer.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def read(self, read: Callable[[], T], undo: Callable[[], None] | None = None) -> T:
        """``read()`` of the live snapshot, read again from the new one when it failed because
        commits pruned it meanwhile (the pointer moved: not damage). ``undo`` releases what a
        failed read opened. A failure with the pointer unchanged is raised."""
        for attempt in range(READ_ATTEMPTS):
            before = self.pointed()
            try:
                return read()
            except (StoreError, OSError):
                if undo is not None:
                    undo()
                if attempt + 1 == READ_ATTEMPTS or self.pointed() == before:
                    raise
        raise AssertionError("unreachable")

    def current(self) -> Path | None:
        """The live snapshot's directory; None when there is no pointer; DamagedError if it is damaged."""
        if not self.pointer.is_file():
            return None
        try:
            name = self.pointer.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise DamagedError(self.pointer, f"damaged ({e})", self.repair) from None
        if not self.pattern.match(name) or not (self.directory / name).is_dir():
            raise DamagedError(self.pointer, f"damaged (names {name[:40]!r}, which is not {self.what})", self.repair)
        return self.directory / name
