"""UMAP, seeded, so one store and one set of parameters always give the same coordinates.

umap-learn is deterministic when ``random_state`` is set (it then runs single-threaded).
A fitted UMAP object can only be saved with pickle, which the store never uses; instead a
map records which papers it was fitted on, and a later run re-fits on exactly those papers
(same vectors, same seed: the same model) and places new papers with ``transform``.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from paperscope.errors import InvalidArgument


def fit_transform(
    base: np.ndarray,
    rest: np.ndarray | None,
    *,
    n_components: int,
    n_neighbors: int,
    min_dist: float,
    seed: int,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Fit on ``base`` and return its embedding, plus ``rest`` placed by ``transform`` (if any).

    ``init`` gives starting positions (n_base, n_components), e.g. a previous layout.
    """
    os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "paperscope-numba"))
    import umap  # heavy (numba): imported only when a map is made

    n = base.shape[0]
    if n < 4:
        raise InvalidArgument(f"a map needs at least 4 papers, the store has {n}")
    with warnings.catch_warnings():
        # "n_jobs value 1 overridden to 1 by setting random_state": that is the point.
        warnings.filterwarnings("ignore", message=".*n_jobs.*")
        warnings.filterwarnings("ignore", message=".*k >= N.*")
        reducer = umap.UMAP(
            n_components=n_components,
            n_neighbors=min(n_neighbors, n - 1),
            min_dist=min_dist,
            metric="cosine",
            random_state=seed,
            init=init if init is not None else ("spectral" if n > n_components + 1 else "random"),
        )
        emb = reducer.fit_transform(base).astype(np.float32)
        placed = reducer.transform(rest).astype(np.float32) if rest is not None and len(rest) else None
    return emb, placed
