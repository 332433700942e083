"""Stage 3 of the pipeline: a FAISS index over the stored vectors.

Vectors are L2-normalised, so inner product is cosine similarity. FAISS labels are vector
rows; the store maps rows to paper ids. Exact ``IndexFlatIP`` is the right choice for
corpora up to a few hundred thousand papers (a query scans n*d floats: ~0.2 ms at 432).
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from paperscope.errors import StoreError

_ADD_CHUNK = 65_536


def build_flat(vectors: np.ndarray) -> faiss.Index:
    """Exact inner-product index, filled in chunks so a memory-mapped array is never copied whole."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    for start in range(0, vectors.shape[0], _ADD_CHUNK):
        index.add(np.ascontiguousarray(vectors[start:start + _ADD_CHUNK], dtype=np.float32))
    return index


def save(index: faiss.Index, path: Path) -> None:
    faiss.write_index(index, str(path))


def load(path: Path, n: int, dim: int) -> faiss.Index:
    """Read an index and check it matches the vectors it claims to cover."""
    if not path.is_file():
        raise StoreError(f"{path}: missing; re-index to repair: paperscope index --rebuild")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        raise StoreError(f"{path}: damaged ({first[:120]}); re-index to repair: paperscope index --rebuild") from None
    if index.ntotal != n or index.d != dim:
        raise StoreError(f"{path}: holds {index.ntotal} vectors of dim {index.d}, expected {n} of dim {dim}; "
                         "re-index to repair: paperscope index --rebuild")
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) per query, with FAISS's -1 padding removed by the caller's filter."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != index.d or not np.isfinite(queries).all():
        raise ValueError(f"query vectors must be finite float32 of shape (m, {index.d}), got {queries.shape}")
    k = max(1, min(k, index.ntotal))
    return index.search(queries, k)
