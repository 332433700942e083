"""Stage 3 of the pipeline: a FAISS index over the stored vectors.

Vectors are L2-normalised, so inner product is cosine similarity. FAISS labels are vector
rows; the store maps rows to paper ids.

The index type is chosen by size (``choose_type``), or forced by the user:

- ``flat``: exact ``IndexFlatIP``. One query scans n*d floats; measured here on one core
  (faiss-cpu 1.15.1, 384-d) that is ~0.3 ms at 10k, ~3 ms at 50k, ~6 ms at 100k vectors, so
  flat is used up to ``FLAT_MAX`` (issue 5 wants a warm ``related`` in ≤ 5 ms).
- ``ivf``: ``IndexIVFScalarQuantizer`` with ~2*sqrt(n) lists (FAISS guidelines: sqrt(n)..16*sqrt(n)),
  k-means trained on a sample of 40 points per list (just above FAISS's minimum of 39, which
  keeps training time bounded). The lists hold each vector's residual to its list's centroid in
  8 bits per dimension (``QT_8bit``): a quarter of the bytes to scan and to read from disk, with
  scores off by at most 0.0012 (1M generated papers). The rows a search returns are scored
  again exactly from ``vectors.npy`` (:func:`lossy`, ``rank.Ranker.dense_top``), so the only loss
  is lists not probed and neighbours pushed past ``REFINE`` by the coding error. Stores built
  before round 8 hold ``IndexIVFFlat`` (uncompressed lists), kept and updated until their next
  retraining (``can_update``).
- ``hnsw``: ``IndexHNSWFlat`` (M=32). Faster queries than IVF, but its build is several
  times slower on 2 cores, so it is only used when forced.

Approximate types tune their search parameter (nprobe / efSearch) at build time: the
smallest value whose recall@10 against exact search, on a sample of stored vectors used as
queries, reaches ``TARGET_RECALL``. The result (type, parameters, recall, build seconds) is
the manifest's "index" block, and :func:`load` applies the parameters from it: faiss-cpu
1.15 happens to write nprobe and efSearch into the file, but FAISS does not document them as
part of the format (they are search-time settings), so the manifest is the record.
"""

from __future__ import annotations

import ctypes
import functools
import math
import mmap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from paperscope.choices import INDEX_TYPES
from paperscope.errors import DamagedError, InvalidArgument

_ADD_CHUNK = 65_536
_GT_CHUNK = 16_384

FLAT_MAX = 50_000
TARGET_RECALL = 0.95
# An IVF index is updated in place of a rebuild until this fraction of its rows changed since training.
RETRAIN_FRACTION = 0.10
RECALL_K = 10
RECALL_QUERIES = 500
HNSW_M = 32
# index.faiss files above this are memory-mapped by readers (load(..., mmap=True)).
MMAP_BYTES = 64 * 2**20
HNSW_EF_CONSTRUCTION = 64
_NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_EF_STEPS = (16, 32, 64, 128, 256, 512)
_FAISS_CLASS = {"flat": "IndexFlatIP", "ivf": "IndexIVFScalarQuantizer", "hnsw": "IndexHNSWFlat"}
# A lossy index (8-bit codes) is asked for at least this many neighbours, which are then scored
# exactly: the coding error (at most 0.0012 at 1M papers) reorders neighbours only among near-ties.
REFINE = 64
# A lossy index's score for a row and the row's exact cosine differ by less than this, or the index
# does not hold these vectors (the per-answer check). Far above coding error (at most 0.0012 at 1M
# papers), and above what clipping a row outside the trained range gives, so it never fires on a
# sound store; damage to single bytes is ``paperscope verify``'s to find (sha256).
LOSSY_TOLERANCE = 0.25
# The 8-bit codes' range per dimension: the training sample's, widened by this share on each side.
SQ_MARGIN = 0.1


def choose_type(n: int) -> str:
    """The index type the size rule picks for ``n`` vectors."""
    return "flat" if n <= FLAT_MAX else "ivf"


