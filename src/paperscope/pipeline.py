"""The indexing pipeline: inputs -> papers table -> vectors (only what changed) -> index -> commit.

Every run builds a complete new generation beside the live one:

0. hash the inputs: the same bytes as the live generation's inputs (and the same options) stop
   here, before anything is parsed;
1. copy the previous generation's papers into a fresh SQLite file;
2. stream the inputs into it (only the changed lines of JSON Lines inputs, see
   :mod:`paperscope.inputs`), merging duplicates (same id) and hashing the model text;
3. if nothing differs from the previous generation, stop: the model is never loaded;
4. embed only texts whose (model fingerprint, content hash) has no vector yet, in chunks
   checkpointed to the store's staging table, so a killed run redoes at most one chunk;
5. assemble vectors.npy from the previous generation (as arrays) and the staging table, carry
   the lexical rows of unchanged papers, update or build the FAISS index, link every file whose
   bytes would not change, write the manifest last and swap the generation in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from paperscope import __version__, impact, index, inputs, layered_papers, lexical, lexical_delta, overlay, rank
from paperscope.choices import CHUNK_SIZE, DEFAULT_ENGINE
from paperscope.corpus import ReadReport, bundled_corpus, expand, normalise_title, read_papers, title_id
from paperscope.corpus.records import merge
from paperscope.embed import device as devices
from paperscope.embed import registry
from paperscope.embed.base import Embedder, check_vectors
from paperscope.embed.engines import EmbedChunks, get_engine
from paperscope.embed.lock import ModelLock, find_lock, load_lock
from paperscope.embed.registry import with_backend
from paperscope.errors import InputError, InvalidArgument, StoreError
from paperscope.files import sha256_file
from paperscope.paper import Paper
from paperscope.report import BuildReport
from paperscope.store import (
    PAPER_COLUMNS,
    PAPERS_DDL,
    SCHEMA_VERSION,
    Generation,
    Store,
    now,
    paper_from_row,
    paper_values,
    read_vectors,
    sqlite_uri,
)
from paperscope.terminal import dumps, shown

_VECTOR_CHUNK = 65_536  # rows per copy step: 25-100 MB, bounded memory at any size
MAX_MERGE_LINES = 1000  # merge lines kept in the report; the count is always exact


def _as_paths(paths: Iterable[str | Path] | str | os.PathLike[str] | None) -> list[Path] | None:
    """One path given as a string or Path is one path, never an iterable of characters."""
    if paths is None:
        return None
    if isinstance(paths, (str, bytes, os.PathLike)):
        return [Path(os.fsdecode(paths))]
    return [Path(os.fsdecode(p)) if isinstance(p, bytes) else Path(p) for p in paths]


def os_failure(e: OSError | sqlite3.OperationalError, store: Path) -> StoreError:
    """One line for an OS or SQLite failure while writing: the path, the cause, what to do."""
    if isinstance(e, OSError):
        where = os.fsdecode(e.filename) if e.filename is not None else str(store)
        cause = e.strerror or str(e)
    else:
        where, cause = str(store), str(e)
    low = cause.lower()
    hint = (
        "free some space"
        if any(w in low for w in ("full", "too large", "quota", "no space"))
        else "check free space and that the path is a writable directory"
    )
    return StoreError(
        f"{where}: cannot write the store ({cause}); {hint} and re-run (the previous generation is unchanged)"
    )


def content_hash(text: str) -> str:
    """Hash of exactly the text the model sees (the lock's template applied)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


ProgressFactory = Callable[[int, str], Any]


def _no_progress(total: int, desc: str) -> Any:
    class _Null:
        def update(self, n: int) -> None: ...
        def close(self) -> None: ...

    return _Null()


@dataclass
class BuildModel:
    """The model side of one build: the pinned lock, or a custom embedder that replaces it.

    Everything the stages need to know about the model comes from here, so none of them asks
    whether a custom embedder was given.
    """

    lock: ModelLock
    custom: Embedder | None = None

    @property
    def fingerprint(self) -> str:
        return self.custom.fingerprint if self.custom is not None else self.lock.fingerprint

    @property
    def dimension(self) -> int:
        return self.custom.dimension if self.custom is not None else self.lock.dimension

    def text(self, title: str, abstract: str) -> str:
        return self.custom.text(title, abstract) if self.custom is not None else self.lock.text(title, abstract)

    def keep_store_backend(self, prev: Generation | None, backend_asked: str | None) -> None:
        """No --backend given: a store keeps its own backend."""
        if backend_asked is None and self.custom is None and prev is not None:
            self.lock = with_backend(self.lock, _backend_of(prev))

    def artifact_digest(self, prev: Generation | None, rebuild: bool, report: BuildReport) -> str | None:
        """Digest of the derived model (ONNX int8, static) the vectors come from; None for torch or custom."""
        if self.custom is not None:
            return None
        before = None if prev is None or rebuild else prev.manifest["model"].get("artifact_sha256")
        t_load = time.perf_counter()
        digest = registry.artifact_digest(self.lock, before)
        report.model_load_seconds += time.perf_counter() - t_load
        return digest

    def manifest_block(self, artifact: str | None) -> dict[str, Any]:
        custom = self.custom is not None
        return {
            "name": type(self.custom).__name__ if custom else self.lock.name,
            "fingerprint": self.fingerprint,
            "dimension": self.dimension,
            "backend": None if custom else self.lock.backend,
            "lock": None if custom else json.loads(self.lock.to_json()),
            "artifact_sha256": artifact,
        }


def _backend_of(gen: Generation) -> str:
    return (gen.manifest["model"].get("lock") or {}).get("backend", "torch")


def build(
    paths: Iterable[str | Path] | str | Path | None = None,
    store: str | Path | Store | None = None,
    *,
    lock: ModelLock | str | Path | None = None,
    embedder: Embedder | None = None,
    prune: bool = False,
    rebuild: bool = False,
    chunk_size: int = CHUNK_SIZE,
    progress: ProgressFactory = _no_progress,
    index_type: str | None = None,
    engine: str = DEFAULT_ENGINE,
    backend: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    feeder: bool | None = None,
    workers: int | None = None,
) -> BuildReport:
    """Index ``paths`` (default: the bundled corpus) into ``store``; returns what was done.

    Inputs add to what the store holds; ``prune=True`` drops papers not in this run's inputs.
    ``rebuild=True`` re-embeds everything (needed after the pinned model changed). ``embedder``
    overrides the lock's model (tests pass a small fake; its fingerprint is recorded).
    ``index_type`` forces the FAISS index ("flat", "ivf", "hnsw"; default: chosen by size).
    ``engine="ray"`` embeds on a pool of Ray actors (``paperscope[ray]``; ``RAY_ADDRESS`` or a local Ray).
    ``backend`` is one of ``embed.BACKENDS`` (default: the store's own, else the lock's); it is
    part of the fingerprint, so another backend than the store's needs ``rebuild=True``.

    ``device`` ("auto", "cpu", "cuda", "cuda:N", "mps") and ``dtype`` ("auto": fp16 on CUDA) say
    where the torch backend runs; a missing device fails here, before the store is touched. The
    device is not part of the fingerprint: switching devices never re-embeds an unchanged paper.
    ``feeder`` forces the GPU feeder on or off (default: on CUDA only); ``workers`` is its number of
    tokenizer processes (default: cores - 2). See docs/gpu.md.

    The stages, in order: check the arguments; take the writer lock and the verified previous
    generation; fill the papers table; stop if nothing changed; embed what is missing; write the
    vectors, the lexical index and the FAISS index; write the manifest and swap the generation in.
    """
    t0 = time.perf_counter()
    st = store if isinstance(store, Store) else Store(store)
    lock_file = None if isinstance(lock, ModelLock) or embedder is not None else find_lock(lock)
    model = BuildModel(with_backend(lock if isinstance(lock, ModelLock) else load_lock(lock), backend), embedder)
    if chunk_size < 1:
        raise InvalidArgument(f"chunk_size must be at least 1, got {chunk_size}")
    index.check_type(index_type)
    request = _device_request(device, dtype, feeder, workers, engine, embedder, model.lock)
    embed_chunks = get_engine(engine, embedder, request)  # fails before the store is touched
    # The store is never read as an input, wherever it lies under the inputs.
    files = expand(_as_paths(paths) or [bundled_corpus()], exclude=st.path)
    try:
        return _build_locked(
            st,
            files,
            model,
            embed_chunks,
            backend,
            prune,
            rebuild,
            chunk_size,
            progress,
            index_type,
            t0,
            lock_file,
            request if engine == "local" else None,
        )
    except (OSError, sqlite3.OperationalError) as e:
        raise os_failure(e, st.path) from None


def _build_locked(
    st: Store,
    files: list[Path],
    model: BuildModel,
    embed_chunks: EmbedChunks,
    backend: str | None,
    prune: bool,
    rebuild: bool,
    chunk_size: int,
    progress: ProgressFactory,
    index_type: str | None,
    t0: float,
    lock_file: Path | None,
    request: devices.DeviceRequest | None,
) -> BuildReport:
    """The stages of :func:`build`, under the store's writer lock."""
    with st.writer():
        prev = _refused_unless_rebuild(st, rebuild, st.current)
        model.keep_store_backend(prev, backend)
        if request is not None:  # the device against the store's own backend (a device never changes it)
            devices.check(request.device, request.dtype, backend=model.lock.backend)
        _check_same_model(st, prev, model, rebuild, lock_file)
        # Paths in the report and manifest are text: bytes of a name that are not UTF-8 are escaped.
        report = BuildReport(store=shown(st.path), generation=None)
        inputs_record = input_files(files, prune, prev)
        if prev is not None and _same_inputs(prev, files, inputs_record, model, rebuild, index_type):
            # The bytes this generation was built from, again: nothing to read, embed or write.
            _refused_unless_rebuild(st, rebuild, lambda: prev.check())
            report.nothing_to_do, report.inputs_unchanged, report.generation = True, True, prev.name
            report.papers = report.unchanged = prev.manifest["counts"]["papers"]
            report.seconds = time.perf_counter() - t0
            return report
        # The previous generation is verified before anything of it is committed into the next one.
        # Without --rebuild (which must know first whether to use it) the check runs beside the
        # build and is awaited before the commit: the same guarantee, its 9.5 GB of hashing at a
        # million papers overlapped with reading the inputs.
        checked = _Verification(st, prev) if prev is not None and not rebuild else None
        if checked is None:
            prev = _previous(st, prev, rebuild)
        name, tmp = st.new_generation()
        try:
            same = prev is not None and _same_paths(_recorded_paths(prev), files)
            con, written = _fill_papers(
                tmp / "papers.sqlite", prev, files, model.text, prune, report, same, inputs_record["files"]
            )
            # The papers: a delta of these rows over the base file (paperscope.layered_papers), or whole.
            papers_delta = layered_papers.delta_rows(con) if layered_papers.is_delta(con) else None
            if _nothing_changed(prev, report, rebuild, index_type):
                if checked is not None:
                    checked.wait()  # a damaged store is refused, changed or not
                con.close()
                st.discard(tmp)
                report.nothing_to_do, report.generation = True, prev.name
                report.seconds = time.perf_counter() - t0
                return report
            base = None if rebuild else prev  # what this generation may reuse
            artifact = model.artifact_digest(prev, rebuild, report)
            change = _embed_and_write_vectors(
                st, con, tmp, base, model, embed_chunks, chunk_size, progress, report, written
            )
            report.tokenised, derived = _write_lexical(con, tmp, base, written)
            con.close()
            if derived.idf_check is not None:
                report.checks.append(_idf_check_line(derived.idf_check))
            index_info = _write_index(tmp, base, change, index_type, report)
            dense_ref = _dense_reference(tmp, change)
            report.seconds = time.perf_counter() - t0
            manifest = _manifest(prev, model, artifact, index_info, files, report)
            _hash_left(files, inputs_record)
            manifest["input_files"] = inputs_record
            if dense_ref is not None:
                manifest["reference"] = {"dense": list(dense_ref)}
            if change.delta_rows is not None:  # the vectors are a base and a delta of these rows
                manifest["vectors"] = {"delta_rows": change.delta_rows}
            if papers_delta is not None:
                manifest["papers"] = {"delta_rows": papers_delta}
            # "derived", "merged" (carried idf), "delta" (over the base postings) or "linked"
            manifest["lexical"]["derivation"] = derived.how
            if derived.delta_rows is not None:  # the postings: the base's and a delta of these rows
                manifest["lexical"]["delta_rows"] = derived.delta_rows
            if derived.forward_rows is not None:  # the forward index: the base's rows and these
                manifest["lexical"]["forward_rows"] = derived.forward_rows
            if derived.idf_check is not None:  # "kept" (merged) or "refreshed" (derived), and the figures
                manifest["lexical"]["idf_check"] = derived.idf_check
            if checked is not None:
                checked.wait()
            committed = st.commit(name, tmp, manifest, report.warnings, carried_from=base)
            report.generation = committed.name
            report.carried = sorted(f for f, meta in committed.manifest["files"].items() if "written_by" in meta)
            report.bytes_written = sum(
                meta["bytes"] for meta in committed.manifest["files"].values() if "written_by" not in meta
            )
        except BaseException as e:
            if report.generation is None:
                st.discard(tmp)
            if checked is not None and isinstance(e, Exception):
                checked.wait()  # damage found there explains this failure better than its symptom
            raise
        # Only after the swap: the checkpoint has served its purpose. The new generation is live
        # now, so a failure here (a full disk cannot VACUUM) is a warning, never a failed build.
        try:
            staging = st.staging()
            try:
                staging.clear()
            finally:
                staging.close()
        except (OSError, sqlite3.Error, KeyboardInterrupt) as e:
            # Even an interrupt: the generation is live, so saying "unchanged" would be false.
            why = str(e) or type(e).__name__
            report.warnings.append(
                shown(
                    f"{st.path / 'staging.sqlite'}: could not clear the build checkpoint ({why}); "
                    "the new generation is committed; the next index clears it"
                )
            )
        return report


def _device_request(
    device: str,
    dtype: str,
    feeder: bool | None,
    workers: int | None,
    engine: str,
    embedder: Embedder | None,
    lock: ModelLock,
) -> devices.DeviceRequest | None:
    """Parse and check ``device``/``dtype`` before anything is written; None keeps a custom embedder's own."""
    if embedder is not None:
        if devices.parse_device(device) != "auto" or devices.parse_dtype(dtype) != "auto":
            raise InvalidArgument("device= and dtype= place the lock's model; a custom embedder= places itself")
        return None
    if workers is not None and workers < 0:
        raise InvalidArgument(f"workers must be 0 or more, got {workers}")
    if engine == "local":
        devices.check(device, dtype, backend=lock.backend)  # a missing GPU is one line, here
    else:
        devices.parse_device(device), devices.parse_dtype(dtype)  # the cluster's GPUs are checked by Ray
    return devices.DeviceRequest(device, dtype, feeder, workers)


def _check_same_model(
    st: Store, prev: Generation | None, model: BuildModel, rebuild: bool, lock_file: Path | None
) -> None:
    """Vectors of two models never mix: another fingerprint than the store's needs --rebuild."""
    if prev is None or rebuild or prev.manifest["model"]["fingerprint"] == model.fingerprint:
        return
    other = _backend_of(prev)
    read = f" (read from {lock_file})" if lock_file is not None else ""
    if model.custom is None and other != model.lock.backend:
        what = f"backend {other}, this run asks for {model.lock.backend}"
        advice = f"to switch to {model.lock.backend}, re-embed everything: paperscope index --rebuild"
    else:
        what = f"the lock{read} gives {model.fingerprint} ({model.lock.name})"
        # --rebuild would re-embed with *this* lock's model: say so, and how to keep the store's.
        advice = (
            f"to keep {prev.manifest['model']['name']}, pass --lock with the lock it was built with; "
            f"to switch every paper to {model.lock.name}, run `paperscope index --rebuild`"
            + (f" (with --lock {lock_file})" if lock_file is not None else "")
        )
    raise StoreError(
        f"{st.path}: built with model fingerprint {prev.manifest['model']['fingerprint']} "
        f"({prev.manifest['model']['name']}), {what}; {advice}"
    )


def _nothing_changed(prev: Generation | None, report: BuildReport, rebuild: bool, index_type: str | None) -> bool:
    """True when the new generation would equal the live one (the model is then never loaded).

    A generation from before lexical indexes existed is upgraded by a plain re-run, and so is
    one whose lexical index came from another tokenizer version (it is re-tokenised).
    """
    if prev is None or rebuild or not _current_format(prev):
        return False
    if index_type is not None and index_type != index.kind_of(prev.manifest.get("index")):
        return False
    return not (report.added or report.changed or report.updated or report.removed)


def _embed_and_write_vectors(
    st: Store,
    con: sqlite3.Connection,
    tmp: Path,
    base: Generation | None,
    model: BuildModel,
    embed_chunks: EmbedChunks,
    chunk_size: int,
    progress: ProgressFactory,
    report: BuildReport,
    written: np.ndarray | None = None,
) -> VectorChange:
    """Embed what has no vector yet (checkpointed), then write vectors.npy; how it differs from base's.

    ``written``: the only rows that may differ from the previous generation's (see :func:`_fill_papers`).
    """
    staging = st.staging()
    try:
        _embed_missing(
            con,
            staging,
            model.fingerprint,
            embed_chunks,
            model.lock,
            model.text,
            model.dimension,
            chunk_size,
            progress,
            report,
            reuse_previous=base is not None,
            written=written,
        )
        report.devices = devices.summarise(staging.made_by(model.fingerprint))
        return _write_vectors(con, tmp / "vectors.npy", base, staging, model.fingerprint, model.dimension, written)
    finally:
        staging.close()


def _write_index(
    tmp: Path, prev: Generation | None, change: VectorChange, index_type: str | None, report: BuildReport
) -> dict[str, Any]:
    """index.faiss: linked from the previous generation when the vectors are the same, updated in
    place of a rebuild when only some rows changed (IVF; retrained when a due drift check fails),
    else built from scratch."""
    prev_index = prev.manifest.get("index") if prev is not None else None
    same_kind = prev is not None and (index_type is None or index_type == index.kind_of(prev_index))
    if change.identical and same_kind:
        # Same vectors in the same rows: the previous index (and its measured recall) still holds.
        os.link(prev.file("index.faiss"), tmp / "index.faiss")
        return {**(prev_index or {}), "type": index.kind_of(prev_index), "linked_from": prev.name}
    vectors = read_vectors(tmp, change.n, change.dim)
    if prev is not None and not change.renumbered and index.can_update(prev_index, index_type, change.n):
        built, index_info = index.update(
            prev.file("index.faiss"), prev_index, vectors, change.changed, change.previous_n
        )
        index_info["updated_from"] = prev.name
        if index.check_due(index_info):
            # Every CHECK_FRACTION of rows changed: keep the centroids while they measurably fit.
            drift = index.drift_check(built, index_info, vectors, change.changed)
            report.checks.append(_index_check_line(drift, index_info["incremental"]["rows_since_check"]))
            if drift["decision"] == "kept":
                index_info = index.checked(index_info, drift)
            else:
                built, index_info = index.build(vectors, index_type)
                index_info["drift_check"] = drift
    else:
        built, index_info = index.build(vectors, index_type)
    index.save(built, tmp / "index.faiss")
    return index_info


def _index_check_line(drift: dict[str, Any], rows: int) -> str:
    """The report's line for an IVF drift check (``index.drift_check``)."""
    figures = [f"{drift['rows']} rows (trained on {drift['trained_rows']})"]
    if "recall_at_10" in drift:
        figures.append(f"recall@10 {drift['recall_at_10']:.3f} on {drift['recall_queries']} queries")
        figures.append(f"{100 * drift['miscoded']:.1f}% of rows coded further than {drift['code_error']}")
        figures.append(f"list imbalance {drift['list_imbalance']:.2f}")
    verdict = "kept the centroids" if drift["decision"] == "kept" else f"retrained ({', '.join(drift['reasons'])})"
    return f"index: checked after {rows} rows changed: {'; '.join(figures)}: {verdict} ({drift['seconds']:.1f}s)"


def _idf_check_line(check: dict[str, Any]) -> str:
    """The report's line for an idf check (``impact.idf_drift``)."""
    verdict = "kept the idf" if check["decision"] == "kept" else "derived the weights again"
    return (
        f"lexical: idf checked after {check['rows_since_check']} rows changed: 1st-percentile row cosine "
        f"{check['row_cosine_p1']:.6f} (limit {check['min_cosine']}) on {check['sample_rows']} rows: "
        f"{verdict} ({check['seconds']:.1f}s)"
    )


def _dense_reference(tmp: Path, change: VectorChange) -> tuple[float, float] | None:
    """The dense half of the score reference (``rank.dense_reference``), for the manifest: a reader
    then need not read its sample of vectors at the first query (0.16-0.19 s on a cold 1M store)."""
    vectors = read_vectors(tmp, change.n, change.dim)
    return rank.dense_reference(vectors) if len(vectors) >= 2 else None


def _manifest(
    prev: Generation | None,
    model: BuildModel,
    artifact: str | None,
    index_info: dict[str, Any],
    files: list[Path],
    report: BuildReport,
) -> dict[str, Any]:
    """The generation's manifest (the store adds the file list and the seal when it commits)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "paperscope_version": __version__,
        "created_at": now(),
        "previous_generation": prev.name if prev else None,
        "model": model.manifest_block(artifact),
        "index": index_info,
        "lexical": {
            "scoring": "tfidf-sublinear-cosine",
            "title_boost": lexical.TITLE_BOOST,
            "phrase_weight": lexical.PHRASE_WEIGHT,
            "tokenizer_version": lexical.TOKENIZER_VERSION,
        },
        "counts": {"papers": report.papers},
        "inputs": [shown(f) for f in files],
        "build": report.to_dict(),
    }


def _refused_unless_rebuild(st: Store, rebuild: bool, read: Callable[[], Generation | None]) -> Generation | None:
    """``read()`` (the live generation, or a check of it); a damaged store is refused, or with
    ``rebuild`` ignored (None: the store is rebuilt from this run's inputs)."""
    try:
        return read()
    except StoreError as e:
        if not rebuild:
            raise StoreError(f"{e} (with --rebuild the store is rebuilt from the inputs given)") from None
        return None


class _Verification:
    """:func:`paperscope.verify.verify` of the live generation in a background thread.

    :meth:`wait` raises the StoreError :func:`_previous` would raise for a damaged generation.
    A daemon thread: an interrupted build does not wait for the hashing to end.
    """

    def __init__(self, st: Store, prev: Generation):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(st, prev), name="paperscope-verify", daemon=True)
        self._thread.start()

    def _run(self, st: Store, prev: Generation) -> None:
        try:
            _previous(st, prev, rebuild=False)
        except BaseException as e:  # noqa: BLE001 - handed to the build thread by wait()
            self._error = e

    def wait(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


def _previous(st: Store, prev: Generation | None, rebuild: bool) -> Generation | None:
    """The live generation, fully verified before anything of it is reused in the next one.

    A damaged generation is refused (its damage would be copied into the next, under fresh
    hashes); with ``rebuild`` it is ignored and the store is rebuilt from this run's inputs.
    """
    from paperscope.verify import verify

    def verified() -> Generation | None:
        # The map is not reused by a build (1.3 GB of arrays at 1M papers: 20 s of hashing for nothing).
        if damaged := verify(st, include_map=False).damaged if prev is not None else []:
            raise StoreError(f"{damaged[0].path}: {damaged[0].detail}")
        return prev

    return _refused_unless_rebuild(st, rebuild, verified)


def input_files(files: list[Path], prune: bool, prev: Generation | None = None) -> dict[str, Any]:
    """What this run reads, recorded in the manifest: each input's absolute path, size, mtime and sha256.

    The next run with the same inputs (same paths, same bytes) and the same options finds the
    same entry and stops before parsing anything. Hashing reads each input once, far cheaper than
    parsing it; ``prune`` is recorded because it changes what the same inputs produce. The path is
    made absolute (not resolved: a link is its own name) so that the same file named from another
    directory, or relative one time and absolute the next, is the same input: at 1M papers a
    re-run that named its unchanged input the other way parsed all of it (238 s).

    Where ``prev`` did not record these paths with these sizes the inputs surely changed, so
    nothing is hashed up front: ``sha256`` is None, filled by the scan of the lines, which reads
    the files anyway (:func:`_fill_papers`), or by :func:`_hash_left`. At 1M papers that spares
    a first read of the 794 MB input beside the verify of the previous generation (17 s).
    """
    out = []
    for f in files:
        stat = f.stat()
        out.append({"path": _absolute(f), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": None})
    recorded = prev.manifest.get("input_files") if prev is not None else None
    entries = recorded.get("files") if isinstance(recorded, dict) else None
    if (
        isinstance(entries, list)
        and _same_paths(_recorded_paths(prev), files)  # type: ignore[arg-type]
        and [e.get("bytes") for e in entries if isinstance(e, dict)] == [e["bytes"] for e in out]
    ):
        for f, e in zip(files, out, strict=True):
            e["sha256"] = sha256_file(f)
    return {"prune": prune, "files": out}


def _hash_left(files: list[Path], inputs_record: dict[str, Any]) -> None:
    """Hash every input the scan did not (a CSV or page file, or one it gave up on)."""
    for f, e in zip(files, inputs_record["files"], strict=True):
        if e["sha256"] is None:
            e["sha256"] = sha256_file(f)


def _absolute(f: Path) -> str:
    return shown(Path(os.path.abspath(f)))


def _same_paths(recorded: list[Any] | None, files: list[Path]) -> bool:
    """Whether the recorded input paths name these files, in this order: absolute paths, or (a
    record written before paths were made absolute) the paths as this run spells them."""
    return (
        recorded is not None
        and len(recorded) == len(files)
        and all(r in (_absolute(f), shown(f)) for r, f in zip(recorded, files))
    )


def _recorded_paths(prev: Generation) -> list[Any] | None:
    """The input paths the generation recorded (None for one written before inputs were recorded)."""
    recorded = prev.manifest.get("input_files")
    files = recorded.get("files") if isinstance(recorded, dict) else None
    return [e.get("path") for e in files if isinstance(e, dict)] if isinstance(files, list) else None


def _write_lexical(
    con: sqlite3.Connection, tmp: Path, base: Generation | None, written: np.ndarray | None
) -> tuple[int, impact.Derived]:
    """Write the lexical files (term counts, weights and postings); (rows tokenised, how the
    derived file was written). A small edit keeps the forward index a base and a delta
    (:mod:`paperscope.lexical_delta`); otherwise the files are carried and written whole."""
    prev = lexical_delta.Previous.of(base.file("lexical.npz").parent, base.manifest.get("files", {})) if base else None
    done = lexical_delta.write(con, tmp, prev, written) if prev is not None else None
    if done is not None:
        return done
    if prev is None:
        tokenised, _, carry = lexical.build_for_generation(con, tmp / "lexical.npz", None, written)
        return tokenised, impact.derive(tmp / "lexical.npz", tmp / impact.DERIVED_FILE, None, carry)
    rows = lexical_delta.previous_rows(prev)  # None: the previous rows are written whole
    tokenised, _, carry = lexical.build_for_generation(con, tmp / "lexical.npz", prev.lexical, written, rows)
    derived = impact.derive(  # weights and postings, mmapped on open; linked when lexical.npz was
        tmp / "lexical.npz",
        tmp / impact.DERIVED_FILE,
        (prev.lexical, prev.derived),
        carry,
        previous_base=prev.base,
        base_out=tmp / impact.BASE_FILE,
        previous_rows=rows,
    )
    return tokenised, derived


def _current_format(prev: Generation) -> bool:
    """True when ``prev`` has every lexical file this version writes, from this tokenizer version.

    A generation from before lexical indexes (or their derived postings) existed, or whose lexical
    index came from another tokenizer version, is upgraded by a plain re-run.
    """
    if not {"lexical.npz", impact.DERIVED_FILE} <= set(prev.manifest.get("files", {})):
        return False
    return lexical.stored_version(prev.file("lexical.npz")) == lexical.TOKENIZER_VERSION


def _same_inputs(
    prev: Generation,
    files: list[Path],
    inputs: dict[str, Any],
    model: BuildModel,
    rebuild: bool,
    index_type: str | None,
) -> bool:
    """True when ``prev`` was built from exactly these input bytes with the options of this run.

    A store that was pruned to these inputs stays as it is with or without ``--prune``; one built
    without it may hold papers from other inputs, which ``--prune`` would remove.
    """
    recorded = prev.manifest.get("input_files")
    if rebuild or not isinstance(recorded, dict) or prev.manifest["model"]["fingerprint"] != model.fingerprint:
        return False

    def content(entries: Any) -> list[tuple[Any, ...]] | None:  # the mtime is recorded, never trusted alone
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            return None
        return [(e.get("bytes"), e.get("sha256")) for e in entries]

    if content(recorded.get("files")) != content(inputs["files"]) or (inputs["prune"] and not recorded.get("prune")):
        return False
    if not _same_paths(_recorded_paths(prev), files):
        return False
    if not _current_format(prev):
        return False
    return index_type is None or index_type == index.kind_of(prev.manifest.get("index"))


def _fill_papers(
    db: Path,
    prev: Generation | None,
    files: list[Path],
    text_of: Callable[[str, str], str],
    prune: bool,
    report: BuildReport,
    same_inputs: bool = False,
    digests: list[dict[str, Any]] | None = None,
) -> tuple[sqlite3.Connection, np.ndarray | None]:
    """Create the new papers table: previous papers, then this run's inputs merged in.

    Returns the connection (the previous table attached as ``old``) and, unless ``prune``
    renumbered rows, the rows this run wrote: every other row is the previous generation's,
    unchanged and at the same row number.

    Without ``prune``, only the entries whose line changed since the previous generation's record
    are parsed, when :func:`paperscope.inputs.plan` shows that this gives exactly what parsing
    everything gives, whatever the inputs are named (a new snapshot under a new name is
    compared too). ``same_inputs`` (the input paths are those the previous generation recorded)
    matters only for a record from before file names were kept: its papers keep their sources.
    Entries of ``digests`` (the run's input record) whose sha256 is None get the one the scan read.
    """
    layout = _papers_layout(prev, prune)
    layered = layout in ("delta-new", "delta-copy")
    # Without --prune no row moves. The previous rows stay where they are: in the base file that a
    # delta of the rows written since sits on (paperscope.layered_papers), or in a whole copy of
    # the previous file (the kernel copies pages; a million rows re-inserted and re-indexed took a
    # minute) when that delta has grown past layered_papers.DELTA_MAX.
    if layout in ("delta-copy", "whole-copy"):
        shutil.copyfile(prev.file("papers.sqlite"), db)  # the previous delta (or whole table) and input record
    elif layout == "consolidate":
        shutil.copyfile(prev.file(layered_papers.BASE_FILE), db)  # the delta is applied below
    # A URI with the path percent-encoded: '#', '?' and '%' in a store path are plain characters.
    con = sqlite3.connect(sqlite_uri(db), uri=True, isolation_level=None)  # explicit BEGIN/COMMIT below
    con.execute("PRAGMA journal_mode=OFF")  # a crashed build's file is thrown away anyway
    con.execute("PRAGMA synchronous=OFF")
    if layout in ("fresh", "delta-new"):
        con.executescript(layered_papers.delta_ddl(PAPERS_DDL) if layered else PAPERS_DDL)
        con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    con.execute("CREATE TEMP TABLE seen (id TEXT PRIMARY KEY)")
    if prev is not None:
        con.execute("ATTACH DATABASE ? AS old", (sqlite_uri(prev.file("papers.sqlite"), mode="ro"),))
        # ``old_papers``: the previous generation's rows, whichever way it holds them.
        if _is_layered(prev):
            base_uri = sqlite_uri(prev.file(layered_papers.BASE_FILE), mode="ro")
            layered_papers.attach(con, base_uri, delta="old", base="oldbase", view="old_papers")
        else:
            con.execute("CREATE TEMP VIEW old_papers AS SELECT * FROM old.papers")
        if layout in ("delta-new", "consolidate"):
            _copy_record(con)  # the previous run's input record (the base file holds an older one)
        if layout == "consolidate":
            con.execute(f"INSERT OR REPLACE INTO main.papers SELECT * FROM old.{layered_papers.DELTA_TABLE}")
        elif layout == "fresh":
            con.execute("INSERT INTO papers SELECT * FROM old_papers ORDER BY row")
    if layered:
        # The previous base, or the previous whole file: the base from now on (a hard link, never written).
        base = prev.file(layered_papers.BASE_FILE) if layout == "delta-copy" else prev.file("papers.sqlite")
        os.link(base, db.parent / layered_papers.BASE_FILE)
        layered_papers.attach(con, sqlite_uri(db.parent / layered_papers.BASE_FILE, mode="ro"))
    # Where this run's rows go: the delta table, or the whole table.
    target = f"main.{layered_papers.DELTA_TABLE}" if layered else "main.papers"
    copied = layout != "fresh"  # the file holds the previous generation's input record
    cols = ", ".join(PAPER_COLUMNS)
    previous = inputs.recorded(con) if prev is not None and not prune else None
    previous_hash = inputs.recorded_line_hash(con) if previous is not None else inputs.LINE_HASH
    # One hash per entry, to record (and to compare with the previous run's).
    current = inputs.scan(files, previous, previous_hash)
    if current is not None and current.previous is not None:
        previous = current.previous  # a record of the legacy line hash, translated: rewritten whole below
    if current is not None and digests is not None:
        for entry, sha in zip(digests, current.sha256, strict=True):
            entry["sha256"] = entry["sha256"] or sha
    lines = None
    if current is not None and previous is not None:
        previous_files = inputs.recorded_files(con)
        with tempfile.TemporaryDirectory(prefix=".tmp-g-inputs-", dir=db.parent.parent) as scratch:
            lines = inputs.plan(
                files, current, previous, Path(scratch), previous_files, previous_files is None and same_inputs
            )
    # Ids read this run: the unchanged entries' ids (the plan's, held as a set: inserting a million
    # of them into the table took 14 s) and every id read in the table ``seen``.
    unchanged_ids: set[str] = set()
    touched: set[str] = set()  # ids whose row this run wrote (every other row is the previous one)
    if lines is not None:
        read = lines.report
        report.entries_unchanged = lines.unchanged_entries
        unchanged_ids = lines.unchanged_ids  # disjoint from the changed readings' ids (plan() checks)
        readings: Iterator[tuple[int, Paper]] = iter(lines.changed)
        ids = lines.ids
    else:
        read = ReadReport()
        # The reader counts an entry before yielding its paper: entries - 1 is this paper's entry.
        readings = ((read.entries - 1, p) for p in read_papers(files, read))
        ids = [None] * len(current.hashes) if current is not None else []
    next_row = layered_papers.rows_of(con)  # rows are 0..n-1: a new paper takes the next
    con.execute("BEGIN")
    for batch, (entry, paper) in enumerate(readings, 1):
        if 0 <= entry < len(ids):
            ids[entry] = paper.id
        first_this_run = con.execute("INSERT OR IGNORE INTO seen VALUES (?)", (paper.id,)).rowcount == 1
        found = con.execute(f"SELECT row, {cols} FROM papers WHERE id=?", (paper.id,)).fetchone()
        existing = found[1:] if found is not None else None
        if existing is not None:
            old = paper_from_row(existing)
            if _is_merge(old, paper, first_this_run):
                report.merged += 1
                if len(report.merges) < MAX_MERGE_LINES:
                    where = f" ({paper.sources[0]})" if paper.sources else ""
                    report.merges.append(
                        shown(
                            f"merged {paper.title!r}{where} into {paper.id} ({old.title!r}): "
                            + (
                                "same id"
                                if old.title == paper.title or not paper.id.startswith("t-")
                                else "titles differ only in case, spacing or punctuation"
                            )
                        )
                    )
            if first_this_run and prune:
                # With --prune the inputs are the whole truth: sources start afresh this run.
                old = replace(old, sources=())
            paper = merge(old, paper)
        values = paper_values(paper)
        if existing is not None and values == tuple(existing):
            continue  # the stored row already says exactly this: no hash to compute, no page to rewrite
        touched.add(paper.id)
        chash = content_hash(text_of(paper.title, paper.abstract))
        if found is not None:
            row = found[0]  # a paper keeps its row (and vector row) while it is in the store
        else:
            row, next_row = next_row, next_row + 1
        con.execute(
            f"INSERT OR REPLACE INTO {target} (row, {cols}, norm_title, content_hash) "
            f"VALUES (?, {', '.join('?' * len(values))}, ?, ?)",
            (row, *values, normalise_title(paper.title), chash),
        )
        if batch % 10_000 == 0:
            con.execute("COMMIT")
            con.execute("BEGIN")
    con.execute("COMMIT")
    if layered:
        _drop_unchanged(con, sorted(touched))
    # Skipped papers read now from a file of another name gain that name, as a full parse would.
    renamed = _add_sources(con, lines.named, target) if lines is not None else 0
    if current is not None and (lines is not None or read.entries == len(current.hashes)):
        ends = list(zip(files, current.ends, strict=True))
        same_hash = previous_hash == inputs.LINE_HASH
        inputs.write_record(con, current.hashes, ids, previous if copied and same_hash else None, ends)
    elif copied:
        for table in inputs.RECORD_TABLES:  # the previous run's record, not this run's
            con.execute(f"DROP TABLE IF EXISTS main.{table}")
    report.entries_read, report.rows_skipped, report.skip_examples = read.entries, read.skipped, read.skip_examples
    n_seen = con.execute("SELECT count(*) FROM seen").fetchone()[0] + len(unchanged_ids)
    if n_seen == 0:
        where = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        detail = f" ({read.skipped} rows skipped, e.g. {read.skip_examples[0]})" if read.skip_examples else ""
        raise InputError(f"{where}: inputs contain no paper with both a title and an abstract{detail}")
    report.papers = layered_papers.rows_of(con)
    if prev is None:
        report.added = n_seen
        return con, None
    if prune:
        report.removed = con.execute("DELETE FROM papers WHERE id NOT IN (SELECT id FROM seen)").rowcount
        _compact_rows(con)
        report.papers -= report.removed
    else:
        # Every seen id has a row (unchanged ids are the previous run's, which wrote them).
        report.kept_not_in_inputs = report.papers - n_seen
    # Only the rows written this run can differ from the previous generation's (without --prune
    # rows never move): compare those, not a million.
    if prune:
        report.added, report.changed, report.updated = _compare_all(con)
    else:
        report.added, report.changed, report.updated, rows = _compare_touched(con, sorted(touched))
    report.updated += renamed
    report.unchanged = report.papers - report.added - report.changed - report.updated
    if prune:
        return con, None
    return con, np.array(rows, dtype=np.int64)


# Columns an update may change besides the text (``updated``: same content hash, other metadata).
_METADATA = tuple(c for c in PAPER_COLUMNS[1:] if c not in ("title", "abstract"))


def _compare_all(con: sqlite3.Connection) -> tuple[int, int, int]:
    """(added, changed, updated) over every paper, against ``old_papers`` (after --prune: whole tables)."""
    cmp_cols = " OR ".join(f"p.{c} IS NOT o.{c}" for c in _METADATA)
    added = con.execute("SELECT count(*) FROM papers p WHERE p.id NOT IN (SELECT id FROM old_papers)").fetchone()[0]
    changed = con.execute(
        "SELECT count(*) FROM papers p CROSS JOIN old_papers o ON o.id = p.id WHERE p.content_hash != o.content_hash"
    ).fetchone()[0]
    updated = con.execute(
        "SELECT count(*) FROM papers p CROSS JOIN old_papers o ON o.id = p.id "
        f"WHERE p.content_hash = o.content_hash AND (p.title IS NOT o.title OR {cmp_cols})"
    ).fetchone()[0]
    return added, changed, updated


def _compare_touched(con: sqlite3.Connection, touched: list[str]) -> tuple[int, int, int, list[int]]:
    """(added, changed, updated, rows) of the papers this run wrote, against ``old_papers``.

    Read by lists of ids, never by a join: SQLite materialises a layered table's view on the inner
    side of a join (paperscope.layered_papers), which read every row of it at a million papers."""
    fields = f"id, row, content_hash, title, {', '.join(_METADATA)}"
    added = changed = updated = 0
    rows: list[int] = []
    for part in layered_papers.batches(touched):
        marks = ",".join("?" * len(part))
        now = {r[0]: r[1:] for r in con.execute(f"SELECT {fields} FROM papers WHERE id IN ({marks})", part)}
        before = {r[0]: r[1:] for r in con.execute(f"SELECT {fields} FROM old_papers WHERE id IN ({marks})", part)}
        for pid, (row, chash, *rest) in now.items():
            rows.append(row)
            was = before.get(pid)
            if was is None:
                added += 1
            elif was[1] != chash:
                changed += 1
            elif tuple(was[2:]) != tuple(rest):
                updated += 1
    return added, changed, updated, sorted(rows)


def _drop_unchanged(con: sqlite3.Connection, touched: list[str]) -> None:
    """Remove from the delta the rows this run wrote that ended equal to the base's row: a paper
    read twice (merged under one id) is written on each reading, and an edit undone since the
    base needs no row in the delta. The view then reads the base's row, the same bytes."""
    con.execute("BEGIN")
    for part in layered_papers.batches(touched):
        marks = ",".join("?" * len(part))
        now = {
            r[1]: r for r in con.execute(f"SELECT * FROM main.{layered_papers.DELTA_TABLE} WHERE id IN ({marks})", part)
        }
        same = [
            (r[0],) for r in con.execute(f"SELECT * FROM base.papers WHERE id IN ({marks})", part) if now.get(r[1]) == r
        ]
        con.executemany(f"DELETE FROM main.{layered_papers.DELTA_TABLE} WHERE row = ?", same)
    con.execute("COMMIT")


def _copy_record(con: sqlite3.Connection) -> None:
    """The previous generation's input record tables (``old``), in place of the new file's own."""
    for table in inputs.RECORD_TABLES:
        con.execute(f"DROP TABLE IF EXISTS main.{table}")
    found = con.execute(
        f"SELECT name, sql FROM old.sqlite_master WHERE type = 'table' AND name IN ({','.join('?' * len(inputs.RECORD_TABLES))})",
        inputs.RECORD_TABLES,
    ).fetchall()
    for table, sql in found:
        con.execute(sql)  # unqualified: created in main
        con.execute(f"INSERT INTO main.{table} SELECT * FROM old.{table}")


def _is_layered(gen: Generation) -> bool:
    """Whether a generation's papers are a delta over a base file (paperscope.layered_papers)."""
    return layered_papers.BASE_FILE in gen.manifest.get("files", {})


def _papers_layout(prev: Generation | None, prune: bool) -> str:
    """How the new papers file starts: ``fresh`` (created, the previous rows inserted), ``delta-new``
    (an empty delta over the previous file as the base), ``delta-copy`` (the previous delta, copied,
    over the same base), ``consolidate`` (the previous base copied whole and its delta applied) or
    ``whole-copy`` (the previous whole file copied; only with layered_papers.DELTA_MAX 0)."""
    if prev is None or prune:
        return "fresh"  # --prune renumbers rows: every row is written
    papers = prev.manifest.get("papers") or {}
    if _is_layered(prev):
        if not _same_schema(prev.file(layered_papers.BASE_FILE)):
            return "fresh"
        n = prev.manifest.get("counts", {}).get("papers", 0)
        small = papers.get("delta_rows", n + 1) <= layered_papers.DELTA_MAX * n
        if small and _same_schema(prev.file("papers.sqlite"), delta=True):
            return "delta-copy"
        return "consolidate"
    if not _same_schema(prev.file("papers.sqlite")):
        return "fresh"
    return "delta-new" if layered_papers.DELTA_MAX > 0 else "whole-copy"


def _add_sources(con: sqlite3.Connection, named: dict[str, list[str]], target: str = "main.papers") -> int:
    """Add each file name to the sources of the papers listed under it, where they lack it; the
    number of rows changed. Only ``sources`` changes: no vector or lexical row depends on it.
    ``target`` is where rows are written: the whole table, or a layered table's delta."""
    changed = 0
    layered = target != "main.papers"
    con.execute("CREATE TEMP TABLE IF NOT EXISTS named (id TEXT PRIMARY KEY)")
    for name, ids in named.items():
        con.execute("BEGIN")
        con.execute("DELETE FROM temp.named")
        con.executemany("INSERT OR IGNORE INTO temp.named VALUES (?)", ((i,) for i in ids))
        # A few distinct lists among a million rows: one UPDATE for each that lacks the name. A
        # layered table's view is read by the ids (a join would materialise it).
        distinct = (
            "SELECT DISTINCT sources FROM papers WHERE id IN (SELECT id FROM temp.named)"
            if layered
            else "SELECT DISTINCT p.sources FROM temp.named n CROSS JOIN papers p ON p.id = n.id"
        )
        for old in [s for (s,) in con.execute(distinct)]:
            listed = json.loads(old)
            if name in listed:
                continue
            new = dumps([*listed, name])
            if layered:
                columns = ("row", "norm_title", "content_hash", *PAPER_COLUMNS)
                values = ", ".join("?" if c == "sources" else c for c in columns)
                changed += con.execute(
                    f"INSERT OR REPLACE INTO {target} ({', '.join(columns)}) SELECT {values} FROM papers "
                    "WHERE sources = ? AND id IN (SELECT id FROM temp.named)",
                    (new, old),
                ).rowcount
            else:
                changed += con.execute(
                    "UPDATE papers SET sources = ? WHERE sources = ? AND id IN (SELECT id FROM temp.named)", (new, old)
                ).rowcount
        con.execute("COMMIT")
    return changed


def _same_schema(path: Path, delta: bool = False) -> bool:
    """Whether the papers file at ``path`` has this paperscope's tables (so it can be copied and updated);
    with ``delta``, those of a layered table's delta (paperscope.layered_papers)."""
    try:
        con = sqlite3.connect(sqlite_uri(path, mode="ro"), uri=True)
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            sql = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')"))
        finally:
            con.close()
    except sqlite3.Error:
        return False
    tables = {k: v for k, v in sql.items() if k not in inputs.RECORD_TABLES}
    return version == SCHEMA_VERSION and _ddl(delta) == tables


def _ddl(delta: bool = False) -> dict[str, str]:
    """The schema :data:`PAPERS_DDL` creates (or its delta's), as sqlite_master records it (name -> sql)."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(layered_papers.delta_ddl(PAPERS_DDL) if delta else PAPERS_DDL)
        return dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type IN ('table', 'index')"))
    finally:
        con.close()


def _is_merge(old: Paper, new: Paper, first_this_run: bool) -> bool:
    """Whether a reading merged into a paper is a *different* text (worth a line), not the same paper again.

    Within one run, any difference in title or abstract under one id is reported. Against the
    store, a paper with an explicit id may change (an update, counted as changed); one whose id
    comes from its title is reported when the title is written differently.
    """
    if not first_this_run:
        return (old.title, old.abstract) != (new.title, new.abstract)
    return new.id.startswith("t-") and old.title != new.title and new.id == title_id(new.title)


def _compact_rows(con: sqlite3.Connection) -> None:
    """Renumber rows 0..n-1 in their current order after deletions (two passes avoid collisions)."""
    con.execute(
        "CREATE TEMP TABLE renumber AS SELECT row AS old_row, "
        "ROW_NUMBER() OVER (ORDER BY row) - 1 AS new_row FROM papers"
    )
    con.execute("CREATE INDEX temp.renumber_old ON renumber(old_row)")
    con.execute("UPDATE papers SET row = -1 - (SELECT new_row FROM renumber WHERE old_row = papers.row)")
    con.execute("UPDATE papers SET row = -1 - row")
    con.execute("DROP TABLE temp.renumber")


def _embed_missing(
    con: sqlite3.Connection,
    staging: Any,
    fingerprint: str,
    embed_chunks: EmbedChunks,
    lock: ModelLock,
    text_of: Callable[[str, str], str],
    dimension: int,
    chunk_size: int,
    progress: ProgressFactory,
    report: BuildReport,
    reuse_previous: bool,
    written: np.ndarray | None = None,
) -> None:
    """Embed every distinct text that has no vector in the previous generation or the checkpoint."""
    if reuse_previous and _has_old(con) and written is not None:
        hashes = _new_texts(con, written)
    else:
        where = (
            "WHERE p.content_hash NOT IN (SELECT content_hash FROM old_papers)"
            if reuse_previous and _has_old(con)
            else ""
        )
        # Only hashes are held in memory; texts are fetched chunk by chunk. Longest first: similar
        # lengths share a batch (less padding) and the ETA errs on the safe side.
        hashes = [
            h
            for (h,) in con.execute(
                f"SELECT p.content_hash FROM papers p {where} "
                "GROUP BY p.content_hash ORDER BY max(length(p.title) + length(p.abstract)) DESC, p.content_hash"
            )
        ]
    staged = staging.has(fingerprint)
    report.resumed = sum(1 for h in hashes if h in staged)
    todo = [h for h in hashes if h not in staged]
    del hashes, staged
    if not todo:
        return
    chunks = [todo[start : start + chunk_size] for start in range(0, len(todo), chunk_size)]

    def texts() -> Iterator[list[str]]:
        # Consumed lazily by the engine (a distributed engine reads a few chunks ahead).
        for chunk in chunks:
            found = dict(
                con.execute(
                    f"SELECT content_hash, min(title || char(0) || abstract) FROM papers "
                    f"WHERE content_hash IN ({','.join('?' * len(chunk))}) GROUP BY content_hash",
                    chunk,
                ).fetchall()
            )
            yield [text_of(*found[h].split("\0", 1)) for h in chunk]

    bar = progress(len(todo), "embedding")
    t0 = time.perf_counter()
    try:
        # Each chunk is checkpointed as soon as its vectors arrive, so a killed run redoes at most
        # the chunks in flight. The engine comes first in zip() so that it runs to its end (the
        # local engine prepares the torch-free query model after its last chunk).
        for vectors, chunk in zip(embed_chunks(lock, texts(), report), chunks):
            staging.put(
                fingerprint,
                chunk,
                check_vectors(vectors, len(chunk), dimension),
                made_by=(report.device or "cpu", report.dtype or "float32"),
            )
            report.embedded += len(chunk)
            bar.update(len(chunk))
    finally:
        bar.close()
        report.embed_seconds = time.perf_counter() - t0 - report.model_load_seconds
    if report.embedded != len(todo):
        raise StoreError(
            f"internal: the embedding engine returned vectors for {report.embedded} of "
            f"{len(todo)} texts; re-run paperscope index to resume"
        )


def _new_texts(con: sqlite3.Connection, written: np.ndarray) -> list[str]:
    """The content hashes of the ``written`` rows that no previous row has, longest text first (then by hash).

    Every row not written this run is a previous row, whose text has a vector: only the written
    rows are looked at, by lists of rows and of hashes (a layered table's view is scanned whole
    by an ``IN (SELECT ...)`` or a join; paperscope.layered_papers)."""
    longest: dict[str, int] = {}
    for part in layered_papers.batches(written.tolist()):
        found = con.execute(
            "SELECT content_hash, length(title) + length(abstract) FROM papers "
            f"WHERE row IN ({','.join('?' * len(part))})",
            part,
        ).fetchall()
        hashes = sorted({h for h, _ in found})
        known = {
            h
            for (h,) in con.execute(
                f"SELECT DISTINCT content_hash FROM old_papers WHERE content_hash IN ({','.join('?' * len(hashes))})",
                hashes,
            )
        }
        for h, size in found:
            if h not in known:
                longest[h] = max(size, longest.get(h, 0))
    return sorted(longest, key=lambda h: (-longest[h], h))


def _has_old(con: sqlite3.Connection) -> bool:
    # Only the name column: the file column fails to decode for a store path that is not UTF-8.
    return any(name == "old" for (name,) in con.execute("SELECT name FROM pragma_database_list"))


@dataclass(frozen=True)
class VectorChange:
    """How the new vectors.npy differs from the previous one, row by row (for the index and the report).

    ``changed`` holds the rows whose vector is not the previous generation's vector at the same
    row (edited texts, and every row past the previous count); ``renumbered`` is set when a row
    moved (``--prune`` removed papers), which no incremental step can follow.
    """

    n: int
    dim: int
    previous_n: int
    changed: np.ndarray
    renumbered: bool
    # rows of the delta over a shared base (paperscope.overlay), when the vectors were written so
    delta_rows: int | None = None

    @property
    def identical(self) -> bool:
        return self.n > 0 and self.n == self.previous_n and not len(self.changed) and not self.renumbered


def _write_vectors(
    con: sqlite3.Connection,
    path: Path,
    prev: Generation | None,
    staging: Any,
    fingerprint: str,
    dim: int,
    written: np.ndarray | None = None,
) -> VectorChange:
    """Fill vectors.npy in row order from the previous generation and the checkpoint.

    Rows are moved as arrays (contiguous runs are plain copies of the memory-mapped previous
    file), never one by one in Python; only rows with no previous vector are read from staging.
    When every row is the previous generation's row, the previous file is linked instead.
    With ``written`` (the only rows that may differ from the previous generation's) every other
    row keeps its own previous vector, and only the written rows are looked up.
    """
    n = layered_papers.rows_of(con)
    old_vectors = prev.load_vectors() if prev is not None else None
    use_old = old_vectors is not None and _has_old(con)
    previous_n = old_vectors.shape[0] if use_old else 0
    source = np.full(n, -1, dtype=np.int64)
    if use_old and written is not None and n >= previous_n:
        source[:previous_n] = np.arange(previous_n)
        for part in layered_papers.batches(written.tolist()):
            marks = ",".join("?" * len(part))
            now = dict(con.execute(f"SELECT row, content_hash FROM papers WHERE row IN ({marks})", part))
            was = dict(con.execute(f"SELECT row, content_hash FROM old_papers WHERE row IN ({marks})", part))
            # An old row with the same text (any id) provides the vector; min() picks one deterministically.
            other = sorted({h for r, h in now.items() if was.get(r) != h})
            first = {}
            for chunk in layered_papers.batches(other):
                first.update(
                    con.execute(
                        "SELECT content_hash, min(row) FROM old_papers "
                        f"WHERE content_hash IN ({','.join('?' * len(chunk))}) GROUP BY content_hash",
                        chunk,
                    )
                )
            for row, h in now.items():
                source[row] = row if was.get(row) == h else first.get(h, -1)
    elif use_old:
        # An old row with the same text (any id) provides the vector; min() picks one deterministically.
        found = con.execute(
            "SELECT p.row, min(o.row) FROM papers p JOIN old_papers o ON o.content_hash = p.content_hash GROUP BY p.row"
        ).fetchall()
        if found:
            pairs = np.array(found, dtype=np.int64)
            source[pairs[:, 0]] = pairs[:, 1]
    rows = np.arange(n, dtype=np.int64)
    changed = np.flatnonzero(source != rows)
    # Only --prune moves a paper to another row (its rows are renumbered after deletions).
    renumbered = use_old and (
        n < previous_n
        or written is None
        and con.execute(
            "SELECT 1 FROM papers p JOIN old_papers o ON o.id = p.id WHERE o.row != p.row LIMIT 1"
        ).fetchone()
        is not None
    )
    change = VectorChange(n, dim, previous_n, changed, renumbered)
    if use_old and change.identical:
        for name in (path.name, *overlay.LAYERED):  # the previous file, or its base and delta
            if prev.file(name).exists():
                os.link(prev.file(name), path.parent / name)
        return change
    if use_old and not renumbered:
        layered = _write_delta(con, path, prev, old_vectors, source, changed, staging, fingerprint, dim)
        if layered is not None:
            return replace(change, delta_rows=layered)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, dim))
    for start in range(0, n, _VECTOR_CHUNK):
        stop = min(n, start + _VECTOR_CHUNK)
        src = source[start:stop]
        if use_old and src[0] == start and src[-1] == stop - 1 and np.array_equal(src, rows[start:stop]):
            out[start:stop] = old_vectors[start:stop]  # the common case: a run of unchanged rows
            lexical.release_pages(old_vectors)  # read once (peak RSS)
            continue
        have = src >= 0
        if have.any():
            out[start:stop][have] = old_vectors[src[have]]
        missing = start + np.flatnonzero(~have)
        if len(missing):
            out[missing] = _staged(con, staging, fingerprint, dim, missing)
    out.flush()
    del out
    return change


def _write_delta(
    con: sqlite3.Connection,
    path: Path,
    prev: Generation,
    old_vectors: Any,
    source: np.ndarray,
    changed: np.ndarray,
    staging: Any,
    fingerprint: str,
    dim: int,
) -> int | None:
    """The vectors as the previous base (linked as ``vectors-base.npy``) and a delta of every row written since it
    (:mod:`paperscope.overlay`); the delta's rows, or None (nothing written) when they would pass
    ``overlay.DELTA_MAX`` of the papers: then the whole file is written, a new base."""
    n = len(source)
    before = old_vectors.rows if isinstance(old_vectors, overlay.LayeredVectors) else np.zeros(0, dtype=np.int64)
    rows = np.union1d(before, changed).astype(np.int64)
    if len(rows) > overlay.DELTA_MAX * n:
        return None
    delta = np.empty((len(rows), dim), dtype=np.float32)
    if len(rows):
        src = source[rows]
        have = src >= 0
        delta[have] = old_vectors[src[have]]  # a previous row's vector (the delta's own, or the same text's)
        if not have.all():
            delta[~have] = _staged(con, staging, fingerprint, dim, rows[~have])
    base = prev.file(overlay.BASE_FILE)  # the previous base, or the previous file: the base from now on
    os.link(base if base.exists() else prev.file("vectors.npy"), path.parent / overlay.BASE_FILE)
    np.save(path.parent / overlay.DELTA_FILE, delta, allow_pickle=False)
    np.save(path.parent / overlay.DELTA_ROWS_FILE, rows, allow_pickle=False)
    return len(rows)


def _staged(con: sqlite3.Connection, staging: Any, fingerprint: str, dim: int, rows: np.ndarray) -> np.ndarray:
    """The checkpointed vectors of these rows (found by their content hashes), in their order."""
    hashes = _hashes_of(con, rows)
    staged = staging.get(fingerprint, hashes, dim)
    out = np.empty((len(rows), dim), dtype=np.float32)
    for i, (row, h) in enumerate(zip(rows.tolist(), hashes, strict=True)):
        if h not in staged:
            raise StoreError(f"internal: no vector for row {row} (hash {h[:12]}); re-run paperscope index")
        out[i] = staged[h]
    return out


def _hashes_of(con: sqlite3.Connection, rows: np.ndarray) -> list[str]:
    """Content hashes of these rows, in the given order."""
    got: dict[int, str] = {}
    ids = rows.tolist()
    for i in range(0, len(ids), 500):
        part = ids[i : i + 500]
        got.update(
            con.execute(f"SELECT row, content_hash FROM papers WHERE row IN ({','.join('?' * len(part))})", part)
        )
    return [got[r] for r in ids]


def default_progress(quiet: bool) -> ProgressFactory:
    """tqdm bars with rate and ETA on a terminal; nothing when quiet or not a TTY."""
    if quiet or not sys.stderr.isatty():
        return _no_progress

    def factory(total: int, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit="text", file=sys.stderr, dynamic_ncols=True)

    return factory
