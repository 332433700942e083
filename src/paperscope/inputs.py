"""Which input lines changed since the live generation, so a re-run parses only those.

A build records, in its papers.sqlite (table ``input_lines``), one 16-byte hash per entry (each
non-blank line) of its JSON Lines inputs, in reading order, with the id of the paper the entry
gave. The next run hashes its inputs' lines (reading bytes, far cheaper than parsing them) and
parses only the entries whose hash is new, written to a scratch file of the same name (so the
papers' ``sources`` are the same). Skipping an entry is exact only when merging its reading
again would change nothing, which holds when (:func:`plan`):

* every input is JSON Lines and ``--prune`` is off (the files may be others than last time: a
  new month's snapshot under a new name is compared line by line with the record as well);
* the unchanged entries come in the recorded order (a reordering changes which reading is last);
* an id of a changed entry, or of a recorded entry that is gone, has all its readings parsed again
  (unchanged ones too, in order): the last reading of that id may change, so every reading of it
  is merged again, as a full parse merges it.

A skipped entry's paper would, parsed, only gain the name of the file it is in now among its
``sources``: where that name differs from the name of the file the entry was recorded in (the
record keeps each file's name and entry count, table ``input_files``), the plan lists the paper
in :attr:`Plan.named` and the build adds the name to its row, as a full parse would.

Otherwise the run parses everything, as before; so does any doubt (a line over the cap, bytes
that are not UTF-8, a parse error in the changed lines, which the full parse then names with
its real file and line).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from paperscope.corpus import ReadReport, read_papers
from paperscope.corpus.lines import MAX_LINE_BYTES
from paperscope.errors import InputError
from paperscope.files import DAMAGED_GZIP, is_gzip, open_input
from paperscope.paper import Paper

LINES_DDL = "CREATE TABLE input_lines (entry INTEGER PRIMARY KEY, hash BLOB NOT NULL, id TEXT)"
# Each input file of the record: its name (the bytes of ``Path.name``) and the entries up to its end.
FILES_DDL = "CREATE TABLE input_files (n INTEGER PRIMARY KEY, name BLOB NOT NULL, ends INTEGER NOT NULL)"
# The record's line hash (one row); a record without it was written with LEGACY_LINE_HASH.
HASH_DDL = "CREATE TABLE input_hash (algorithm TEXT NOT NULL)"
RECORD_TABLES = ("input_lines", "input_files", "input_hash")
LINE_HASH = "xxh3_128"
LEGACY_LINE_HASH = "blake2b"  # 16 bytes, rounds 1-13
# Above this fraction of changed entries the changed papers are not worth holding: parse everything.
MAX_CHANGED_FRACTION = 0.2
_BOM = b"\xef\xbb\xbf"
# Decompressed bytes read at a time by the scan.
_BLOCK = 1 << 24
# Bytes of likely-changed lines the scan keeps, so the plan need not read (and decompress) the inputs again.
KEEP_BYTES = 256 << 20


def line_hash(raw: bytes) -> bytes:
    """16 bytes naming a line (:data:`LINE_HASH`): XXH3-128, 0.64 s a million 2 KB lines here
    against blake2b's 2.94 s (``benchmarks/digest_speed.py --lines``)."""
    return xxhash.xxh3_128_digest(raw)


