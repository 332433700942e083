"""The indexing pipeline: inputs -> papers table -> vectors (only what changed) -> index -> commit.

Every run builds a complete new generation beside the live one:

1. copy the previous generation's papers into a fresh SQLite file;
2. stream the inputs into it, merging duplicates (same id) and hashing the model text;
3. if nothing differs from the previous generation, stop: the model is never loaded;
4. embed only texts whose (model fingerprint, content hash) has no vector yet, in chunks
   checkpointed to the store's staging table, so a killed run redoes at most one chunk;
5. assemble vectors.npy row by row from the previous generation and the staging table,
   build the FAISS index, write the manifest last and swap the generation in.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from paperscope import __version__, index, lexical
from paperscope.corpus import ReadReport, bundled_corpus, expand, normalise_title, read_papers
from paperscope.corpus.records import merge
from paperscope.embed import Embedder, check_vectors, with_backend
from paperscope.embed.engines import EmbedChunks, get_engine
from paperscope.embed.lock import ModelLock, load_lock
from paperscope.errors import InputError, StoreError
from paperscope.store import PAPER_COLUMNS, PAPERS_DDL, SCHEMA_VERSION, Generation, Store, now, paper_from_row, paper_values

CHUNK_SIZE = 256
_COPY_CHUNK = 8192


@dataclass
class BuildReport:
    """What a run did. ``embedded`` counts texts sent to the model in this run."""

    store: str
    generation: str | None
    papers: int = 0
    added: int = 0
    changed: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    kept_not_in_inputs: int = 0
    embedded: int = 0
    resumed: int = 0
    tokenised: int = 0
    entries_read: int = 0
    rows_skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)
    seconds: float = 0.0
    embed_seconds: float = 0.0
    model_load_seconds: float = 0.0
    nothing_to_do: bool = False

    @property
    def texts_per_second(self) -> float | None:
        return self.embedded / self.embed_seconds if self.embedded and self.embed_seconds > 0 else None

    def summary(self) -> str:
        """One line for the end of ``paperscope index``."""
        rate = f", {self.texts_per_second:.1f} texts/s" if self.texts_per_second else ""
        head = "nothing changed" if self.nothing_to_do else f"generation {self.generation}"
        skipped = f", {self.rows_skipped} rows skipped" if self.rows_skipped else ""
        return (f"{head}: {self.papers} papers ({self.added} added, {self.changed} changed, {self.updated} "
                f"metadata-only, {self.unchanged} unchanged, {self.removed} removed{skipped}); "
                f"embedded {self.embedded} ({self.resumed} resumed from checkpoint) in {self.seconds:.1f}s{rate}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "texts_per_second": self.texts_per_second}


def content_hash(text: str) -> str:
    """Hash of exactly the text the model sees (the lock's template applied)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


ProgressFactory = Callable[[int, str], Any]


def _no_progress(total: int, desc: str) -> Any:
    class _Null:
        def update(self, n: int) -> None: ...
        def close(self) -> None: ...
    return _Null()


def build(
    paths: Iterable[str | Path] | None = None,
    store: str | Path | Store | None = None,
    *,
    lock: ModelLock | str | Path | None = None,
    embedder: Embedder | None = None,
    prune: bool = False,
    rebuild: bool = False,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressFactory = _no_progress,
    index_type: str | None = None,
    engine: str = "local",
    backend: str | None = None,
) -> BuildReport:
    """Index ``paths`` (default: the bundled corpus) into ``store``; returns what was done.

    Inputs add to what the store holds; ``prune=True`` drops papers not in this run's inputs.
    ``rebuild=True`` re-embeds everything (needed after the pinned model changed). ``embedder``
    overrides the lock's model (tests pass a small fake; its fingerprint is recorded).
    ``index_type`` forces the FAISS index ("flat", "ivf", "hnsw"; default: chosen by size).
    ``engine="ray"`` embeds on Ray Data (``paperscope[ray]``; ``RAY_ADDRESS`` or a local Ray).
    ``backend`` is one of ``embed.BACKENDS`` (default: the store's own, else the lock's); it is
    part of the fingerprint, so another backend than the store's needs ``rebuild=True``.
    """
    t0 = time.perf_counter()
    st = store if isinstance(store, Store) else Store(store)
    model_lock = with_backend(lock if isinstance(lock, ModelLock) else load_lock(lock), backend)
    fingerprint = embedder.fingerprint if embedder is not None else model_lock.fingerprint
    dimension = embedder.dimension if embedder is not None else model_lock.dimension
    text_of = embedder.text if embedder is not None else model_lock.text
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    index.check_type(index_type)
    embed_chunks = get_engine(engine, embedder)  # fails before the store is touched
    files = expand(list(paths) if paths is not None else [bundled_corpus()])

    with st.writer():
        prev = _previous(st, rebuild)
        prev_lock = (prev.manifest["model"].get("lock") or {}) if prev is not None else {}
        if backend is None and embedder is None and prev_lock.get("backend", "torch") != model_lock.backend:
            # No --backend: keep the store's own backend.
            model_lock = with_backend(model_lock, prev_lock.get("backend", "torch"))
            fingerprint, dimension = model_lock.fingerprint, model_lock.dimension
        if prev is not None and prev.manifest["model"]["fingerprint"] != fingerprint and not rebuild:
            other = prev_lock.get("backend", "torch")
            what = (f"backend {other}, this run asks for {model_lock.backend}" if embedder is None
                    and other != model_lock.backend else f"the lock now gives {fingerprint} ({model_lock.name})")
            raise StoreError(
                f"{st.path}: built with model fingerprint {prev.manifest['model']['fingerprint']} "
                f"({prev.manifest['model']['name']}), {what}; "
                "run `paperscope index --rebuild` to re-embed everything with the new model or backend")
        name, tmp = st.new_generation()
        report = BuildReport(store=str(st.path), generation=None)
        try:
            con = _fill_papers(tmp / "papers.sqlite", prev, files, text_of, prune, report)
            # A generation from before lexical indexes existed is upgraded by a plain re-run.
            # So is one whose lexical index came from another tokenizer version (it is re-tokenised).
            has_lexical = (prev is not None and "lexical.npz" in prev.manifest.get("files", {})
                           and lexical.stored_version(prev.file("lexical.npz")) == lexical.TOKENIZER_VERSION)
            same_index = index_type is None or index_type == index.kind_of(prev.manifest.get("index") if prev else None)
            if (prev is not None and not rebuild and has_lexical and same_index
                    and not (report.added or report.changed or report.updated or report.removed)):
                con.close()
                st.discard(tmp)
                report.nothing_to_do, report.generation = True, prev.name
                report.seconds = time.perf_counter() - t0
                return report
            artifact = _artifact_digest(
                model_lock, None if prev is None or rebuild else prev.manifest["model"].get("artifact_sha256"),
                report) if embedder is None else None
            staging = st.staging()
            try:
                _embed_missing(con, staging, fingerprint, embed_chunks, model_lock, text_of, dimension, chunk_size,
                               progress, report, reuse_previous=not rebuild)
                reused = _write_vectors(con, tmp / "vectors.npy", prev if not rebuild else None, staging,
                                        fingerprint, dimension)
            finally:
                staging.close()
            report.tokenised, _ = lexical.build_for_generation(
                con, tmp / "lexical.npz", prev.file("lexical.npz") if prev is not None and not rebuild else None)
            con.close()
            vectors = np.load(tmp / "vectors.npy", mmap_mode="r", allow_pickle=False)
            prev_index = prev.manifest.get("index") if prev is not None else None
            if reused and prev is not None and (index_type is None or index_type == index.kind_of(prev_index)):
                # Same vectors in the same rows: the previous index (and its measured recall) still holds.
                os.link(prev.file("index.faiss"), tmp / "index.faiss")
                index_info = {**(prev_index or {}), "type": index.kind_of(prev_index), "linked_from": prev.name}
            else:
                built, index_info = index.build(vectors, index_type)
                index.save(built, tmp / "index.faiss")
                del built
            report.seconds = time.perf_counter() - t0
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "paperscope_version": __version__,
                "created_at": now(),
                "previous_generation": prev.name if prev else None,
                "model": {"name": model_lock.name if embedder is None else type(embedder).__name__,
                          "fingerprint": fingerprint, "dimension": dimension,
                          "backend": model_lock.backend if embedder is None else None,
                          "lock": json.loads(model_lock.to_json()) if embedder is None else None,
                          "artifact_sha256": artifact},
                "index": index_info,
                "lexical": {"scoring": "tfidf-sublinear-cosine", "title_boost": lexical.TITLE_BOOST,
                            "phrase_weight": lexical.PHRASE_WEIGHT, "tokenizer_version": lexical.TOKENIZER_VERSION},
                "counts": {"papers": report.papers},
                "inputs": [str(f) for f in files],
                "build": report.to_dict(),
            }
            gen = st.commit(name, tmp, manifest)
            report.generation = gen.name
        except BaseException:
            st.discard(tmp)
            raise
        # Only after the swap: the checkpoint has served its purpose.
        staging = st.staging()
        staging.clear()
        staging.close()
        return report


