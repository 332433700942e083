"""VectorIndex: the vectors of one store generation, their FAISS index, and the per-answer checks."""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from paperscope import index, overlay
from paperscope.errors import DamagedError
from paperscope.lexical import advise_random
from paperscope.store import Generation


class VectorIndex:
    """``vectors.npy`` (memory-mapped, read-only) and ``index.faiss`` of one generation.

    Rows are the papers table's rows. The checks here are the cheap integrity checks every
    answer passes (see :mod:`paperscope.verify` for the full ones).
    """

    def __init__(self, generation: Generation, n: int, dimension: int):
        self.generation = generation
        self.n = n
        self.dimension = dimension
        self.vectors: np.ndarray = generation.load_vectors()
        # Queries read a few hundred scattered rows: no read-ahead on a cold page (see advise_random).
        advise_random(*overlay.parts(self.vectors))
        self.faiss: faiss.Index = index.load(
            generation.file("index.faiss"), n, dimension, generation.manifest.get("index"), mmap=True
        )

    def vector(self, row: int) -> np.ndarray:
        """A float32 copy of the unit vector at ``row``."""
        return np.array(self.vectors[row], dtype=np.float32)

    def mean(self, rows: list[int]) -> np.ndarray:
        """The float32 mean of the vectors at ``rows`` (not normalised)."""
        return np.asarray(self.vectors[rows], dtype=np.float32).mean(axis=0)

    def check_query(self, dense: np.ndarray | None) -> None:
        """A query vector made from stored vectors is finite, or the vectors file is damaged."""
        if dense is not None and not np.isfinite(dense).all():
            raise DamagedError(self.generation.file("vectors.npy"), "damaged (non-finite values)")

    def check_answer(self, dense: np.ndarray | None, exclude: frozenset[int], ranked: list[Any]) -> None:
        """Cheap per-query integrity checks on the rows an answer touched.

        Stored vectors are unit length, and FAISS's score for a row is the cosine with that row
        of vectors.npy: damage in either file that reaches an answer breaks one or the other.
        ``ranked`` holds :class:`paperscope.rank.Ranked` records.
        """
        rows = sorted({r.row for r in ranked} | set(exclude))
        if not rows:
            return
        vecs = np.asarray(self.vectors[rows], dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1) if np.isfinite(vecs).all() else np.array([np.nan])
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            raise DamagedError(self.generation.file("vectors.npy"), "damaged (a vector that is not unit length)")
        if dense is None:
            return
        where = {r: i for i, r in enumerate(rows)}
        for r in ranked:
            if r.dense is not None and not abs(r.dense - float(vecs[where[r.row]] @ dense)) < 1e-3:
                raise DamagedError(self.generation.file("index.faiss"), "damaged (scores disagree with vectors.npy)")
