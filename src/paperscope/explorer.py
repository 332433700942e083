"""The Explorer: the one object users need to query a store.

A thin facade over parts with one job each: :class:`~paperscope.table.PaperTable` (the papers in
SQLite), :class:`~paperscope.vectors.VectorIndex` (vectors, FAISS, the per-answer checks),
:class:`~paperscope.lexical.LexicalIndex` (BM25) and :class:`~paperscope.rank.Ranker`. Every
query verb builds a :class:`~paperscope.rank.Query` and goes through :meth:`Explorer.rank`
(rank, then check) and :meth:`Explorer.nearest` (fetch, then hits).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from paperscope import impact, overlay, pagein
from paperscope import lexical as lexical_mod
from paperscope.embed.base import Embedder
from paperscope.errors import DamagedError, InvalidArgument, PaperscopeError, StoreError
from paperscope.filters import Filter
from paperscope.lexical import LexicalIndex, TermVector
from paperscope.paper import Hit, Hits, Paper
from paperscope.rank import (
    HYBRID_WEIGHT,
    MODES,
    SEARCH_WEIGHT,
    IndexDisagrees,
    Query,
    Ranked,
    Ranker,
    check_min_score,
    check_mode,
)
from paperscope.store import Generation, Store
from paperscope.table import PaperTable
from paperscope.text import paper_text
from paperscope.vectors import VectorIndex

if TYPE_CHECKING:
    from paperscope.evaluate import EvalResult, Labels
    from paperscope.map import MapParams, TopicMap


def check_k(k: int) -> int:
    """``k`` as an int; InvalidArgument unless it is a positive integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgument(f"k must be a positive integer, got {k!r}")
    return int(k)