def _previous(st: Store, rebuild: bool) -> Generation | None:
    """The live generation, fully verified before anything of it is reused in the next one.

    A damaged generation is refused (its damage would be copied into the next, under fresh
    hashes); with ``rebuild`` it is ignored and the store is rebuilt from this run's inputs.
    """
    from paperscope.verify import verify

    try:
        prev = st.current()
        damaged = verify(st).damaged if prev is not None else []
        if damaged := [f for f in damaged if not f.path.startswith(str(st.map_dir))]:
            raise StoreError(f"{damaged[0].path}: {damaged[0].detail}")
    except StoreError as e:
        if not rebuild:
            raise StoreError(f"{e} (with --rebuild the store is rebuilt from the inputs given)") from None
        return None
    return prev


def _fill_papers(db: Path, prev: Generation | None, files: list[Path], text_of: Callable[[str, str], str],
                 prune: bool, report: BuildReport) -> sqlite3.Connection:
    """Create the new papers table: previous papers, then this run's inputs merged in."""
    con = sqlite3.connect(db, isolation_level=None)  # explicit BEGIN/COMMIT below
    con.execute("PRAGMA journal_mode=OFF")  # a crashed build's file is thrown away anyway
    con.execute("PRAGMA synchronous=OFF")
    con.executescript(PAPERS_DDL)
    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    con.execute("CREATE TEMP TABLE seen (id TEXT PRIMARY KEY)")
    if prev is not None:
        con.execute("ATTACH DATABASE ? AS old", (f"file:{prev.file('papers.sqlite')}?mode=ro",))
        con.execute("INSERT INTO papers SELECT * FROM old.papers ORDER BY row")
    cols = ", ".join(PAPER_COLUMNS)
    read = ReadReport()
    batch = 0
    con.execute("BEGIN")
    for paper in read_papers(files, read):
        first_this_run = con.execute("INSERT OR IGNORE INTO seen VALUES (?)", (paper.id,)).rowcount == 1
        existing = con.execute(f"SELECT {cols} FROM papers WHERE id=?", (paper.id,)).fetchone()
        if existing is not None:
            old = paper_from_row(existing)
            if first_this_run and prune:
                # With --prune the inputs are the whole truth: sources start afresh this run.
                old = replace(old, sources=())
            paper = merge(old, paper)
        values = paper_values(paper)
        chash = content_hash(text_of(paper.title, paper.abstract))
        con.execute(
            f"INSERT INTO papers (row, {cols}, norm_title, content_hash) "
            f"VALUES ((SELECT coalesce(max(row), -1) + 1 FROM papers), {', '.join('?' * len(values))}, ?, ?) "
            f"ON CONFLICT(id) DO UPDATE SET " + ", ".join(f"{c}=excluded.{c}" for c in PAPER_COLUMNS[1:])
            + ", norm_title=excluded.norm_title, content_hash=excluded.content_hash",
            (*values, normalise_title(paper.title), chash))
        batch += 1
        if batch % 10_000 == 0:
            con.execute("COMMIT")
            con.execute("BEGIN")
    con.execute("COMMIT")
    report.entries_read, report.rows_skipped, report.skip_examples = read.entries, read.skipped, read.skip_examples
    n_seen = con.execute("SELECT count(*) FROM seen").fetchone()[0]
    if n_seen == 0:
        where = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        detail = f" ({read.skipped} rows skipped, e.g. {read.skip_examples[0]})" if read.skip_examples else ""
        raise InputError(f"{where}: inputs contain no paper with both a title and an abstract{detail}")
    if prev is not None:
        if prune:
            report.removed = con.execute("DELETE FROM papers WHERE id NOT IN (SELECT id FROM seen)").rowcount
            _compact_rows(con)
        else:
            report.kept_not_in_inputs = con.execute(
                "SELECT count(*) FROM papers WHERE id NOT IN (SELECT id FROM seen)").fetchone()[0]
        cmp_cols = " OR ".join(f"p.{c} IS NOT o.{c}" for c in PAPER_COLUMNS[1:] if c not in ("title", "abstract"))
        report.added = con.execute(
            "SELECT count(*) FROM papers p WHERE p.id NOT IN (SELECT id FROM old.papers)").fetchone()[0]
        report.changed = con.execute(
            "SELECT count(*) FROM papers p JOIN old.papers o ON o.id = p.id "
            "WHERE p.content_hash != o.content_hash").fetchone()[0]
        report.updated = con.execute(
            "SELECT count(*) FROM papers p JOIN old.papers o ON o.id = p.id "
            f"WHERE p.content_hash = o.content_hash AND (p.title IS NOT o.title OR {cmp_cols})").fetchone()[0]
        report.unchanged = con.execute("SELECT count(*) FROM papers").fetchone()[0] - report.added - report.changed - report.updated
    else:
        report.added = n_seen
    report.papers = con.execute("SELECT count(*) FROM papers").fetchone()[0]
    return con


