"""Clustered synthetic unit vectors shaped like sentence embeddings (for index tests and benchmarks).

Uniform noise on the sphere has no structure, so every approximate index looks bad on it and
recall says nothing. Real embeddings sit near low-dimensional pieces: here each cluster is a
centre plus variation along its own few directions, plus a little isotropic noise.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def clustered_chunks(
    n: int,
    dim: int = 384,
    *,
    clusters: int | None = None,
    rank: int = 16,
    spread: float = 1.0,
    noise: float = 0.3,
    seed: int = 0,
    chunk: int = 50_000,
) -> Iterator[np.ndarray]:
    """Yield ``n`` float32 unit vectors in chunks of at most ``chunk`` rows (bounded memory)."""
    clusters = clusters or max(1, int(np.sqrt(n)))
    base = np.random.default_rng(seed)
    centres = base.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = np.full(clusters, n // clusters)
    sizes[: n % clusters] += 1
    buf: list[np.ndarray] = []
    held = 0
    for c, size in enumerate(sizes):
        rng = np.random.default_rng([seed, c])
        # Unit-norm directions, so ``spread`` and ``noise`` are the typical lengths of the two offsets.
        basis = rng.standard_normal((rank, dim)).astype(np.float32) / np.sqrt(dim)
        z = rng.standard_normal((size, rank)).astype(np.float32) * (spread / np.sqrt(rank))
        eps = rng.standard_normal((size, dim)).astype(np.float32) * (noise / np.sqrt(dim))
        x = centres[c] + z @ basis + eps
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        buf.append(x)
        held += size
        while held >= chunk:
            block = np.concatenate(buf)
            yield block[:chunk]
            buf, held = [block[chunk:]], block.shape[0] - chunk
    if held:
        yield np.concatenate(buf)


def clustered(n: int, dim: int = 384, **kwargs: object) -> np.ndarray:
    """All of :func:`clustered_chunks` in one array (small n only)."""
    return np.concatenate(list(clustered_chunks(n, dim, **kwargs)))  # type: ignore[arg-type]
