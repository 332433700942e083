"""The Explorer: the one object users need to query a store."""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from paperscope import index
from paperscope.corpus.normalize import normalise_title
from paperscope.embed import Embedder
from paperscope.embed.lock import ModelLock
from paperscope.errors import StoreError, UnknownPaperError
from paperscope.paper import Hit, Paper
from paperscope.store import PAPER_COLUMNS, Generation, Store, paper_from_row

_COLS = ", ".join(PAPER_COLUMNS)
# Above this many papers, suggestions for an unknown title come from a prefix match in SQLite
# instead of fuzzy matching every title in memory.
_FUZZY_LIMIT = 200_000


class Explorer:
    """Read-only view of one store generation: papers, related papers, free-text search.

    Safe to share between threads. Holds the generation it opened, so a concurrent
    re-index never changes answers under it; open again to see the new generation.
    """

    def __init__(self, store: str | Path | Store | None = None, *, embedder: Embedder | None = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.generation: Generation = self.store.require_current()
        manifest = self.generation.manifest
        self.dimension: int = manifest["model"]["dimension"]
        self.fingerprint: str = manifest["model"]["fingerprint"]
        self._n: int = manifest["counts"]["papers"]
        self._con = self.generation.connect()
        self._db_lock = threading.Lock()
        self._vectors = self.generation.load_vectors()
        self._index = index.load(self.generation.file("index.faiss"), self._n, self.dimension,
                                 manifest.get("index"))
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        if embedder is not None and embedder.fingerprint != self.fingerprint:
            raise StoreError(f"{self.store.path}: store vectors have fingerprint {self.fingerprint}, "
                             f"the given embedder {embedder.fingerprint}; query with the store's model")

    # ---- papers --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db_lock:
            return self._con.execute(sql, params).fetchall()

    def paper(self, paper_id: str) -> Paper:
        """The paper with this id (or exact title); UnknownPaperError with suggestions otherwise."""
        return self._fetch_rows([self._row_of(paper_id)])[0]

    def papers(self) -> Iterator[Paper]:
        """Every paper, in store order, fetched in pages (never all abstracts at once)."""
        for start in range(0, self._n, 1000):
            for r in self._query(f"SELECT {_COLS} FROM papers WHERE row >= ? AND row < ? ORDER BY row",
                                 (start, start + 1000)):
                yield paper_from_row(r)

    def _row_of(self, key: str) -> int:
        key = key.strip()
        found = self._query("SELECT row FROM papers WHERE id = ?", (key,))
        if not found:
            found = self._query("SELECT row FROM papers WHERE norm_title = ? ORDER BY row LIMIT 1",
                                (normalise_title(key),))
        if not found:
            raise UnknownPaperError(key, self._suggest(key))
        return int(found[0][0])

    def _suggest(self, key: str, n: int = 3) -> list[tuple[str, str]]:
        """Titles containing the key, then (small stores) the closest titles by edit similarity."""
        norm = normalise_title(key)
        if not norm:
            return []
        pattern = "%" + norm.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        found = [(r[0], r[1]) for r in self._query(
            "SELECT id, title FROM papers WHERE norm_title LIKE ? ESCAPE '\\' ORDER BY length(title) LIMIT ?",
            (pattern, n))]
        if len(found) < n and self._n <= _FUZZY_LIMIT:
            by_norm = {r[2]: (r[0], r[1]) for r in self._query("SELECT id, title, norm_title FROM papers")}
            for m in difflib.get_close_matches(norm, list(by_norm), n=n, cutoff=0.5):
                if by_norm[m] not in found:
                    found.append(by_norm[m])
        return found[:n]

    def _fetch_rows(self, rows: list[int]) -> list[Paper]:
        if not rows:
            return []
        got = self._query(f"SELECT row, {_COLS} FROM papers WHERE row IN ({','.join('?' * len(rows))})", tuple(rows))
        by_row = {r[0]: paper_from_row(r[1:]) for r in got}
        missing = [r for r in rows if r not in by_row]
        if missing:
            raise StoreError(f"{self.generation.file('papers.sqlite')}: rows {missing[:3]} missing for indexed vectors; "
                             "re-index to repair: paperscope index --rebuild")
        return [by_row[r] for r in rows]

    # ---- queries -------------------------------------------------------------------------
    @staticmethod
    def _check_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        return int(k)

    def _hits(self, scores: np.ndarray, rows: np.ndarray, k: int, exclude: int | None) -> list[Hit]:
        keep = [(float(s), int(r)) for s, r in zip(scores, rows) if r >= 0 and r != exclude][:k]
        papers = self._fetch_rows([r for _, r in keep])
        return [Hit(paper=p, score=s, rank=i) for i, ((s, _), p) in enumerate(zip(keep, papers), 1)]

    def related(self, key: str, k: int = 10) -> list[Hit]:
        """The k papers most similar to the paper with this id or exact title, best first.

        Never includes the paper itself; fewer than k only when the store has fewer others.
        """
        k = self._check_k(k)
        row = self._row_of(key)
        query = np.asarray(self._vectors[row : row + 1], dtype=np.float32)
        scores, rows = index.search(self._index, query, min(k + 1, self._n))
        return self._hits(scores[0], rows[0], k, exclude=row)

    def search(self, text: str, k: int = 10) -> list[Hit]:
        """The k papers nearest to free text, embedded with the store's own pinned model."""
        k = self._check_k(k)
        if not text or not text.strip():
            raise ValueError("search text is empty")
        query = self.embed_query(text)
        scores, rows = index.search(self._index, query[None, :], min(k, self._n))
        return self._hits(scores[0], rows[0], k, exclude=None)

    def embed_query(self, text: str) -> np.ndarray:
        """A unit vector for ``text`` from the model that built this store."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = self._load_store_embedder()
            return self._embedder.embed_batch([text.strip()])[0]

    def _load_store_embedder(self) -> Embedder:
        from paperscope.embed import load_embedder

        lock_data = self.generation.manifest["model"].get("lock")
        if not lock_data:
            raise StoreError(f"{self.store.path}: built with a custom embedder; pass embedder= to query it")
        lock = ModelLock.from_dict(lock_data, f"{self.generation.file('manifest.json')}")
        if lock.fingerprint != self.fingerprint:
            raise StoreError(f"{self.generation.file('manifest.json')}: lock fingerprint {lock.fingerprint} "
                             f"does not match the vectors' {self.fingerprint}; re-index: paperscope index --rebuild")
        return load_embedder(lock)

    # ---- about the store ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The manifest of the open generation (counts, model, last build's stats)."""
        return {"store": str(self.store.path), **self.generation.manifest}

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Explorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