def _compact_rows(con: sqlite3.Connection) -> None:
    """Renumber rows 0..n-1 in their current order after deletions (two passes avoid collisions)."""
    con.execute("CREATE TEMP TABLE renumber AS SELECT row AS old_row, "
                "ROW_NUMBER() OVER (ORDER BY row) - 1 AS new_row FROM papers")
    con.execute("CREATE INDEX temp.renumber_old ON renumber(old_row)")
    con.execute("UPDATE papers SET row = -1 - (SELECT new_row FROM renumber WHERE old_row = papers.row)")
    con.execute("UPDATE papers SET row = -1 - row")
    con.execute("DROP TABLE temp.renumber")


def _artifact_digest(lock: ModelLock, before: str | None, report: BuildReport) -> str | None:
    """The sha256 of the derived model (ONNX int8, static) this build's vectors come from.

    New vectors are only added to a store whose vectors came from the same derived model: an
    export made by another toolchain would shift them slightly.
    """
    if lock.backend == "torch":
        return None
    from paperscope.embed import artifacts

    kind = "onnx-int8" if lock.backend == "onnx-int8" else "static"
    t_load = time.perf_counter()
    if lock.backend == "onnx-int8":
        from paperscope.embed.onnx_backend import prepare

        _, meta = prepare(lock, "int8")
    else:
        from paperscope.embed.static_backend import prepare

        _, meta = prepare(lock)
    report.model_load_seconds += time.perf_counter() - t_load
    digest = artifacts.digest(meta)
    if before is not None and before != digest:
        raise StoreError(f"the cached {kind} model ({digest[:12]}…) is not the one this store's vectors came from "
                         f"({before[:12]}…); run `paperscope index --rebuild`")
    return digest


