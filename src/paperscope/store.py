"""The store: one directory, the only code that touches it.

Layout::

    STORE/
      CURRENT                    name of the live generation; replaced atomically
      .writer.lock               flock()ed by the one process that may write
      staging.sqlite             vectors embedded by an unfinished build (the checkpoint)
      generations/g000007/       one complete, immutable generation:
        papers.sqlite            papers and metadata; papers.row is the vector row; or instead the
                                 rows written since papers-base.sqlite, a hard link to the last
                                 whole papers.sqlite (paperscope.layered_papers)
        vectors.npy              float32 (n, dim), L2-normalised, never pickled; or instead:
        vectors-base.npy         a hard link to the last full vectors.npy (fewer rows, maybe), with
        vectors-delta.npy        the vectors of the rows written since it,
        vectors-delta-rows.npy   and those rows, ascending (paperscope.overlay)
        index.faiss              FAISS index over vectors.npy, labels = rows
        lexical.npz              term counts per row for TF-IDF (CSR arrays, never pickled)
        lexical-impact.npz       derived from lexical.npz: weights, impact-ordered postings (memory-mapped),
                                 or the postings of the rows changed since lexical-base.npz was written
        lexical-base.npz         only beside such a delta: the base postings, a hard link to the
                                 lexical-impact.npz that wrote them (shared by the generations since)
        lexical-forward.npz,     only when lexical.npz holds a delta of rows: hard links to the
        lexical-forward-unit.npz lexical.npz and lexical-impact.npz that wrote the forward index whole
        manifest.json            written last: versions, model, counts, a digest per file
                                 (``xxh3_128``; ``sha256`` in stores written before round 14),
                                 and the size, mtime and sha256 of every input (``input_files``)

A build writes ``generations/.tmp-*`` and renames it into place, then swaps CURRENT, so a
reader sees the previous complete generation or the next one, never a half-written one.

Generations share what did not change: a file whose bytes a re-run would write again (vectors
when no text changed, the index over them, the lexical index when no title or abstract changed)
is a hard link to the previous generation's file, and its manifest entry carries that file's
digest (``written_by`` names the generation that wrote the bytes). Generation files are never
opened for writing once linked: **write a new file and rename it, never rewrite one in place**,
since the same inode may be live in the previous generation. Pruning a generation removes its
names; the bytes stay while another generation (or an open reader) still uses them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sqlite3
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paperscope import layered_lexical, layered_papers, overlay
from paperscope.errors import DamagedError, StoreError, StoreLockedError
from paperscope.files import STORE_DIGEST, file_digest, fsync_dir, fsync_file, recorded_digest, write_atomic
from paperscope.paper import Paper
from paperscope.snapshots import Snapshots
from paperscope.terminal import dumps
from paperscope.verify import check_files, check_manifest, check_seal, sealed

SCHEMA_VERSION = 1
HOME_ENV = "PAPERSCOPE_HOME"
FILES = ("papers.sqlite", "vectors.npy", "index.faiss", "lexical.npz", "lexical-impact.npz")
# Files a generation may have; each with the previous generation's names it may be a hard link to.
OPTIONAL_FILES = {
    "lexical-base.npz": ("lexical-base.npz", "lexical-impact.npz"),
    overlay.BASE_FILE: (overlay.BASE_FILE, "vectors.npy"),
    overlay.DELTA_FILE: (overlay.DELTA_FILE,),
    overlay.DELTA_ROWS_FILE: (overlay.DELTA_ROWS_FILE,),
    layered_papers.BASE_FILE: (layered_papers.BASE_FILE, "papers.sqlite"),
    layered_lexical.FORWARD_FILE: (layered_lexical.FORWARD_FILE, "lexical.npz"),
    layered_lexical.FORWARD_UNIT_FILE: (layered_lexical.FORWARD_UNIT_FILE, "lexical-impact.npz"),
}
# Readers may still hold the previous generation open; anything older is deleted.
KEEP_GENERATIONS = 2

PAPERS_DDL = """
CREATE TABLE papers (
    row INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    norm_title TEXT NOT NULL,
    abstract TEXT NOT NULL,
    authors TEXT NOT NULL,
    authors_count INTEGER,
    date TEXT,
    upvotes INTEGER,
    organisation TEXT,
    categories TEXT NOT NULL,
    sources TEXT NOT NULL,
    content_hash TEXT NOT NULL
);
CREATE INDEX papers_norm_title ON papers(norm_title);
CREATE INDEX papers_content_hash ON papers(content_hash);
"""
PAPER_COLUMNS = (
    "id",
    "title",
    "abstract",
    "authors",
    "authors_count",
    "date",
    "upvotes",
    "organisation",
    "categories",
    "sources",
)


def default_store() -> Path:
    """``$PAPERSCOPE_HOME``, else ``$XDG_DATA_HOME/paperscope``, else ``~/.local/share/paperscope``."""
    if home := os.environ.get(HOME_ENV):
        return Path(home).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "paperscope"


def sqlite_uri(path: Path, **params: str) -> str:
    """A ``file:`` URI for SQLite naming exactly ``path``, whatever its characters.

    SQLite reads ``#`` and ``?`` in a URI as the start of a fragment or a query and ``%`` as an
    escape, so a store path holding them named another file (``run#2`` opened ``run``). The path
    is made absolute and every byte outside the unreserved set is percent-encoded (bytes, so a
    name that is not valid UTF-8 is encoded too).
    """
    absolute = os.path.abspath(os.fsencode(path))
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return "file:" + urllib.parse.quote(absolute, safe=b"/") + (f"?{query}" if query else "")


def paper_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Paper:
    """Columns in PAPER_COLUMNS order to a Paper."""
    (pid, title, abstract, authors, authors_count, date, upvotes, organisation, categories, sources) = row
    return Paper(
        id=pid,
        title=title,
        abstract=abstract,
        authors=tuple(json.loads(authors)),
        authors_count=authors_count,
        date=date,
        upvotes=upvotes,
        organisation=organisation,
        categories=tuple(json.loads(categories)),
        sources=tuple(json.loads(sources)),
    )


def paper_values(p: Paper) -> tuple[Any, ...]:
    """A Paper as values in PAPER_COLUMNS order."""
    return (
        p.id,
        p.title,
        p.abstract,
        json.dumps(list(p.authors), ensure_ascii=False),
        p.authors_count,
        p.date,
        p.upvotes,
        p.organisation,
        json.dumps(list(p.categories)),
        dumps(list(p.sources)),
    )  # a file name that is not UTF-8 is kept, JSON-escaped


__all__ = ["fsync_dir", "write_atomic"]  # re-exported from paperscope.files for older imports
MAP_REPAIR = "re-run: paperscope map --refit"


@dataclass(frozen=True)
class Generation:
    """One complete generation directory and its manifest."""

    path: Path
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name

    def connect(self) -> sqlite3.Connection:
        """Read-only SQLite connection; ``immutable`` because a generation never changes.

        With a papers delta (:mod:`paperscope.layered_papers`) the base is attached and ``papers``
        is the view over both: the same SQL reads either kind of generation."""
        # Each file with the table whose schema and rightmost b-tree path are read (count(*) read
        # every page of the table: 1.4 s of a 1M store's cold open); a failure names that file.
        checks = [(self.file("papers.sqlite"), "main.papers")]
        if layered_papers.BASE_FILE in self.manifest.get("files", {}):
            checks = [
                (checks[0][0], f"main.{layered_papers.DELTA_TABLE}"),
                (self.file(layered_papers.BASE_FILE), "base.papers"),
            ]
        path = checks[0][0]
        try:
            con = sqlite3.connect(sqlite_uri(path, mode="ro", immutable="1"), uri=True, check_same_thread=False)
            if len(checks) > 1:
                path = checks[1][0]  # the view reads the base's schema
                layered_papers.attach(con, sqlite_uri(path, mode="ro", immutable="1"))
            for file, table in checks:
                path = file  # named if this read fails
                con.execute(f"SELECT max(rowid) FROM {table}").fetchone()
        except sqlite3.DatabaseError as e:
            raise DamagedError(path, f"damaged ({e})") from None
        return con

    def load_vectors(self, mmap: bool = True) -> np.ndarray:
        """The generation's vectors, checked for dtype, shape and dimension before anything uses it:
        ``vectors.npy``, or with a delta (:mod:`paperscope.overlay`) a :class:`~paperscope.overlay.LayeredVectors`
        over it (``mmap=False``: always one array in memory)."""
        n, dim = self.manifest["counts"]["papers"], self.manifest["model"]["dimension"]
        return read_vectors(self.path, n, dim, mmap=mmap)

    def check(self, *, hash_limit: int | None = None) -> None:
        """The cheap integrity checks of every open (see :mod:`paperscope.verify`); StoreError if damaged."""
        check_files(self.path, self.manifest, hash_limit=hash_limit)


class Store:
    """A store directory. Readers call :meth:`current`; a build uses :meth:`writer`."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path is not None else default_store()

    # ---- reading -------------------------------------------------------------------------
    @property
    def generations_dir(self) -> Path:
        return self.path / "generations"

    @property
    def generations(self) -> Snapshots:
        """The store's generations: ``generations/gNNNNNN`` with ``CURRENT`` naming the live one."""
        return Snapshots(
            self.generations_dir, "g", self.path / "CURRENT", keep=KEEP_GENERATIONS, what="a generation of this store"
        )

    @property
    def maps(self) -> Snapshots:
        """The saved maps: ``map/state-NNNNNN`` with ``map/CURRENT`` naming the latest."""
        return Snapshots(
            self.map_dir,
            "state-",
            self.map_dir / "CURRENT",
            keep=KEEP_GENERATIONS,
            what="a saved map",
            repair=MAP_REPAIR,
        )

    def current(self) -> Generation | None:
        """The live generation, or None for a store that has never been built."""
        gen_dir = self.generations.current()
        if gen_dir is None:
            return None
        manifest_path = gen_dir / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DamagedError(manifest_path, "missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DamagedError(manifest_path, f"damaged ({e})") from None
        if isinstance(manifest, dict):
            check_seal(manifest, manifest_path)  # damage first: a flipped key is not another schema
        if not isinstance(manifest, dict) or manifest.get("schema_version") != SCHEMA_VERSION:
            found = manifest.get("schema_version") if isinstance(manifest, dict) else None
            raise StoreError(
                f"{manifest_path}: store schema {found!r}, this paperscope reads {SCHEMA_VERSION}; "
                "re-index into a new store"
            )
        check_manifest(manifest, manifest_path)
        return Generation(gen_dir, manifest)

    def require_current(self) -> Generation:
        gen = self.current()
        if gen is None and any(self.generations_dir.glob("g[0-9]*")):
            raise DamagedError(self.path / "CURRENT", "missing, but generations exist (damaged store)")
        if gen is None:
            raise StoreError(
                f"{self.path}: no paperscope store here; build one with: paperscope index --store {self.path}"
            )
        return gen

    # ---- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def writer(self, wait: float = 0.0) -> Iterator[None]:
        """Hold the single-writer lock; a second writer waits up to ``wait`` seconds, then fails clearly.

        An OS failure (read-only directory, a file where a directory belongs) is a StoreError
        naming the path, before anything is written.
        """
        lock_path = self.path / ".writer.lock"
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fh = open(lock_path, "a+")  # noqa: SIM115 - closed in the finally below
        except OSError as e:
            where = os.fsdecode(e.filename) if e.filename is not None else str(self.path)
            raise StoreError(
                f"{where}: cannot write the store ({e.strerror or e}); check that the path is a writable directory"
            ) from None
        try:
            deadline = time.monotonic() + max(0.0, wait)
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() < deadline:
                        time.sleep(0.1)
                        continue
                    fh.seek(0)
                    holder = fh.read(200).strip() or "another process"
                    waited = f" (waited {wait:g}s)" if wait > 0 else ""
                    raise StoreLockedError(
                        f"{self.path}: another paperscope index is writing this store "
                        f"({holder}){waited}; wait for it to finish"
                    ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()}")
            fh.flush()
            yield
        finally:
            fh.close()  # closing releases the flock, also when the process is killed

    def new_generation(self) -> tuple[str, Path]:
        """A fresh temporary directory for the next generation (stale ones from crashes removed)."""
        return self.generations.begin()

    def commit(
        self,
        name: str,
        tmp: Path,
        manifest: dict[str, Any],
        warnings: list[str] | None = None,
        carried_from: Generation | None = None,
    ) -> Generation:
        """Write the manifest last, rename the generation into place and swap CURRENT to it.

        A file that is a hard link to the same file of ``carried_from`` (the verified previous
        generation: same inode, same size) keeps that generation's recorded digest instead of
        being read again; every other file is synced and hashed. Once CURRENT names the new
        generation the commit has happened: what fails after that (pruning old generations) is
        appended to ``warnings``, never raised.
        """
        files: dict[str, dict[str, Any]] = {}
        written = []
        layered = (tmp / overlay.BASE_FILE).exists()
        names = [
            *(f for f in FILES if not (layered and f == "vectors.npy")),
            *(f for f in OPTIONAL_FILES if (tmp / f).exists()),
        ]
        for f in names:
            carried = None
            for source in OPTIONAL_FILES.get(f, (f,)):
                carried = carried or _carried_meta(tmp / f, source, carried_from)
            if carried is not None:
                files[f] = carried
            else:
                written.append(f)

        def seal(f: str) -> dict[str, Any]:
            fsync_file(tmp / f)
            return {"bytes": (tmp / f).stat().st_size, STORE_DIGEST: file_digest(tmp / f)}

        # Files are synced and hashed side by side (xxhash and the disk release the GIL): 8.8 GB at 1M papers.
        with ThreadPoolExecutor(max_workers=max(1, min(len(written), os.cpu_count() or 1))) as pool:
            for f, meta in zip(written, pool.map(seal, written), strict=True):
                files[f] = meta
        files = {f: files[f] for f in names}  # manifest order as before
        manifest = sealed({**manifest, "generation": name, "files": files})
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        fsync_file(tmp / "manifest.json")
        fsync_dir(tmp)  # the hard links are directory entries: make them durable before the rename
        return Generation(self.generations.commit(name, tmp, warnings), manifest)

    def discard(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    # ---- the topic map ------------------------------------------------------------------
    @property
    def map_dir(self) -> Path:
        return self.path / "map"

    def write_map(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
        """Save the latest map as ``map/state-N/`` (map.json + arrays.npz) and point ``map/CURRENT`` at it.

        Same discipline as generations: written beside the old one, swapped atomically.
        """
        name, tmp = self.maps.begin()
        with open(tmp / "arrays.npz", "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        meta = sealed({**meta, f"arrays_{STORE_DIGEST}": file_digest(tmp / "arrays.npz")})
        (tmp / "map.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        return self.maps.commit(name, tmp)

    def read_map(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The latest saved map (metadata, arrays), None if there is none; StoreError if damaged."""
        return self.maps.read(self._read_map_once)  # two saves meanwhile prune the map being read

    def check_map(self) -> dict[str, Any] | None:
        """The latest saved map's metadata after every check :meth:`read_map` makes (seal, digest
        of every byte, each array's header), without loading its arrays (1.3 GB at 1M papers);
        None if there is none; StoreError if damaged."""
        checked = self.maps.read(lambda: self._read_map_once(load=False))
        return checked[0] if checked is not None else None

    def _read_map_once(self, load: bool = True) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        state = self.maps.current()
        if state is None:
            return None
        repair = MAP_REPAIR
        try:
            meta = json.loads((state / "map.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StoreError(f"{state / 'map.json'}: damaged map ({e}); {repair}") from None
        check_seal(meta, state / "map.json", repair)
        try:
            recorded = recorded_digest(meta, "arrays_")  # arrays_sha256 in maps saved before round 14
            if recorded is None:
                raise ValueError("map.json records no digest of it")
            if file_digest(state / "arrays.npz", recorded[0]) != recorded[1]:
                raise ValueError(f"{recorded[0]} differs from map.json")
            with np.load(state / "arrays.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files} if load else {}
                if not load:
                    for k in npz.files:  # each member a readable .npy header, no data read
                        with npz.zip.open(f"{k}.npy") as fh:
                            major, _ = np.lib.format.read_magic(fh)
                            fmt = np.lib.format
                            (fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0)(fh)
        except Exception as e:  # noqa: BLE001 - any failure to read a damaged file is reported as damage
            raise StoreError(f"{state / 'arrays.npz'}: damaged map ({e}); {repair}") from None
        return meta, arrays

    # ---- checkpoint of embedded vectors ---------------------------------------------------
    def staging(self) -> Staging:
        return Staging(self.path / "staging.sqlite")


class Staging:
    """Vectors embedded by a build that has not committed yet, keyed by (fingerprint, content hash).

    Each chunk is one SQLite transaction, so a build killed at any moment loses at most the
    chunk it was embedding; the next run reuses everything committed here.
    """

    def __init__(self, path: Path):
        self.path = path
        self.con = sqlite3.connect(sqlite_uri(path), uri=True)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS vectors (fingerprint TEXT, hash TEXT, vec BLOB, "
            "PRIMARY KEY (fingerprint, hash))"
        )
        # Which device and dtype made each checkpointed chunk (issue 18): summed into the manifest,
        # so a build resumed on another device records both. Never part of a vector's key.
        self.con.execute("CREATE TABLE IF NOT EXISTS made_by (fingerprint TEXT, device TEXT, dtype TEXT, count INT)")

    def has(self, fingerprint: str) -> set[str]:
        return {h for (h,) in self.con.execute("SELECT hash FROM vectors WHERE fingerprint=?", (fingerprint,))}

    def put(
        self, fingerprint: str, hashes: Iterable[str], vectors: np.ndarray, made_by: tuple[str, str] | None = None
    ) -> None:
        """Checkpoint one chunk (one transaction); ``made_by`` is the (device, dtype) that embedded it."""
        with self.con:
            self.con.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(fingerprint, h, v.tobytes()) for h, v in zip(hashes, vectors, strict=True)],
            )
            if made_by is not None:
                self.con.execute("INSERT INTO made_by VALUES (?, ?, ?, ?)", (fingerprint, *made_by, len(vectors)))

    def made_by(self, fingerprint: str) -> list[tuple[str, str, int]]:
        """(device, dtype, vectors) for every device that checkpointed vectors of ``fingerprint``."""
        return [
            (d, t, int(c))
            for d, t, c in self.con.execute(
                "SELECT device, dtype, sum(count) FROM made_by WHERE fingerprint=? GROUP BY device, dtype",
                (fingerprint,),
            )
        ]

    def get(self, fingerprint: str, hashes: list[str], dim: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(0, len(hashes), 500):
            part = hashes[i : i + 500]
            q = f"SELECT hash, vec FROM vectors WHERE fingerprint=? AND hash IN ({','.join('?' * len(part))})"
            for h, blob in self.con.execute(q, (fingerprint, *part)):
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (dim,) and np.isfinite(vec).all():
                    out[h] = vec
        return out

    def clear(self) -> None:
        with self.con:
            self.con.execute("DELETE FROM vectors")
            self.con.execute("DELETE FROM made_by")
        self.con.execute("VACUUM")

    def close(self) -> None:
        self.con.close()


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - a damaged header raises OSError, ValueError, SyntaxError, TokenError
        raise DamagedError(path, f"damaged ({e})") from None


def read_vectors(directory: Path, n: int | None = None, dim: int | None = None, *, mmap: bool = True) -> np.ndarray:
    """The ``(n, dim)`` float32 vectors of the generation files in ``directory``: ``vectors.npy``,
    or a base and a delta (:mod:`paperscope.overlay`), checked (shapes, dtypes, the delta's rows
    ascending and covering every row past the base's) before anything uses them. ``n`` and ``dim``
    (the manifest's) default to what the files say (benchmarks reading a generation's files)."""
    layered = (directory / overlay.BASE_FILE).exists()
    path = directory / (overlay.BASE_FILE if layered else "vectors.npy")
    base = _load_npy(path, mmap)
    rows_path = directory / overlay.DELTA_ROWS_FILE
    if layered and n is None:
        rows = _load_npy(rows_path, mmap=False)
        n = max(base.shape[0], int(rows[-1]) + 1 if len(rows) else 0)
    n = base.shape[0] if n is None else n
    dim = (base.shape[1] if base.ndim == 2 else -1) if dim is None else dim
    expect = "at most " if layered else ""
    if base.dtype != np.float32 or base.ndim != 2 or base.shape[1] != dim or base.shape[0] > n:
        raise DamagedError(path, f"expected float32 {expect}{(n, dim)}, found {base.dtype} {base.shape}")
    if not layered:
        if base.shape[0] != n:
            raise DamagedError(path, f"expected float32 {(n, dim)}, found {base.dtype} {base.shape}")
        return base
    rows = _load_npy(rows_path, mmap=False)  # small (at most overlay.DELTA_MAX of the rows): read whole
    delta = _load_npy(directory / overlay.DELTA_FILE, mmap)
    ok = (
        rows.dtype == np.int64
        and rows.ndim == 1
        and (len(rows) == 0 or (int(rows[0]) >= 0 and int(rows[-1]) < n and bool(np.all(np.diff(rows) > 0))))
        and int(np.count_nonzero(rows >= base.shape[0])) == n - base.shape[0]
    )
    if not ok:
        raise DamagedError(rows_path, f"damaged (not ascending rows below {n} covering rows {base.shape[0]} on)")
    if delta.dtype != np.float32 or delta.shape != (len(rows), dim):
        raise DamagedError(
            directory / overlay.DELTA_FILE, f"expected float32 {(len(rows), dim)}, found {delta.dtype} {delta.shape}"
        )
    vectors = overlay.LayeredVectors(base, delta, rows, n)
    return np.asarray(vectors) if not mmap else vectors  # type: ignore[return-value]


def _carried_meta(path: Path, name: str, prev: Generation | None) -> dict[str, Any] | None:
    """``prev``'s manifest entry for ``name`` if ``path`` is a hard link to that very file, else None."""
    if prev is None or name not in prev.manifest.get("files", {}):
        return None
    try:
        mine, theirs = path.stat(), prev.file(name).stat()
    except FileNotFoundError:
        return None
    meta = prev.manifest["files"][name]
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino) or mine.st_size != meta["bytes"]:
        return None
    recorded = recorded_digest(meta)
    if recorded is None:  # check_manifest refuses such an entry on open: never here
        return None
    # Which generation wrote these bytes (informative: verify hashes the file whatever it says).
    return {"bytes": meta["bytes"], recorded[0]: recorded[1], "written_by": meta.get("written_by", prev.name)}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
