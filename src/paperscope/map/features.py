"""The space topics are clustered in: dense embeddings joined with lexical (TF-IDF) features.

Measured on the bundled corpus's theme labels (benchmarks/topics.py), clustering the
MiniLM vectors alone splits muP and PEFT papers across topics (best-topic F1 0.2-0.4);
adding a low-rank TF-IDF view of the same abstracts, where "μP" or "LoRA" is a strong
feature, lifts them to 0.7-0.9. Both halves are L2-normalised, then the lexical half is weighted
(default 2.0: of 1.0, 1.5 and 2.0 the only weight that gave the muP, PEFT and diffusion
themes each a topic with precision and recall above 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from paperscope.map.terms import terms

TRANSFORM_CHUNK = 50_000


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def lexical_features(fit_texts: Sequence[str], texts: Sequence[str], dims: int, seed: int) -> np.ndarray:
    """TF-IDF over :func:`terms` (unigrams and phrases), fitted on ``fit_texts``, reduced to ``dims`` by SVD.

    Fitting on a fixed base set (not on every text) is what lets a grown corpus keep its map.
    """
    vectorizer = TfidfVectorizer(analyzer=terms, min_df=2, sublinear_tf=True, dtype=np.float32)
    try:
        base = vectorizer.fit_transform(fit_texts)
    except ValueError:  # no term in two papers (tiny or unrelated corpus): every term counts
        vectorizer = TfidfVectorizer(analyzer=terms, min_df=1, sublinear_tf=True, dtype=np.float32)
        try:
            base = vectorizer.fit_transform(fit_texts)
        except ValueError:  # no term at all (stop words only): the dense half alone places them
            return np.zeros((len(texts), 1), dtype=np.float32)
    if base.shape[1] < 2 or base.shape[0] < 2:  # too few terms or papers for an SVD
        return _unit(vectorizer.transform(texts).toarray().astype(np.float32))
    n_comp = max(1, min(dims, base.shape[1] - 1, base.shape[0] - 1))
    svd = TruncatedSVD(n_components=n_comp, random_state=seed).fit(base)
    # Row by row the same result, in pieces: one sparse matrix of a million abstracts would take GBs.
    return np.vstack(
        [
            _unit(svd.transform(vectorizer.transform(texts[i : i + TRANSFORM_CHUNK])))
            for i in range(0, len(texts), TRANSFORM_CHUNK)
        ]
    )


def joint_features(dense: Any, lexical: np.ndarray, lexical_weight: float) -> np.ndarray:
    """Concatenate unit dense vectors and weighted unit lexical vectors, then normalise again.

    ``dense`` is anything whose slices are arrays of rows (an array, a memory map, a
    :class:`paperscope.overlay.LayeredVectors`): it is read ``TRANSFORM_CHUNK`` rows at a time
    into the output, each row as the whole-array expression would make it. The whole-array
    expression held four temporaries of the output's size: 4 GB of the 1M map's peak RSS."""
    n = len(dense)
    width = np.asarray(dense[0:1], dtype=np.float32).shape[1] if n else 0
    out = np.empty((n, width + lexical.shape[1]), dtype=np.float32)
    for a in range(0, n, TRANSFORM_CHUNK):
        b = min(n, a + TRANSFORM_CHUNK)
        part = _unit(np.asarray(dense[a:b], dtype=np.float32))
        out[a:b] = _unit(np.hstack([part, lexical_weight * lexical[a:b]]))
    return out