def _embed_missing(con: sqlite3.Connection, staging: Any, fingerprint: str, embed_chunks: EmbedChunks,
                   lock: ModelLock, text_of: Callable[[str, str], str], dimension: int, chunk_size: int,
                   progress: ProgressFactory, report: BuildReport, reuse_previous: bool) -> None:
    """Embed every distinct text that has no vector in the previous generation or the checkpoint."""
    where = ("WHERE p.content_hash NOT IN (SELECT content_hash FROM old.papers)"
             if reuse_previous and _has_old(con) else "")
    # Only hashes are held in memory; texts are fetched chunk by chunk. Longest first: similar
    # lengths share a batch (less padding) and the ETA errs on the safe side.
    hashes = [h for (h,) in con.execute(
        f"SELECT p.content_hash FROM papers p {where} "
        "GROUP BY p.content_hash ORDER BY max(length(p.title) + length(p.abstract)) DESC, p.content_hash")]
    staged = staging.has(fingerprint)
    report.resumed = sum(1 for h in hashes if h in staged)
    todo = [h for h in hashes if h not in staged]
    del hashes, staged
    if not todo:
        return
    chunks = [todo[start:start + chunk_size] for start in range(0, len(todo), chunk_size)]

    def texts() -> Iterator[list[str]]:
        # Consumed lazily by the engine (a distributed engine reads a few chunks ahead).
        for chunk in chunks:
            found = dict(con.execute(
                f"SELECT content_hash, min(title || char(0) || abstract) FROM papers "
                f"WHERE content_hash IN ({','.join('?' * len(chunk))}) GROUP BY content_hash", chunk).fetchall())
            yield [text_of(*found[h].split("\0", 1)) for h in chunk]

    bar = progress(len(todo), "embedding")
    t0 = time.perf_counter()
    try:
        # Each chunk is checkpointed as soon as its vectors arrive, so a killed run redoes at most
        # the chunks in flight. The engine comes first in zip() so that it runs to its end (the
        # local engine prepares the torch-free query model after its last chunk).
        for vectors, chunk in zip(embed_chunks(lock, texts(), report), chunks):
            staging.put(fingerprint, chunk, check_vectors(vectors, len(chunk), dimension))
            report.embedded += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        report.embed_seconds = time.perf_counter() - t0 - report.model_load_seconds
    if report.embedded != len(todo):
        raise StoreError(f"internal: the embedding engine returned vectors for {report.embedded} of "
                         f"{len(todo)} texts; re-run paperscope index to resume")