def check_type(kind: str | None) -> str | None:
    """Validate a user-forced index type (None means: choose by size)."""
    if kind is not None and kind not in INDEX_TYPES:
        raise InvalidArgument(f"index type must be one of {', '.join(INDEX_TYPES)}, got {kind!r}")
    return kind


def ivf_lists(n: int) -> int:
    """Number of IVF lists: ~2*sqrt(n), but never fewer than 39 training points per list."""
    return max(1, min(int(2 * math.sqrt(n)), n // 39))


def build(vectors: np.ndarray, kind: str | None = None, *, seed: int = 0) -> tuple[faiss.Index, dict[str, Any]]:
    """Build the index for ``vectors`` (may be memory-mapped; it is read in chunks).

    Returns the index and its manifest block: type, FAISS class, parameters, recall@10
    against exact search on a sample, and build seconds.
    """
    t0 = time.perf_counter()
    n, dim = vectors.shape
    chosen_by = "user" if check_type(kind) else "size"
    kind = kind or choose_type(n)
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    if kind == "flat":
        idx: faiss.Index = faiss.IndexFlatIP(dim)
        _add(idx, vectors)
    elif kind == "ivf":
        nlist = ivf_lists(n)
        train_rows = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
        quantizer = faiss.IndexFlatIP(dim)
        idx = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        # Each dimension's code range is the training sample's, widened by SQ_MARGIN of it on both
        # sides: rows outside the sample (and rows added by later updates) are clipped less often.
        idx.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        idx.sq.rangestat_arg = SQ_MARGIN
        idx.cp.seed = seed
        idx.cp.niter = 10  # FAISS's default 25 mostly refines centroids; recall is tuned via nprobe anyway
        if train_rows.size < 39 * nlist:
            # Only a forced IVF on a tiny corpus gets here (one list); FAISS would print a warning.
            idx.cp.min_points_per_centroid = 1
        idx.train(np.ascontiguousarray(vectors[train_rows], dtype=np.float32))
        _add(idx, vectors)
        params = {"nlist": nlist, "train_size": int(train_rows.size), "kmeans_iterations": 10, "codes": "sq8"}
    elif kind == "hnsw":
        idx = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        _add(idx, vectors)
        params = {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION}
    else:  # pragma: no cover - check_type above
        raise ValueError(kind)
    build_seconds = time.perf_counter() - t0

    info: dict[str, Any] = {
        "type": kind,
        "faiss": _FAISS_CLASS[kind],
        "metric": "inner_product",
        "chosen_by": chosen_by,
        "params": params,
        "seed": seed,
    }
    t1 = time.perf_counter()
    if kind == "flat":
        # Exact by construction: nothing to measure.
        info.update(recall_at_10=1.0, recall_queries=0)
    else:
        queries = np.sort(rng.choice(n, size=min(n, RECALL_QUERIES), replace=False))
        truth = exact_neighbours(vectors, queries, RECALL_K)
        if kind == "ivf":
            # Probing every list is exhaustive, so the search always ends at the target at the latest.
            name, steps = "nprobe", [v for v in _NPROBE_STEPS if v < params["nlist"]] + [params["nlist"]]
        else:
            name, steps = "efSearch", list(_EF_STEPS)
        curve: dict[str, float] = {}
        for value in steps:
            configure(idx, {"type": kind, "params": {name: value}})
            curve[str(value)] = recall(idx, vectors, queries, truth)
            params[name] = value
            if curve[str(value)] >= TARGET_RECALL:
                break
        info.update(
            recall_at_10=curve[str(params[name])],
            recall_queries=int(queries.size),
            target_recall=TARGET_RECALL,
            tuning={name: curve},
        )
    info["build_seconds"] = round(build_seconds, 3)
    info["recall_seconds"] = round(time.perf_counter() - t1, 3)
    return idx, info


def can_update(info: dict[str, Any] | None, kind: str | None, n: int, changed: int) -> bool:
    """Whether the previous index (manifest block ``info``) may be updated rather than rebuilt.

    Only IVF is updated: its trained centroids stay valid while the data drifts a little, and it
    removes and adds entries by label. Flat is a copy of the vectors (rebuilding it is that copy)
    and HNSW cannot remove entries. Once the rows changed since the centroids were trained pass
    :data:`RETRAIN_FRACTION` of the index, it is rebuilt (retrained, recall re-measured): the
    compaction that bounds the drift.
    """
    if kind_of(info) != "ivf" or (kind or choose_type(n)) != "ivf":
        return False
    since = int(((info or {}).get("incremental") or {}).get("rows_since_training", 0))
    return since + changed <= RETRAIN_FRACTION * n


def update(
    path: Path, info: dict[str, Any], vectors: np.ndarray, changed: np.ndarray, previous_n: int
) -> tuple[faiss.Index, dict[str, Any]]:
    """The previous IVF index with the ``changed`` rows' entries replaced by ``vectors[changed]``.

    Rows below ``previous_n`` are removed first, then every changed row is added under its row
    label, so the result holds exactly ``vectors.shape[0]`` entries, one per row. The search
    parameters and the recall measured when it was trained are carried in the manifest block.
    """
    t0 = time.perf_counter()
    n, dim = vectors.shape
    idx = load(path, previous_n, dim, info)
    old = changed[changed < previous_n].astype(np.int64)
    if len(old):
        idx.remove_ids(old)  # an array of labels: FAISS wraps it in an IDSelectorBatch
    for start in range(0, len(changed), _ADD_CHUNK):
        part = changed[start : start + _ADD_CHUNK].astype(np.int64)
        idx.add_with_ids(np.ascontiguousarray(vectors[part], dtype=np.float32), part)
    if idx.ntotal != n:
        raise RuntimeError(f"internal: updated index holds {idx.ntotal} entries for {n} rows")
    since = int((info.get("incremental") or {}).get("rows_since_training", 0)) + len(changed)
    block = {k: v for k, v in info.items() if k not in ("linked_from", "updated_from")}
    block["incremental"] = {
        "rows_since_training": since,
        "rows_updated": int(len(changed)),
        "retrain_above": int(RETRAIN_FRACTION * n),
    }
    block["update_seconds"] = round(time.perf_counter() - t0, 3)
    return idx, block


def build_flat(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product index, filled in chunks so a memory-mapped array is never copied whole."""
    return build(vectors, "flat")[0]


def _add(idx: faiss.Index, vectors: np.ndarray) -> None:
    for start in range(0, vectors.shape[0], _ADD_CHUNK):
        idx.add(np.ascontiguousarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32))


def exact_neighbours(vectors: np.ndarray, query_rows: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k rows (self excluded) for stored rows used as queries, scanning in chunks."""
    q = np.ascontiguousarray(vectors[query_rows], dtype=np.float32)
    m = q.shape[0]
    k = min(k, vectors.shape[0] - 1)
    best_s = np.full((m, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((m, 0), dtype=np.int64)
    for start in range(0, vectors.shape[0], _GT_CHUNK):
        chunk = np.asarray(vectors[start : start + _GT_CHUNK], dtype=np.float32)
        s = q @ chunk.T
        own = (query_rows >= start) & (query_rows < start + chunk.shape[0])
        s[np.nonzero(own)[0], query_rows[own] - start] = -np.inf
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + chunk.shape[0]), s.shape)], axis=1)
        keep = np.argpartition(-all_s, min(k, all_s.shape[1] - 1), axis=1)[:, :k]
        best_s = np.take_along_axis(all_s, keep, axis=1)
        best_i = np.take_along_axis(all_i, keep, axis=1)
    return best_i


def lossy(idx: faiss.Index) -> bool:
    """Whether ``idx`` stores coded vectors (8-bit IVF lists), whose scores are approximate."""
    ivf = faiss.try_extract_index_ivf(idx)
    return ivf is not None and not isinstance(faiss.downcast_index(ivf), faiss.IndexIVFFlat)


def refined(idx: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's top k per query, as (scores, rows); from a lossy index, the best k of its ``REFINE``
    (or k) by the exact cosine with ``vectors`` (rows of -1, where fewer were found, stay last)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not lossy(idx):
        return idx.search(queries, k)
    scores, rows = idx.search(queries, max(k, REFINE))
    exact = np.einsum("qd,qkd->qk", queries, np.asarray(vectors[np.maximum(rows, 0)], dtype=np.float32))
    exact = np.where(rows >= 0, exact, -np.inf)
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(exact, order, axis=1), np.take_along_axis(rows, order, axis=1)


def recall(idx: faiss.Index, vectors: np.ndarray, query_rows: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of the exact top-k (self excluded) that ``idx`` returns in its top-k (after
    exact re-scoring, for a lossy index: as queries use it)."""
    k = truth.shape[1]
    if k == 0:
        return 1.0
    q = np.ascontiguousarray(vectors[query_rows], dtype=np.float32)
    _, got = refined(idx, vectors, q, k + 1)
    hits = 0
    for row, found, exact in zip(query_rows, got, truth):
        hits += len(set(found[found != row][:k].tolist()) & set(exact.tolist()))
    return round(hits / (k * len(query_rows)), 4)


def configure(idx: faiss.Index, info: dict[str, Any] | None) -> faiss.Index:
    """Apply the search parameters recorded in a manifest's index block."""
    params = (info or {}).get("params") or {}
    if "nprobe" in params:
        faiss.extract_index_ivf(idx).nprobe = int(params["nprobe"])
    if "efSearch" in params:
        faiss.downcast_index(idx).hnsw.efSearch = int(params["efSearch"])
    return idx


def kind_of(info: dict[str, Any] | None) -> str:
    """The short type name of a manifest index block (stores before 0.2 wrote 'IndexFlatIP')."""
    kind = (info or {}).get("type", "flat")
    return {"IndexFlatIP": "flat"}.get(kind, kind)


def _utf8(path: Path) -> bool:
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:  # FAISS takes a C string: a name that is not UTF-8 goes through Python I/O
        return False


def save(index: faiss.Index, path: Path) -> None:
    if _utf8(path):
        faiss.write_index(index, str(path))
        return
    with open(path, "wb") as fh:
        faiss.write_index(index, faiss.PyCallbackIOWriter(fh.write))


def load(path: Path, n: int, dim: int, info: dict[str, Any] | None = None, *, mmap: bool = False) -> faiss.Index:
    """Read an index, check it matches the vectors it claims to cover, apply search parameters.

    ``mmap`` maps the stored vectors (IVF lists, flat codes) instead of reading them: opening a
    1M-paper store then costs milliseconds, not a 1.5 GB read. Read-only: never for an index
    that will be added to. Only for files above ``MMAP_BYTES``; smaller ones are read as before.
    """
    if not path.is_file():
        raise DamagedError(path, "missing")
    try:
        if _utf8(path) and mmap and path.stat().st_size > MMAP_BYTES:
            # IVF lists map with IO_FLAG_MMAP, flat codes (flat, HNSW storage) with IO_FLAG_MMAP_IFC;
            # FAISS 1.15 refuses the two together on an IVF file.
            flag = faiss.IO_FLAG_MMAP if kind_of(info) == "ivf" else faiss.IO_FLAG_MMAP_IFC
            index = faiss.read_index(str(path), flag)
            _no_prefetch(index)
        elif _utf8(path):
            index = faiss.read_index(str(path))
        else:
            with open(path, "rb") as fh:
                index = faiss.read_index(faiss.PyCallbackIOReader(fh.read))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        raise DamagedError(path, f"damaged ({first[:120]})") from None
    if index.ntotal != n or index.d != dim:
        raise DamagedError(path, f"holds {index.ntotal} vectors of dim {index.d}, expected {n} of dim {dim}")
    return configure(index, info)


def _no_prefetch(idx: faiss.Index) -> None:
    """Stop a memory-mapped IVF index from starting threads to prefetch its lists before each search.

    FAISS reads mapped IVF lists through ``OnDiskInvertedLists``, whose search first hands the
    lists it will scan to ``prefetch_nthread`` (32) new threads that touch their pages. With the
    pages in the page cache that is pure overhead: at 1M papers (nprobe 128, one core) a search
    took 21.3 ms with it and 13.2 ms without (``benchmarks/mapped_reads.py``).
    """
    lists = _mapped_lists(idx)
    if lists is not None:
        lists.prefetch_nthread = 0


def _mapped_lists(idx: faiss.Index) -> faiss.OnDiskInvertedLists | None:
    """The inverted lists of an IVF index read with ``IO_FLAG_MMAP`` (memory-mapped); else None."""
    ivf = faiss.try_extract_index_ivf(idx)
    lists = faiss.downcast_InvertedLists(ivf.invlists) if ivf is not None else None
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


class MappedLists:
    """Reads ahead, all at once, the IVF lists a search of a memory-mapped index will scan.

    FAISS faults a mapped list's pages in one by one as it scans them; on a cold page cache each
    fault waits for the device (and reads its whole read-ahead window, mostly other lists). Before a
    search, :meth:`read_ahead` finds the lists it will probe (the coarse quantizer, ~0.3 ms at 2,000
    lists) and asks the kernel for exactly their bytes (``madvise(MADV_WILLNEED)``), which it reads
    together. It does so only while searches are slow (:meth:`searched`): with the lists in memory
    the advice is 0.6 ms of nothing per search. At 1M papers (nprobe 128, one core) the first
    search after the file left the page cache took 0.66-0.77 s, and 0.16-0.19 s with the lists
    read ahead (``benchmarks/mapped_reads.py``).
    """

    # Scanning a list in memory takes 0.09-0.17 ms at 1M papers (nprobe 128; a quiet or a busy
    # machine); a search slower than this per probed list was waiting for the device. Kept low: a
    # search helped by the read-ahead is itself only a few times slower than a warm one, and
    # reading ahead lists that are in memory costs 0.6 ms, missing cold ones 0.4 s.
    SLOW_SECONDS_PER_LIST = 0.4e-3

    def __init__(self, quantizer: faiss.Index, address: int, starts: np.ndarray, ends: np.ndarray):
        self.quantizer, self.address, self.starts, self.ends = quantizer, address, starts, ends
        self.cold = True
        self._madvise = _libc_madvise()

    @classmethod
    def of(cls, idx: faiss.Index) -> MappedLists | None:
        """For an IVF index whose lists are memory-mapped (``load(..., mmap=True)``); else None."""
        lists = _mapped_lists(idx)
        if lists is None or _libc_madvise() is None or not hasattr(mmap, "MADV_WILLNEED"):  # Linux
            return None
        address = faiss.rev_swig_ptr(lists.ptr, lists.totsize).__array_interface__["data"][0]
        one = [lists.lists.at(i) for i in range(lists.nlist)]
        # each list: its codes, then its ids (int64), both sized by its capacity
        starts = np.array([x.offset for x in one], dtype=np.int64)
        ends = starts + np.array([x.capacity for x in one], dtype=np.int64) * (lists.code_size + 8)
        return cls(faiss.extract_index_ivf(idx).quantizer, address, starts, ends)

    def read_ahead(self, queries: np.ndarray, nprobe: int) -> None:
        """Start reading the lists a search of ``queries`` with ``nprobe`` will scan, while searches are slow."""
        if not self.cold or self._madvise is None:
            return
        _, probed = self.quantizer.search(np.ascontiguousarray(queries, dtype=np.float32), nprobe)
        page = mmap.PAGESIZE
        for i in np.unique(probed[probed >= 0]):
            start = self.address + int(self.starts[i])
            aligned = start - start % page
            self._madvise(aligned, self.address + int(self.ends[i]) - aligned, mmap.MADV_WILLNEED)

    def searched(self, seconds: float, nprobe: int) -> None:
        """Record how long a search of ``nprobe`` lists took: slow means the lists were not in memory."""
        self.cold = seconds > self.SLOW_SECONDS_PER_LIST * nprobe


@functools.cache
def _libc_madvise() -> Callable[[int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query, with FAISS's -1 padding removed by the caller's filter."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d or not np.isfinite(queries).all():
        raise ValueError(f"query vectors must be finite float32 of shape (m, {index.d}), got {queries.shape}")
    k = max(1, min(k, index.ntotal))
    return index.search(queries, k)
