"""Stage 3 of the pipeline: a FAISS index over the stored vectors.

Vectors are L2-normalised, so inner product is cosine similarity. FAISS labels are vector
rows; the store maps rows to paper ids.

The index type is chosen by size (``choose_type``), or forced by the user:

- ``flat``: exact ``IndexFlatIP``. One query scans n*d floats; measured here on one core
  (faiss-cpu 1.15.1, 384-d) that is ~0.3 ms at 10k, ~3 ms at 50k, ~6 ms at 100k vectors, so
  flat is used up to ``FLAT_MAX`` (issue 5 wants a warm ``related`` in ≤ 5 ms).
- ``ivf``: ~2*sqrt(n) lists (FAISS guidelines: sqrt(n)..16*sqrt(n)), k-means trained on a sample
  of 40 points per list (just above FAISS's minimum of 39, which keeps training time bounded).
  The lists hold each vector's residual to its list's centroid in 4 bits per dimension
  (``IndexIVFPQFastScan``, one sub-quantizer of 16 centroids per dimension, codes ``pq4fs``),
  which FAISS scans 32 rows at a time in SIMD registers: an eighth of the vectors' bytes. The
  rows a search returns are scored again exactly from ``vectors.npy`` (:func:`lossy`,
  :func:`refine_depth`, ``rank.Ranker.dense_top``), so the only loss is lists not probed and
  neighbours pushed past the rows re-scored by the coding error. From round 8 to round 17 the
  lists held 8 bits per dimension (``IndexIVFScalarQuantizer``, codes ``sq8``), and before that
  uncompressed vectors (``IndexIVFFlat``): such indexes are kept and updated until their next
  drift check, which retrains them in the current format (``codes=`` still builds ``sq8``).

  A re-run updates an IVF index in place (:func:`update`: the changed rows removed and added
  again) and keeps its centroids while they still fit the data. Each time the rows changed since
  the last check pass :data:`CHECK_FRACTION` of the index, the updated index is checked
  (:func:`drift_check`): recall@10 at its tuned nprobe against exact search (the build's own
  measurement, on 500 queries: this run's changed rows and seeded random ones), the number of
  rows against the number it was trained on (:data:`SIZE_FACTOR`), the share of rows coded
  further than :data:`CODE_ERROR` from themselves (:data:`MISCODED_SHARE`) and how unevenly the
  lists are filled (:data:`IMBALANCE_GROWTH`). When all pass, the centroids are kept, the check is
  recorded in the manifest (``incremental.checked``) and the count starts again from it;
  otherwise the index is retrained (the block records the failed check as ``drift_check``). The
  row count alone only says when to look: an edited corpus of the same distribution keeps its
  centroids, one that moved to new regions or outgrew its lists is retrained.
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

import math
import mmap
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from paperscope import pagein
from paperscope.choices import INDEX_TYPES
from paperscope.errors import DamagedError, InvalidArgument

_ADD_CHUNK = 65_536
_GT_CHUNK = 16_384

FLAT_MAX = 50_000
TARGET_RECALL = 0.95
# A drift check (below) retrains an index whose recall@10 fell below TARGET_RECALL by more than
# this. Both figures are estimates on 500 stored rows as queries: at 1M papers the same index
# measured 0.9488-0.9534 on the queries of three checks against 0.9508 at its build (4-bit lists,
# 256 rows re-scored; 0.9530-0.9576 against 0.9566 with 8-bit lists), so an index tuned just past
# the target was retrained for the queries drawn, not for drift.
RECALL_MARGIN = 0.01
# An IVF index is updated in place of a rebuild; each time this fraction of its rows changed since
# its last check (or its training), the updated index is checked for drift (drift_check).
CHECK_FRACTION = 0.10
# The drift check retrains when the rows are more than this factor above or below the count the
# centroids were trained on. The lists were sized for that count (~2*sqrt(n), ivf_lists). At twice
# the rows each list holds twice the entries: a query at the tuned nprobe scans twice the codes it
# did after training, sqrt(2) times what a fresh build of that size scans at the same nprobe (sqrt(2)
# times the lists, each sqrt(2) longer), and recall does not show it (it rises: a generated 40k
# store measured 0.963 at its build, 0.972 at the check after it doubled). At half the rows the index has sqrt(2) times the lists a fresh
# build would choose. Both stay well inside FAISS's guideline (sqrt(n)..16*sqrt(n) lists); the
# factor bounds what a kept index costs a query, to about 1.4 times a fresh build's list scan.
SIZE_FACTOR = 2.0
# ... or when more than this share of the checked rows (the run's changed rows and the recall
# queries) is coded further than CODE_ERROR from itself: the norm of the difference between a row's
# residual and its 4-bit code bounds how far the code's score for any query can be from the
# row's cosine. A code is a row's nearest centroid per dimension, trained on the sample's
# residuals: rows drawn like it are coded within 0.2 but for outliers (0.00%, 0.03%, 0.38% of
# the rows of the 1M static store, a generated 20,000 x 384 and 6,000 x 64 store), rows of
# clusters the training never saw mostly not (63-100%). (8-bit lists measured the rows their
# trained range clipped, until round 17.)
MISCODED_SHARE = 0.02
CODE_ERROR = 0.2
# ... or when the lists' imbalance factor (FAISS's: nlist * sum(size^2) / n^2, the codes a query
# scans relative to equal lists) grew by more than this factor since training: new rows piled into
# a few lists make the queries that probe them that much slower, whatever the recall. Measured on
# the same corpora: 1.733 trained, 1.731 after the edits, 1.748 doubled, 6.02 with the other domain.
IMBALANCE_GROWTH = 1.5
# At most this many of a run's changed rows are coded again for the coding measure.
CHECK_ROWS = 16_384
RECALL_K = 10
RECALL_QUERIES = 500
HNSW_M = 32
# index.faiss files above this are memory-mapped by readers (load(..., mmap=True)).
MMAP_BYTES = 64 * 2**20
HNSW_EF_CONSTRUCTION = 64
_NPROBE_STEPS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_EF_STEPS = (16, 32, 64, 128, 256, 512)
# An IVF index's list codes: "pq4fs", 4 bits a dimension read by FAISS's fast scan
# (IndexIVFPQFastScan, one 16-centroid sub-quantizer per dimension), or "sq8", a byte a dimension
# (IndexIVFScalarQuantizer, the codes from round 8 to round 17). At 1M papers (256-d static
# vectors, 2,000 lists, one core; benchmarks/ivf_codes.py, round 18) the two found the same share
# of a noisy query's exact top 100 among their first 2,000 rows at every nprobe (0.754 / 0.890 /
# 0.973 at 128 / 256 / 512 lists), in 2.3 / 4.3 / 7.8 ms against 7.0 / 12.8 / 23.3 ms. The file
# is half the size (143 against 266 MB) but is read whole on open (FAISS maps only plain lists):
# 0.09-0.10 s against 0.005 s.
IVF_CODES = ("pq4fs", "sq8")
CODES = "pq4fs"
# A lossy index (8-bit codes) is asked for at least this many neighbours, which are then scored
# exactly: the coding error (at most 0.0012 at 1M papers) reorders neighbours only among near-ties.
REFINE = 64
# ... and one with 4-bit fast-scan lists for this many: its scores are coarser, so the exact top 10
# lies deeper in its order. At 1M papers recall@10 at 128 lists (500 stored rows as queries) was
# 0.914 / 0.944 / 0.954 / 0.957 re-scoring 64 / 128 / 256 / 512 rows (0.957 for 8-bit lists at 64):
# 512 keeps the tuned nprobe where 8-bit lists had it, with the same margin over TARGET_RECALL.
REFINE_PQ4 = 512
# A lossy index's score for a row and the row's exact cosine differ by less than this, or the index
# does not hold these vectors (the per-answer check). Far above coding error (at most 0.0012 at 1M
# papers with 8-bit lists; 0.04-0.08 with 4-bit ones on generated 20,000- and 400-row stores), so it
# never fires on a sound store; damage to single bytes is ``paperscope verify``'s to find (its digests).
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


def build(
    vectors: np.ndarray, kind: str | None = None, *, seed: int = 0, codes: str | None = None
) -> tuple[faiss.Index, dict[str, Any]]:
    """Build the index for ``vectors`` (may be memory-mapped; it is read in chunks).

    Returns the index and its manifest block: type, FAISS class, parameters, recall@10
    against exact search on a sample, and build seconds. ``codes`` chooses an IVF index's list
    codes (:data:`IVF_CODES`; default :data:`CODES`).
    """
    codes = CODES if codes is None else codes
    if codes not in IVF_CODES:
        raise InvalidArgument(f"IVF codes must be one of {', '.join(IVF_CODES)}, got {codes!r}")
    t0 = time.perf_counter()
    n, dim = vectors.shape
    chosen_by = "user" if check_type(kind) else "size"
    kind = kind or choose_type(n)
    rng = np.random.default_rng(seed)
    params: dict[str, Any] = {}
    trained: dict[str, Any] = {}
    if kind == "flat":
        idx: faiss.Index = faiss.IndexFlatIP(dim)
        _add(idx, vectors)
    elif kind == "ivf":
        nlist = ivf_lists(n)
        train_rows = np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))
        idx = _ivf(dim, nlist, codes, seed)
        idx.cp.seed = seed
        idx.cp.niter = 10  # FAISS's default 25 mostly refines centroids; recall is tuned via nprobe anyway
        if train_rows.size < 39 * nlist:
            # Only a forced IVF on a tiny corpus gets here (one list); FAISS would print a warning.
            idx.cp.min_points_per_centroid = 1
        if codes == "pq4fs" and train_rows.size < 39 * 16:
            idx.pq.cp.min_points_per_centroid = 1  # the same for each dimension's 16 centroids
        idx.train(np.ascontiguousarray(vectors[train_rows], dtype=np.float32))
        _add(idx, vectors)
        params = {"nlist": nlist, "train_size": int(train_rows.size), "kmeans_iterations": 10, "codes": codes}
        # What the drift check compares a later update with (SIZE_FACTOR, IMBALANCE_GROWTH).
        trained = {"trained_rows": int(n), "list_imbalance": round(float(idx.invlists.imbalance_factor()), 4)}
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
        "faiss": type(faiss.downcast_index(idx)).__name__,
        "metric": "inner_product",
        "chosen_by": chosen_by,
        "params": params,
        "seed": seed,
        **trained,
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


def _ivf(dim: int, nlist: int, codes: str, seed: int) -> faiss.Index:
    """An untrained IVF index of ``nlist`` lists over a flat inner-product quantizer, its lists in ``codes``."""
    quantizer = faiss.IndexFlatIP(dim)
    if codes == "sq8":
        idx = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        # Each dimension's code range is the training sample's, widened by SQ_MARGIN of it on both
        # sides: rows outside the sample (and rows added by later updates) are clipped less often.
        idx.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        idx.sq.rangestat_arg = SQ_MARGIN
        return idx
    # One sub-quantizer per dimension (dim of them, 16 centroids each, k-means per dimension): the
    # residual coded in 4 bits a dimension, scanned 32 rows at a time in SIMD registers.
    idx = faiss.IndexIVFPQFastScan(quantizer, dim, nlist, dim, 4, faiss.METRIC_INNER_PRODUCT)
    idx.by_residual = True
    idx.pq.cp.seed = seed
    return idx


def can_update(info: dict[str, Any] | None, kind: str | None, n: int) -> bool:
    """Whether the previous index (manifest block ``info``) may be updated rather than rebuilt.

    Only IVF is updated: its trained centroids stay valid while the data drifts a little, and it
    removes and adds entries by label. Flat is a copy of the vectors (rebuilding it is that copy)
    and HNSW cannot remove entries. Whether the centroids still fit is measured once the rows
    changed since the last check pass :data:`CHECK_FRACTION` (:func:`check_due`, :func:`drift_check`).
    """
    return kind_of(info) == "ivf" and (kind or choose_type(n)) == "ivf"


def update(
    path: Path, info: dict[str, Any], vectors: np.ndarray, changed: np.ndarray, previous_n: int
) -> tuple[faiss.Index, dict[str, Any]]:
    """The previous IVF index with the ``changed`` rows' entries replaced by ``vectors[changed]``.

    Rows below ``previous_n`` are removed first, then every changed row is added under its row
    label, so the result holds exactly ``vectors.shape[0]`` entries, one per row. The search
    parameters and the recall measured when it was trained are carried in the manifest block;
    its ``incremental`` block counts the rows changed since training and since the last drift
    check, and carries that check's record (``checked``).
    """
    t0 = time.perf_counter()
    n, dim = vectors.shape
    idx = load(path, previous_n, dim, info)
    old = changed[changed < previous_n].astype(np.int64)
    if len(old):
        idx.remove_ids(old)  # an array of labels: FAISS wraps it in an IDSelectorBatch
        _clear_vacated(idx)
    for start in range(0, len(changed), _ADD_CHUNK):
        part = changed[start : start + _ADD_CHUNK].astype(np.int64)
        idx.add_with_ids(np.ascontiguousarray(vectors[part], dtype=np.float32), part)
    if idx.ntotal != n:
        raise RuntimeError(f"internal: updated index holds {idx.ntotal} entries for {n} rows")
    inc = info.get("incremental") or {}
    since = int(inc.get("rows_since_training", 0))
    block = {k: v for k, v in info.items() if k not in ("linked_from", "updated_from", "drift_check")}
    block["incremental"] = {
        "rows_since_training": since + len(changed),
        # stores from before drift checks counted only since training, which was their last check
        "rows_since_check": int(inc.get("rows_since_check", since)) + len(changed),
        "rows_updated": int(len(changed)),
        "check_above": int(CHECK_FRACTION * n),
        **({"checked": inc["checked"]} if "checked" in inc else {}),
    }
    block["update_seconds"] = round(time.perf_counter() - t0, 3)
    return idx, block


def _clear_vacated(idx: faiss.Index) -> None:
    """Zero the slots past the last entry of each 4-bit fast-scan list (no-op for other lists).

    FAISS 1.15's ``BlockInvertedLists.remove_ids`` fills a removed entry's slot with the list's last
    entry and shrinks the list, but leaves the moved entry's code in the slot it vacated; adding
    to a list then ORs each new code into the slot past its end (4-bit codes are packed by
    nibbles into zeroed blocks). Rows added after a removal were coded wrong: in a test of 20,000
    rows, 25% of the re-added rows found themselves, and at 1M papers 16% (a 1% edit). Each
    list's last, partly filled block is unpacked, zeroed and packed again (``CodePackerPQ4``):
    about 2,000 lists at 1M papers.
    """
    ivf = faiss.extract_index_ivf(idx)
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    if not isinstance(lists, faiss.BlockInvertedLists):
        return
    packer, per_block, size = lists.packer, lists.n_per_block, lists.block_size
    for i in range(lists.nlist):
        entries = lists.list_size(i)
        used = entries % per_block
        if not used:
            continue  # no partly filled block: the next entry starts a fresh, zeroed one
        blocks = entries // per_block + 1
        last = faiss.rev_swig_ptr(lists.get_codes(i), blocks * size)[(blocks - 1) * size :].reshape(1, size)
        codes = [packer.unpack_1(last, j) for j in range(used)]
        last[:] = 0
        for j, code in enumerate(codes):
            packer.pack_1(code, j, last)


def check_due(info: dict[str, Any]) -> bool:
    """Whether an updated index (its block from :func:`update`) is due a drift check: the rows
    changed since the last check (or the training) passed :data:`CHECK_FRACTION` of its rows."""
    inc = info.get("incremental") or {}
    return int(inc.get("rows_since_check", 0)) > int(inc.get("check_above", 0))


def trained_rows(info: dict[str, Any]) -> int:
    """The rows an IVF index's centroids were trained on (for blocks written before that was
    recorded: the count its number of lists was chosen for, :func:`ivf_lists` inverted)."""
    if "trained_rows" in info:
        return int(info["trained_rows"])
    nlist = int((info.get("params") or {}).get("nlist", 1))
    # ivf_lists: int(2*sqrt(n)) from 6,084 rows (156 lists) up, n // 39 below; the middle of the range
    return int(((nlist + 0.5) / 2) ** 2) if nlist >= 156 else 39 * nlist + 19


def drift_check(idx: faiss.Index, info: dict[str, Any], vectors: np.ndarray, changed: np.ndarray) -> dict[str, Any]:
    """Whether the updated IVF index ``idx`` (block ``info`` from :func:`update`) still fits ``vectors``.

    Measured, cheapest first (an index of an older format, ``IndexIVFFlat`` or 8-bit lists, is
    retrained as the build makes it now, and a failed size check measures nothing else):

    - ``rows`` against ``trained_rows``: outside a factor of :data:`SIZE_FACTOR`, the lists are
      sized for another corpus;
    - ``miscoded``: the share of the checked rows (this run's ``changed`` rows, at most
      :data:`CHECK_ROWS` of them, and the recall queries) whose 4-bit code lies further than
      :data:`CODE_ERROR` from the row's residual (:data:`MISCODED_SHARE`);
    - ``list_imbalance`` against the one at training (:data:`IMBALANCE_GROWTH`);
    - ``recall_at_10`` at the tuned nprobe against exact search (:func:`exact_neighbours`,
      :func:`recall`: the build's measurement) on :data:`RECALL_QUERIES` stored rows as queries:
      up to half of them this run's changed rows (evenly spaced), the rest drawn at random with
      the index's seed; below :data:`TARGET_RECALL` (the build's own acceptance test) by more
      than :data:`RECALL_MARGIN`, it fails.

    Returns the record for the manifest: the figures, ``seconds``, ``decision`` ("kept" or
    "retrain") and the ``reasons`` for a retrain. Deterministic: the same vectors and changed
    rows give the same figures and decision.
    """
    t0 = time.perf_counter()
    n = vectors.shape[0]
    base = trained_rows(info)
    record: dict[str, Any] = {"rows": int(n), "trained_rows": base, "size_factor": SIZE_FACTOR}
    reasons: list[str] = []
    if not lossy(idx) or codes_of(info) != CODES:
        # an IndexIVFFlat of a store built before round 8, or 8-bit lists (rounds 8-17): retrained
        # as the build makes them now
        reasons.append("format")
    elif not base / SIZE_FACTOR <= n <= base * SIZE_FACTOR:
        reasons.append("size")
    else:
        changed = np.unique(np.asarray(changed, dtype=np.int64))
        queries = _check_queries(n, changed, int(info.get("seed", 0)))
        # every changed row up to CHECK_ROWS (evenly spaced above), and the queries
        spaced = changed[np.unique(np.linspace(0, len(changed) - 1, min(len(changed), CHECK_ROWS)).astype(np.int64))]
        record["miscoded"] = _miscoded_share(idx, vectors, np.union1d(spaced, queries))
        record["miscoded_share"], record["code_error"] = MISCODED_SHARE, CODE_ERROR
        if record["miscoded"] > MISCODED_SHARE:
            reasons.append("coding")
        ivf = faiss.extract_index_ivf(idx)
        imbalance = round(float(ivf.invlists.imbalance_factor()), 4)
        record["list_imbalance"] = imbalance
        if "list_imbalance" in info:
            record["trained_imbalance"] = info["list_imbalance"]
            if imbalance > IMBALANCE_GROWTH * float(info["list_imbalance"]):
                reasons.append("imbalance")
        truth = exact_neighbours(vectors, queries, RECALL_K)
        record.update(
            recall_at_10=recall(idx, vectors, queries, truth),
            recall_queries=int(queries.size),
            changed_queries=int(np.isin(queries, changed).sum()),
            target_recall=TARGET_RECALL,
            nprobe=int(ivf.nprobe),
        )
        record["recall_margin"] = RECALL_MARGIN
        if record["recall_at_10"] < TARGET_RECALL - RECALL_MARGIN:
            reasons.append("recall")
    record["decision"] = "retrain" if reasons else "kept"
    record["reasons"] = reasons
    record["seconds"] = round(time.perf_counter() - t0, 3)
    return record


def checked(info: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """The block of an updated index whose drift check passed: the check recorded, its counter restarted."""
    inc = dict(info["incremental"])
    inc["checked"] = {**record, "rows_since_training": inc["rows_since_training"]}
    inc["rows_since_check"] = 0
    return {**info, "incremental": inc}


def _check_queries(n: int, changed: np.ndarray, seed: int) -> np.ndarray:
    """The drift check's query rows, sorted: up to half of ``RECALL_QUERIES`` evenly spaced among
    ``changed``, the rest drawn with ``seed`` from the other rows."""
    m = min(n, RECALL_QUERIES)
    take = min(len(changed), m // 2)
    picked = changed[np.linspace(0, len(changed) - 1, take).astype(np.int64)] if take else changed[:0]
    picked = np.unique(picked)
    others = np.setdiff1d(np.arange(n, dtype=np.int64), picked, assume_unique=True)
    rng = np.random.default_rng(seed)
    extra = others[rng.choice(len(others), size=min(len(others), m - len(picked)), replace=False)]
    return np.sort(np.concatenate([picked, extra]))


def _miscoded_share(idx: faiss.Index, vectors: np.ndarray, rows: np.ndarray) -> float:
    """The share of ``rows`` whose residual to their list's centroid lies further than
    :data:`CODE_ERROR` from its 4-bit code (an index of 4-bit fast-scan lists)."""
    ivf = faiss.downcast_index(faiss.extract_index_ivf(idx))
    if not len(rows):
        return 0.0
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    far = 0
    for start in range(0, len(rows), _ADD_CHUNK):
        x = np.ascontiguousarray(vectors[rows[start : start + _ADD_CHUNK]], dtype=np.float32)
        _, assigned = ivf.quantizer.search(x, 1)
        residual = np.ascontiguousarray(x - centroids[assigned[:, 0]]) if ivf.by_residual else x
        coded = ivf.pq.decode(ivf.pq.compute_codes(residual))
        far += int((np.linalg.norm(residual - coded, axis=1) > CODE_ERROR).sum())
    return round(far / len(rows), 4)


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


def list_codes(idx: faiss.Index) -> str | None:
    """The codes of a loaded IVF index's lists ("pq4fs", "sq8"; "flat" for ``IndexIVFFlat``), None
    for an index without lists (what :func:`codes_of` reads from a manifest block)."""
    ivf = faiss.try_extract_index_ivf(idx)
    if ivf is None:
        return None
    ivf = faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFPQFastScan):
        return "pq4fs"
    return "flat" if isinstance(ivf, faiss.IndexIVFFlat) else "sq8"


def refine_depth(idx: faiss.Index) -> int:
    """How many rows a search of ``idx`` reads to score exactly: :data:`REFINE_PQ4` for 4-bit
    fast-scan lists, :data:`REFINE` for 8-bit ones, 0 for an exact index."""
    if not lossy(idx):
        return 0
    return REFINE_PQ4 if list_codes(idx) == "pq4fs" else REFINE


def refined(idx: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's top k per query, as (scores, rows); from a lossy index, the best k of its
    :func:`refine_depth` (or k) by the exact cosine with ``vectors`` (rows of -1, where fewer were
    found, stay last)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if not lossy(idx):
        return idx.search(queries, k)
    scores, rows = idx.search(queries, max(k, refine_depth(idx)))
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


def codes_of(info: dict[str, Any] | None) -> str | None:
    """An IVF block's list codes ("pq4fs", "sq8"; "flat" for the uncoded lists of stores before round 8)."""
    if kind_of(info) != "ivf":
        return None
    return str(((info or {}).get("params") or {}).get("codes", "flat"))


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
        self._madvise = pagein.libc_madvise()

    @classmethod
    def of(cls, idx: faiss.Index) -> MappedLists | None:
        """For an IVF index whose lists are memory-mapped (``load(..., mmap=True)``); else None."""
        lists = _mapped_lists(idx)
        if lists is None or pagein.libc_madvise() is None or not hasattr(mmap, "MADV_WILLNEED"):  # Linux
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


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query, with FAISS's -1 padding removed by the caller's filter."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d or not np.isfinite(queries).all():
        raise ValueError(f"query vectors must be finite float32 of shape (m, {index.d}), got {queries.shape}")
    k = max(1, min(k, index.ntotal))
    return index.search(queries, k)