def _has_old(con: sqlite3.Connection) -> bool:
    return any(name == "old" for _, name, _ in con.execute("PRAGMA database_list"))


def _write_vectors(con: sqlite3.Connection, path: Path, prev: Generation | None, staging: Any,
                   fingerprint: str, dim: int) -> bool:
    """Fill vectors.npy in row order; returns True when it equals the previous file row for row."""
    n = con.execute("SELECT count(*) FROM papers").fetchone()[0]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    old_vectors = prev.load_vectors() if prev is not None else None
    use_old = old_vectors is not None and _has_old(con)
    identical = use_old and n == old_vectors.shape[0]
    join = ("LEFT JOIN old.papers o ON o.content_hash = p.content_hash" if use_old else "")
    # An old row with the same text (any id) provides the vector; min() picks one deterministically.
    select = (f"SELECT p.row, p.content_hash, {'min(o.row)' if use_old else 'NULL'} FROM papers p {join} "
              "WHERE p.row >= ? AND p.row < ? GROUP BY p.row ORDER BY p.row")
    for start in range(0, n, _COPY_CHUNK):
        rows = con.execute(select, (start, start + _COPY_CHUNK)).fetchall()
        need = [h for _, h, old_row in rows if old_row is None]
        staged = staging.get(fingerprint, need, dim) if need else {}
        for row, h, old_row in rows:
            if old_row is not None:
                out[row] = old_vectors[old_row]
                identical = identical and old_row == row
            elif h in staged:
                out[row] = staged[h]
                identical = False
            else:
                raise StoreError(f"internal: no vector for row {row} (hash {h[:12]}); re-run paperscope index")
    out.flush()
    del out
    return bool(n and identical)


def default_progress(quiet: bool) -> ProgressFactory:
    """tqdm bars with rate and ETA on a terminal; nothing when quiet or not a TTY."""
    if quiet or not sys.stderr.isatty():
        return _no_progress

    def factory(total: int, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, dynamic_ncols=True)
    return factory