def legacy_line_hash(raw: bytes) -> bytes:
    """The line hash of records written before round 14 (:data:`LEGACY_LINE_HASH`)."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def line_based(path: Path) -> bool:
    """Whether the reader reads ``path`` as JSON Lines (one entry per non-blank line)."""
    return not path.name.lower().removesuffix(".gz").endswith((".txt", ".csv"))


def _entries(path: Path, digest: Any = None) -> Iterator[tuple[bytes, bytes]]:
    """(raw line, hash) of each entry of one file; raises _NotLineBased where the reader would differ.

    The lines are those :func:`paperscope.corpus.lines.bounded_lines` gives (a line over
    ``MAX_LINE_BYTES`` is one the plan cannot follow), cut from large decompressed blocks. With
    ``digest``, the file's bytes as stored update it (:func:`paperscope.files.open_input`).

    A line means the same wherever it sits, so that the plan can skip it or parse it in a scratch
    file: the reader drops a UTF-8 BOM from a file's first line (so it is hashed and kept without
    it) and refuses one anywhere else, and it refuses an empty file; either of those is left to
    the full parse, which names it.
    """
    lineno = 0
    for raw in _lines(path, digest):
        lineno += 1
        if raw.startswith(_BOM):
            if lineno > 1:
                raise _NotLineBased
            raw = raw.removeprefix(_BOM)
        try:
            if not raw.decode("utf-8").strip():
                continue
        except UnicodeDecodeError:
            raise _NotLineBased from None
        yield raw, line_hash(raw)
    if lineno == 0:
        raise _NotLineBased  # an empty file: the reader refuses it


def _lines(path: Path, digest: Any = None) -> Iterator[bytes]:
    """Every line of ``path`` with its newline (the last one may have none); _NotLineBased for an over-long one."""
    rest = b""
    for block in _blocks(path, digest):
        lines = block.split(b"\n")
        lines[0] = rest + lines[0]
        rest = lines.pop()
        if len(rest) > MAX_LINE_BYTES:
            raise _NotLineBased
        for line in lines:
            if len(line) > MAX_LINE_BYTES:
                raise _NotLineBased
            yield line + b"\n"
    if rest:
        yield rest


def _blocks(path: Path, digest: Any = None) -> Iterator[bytes]:
    """The decompressed bytes of ``path`` in blocks of ``_BLOCK``, read ahead by a thread.

    The inflater releases the GIL, so a gzipped input is decompressed on one core while its lines
    are hashed on another (at a million papers decompressing alone took 11-14 s with zlib, 4 s
    with ISA-L's).
    """
    ahead: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def read() -> None:
        try:
            with open_input(path, digest) as fh:
                while not stop.is_set():
                    block = fh.read(_BLOCK)
                    _put(block)
                    if not block:
                        return
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            _put(e)

    def _put(item: bytes | BaseException) -> None:
        while not stop.is_set():
            try:
                ahead.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    reader = threading.Thread(target=read, name="paperscope-scan", daemon=True)
    reader.start()
    try:
        while True:
            item = ahead.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        reader.join()


class _NotLineBased(Exception):
    """An input the line plan cannot follow exactly: the run parses everything."""


@dataclass
class Scan:
    """The entries of this run's inputs: their hashes in reading order, and which file each is in."""

    hashes: list[bytes] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # entries up to the end of each file
    kept: dict[bytes, bytes] | None = None  # raw line of each kept hash (None: over KEEP_BYTES)
    sha256: list[str] = field(default_factory=list)  # of each file's bytes as stored, read on the way
    # The previous record with its hashes in LINE_HASH, when it was written with the legacy hash: an
    # entry whose line is read again gets that line's hash, one whose line is gone keeps its old bytes.
    previous: list[tuple[bytes, str | None]] | None = None


def scan(
    files: list[Path], previous: list[tuple[bytes, str | None]] | None = None, previous_hash: str = LINE_HASH
) -> Scan | None:
    """Hash every entry of ``files``; None when one of them is not JSON Lines the plan can follow.

    With the ``previous`` record, the raw lines :func:`plan` will first parse (new hashes, and
    readings of ids read more than once) are kept, up to ``KEEP_BYTES``: the inputs are then
    read once, not twice. A record hashed with :data:`LEGACY_LINE_HASH` (``previous_hash``) is
    compared by that hash and translated (:attr:`Scan.previous`): the run after an upgrade still
    parses only the changed entries.
    """
    if not files or not all(line_based(f) for f in files):
        return None
    out = Scan(kept={} if previous is not None else None)
    keep = _first_parsed(previous) if previous is not None else None
    legacy: dict[bytes, bytes] | None = {} if previous is not None and previous_hash != LINE_HASH else None
    size = 0
    try:
        for f in files:
            digest = hashlib.sha256()
            for raw, h in _entries(f, digest):
                out.hashes.append(h)
                then = h
                if legacy is not None:
                    then = legacy_line_hash(raw)
                    legacy[then] = h
                if out.kept is not None and keep is not None and keep(then):
                    out.kept[h] = raw
                    size += len(raw)
                    if size > KEEP_BYTES:
                        out.kept = None
            out.ends.append(len(out.hashes))
            out.sha256.append(digest.hexdigest())
    except (_NotLineBased, OSError, *DAMAGED_GZIP):
        return None
    if legacy is not None and previous is not None:
        out.previous = [(legacy.get(h, h), i) for h, i in previous]
    return out


def _first_parsed(previous: list[tuple[bytes, str | None]]) -> Callable[[bytes], bool]:
    """Whether :func:`plan` parses an entry with this hash in its first pass."""
    before = dict(previous)
    readings = Counter(i for _, i in previous if i is not None)
    multi = {i for i, c in readings.items() if c > 1}
    return lambda h: h not in before or before[h] in multi


@dataclass
class Plan:
    """What a re-run reads: the changed entries' papers, and the ids of the unchanged entries."""

    changed: list[tuple[int, Paper]]  # (entry number, paper), in reading order
    unchanged_ids: set[str]
    unchanged_entries: int
    report: ReadReport
    ids: list[str | None]  # every entry's paper id: recorded for unchanged ones, read for changed ones
    # Per file name (``Path.name`` of an input): the skipped papers whose row may lack it among its
    # sources, because their entry was recorded in a file of another name (or the record has no names).
    named: dict[str, list[str]] = field(default_factory=dict)


def recorded(con: sqlite3.Connection) -> list[tuple[bytes, str | None]] | None:
    """The previous generation's entries (attached as ``old``), or None if it recorded none."""
    has = con.execute("SELECT 1 FROM old.sqlite_master WHERE type='table' AND name='input_lines'").fetchone()
    if has is None:
        return None
    return [(bytes(h), i) for h, i in con.execute("SELECT hash, id FROM old.input_lines ORDER BY entry")]


def recorded_line_hash(con: sqlite3.Connection) -> str:
    """The line hash of the previous generation's record (attached as ``old``)."""
    has = con.execute("SELECT 1 FROM old.sqlite_master WHERE type='table' AND name='input_hash'").fetchone()
    row = con.execute("SELECT algorithm FROM old.input_hash").fetchone() if has is not None else None
    return str(row[0]) if row is not None else LEGACY_LINE_HASH


def recorded_files(con: sqlite3.Connection) -> list[tuple[bytes, int]] | None:
    """The previous generation's input files (attached as ``old``): (name, entries up to its end);
    None for a record written before names were recorded."""
    has = con.execute("SELECT 1 FROM old.sqlite_master WHERE type='table' AND name='input_files'").fetchone()
    if has is None:
        return None
    return [(bytes(name), end) for name, end in con.execute("SELECT name, ends FROM old.input_files ORDER BY n")]


def plan(
    files: list[Path],
    current: Scan,
    previous: list[tuple[bytes, str | None]],
    scratch: Path,
    previous_files: list[tuple[bytes, int]] | None = None,
    names_unchanged: bool = False,
) -> Plan | None:
    """The changed entries parsed, if skipping the others gives exactly what a full parse gives; else None.

    ``previous_files`` is the record's files (:func:`recorded_files`); without it every skipped
    paper is listed in :attr:`Plan.named` under its file's name, unless ``names_unchanged`` (a
    record from before names were kept, read for the very files it recorded).

    An id read by a changed entry or by a recorded entry that is gone ("dirty") has every one of its
    readings parsed again, unchanged ones included, in reading order: merged on the stored row as a
    full parse merges them, they give the same row (an edited v2 of a paper read twice, for example).
    """
    before = dict(previous)
    now = set(current.hashes)
    changed_at = [k for k, h in enumerate(current.hashes) if h not in before]
    if len(changed_at) > MAX_CHANGED_FRACTION * max(1, len(current.hashes)):
        return None
    kept = [h for h in current.hashes if h in before]
    if kept != [h for h, _ in previous if h in now]:
        return None  # unchanged entries reordered (or repeated differently)
    gone_ids = {i for h, i in previous if h not in now} - {None}
    # Every reading of an id read more than once is parsed with the changed entries up front (1-2%
    # of an arXiv-style corpus): an edit to such an id then needs no second pass over the inputs.
    # Parsing all readings of an id gives what a full parse gives, whether or not it changed.
    readings = Counter(i for _, i in previous if i is not None)
    multi = {i for i, c in readings.items() if c > 1}
    first_at = sorted({*changed_at, *(k for k, h in enumerate(current.hashes) if before.get(h) in multi)})
    parsed = _parse(files, current, first_at, scratch / "first")
    if parsed is None:
        return None
    dirty = {p.id for _, p in parsed[0]} | gone_ids
    at = sorted({*first_at, *(k for k, h in enumerate(current.hashes) if h in before and before[h] in dirty)})
    if len(at) > len(first_at):  # an id read once before is read again now (a new version appended)
        parsed = _parse(files, current, at, scratch / "dirty")
        if parsed is None:
            return None
    changed, report = parsed
    skipped = set(at)
    unchanged_ids = {before[h] for k, h in enumerate(current.hashes) if k not in skipped} - {None}
    if {p.id for _, p in changed} & unchanged_ids:
        return None  # an id read again elsewhere that the record does not know of: parse everything
    ids = [None if k in skipped else before.get(h) for k, h in enumerate(current.hashes)]
    for k, p in changed:
        ids[k] = p.id  # an entry that gave no paper (a skipped row) stays None
    named = {} if names_unchanged else _named(files, current, previous, skipped, previous_files)
    return Plan(changed, unchanged_ids, len(current.hashes) - len(at), report, ids, named)


def _named(
    files: list[Path],
    current: Scan,
    previous: list[tuple[bytes, str | None]],
    skipped: set[int],
    previous_files: list[tuple[bytes, int]] | None,
) -> dict[str, list[str]]:
    """The skipped papers per name of the file they are in now, where their entry was recorded in a
    file of another name (every skipped paper, without the record's names).

    The unchanged entries come in the recorded order (:func:`plan` checks it), so the k-th of them
    now is the k-th of the recorded entries that are still there.
    """
    if previous_files is not None and {n for n, _ in previous_files} | {os.fsencode(f.name) for f in files} == {
        os.fsencode(files[0].name)
    }:
        return {}  # one name then and now (the same file edited in place): no paper can gain one
    before = dict(previous)
    now = set(current.hashes)
    here = np.array([k for k, h in enumerate(current.hashes) if h in before], dtype=np.int64)
    file_now = np.searchsorted(np.asarray(current.ends, dtype=np.int64), here, side="right")
    if previous_files is None:
        moved = np.ones(len(here), dtype=bool)
    else:
        there = np.array([j for j, (h, _) in enumerate(previous) if h in now], dtype=np.int64)
        ends = np.array([e for _, e in previous_files], dtype=np.int64)
        file_then = np.minimum(np.searchsorted(ends, there, side="right"), max(0, len(ends) - 1))
        names_then = np.array([n for n, _ in previous_files] or [b""], dtype=object)
        names_now = np.array([os.fsencode(f.name) for f in files], dtype=object)
        moved = names_now[file_now] != names_then[file_then]
    named: dict[str, list[str]] = {}
    for k, n in zip(here[moved].tolist(), file_now[moved].tolist(), strict=True):
        pid = before[current.hashes[k]]
        if k not in skipped and pid is not None:
            named.setdefault(files[n].name, []).append(pid)
    return named


def _parse(
    files: list[Path], current: Scan, at: list[int], scratch: Path
) -> tuple[list[tuple[int, Paper]], ReadReport] | None:
    """Parse the entries at positions ``at`` (sorted), each file's in a scratch file of the same name
    (the papers' sources are names); None where the full parse must decide (it names a bad line)."""
    if not at:
        return [], ReadReport()  # the same entries in other files (a reader refuses empty files)
    wanted = {current.hashes[k] for k in at}  # equal lines are all wanted or all not: see plan()
    kept = current.kept if current.kept is not None and wanted <= current.kept.keys() else None
    scratch_files = []
    try:
        for n, f in enumerate(files):
            start = current.ends[n - 1] if n else 0
            if not wanted.intersection(current.hashes[start : current.ends[n]]):
                continue  # no entry of this file is parsed (an empty scratch file is one the reader refuses)
            target = scratch / str(n) / f.name
            target.parent.mkdir(parents=True)
            opener = gzip.open if is_gzip(f) else open
            with opener(target, "wb", **({"compresslevel": 1} if opener is gzip.open else {})) as out:
                if kept is not None:  # the scan kept these lines: no second read of the input
                    lines = (kept[h] for h in current.hashes[start : current.ends[n]] if h in wanted)
                else:
                    lines = (raw for raw, h in _entries(f) if h in wanted)
                for raw in lines:
                    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
            scratch_files.append(target)
    except (_NotLineBased, OSError, *DAMAGED_GZIP):
        return None
    report = ReadReport()
    changed: list[tuple[int, Paper]] = []
    try:
        for paper in read_papers(scratch_files, report):
            changed.append((at[report.entries - 1], paper))
    except InputError:
        return None
    if report.entries != len(at):
        return None
    return changed, report


def write_record(
    con: sqlite3.Connection,
    hashes: list[bytes],
    ids: list[str | None],
    previous: list[tuple[bytes, str | None]] | None = None,
    files: list[tuple[Path, int]] | None = None,
) -> None:
    """Record this run's entries (hash and paper id, in reading order) in the new papers table,
    and its ``files`` (each input with the entries up to its end).

    ``previous`` is the record the table already holds (a copy of the previous generation's, in
    :data:`LINE_HASH`): only the entries that differ from it are written.
    """
    con.execute("DROP TABLE IF EXISTS main.input_hash")
    con.execute(HASH_DDL)
    con.execute("INSERT INTO input_hash VALUES (?)", (LINE_HASH,))
    con.execute("DROP TABLE IF EXISTS main.input_files")
    con.execute(FILES_DDL)
    con.executemany(
        "INSERT INTO input_files VALUES (?, ?, ?)",
        ((n, os.fsencode(f.name), end) for n, (f, end) in enumerate(files or [])),
    )
    has = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='input_lines'").fetchone()
    if has is not None and previous is not None:
        now = list(zip(hashes, ids, strict=True))
        differ = [(k, h, i) for k, (h, i) in enumerate(now) if k >= len(previous) or previous[k] != (h, i)]
        con.execute("DELETE FROM input_lines WHERE entry >= ?", (len(now),))
        con.executemany("INSERT OR REPLACE INTO input_lines VALUES (?, ?, ?)", differ)
        return
    con.execute("DROP TABLE IF EXISTS main.input_lines")
    con.execute(LINES_DDL)
    con.executemany("INSERT INTO input_lines VALUES (?, ?, ?)", zip(range(len(hashes)), hashes, ids, strict=True))