class Explorer:
    """Read-only view of one store generation: papers, related papers, free-text search.

    Safe to share between threads. Holds the generation it opened, so a concurrent
    re-index never changes answers under it; open again to see the new generation.
    Its parts are public: ``table`` (papers), ``index`` (vectors and FAISS), ``lexical``.
    """

    def __init__(self, store: str | Path | Store | None = None, *, embedder: Embedder | None = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self._embedder = embedder
        self._embedder_lock = threading.Lock()
        self._lexical_lock = threading.Lock()
        self._lexical_file: BinaryIO | None = None
        # A re-index prunes all but the last two generations: one that commits twice while this
        # opens deletes the generation being opened. That is not damage: open the new current one.
        self.store.generations.read(self._open, undo=self.close)
        if embedder is not None and embedder.fingerprint != self.fingerprint:
            self.close()
            raise StoreError(
                f"{self.store.path}: store vectors have fingerprint {self.fingerprint}, "
                f"the given embedder {embedder.fingerprint}; query with the store's model"
            )

    def _open(self) -> None:
        """Open the current generation's parts (SQLite, mapped vectors, lexical files)."""
        self.generation: Generation = self.store.require_current()
        self.generation.check()  # sizes always, sha256 for small stores: see paperscope.verify
        manifest = self.generation.manifest
        self.dimension: int = manifest["model"]["dimension"]
        self.fingerprint: str = manifest["model"]["fingerprint"]
        self._n: int = manifest["counts"]["papers"]
        self.table = PaperTable(self.generation, self._n)
        self.index = VectorIndex(self.generation, self._n, self.dimension)
        self._lexical: LexicalIndex | None = None
        self._postings: impact.Postings | None = None
        files = manifest.get("files", {})
        # Memory-mapped now (a re-index may delete this generation meanwhile; a mapping stays valid):
        # the weights and impact-ordered postings were derived at build, nothing is computed here.
        if "lexical.npz" in files and impact.DERIVED_FILE in files:
            self._lexical, self._postings = impact.open_index(
                self.generation.file("lexical.npz"),
                self.generation.file(impact.DERIVED_FILE),
                self._n,
                self.generation.file(impact.BASE_FILE) if impact.BASE_FILE in files else None,
                impact.forward_files(self.generation.file("lexical.npz").parent, files),
            )
            if self._lexical.version != lexical_mod.TOKENIZER_VERSION:  # re-tokenised at the first query
                self._lexical = self._postings = None
        # An older generation: opened now, read and derived at the first query.
        self._lexical_file = (
            open(self.generation.file("lexical.npz"), "rb")  # noqa: SIM115 - closed in close()
            if "lexical.npz" in files and self._lexical is None
            else None
        )
        self._ranker: Ranker | None = None

    # ---- papers --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def paper(self, paper_id: str) -> Paper:
        """The paper with this id (or exact title); UnknownPaperError with suggestions otherwise."""
        return self.table.fetch([self.table.row_of(paper_id)])[0]

    def papers(self) -> Iterator[Paper]:
        """Every paper, in store order, fetched in pages (never all abstracts at once)."""
        return self.table.papers()

    def row(self, paper_id: str) -> int:
        """The store row (0..n-1, the vectors' order) of the paper with this id or exact title."""
        return self.table.row_of(paper_id)

    def vector(self, paper_id: str) -> np.ndarray:
        """The stored unit vector (float32 copy) of the paper with this id or exact title."""
        return self.index.vector(self.table.row_of(paper_id))

    @property
    def model_loaded(self) -> bool:
        """Whether a query model is loaded (lexical-only use never loads one)."""
        return self._embedder is not None

    # ---- the parts -----------------------------------------------------------------------
    @property
    def lexical(self) -> LexicalIndex:
        """The lexical index of this generation; built in memory for a store written before it existed
        or by another tokenizer version (a plain `paperscope index` re-tokenises it on disk)."""
        with self._lexical_lock:
            if self._lexical is None:
                if self._lexical_file is not None:
                    self._lexical = LexicalIndex.load(
                        self.generation.file("lexical.npz"), self._n, fileobj=self._lexical_file
                    )
                if self._lexical is None or self._lexical.version != lexical_mod.TOKENIZER_VERSION:
                    # No index, or one from another tokenizer: tokenise in memory until the next index.
                    self._lexical = self.table.with_connection(lexical_mod.build_from_store)
            return self._lexical

    @property
    def ranker(self) -> Ranker:
        if self._ranker is None:
            lex = self.lexical
            if self._postings is None:
                with self._lexical_lock:
                    if self._postings is None:
                        warnings.warn(
                            f"{self.store.path}: generation {self.generation.name} has no {impact.DERIVED_FILE} "
                            "(written by an older paperscope); deriving it in memory, which is slow at scale; "
                            "a plain `paperscope index` writes it",
                            stacklevel=2,
                        )
                        self._postings = impact.Postings.build(lex)
            dense = (self.generation.manifest.get("reference") or {}).get("dense")
            self._ranker = Ranker(
                self.index.vectors,
                self.index.faiss,
                lex,
                self._postings,
                dense_reference=(float(dense[0]), float(dense[1])) if dense else None,
            )
        return self._ranker

    def preload(self) -> int:
        """Map every page that queries read into this process now; the bytes mapped.

        For a long-lived process (``paperscope serve`` runs it in a thread for each generation it opens): with
        the files in the page cache, a fresh process still pays a fault on its first touch of each
        page, and at a million papers that lifted the p95 of a warm ``related`` from 10.4-11.8 ms to
        15.5-16.9 ms (round 19, ``benchmarks/related_1m.py --preload-rounds``). The vectors, the forward index, the weights, the postings and the
        vocabulary (about 5 GB at a million papers: they then count in this process's RSS) are
        mapped; from the device, when they are not cached, this reads them (minutes at 1M).
        """
        arrays = [*overlay.parts(self.index.vectors), *self.ranker.postings.query_arrays()]
        vocab = self.lexical.vocab
        if isinstance(vocab, lexical_mod.Vocab):
            arrays += [a for a in (vocab.data, vocab.offsets, vocab.order) if a is not None]
        return pagein.populate(*arrays)

    @contextlib.contextmanager
    def _lexical_damage(self) -> Iterator[None]:
        """Damage in the memory-mapped lexical files, which open checks only cheaply (sizes, shapes;
        ``verify`` hashes them), surfaces as a numpy error inside a query: name the files, not a traceback."""
        try:
            yield
        except PaperscopeError:
            raise
        except (IndexError, ValueError, OverflowError) as e:
            if self._postings is None or not (self.generation.manifest.get("files", {})).get(impact.DERIVED_FILE):
                raise
            raise DamagedError(
                self.generation.file(impact.DERIVED_FILE), f"damaged, or lexical.npz is ({type(e).__name__}: {e})"
            ) from None

    # ---- the one query path --------------------------------------------------------------
    def related_query(self, row: int) -> Query:
        """The query :meth:`related` makes for a paper row (its vector and its terms, itself excluded)."""
        with self._lexical_damage():
            lexical = self.lexical.rows_vector([row])
        return Query(dense=self.index.vector(row), lexical=lexical, exclude=frozenset([row]))

    def rank(
        self,
        q: Query,
        k: int,
        mode: str | None = None,
        *,
        allowed: np.ndarray | None = None,
        weight: float | None = None,
        expand: float | None = None,
    ) -> list[Ranked]:
        """The k best rows for ``q`` (within the ``allowed`` mask), after the per-answer integrity checks.

        ``weight`` is the dense share of hybrid (default: ``rank.SEARCH_WEIGHT`` for free text,
        ``rank.HYBRID_WEIGHT`` for papers); ``expand`` the query-expansion strength (default: the shipped one).
        """
        mode = check_mode(mode)
        self.index.check_query(q.dense)
        if weight is None:
            weight = SEARCH_WEIGHT if q.text else HYBRID_WEIGHT
        try:
            with self._lexical_damage():
                ranked = self.ranker.rank(q, k, mode, allowed, weight, expand=expand)
        except IndexDisagrees:
            raise DamagedError(
                self.generation.file("index.faiss"), "damaged (scores disagree with vectors.npy)"
            ) from None
        self.index.check_answer(q.dense, q.exclude, ranked)
        return ranked

    def nearest(
        self,
        query: np.ndarray | Query,
        k: int = 10,
        *,
        mode: str | None = None,
        exclude: Sequence[int] = (),
        why: bool = False,
        filter: Filter | None = None,
        weight: float | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """The k papers nearest to a vector (or a built :class:`~paperscope.rank.Query`), best first.

        A bare unit vector (the store's dimension) is ranked in ``"dense"`` mode, the default
        for it; ``exclude`` lists rows never returned. ``related``, ``search`` and ``recommend``
        are this method applied to the query each builds. ``min_score`` (in [0, 1]) drops hits
        scoring below it; ``note`` then says how many were dropped.
        """
        k = check_k(k)
        min_score = check_min_score(min_score)
        if not isinstance(query, Query):
            vec = np.asarray(query, dtype=np.float32)
            if vec.shape != (self.dimension,):
                raise InvalidArgument(f"vector must have shape ({self.dimension},), got {vec.shape}")
            if mode not in (None, "dense"):
                raise InvalidArgument(f"a bare vector is ranked in dense mode only, got mode {mode!r}")
            mode = "dense"
            query = Query(
                dense=vec,
                lexical=TermVector(np.zeros(0, np.int32), np.zeros(0, np.float32)),
                exclude=frozenset(int(r) for r in exclude),
            )
        elif exclude:
            query = Query(query.dense, query.lexical, query.text, query.exclude | frozenset(int(r) for r in exclude))
        mode = check_mode(mode)
        allowed = self.table.allowed(filter) if filter is not None else None
        if allowed is not None:
            candidates = allowed.copy()
            candidates[list(query.exclude)] = False
            if not candidates.any():
                return Hits([], note=f"no paper matches the filter ({filter.describe()})")
        ranked = self.rank(query, k, mode, allowed=allowed, weight=weight)
        kept = [r for r in ranked if min_score is None or r.score >= min_score]
        papers = self.table.fetch([r.row for r in kept])
        hits = []
        for i, (r, p) in enumerate(zip(kept, papers), 1):
            terms = tuple(self.lexical.shared_terms(query.lexical, r.row, text_query=query.text)) if why else None
            hits.append(Hit(paper=p, score=r.score, rank=i, dense=r.dense, lexical=r.lexical, terms=terms))
        note = None
        term = " and contain a query term" if query.text and mode == "lexical" else ""
        if len(ranked) < k and filter is not None:
            note = f"only {len(ranked)} papers match the filter ({filter.describe()}){term}"
        elif len(ranked) < k and term:
            note = f"only {len(ranked)} papers contain a query term"
        if len(kept) < len(ranked):
            dropped = f"{len(ranked) - len(kept)} of the top {len(ranked)} scored below min_score {min_score:g}"
            note = f"{note}; {dropped}" if note else dropped
        return Hits(hits, note=note)

    # ---- the verbs -----------------------------------------------------------------------
    def related(
        self,
        key: str,
        k: int = 10,
        *,
        mode: str | None = None,
        why: bool = False,
        date_from: str | None = None,
        date_to: str | None = None,
        min_authors: int | None = None,
        max_authors: int | None = None,
        source: str | None = None,
        where: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """The k papers most related to the paper with this id or exact title, best first.

        ``mode`` is one of ``rank.MODES`` (default: ``rank.DEFAULT_MODE``, the best measured).
        Filters keep only matching papers; the result still has k papers whenever k match, and
        is empty with a ``note`` when none do. Never includes the paper itself. ``min_score``
        (in [0, 1]) drops hits scoring below it; ``note`` then says how many were dropped.
        """
        k = check_k(k)
        mode = check_mode(mode)
        filt = Filter.make(
            date_from=date_from,
            date_to=date_to,
            min_authors=min_authors,
            max_authors=max_authors,
            source=source,
            where=where,
        )
        return self.nearest(
            self.related_query(self.table.row_of(key)), k, mode=mode, why=why, filter=filt, min_score=min_score
        )

    def search(
        self,
        text: str,
        k: int = 10,
        *,
        mode: str | None = None,
        why: bool = False,
        date_from: str | None = None,
        date_to: str | None = None,
        min_authors: int | None = None,
        max_authors: int | None = None,
        source: str | None = None,
        where: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """The k papers nearest to free text; ``mode="lexical"`` needs no model at all.

        Dense and hybrid modes embed the text with the store's own pinned model. Filters as
        in :meth:`related`.
        """
        k = check_k(k)
        mode = check_mode(mode)
        if not text or not text.strip():
            raise InvalidArgument("search text is empty")
        filt = Filter.make(
            date_from=date_from,
            date_to=date_to,
            min_authors=min_authors,
            max_authors=max_authors,
            source=source,
            where=where,
        )
        dense = self.embed_query(text) if mode != "lexical" else None
        with self._lexical_damage():
            q = Query(dense=dense, lexical=self.lexical.text_vector(text), text=True)
        if mode == "lexical" and q.lexical.nnz == 0:
            return Hits([], note=f"no indexed term in {text.strip()!r} (after stop words); try --mode dense")
        return self.nearest(q, k, mode=mode, why=why, filter=filt, min_score=min_score)

    def recommend(
        self,
        positive: list[str],
        negative: list[str] = (),
        k: int = 10,
        *,
        mode: str | None = None,
        why: bool = False,
        negative_weight: float = 0.5,
        date_from: str | None = None,
        date_to: str | None = None,
        min_authors: int | None = None,
        max_authors: int | None = None,
        source: str | None = None,
        where: dict[str, str] | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """Papers like all of ``positive`` and unlike ``negative`` (ids or exact titles), best first.

        Rocchio on both sides: the query is the mean of the positive papers' vectors minus
        ``negative_weight`` times the mean of the negative ones. The given papers are never
        returned. Filters as in :meth:`related`.
        """
        k = check_k(k)
        mode = check_mode(mode)
        if isinstance(positive, str) or isinstance(negative, str):
            raise InvalidArgument("positive and negative are lists of paper ids or titles")
        if not positive:
            raise InvalidArgument("recommend needs at least one positive paper")
        if not 0.0 <= negative_weight <= 1.0:
            raise InvalidArgument(f"negative_weight must be in [0, 1], got {negative_weight}")
        filt = Filter.make(
            date_from=date_from,
            date_to=date_to,
            min_authors=min_authors,
            max_authors=max_authors,
            source=source,
            where=where,
        )
        pos = list(dict.fromkeys(self.table.row_of(p) for p in positive))
        neg = [r for r in dict.fromkeys(self.table.row_of(p) for p in negative) if r not in pos]
        dense = self.index.mean(pos)
        if neg:
            dense = dense - negative_weight * self.index.mean(neg)
        norm = float(np.linalg.norm(dense))
        dense = dense / norm if norm > 0 else dense
        with self._lexical_damage():
            lexical = self.lexical.rows_vector(pos, neg, negative_weight)
        q = Query(dense=dense.astype(np.float32), lexical=lexical, exclude=frozenset(pos + neg))
        return self.nearest(q, k, mode=mode, why=why, filter=filt, min_score=min_score)

    def evaluate(
        self, labels: str | Path | Labels | None = None, *, modes: tuple[str, ...] = MODES, weight: float | None = None
    ) -> list[EvalResult]:
        """Precision@10, recall@10, nDCG@10 and MAP of :meth:`related` for each mode, on labels.

        ``labels`` is a theme CSV (``title,theme``), a query JSON (``[{"query", "relevant"}]``),
        a loaded :class:`~paperscope.evaluate.Labels`, or None for both shipped label sets.
        Scores are given on all queries and on the held-out split (see ``evaluate.split_of``).
        """
        from paperscope import evaluate as ev

        sets = (
            ev.shipped_labels()
            if labels is None
            else [labels if isinstance(labels, ev.Labels) else ev.load_labels(labels)]
        )
        return [ev.evaluate(self, s, modes=modes, weight=weight) for s in sets]

    # ---- the query model -----------------------------------------------------------------
    def embed_query(self, text: str) -> np.ndarray:
        """A unit vector for ``text`` from the model that built this store."""
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = self._load_store_embedder()
            return self._embedder.embed_batch([text.strip()])[0]

    def load_query_embedder(self) -> Embedder:
        """A new query embedder for this store's pinned model, checked as the one queries load.

        For callers that manage the model themselves (``paperscope serve`` batches the queries
        of concurrent requests); hand it on with ``Explorer(store, embedder=...)``.
        """
        return self._load_store_embedder()

    def _load_store_embedder(self) -> Embedder:
        from paperscope.embed.registry import store_embedder

        return store_embedder(self.generation.manifest["model"], self.generation.file("manifest.json"), self.store.path)

    # ---- the topic map (orchestrated in paperscope.map.maker) ----------------------------
    def topic_map(
        self,
        out: str | Path | None = None,
        *,
        params: MapParams | None = None,
        refit: bool = False,
        render: bool = True,
        related_k: int = 5,
        lock_wait: float = 0.0,
        progress: bool | None = None,
    ) -> TopicMap:
        """The corpus map: 2-D coordinates, topics at two levels, labels; saved in the store.

        An up-to-date saved map (same generation, same parameters) is returned as it is. After a
        re-index, papers already on the map keep their place and topic (see
        :func:`paperscope.map.compute_map`); ``refit=True`` starts afresh. With ``render`` the
        PNG, the HTML page and topics.json are written to ``out`` (default: ``STORE/map``);
        their paths are in ``result.stats["outputs"]``. A map that must be saved takes the store's
        writer lock first, waiting up to ``lock_wait`` seconds for a running index; outputs are
        renamed into place only after the map state is saved. ``progress`` shows a bar over the
        steps (default: in a notebook only; tqdm.auto).
        """
        from paperscope.map.maker import make_map
        from paperscope.render import write_outputs

        return make_map(
            self,
            out,
            params=params,
            refit=refit,
            writer=write_outputs if render else None,
            related_k=related_k,
            lock_wait=lock_wait,
            progress=progress,
        )

    def map_inputs(self) -> tuple[list[str], list[str], list[str], list[str], np.ndarray | overlay.LayeredVectors]:
        """What :func:`paperscope.map.compute_map` takes, in store order: ids, titles, texts, content hashes, vectors.

        Public so benchmarks and notebooks can fit maps with other parameters without a store write.
        """
        ids, titles, texts, hashes = [], [], [], []
        for pid, title, abstract, chash in self.table.columns("id", "title", "abstract", "content_hash"):
            ids.append(pid)
            titles.append(title)
            texts.append(paper_text(title, abstract))
            hashes.append(chash)
        # Not copied: the memory map itself, or the base and delta read through LayeredVectors
        # (np.asarray makes one array of it); compute_map reads it in pieces (1 GB at 1M papers).
        return ids, titles, texts, hashes, self.index.vectors

    def saved_map(self) -> TopicMap | None:
        """The last map saved in the store (possibly of an older generation), or None."""
        import paperscope.render.html  # noqa: F401 - registers the page a map shows inline in a notebook
        from paperscope.map.maker import saved_map

        return saved_map(self.store)

    # ---- about the store ----------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """The manifest of the open generation (counts, model, last build's stats)."""
        return {"store": str(self.store.path), **self.generation.manifest}

    def to_pandas(self, *, abstracts: bool = True) -> Any:
        """Every paper as a DataFrame row (store order): the fields of :class:`Paper` (pandas needed)."""
        from paperscope.frames import pandas

        rows = [p.to_dict() for p in self.papers()]
        if not abstracts:
            for r in rows:
                r.pop("abstract")
        return pandas().DataFrame(rows)

    def __repr__(self) -> str:
        model = self.generation.manifest.get("model", {})
        return (
            f"Explorer({str(self.store.path)!r}: {len(self)} papers, generation {self.generation.name}, "
            f"model {model.get('name', '?')} {self.dimension}-d)"
        )

    def _repr_html_(self) -> str:
        """What the store holds, for Jupyter: papers, generation, model, index, whether a map is saved."""
        from paperscope.frames import esc, table

        m = self.generation.manifest
        saved = self.store.maps.current() is not None  # a pointer read: no map loaded (1.3 GB at 1M)
        rows = [
            ("store", str(self.store.path)),
            ("papers", len(self)),
            ("generation", self.generation.name),
            ("model", f"{m.get('model', {}).get('name', '?')} ({self.dimension}-d)"),
            ("index", (m.get("index") or {}).get("type", "flat")),
            ("saved map", "yes" if saved else "no"),
        ]
        return f"<b>{esc('paperscope Explorer')}</b>" + table(("", ""), rows)

    def close(self) -> None:
        table = getattr(self, "table", None)  # None when the first open failed before reaching it
        if table is not None:
            table.close()
        if self._lexical_file is not None:
            self._lexical_file.close()

    def __enter__(self) -> Explorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
