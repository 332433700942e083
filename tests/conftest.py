"""Shared fixtures: a tiny deterministic fake embedder for fast tests, and real-model stores."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from paperscope.corpus import bundled_corpus

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the suite must never reach the hub
# Derived models (ONNX exports, static distillations) go to a per-session cache, never ~/.cache.
os.environ.setdefault("PAPERSCOPE_CACHE", tempfile.mkdtemp(prefix="paperscope-cache-"))


TENSOR_PROGRAMS_V = "Tensor Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer"


class FakeEmbedder:
    """Hashed bag of words, L2-normalised: deterministic, instant, and texts sharing words are close."""

    dimension = 64

    def __init__(self, tag: str = "fake-v1"):
        self.tag = tag
        self.calls: list[int] = []

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.tag.encode()).hexdigest()[:16]

    def text(self, title: str, abstract: str) -> str:
        return f"{title}. {abstract}"

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dimension] += 1.0
        out[:, 0] += 1e-3  # never a zero vector
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    @property
    def embedded(self) -> int:
        return sum(self.calls)


@pytest.fixture
def fake() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def corpus_dir() -> Path:
    return bundled_corpus()


@pytest.fixture(scope="session")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus indexed once with the real pinned model (shared by e2e tests)."""
    from paperscope.pipeline import build

    store = tmp_path_factory.mktemp("real") / "store"
    build(None, store)
    return store


@pytest.fixture(scope="session")
def torch_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus indexed once with the torch backend (the reference the feeder and GPU paths match)."""
    from paperscope.pipeline import build

    store = tmp_path_factory.mktemp("torch") / "store"
    build(None, store, backend="torch")
    return store


def resident_kb(path: Path) -> int | None:
    """This process's resident kB of the maps of ``path`` (/proc/self/smaps); None off Linux."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    total, inside = 0, False
    for line in smaps.read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a map's header: address range, perms, ..., path
            inside = line.endswith(" " + str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


def live_lexical(store: Path) -> tuple[object, object]:
    """(LexicalIndex, Postings) of a store's live generation, memory-mapped as a query opens them."""
    from paperscope import impact
    from paperscope.store import Store

    gen = Store(store).require_current()
    return impact.open_index(
        gen.file("lexical.npz"),
        gen.file(impact.DERIVED_FILE),
        gen.manifest["counts"]["papers"],
        gen.file(impact.BASE_FILE) if impact.BASE_FILE in gen.manifest["files"] else None,
        impact.forward_files(gen.path, gen.manifest["files"]),
    )


def whole_lexical(store: Path) -> dict[str, np.ndarray]:
    """The live generation's lexical.npz arrays as a from-scratch build writes them: its rows written
    whole when they are a base and a delta (paperscope.layered_lexical)."""
    from paperscope.store import Store

    gen = Store(store).require_current()
    with np.load(gen.file("lexical.npz"), allow_pickle=False) as z:
        out = {k: z[k] for k in ("vocab_utf8", "vocab_offsets", "df", "tokenizer_version")}
        if "indptr" in z:
            return {**out, **{k: z[k] for k in ("indptr", "terms", "counts", "title_counts")}}
    lex, _ = live_lexical(store)
    whole = lex.whole()  # type: ignore[attr-defined]
    return {
        **out,
        "indptr": whole.indptr,
        "terms": whole.terms,
        "counts": whole.counts,
        "title_counts": whole.title_counts,
    }
