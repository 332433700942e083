"""The Explorer: the one object users need to query a store."""

from __future__ import annotations

import difflib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from paperscope import index
from paperscope import lexical as lexical_mod
from paperscope.corpus.normalize import normalise_title
from paperscope.embed import Embedder
from paperscope.embed.lock import ModelLock
from paperscope.errors import ModelLockError, PaperscopeError, StoreError, UnknownPaperError
from paperscope.filters import Filter
from paperscope.lexical import LexicalIndex
from paperscope.paper import Hit, Hits, Paper
from paperscope.rank import HYBRID_WEIGHT, MODES, Query, Ranker, check_mode
from paperscope.store import PAPER_COLUMNS, Generation, Store, paper_from_row

if TYPE_CHECKING:
    from paperscope.evaluate import EvalResult, Labels
    from paperscope.map import MapParams, TopicMap

_COLS = ", ".join(PAPER_COLUMNS)
# Above this many papers, suggestions for an unknown title come from a prefix match in SQLite
# instead of fuzzy matching every title in memory.
_FUZZY_LIMIT = 200_000
_HTML_POINTS = 50_000


class Explorer:
    """Read-only view of one store generation: papers, related papers, free-text search.

    Safe to share between threads. Holds the generation it opened, so a concurrent
    re-index never changes answers under it; open again to see the new generation.
    """

    def __init__(self, store: str | Path | Store | None = None, *, embedder: Embedder | None = None):
        self.store = store if isinstance(store, Store) else Store(store)
        self.generation: Generation = self.store.require_current()
        self.generation.check()  # sizes always, sha256 for small stores: see paperscope.verify
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
        self._lexical: LexicalIndex | None = None
        self._lexical_lock = threading.Lock()
        # Opened now, read at the first query: a re-index may delete this generation meanwhile.
        self._lexical_file = (open(self.generation.file("lexical.npz"), "rb")  # noqa: SIM115 - closed in close()
                              if "lexical.npz" in manifest.get("files", {}) else None)
        self._ranker: Ranker | None = None
        if embedder is not None and embedder.fingerprint != self.fingerprint:
            raise StoreError(f"{self.store.path}: store vectors have fingerprint {self.fingerprint}, "
                             f"the given embedder {embedder.fingerprint}; query with the store's model")

    # ---- papers --------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._db_lock:
            try:
                return self._con.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:  # a damaged page is only found when a query reads it
                raise StoreError(f"{self.generation.file('papers.sqlite')}: damaged ({e}); "
                                 "re-index to repair: paperscope index --rebuild") from None

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

    def _check_answer(self, q: Query, ranked: list[Any]) -> None:
        """Cheap per-query integrity checks on the rows an answer touched (see paperscope.verify).

        Stored vectors are unit length, and FAISS's score for a row is the cosine with that row
        of vectors.npy: damage in either file that reaches an answer breaks one or the other.
        """
        rows = sorted({r.row for r in ranked} | set(q.exclude))
        if not rows:
            return
        vecs = np.asarray(self._vectors[rows], dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1) if np.isfinite(vecs).all() else np.array([np.nan])
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            raise StoreError(f"{self.generation.file('vectors.npy')}: damaged (a vector that is not unit length); "
                             "re-index to repair: paperscope index --rebuild")
        if q.dense is None:
            return
        where = {r: i for i, r in enumerate(rows)}
        for r in ranked:
            if r.dense is not None and not abs(r.dense - float(vecs[where[r.row]] @ q.dense)) < 1e-3:
                raise StoreError(f"{self.generation.file('index.faiss')}: damaged (scores disagree with vectors.npy); "
                                 "re-index to repair: paperscope index --rebuild")

    # Ranking (modes, filters, explanations) lives in rank.py / filters.py / lexical.py.
    @property
    def lexical(self) -> LexicalIndex:
        """The BM25 index of this generation; built in memory for a store written before it existed."""
        with self._lexical_lock:
            if self._lexical is None:
                if self._lexical_file is not None:
                    self._lexical = LexicalIndex.load(self.generation.file("lexical.npz"), self._n,
                                                      fileobj=self._lexical_file)
                else:
                    with self._db_lock:
                        self._lexical = lexical_mod.build_from_store(self._con)
            return self._lexical

    @property
    def ranker(self) -> Ranker:
        if self._ranker is None:
            self._ranker = Ranker(self._vectors, self._index, self.lexical)
        return self._ranker

    def _allowed(self, filt: Filter | None) -> np.ndarray | None:
        if filt is None:
            return None
        with self._db_lock:
            try:
                return filt.allowed_rows(self._con, self._n)
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{self.generation.file('papers.sqlite')}: damaged ({e}); "
                                 "re-index to repair: paperscope index --rebuild") from None

    def _run(self, q: Query, k: int, mode: str, filt: Filter | None, why: bool,
             weight: float | None = None) -> Hits:
        allowed = self._allowed(filt)
        if allowed is not None:
            candidates = allowed.copy()
            candidates[list(q.exclude)] = False
            if not candidates.any():
                return Hits([], note=f"no paper matches the filter ({filt.describe()})" if filt else None)
        if q.dense is not None and not np.isfinite(q.dense).all():
            raise StoreError(f"{self.generation.file('vectors.npy')}: damaged (non-finite values); "
                             "re-index to repair: paperscope index --rebuild")
        ranked = self.ranker.rank(q, k, mode, allowed, HYBRID_WEIGHT if weight is None else weight)
        self._check_answer(q, ranked)
        papers = self._fetch_rows([r.row for r in ranked])
        hits = []
        for i, (r, p) in enumerate(zip(ranked, papers), 1):
            extra = {}
            if why:
                terms = self.lexical.shared_terms(q.lexical, r.row, text_query=q.text)
                extra = {"dense": r.dense, "lexical": r.lexical, "terms": tuple(terms)}
            hits.append(Hit(paper=p, score=r.score, rank=i, **extra))
        note = None
        term = " and contain a query term" if q.text and mode == "lexical" else ""
        if len(hits) < k and filt is not None:
            note = f"only {len(hits)} papers match the filter ({filt.describe()}){term}"
        elif len(hits) < k and term:
            note = f"only {len(hits)} papers contain a query term"
        return Hits(hits, note=note)

    def related(self, key: str, k: int = 10, *, mode: str | None = None, why: bool = False,
                date_from: str | None = None, date_to: str | None = None, min_authors: int | None = None,
                max_authors: int | None = None, source: str | None = None,
                where: dict[str, str] | None = None) -> Hits:
        """The k papers most related to the paper with this id or exact title, best first.

        ``mode`` is one of ``rank.MODES`` (default: ``rank.DEFAULT_MODE``, the best measured).
        Filters keep only matching papers; the result still has k papers whenever k match, and
        is empty with a ``note`` when none do. Never includes the paper itself.
        """
        k = self._check_k(k)
        mode = check_mode(mode)
        filt = Filter.make(date_from=date_from, date_to=date_to, min_authors=min_authors,
                           max_authors=max_authors, source=source, where=where)
        row = self._row_of(key)
        q = Query(dense=np.asarray(self._vectors[row], dtype=np.float32), lexical=self.lexical.rows_vector([row]),
                  exclude=frozenset([row]))
        return self._run(q, k, mode, filt, why)

    def search(self, text: str, k: int = 10, *, mode: str | None = None, why: bool = False,
               date_from: str | None = None, date_to: str | None = None, min_authors: int | None = None,
               max_authors: int | None = None, source: str | None = None,
               where: dict[str, str] | None = None) -> Hits:
        """The k papers nearest to free text; ``mode="lexical"`` needs no model at all.

        Dense and hybrid modes embed the text with the store's own pinned model. Filters as
        in :meth:`related`.
        """
        k = self._check_k(k)
        mode = check_mode(mode)
        if not text or not text.strip():
            raise ValueError("search text is empty")
        filt = Filter.make(date_from=date_from, date_to=date_to, min_authors=min_authors,
                           max_authors=max_authors, source=source, where=where)
        dense = self.embed_query(text) if mode != "lexical" else None
        q = Query(dense=dense, lexical=self.lexical.text_vector(text), text=True)
        if mode == "lexical" and q.lexical.nnz == 0:
            return Hits([], note=f"no indexed term in {text.strip()!r} (after stop words); try --mode dense")
        return self._run(q, k, mode, filt, why)

    def recommend(self, positive: list[str], negative: list[str] = (), k: int = 10, *,
                  mode: str | None = None, why: bool = False, negative_weight: float = 0.5,
                  date_from: str | None = None, date_to: str | None = None, min_authors: int | None = None,
                  max_authors: int | None = None, source: str | None = None,
                  where: dict[str, str] | None = None) -> Hits:
        """Papers like all of ``positive`` and unlike ``negative`` (ids or exact titles), best first.

        Rocchio on both sides: the query is the mean of the positive papers' vectors minus
        ``negative_weight`` times the mean of the negative ones. The given papers are never
        returned. Filters as in :meth:`related`.
        """
        k = self._check_k(k)
        mode = check_mode(mode)
        if isinstance(positive, str) or isinstance(negative, str):
            raise ValueError("positive and negative are lists of paper ids or titles")
        if not positive:
            raise ValueError("recommend needs at least one positive paper")
        if not 0.0 <= negative_weight <= 1.0:
            raise ValueError(f"negative_weight must be in [0, 1], got {negative_weight}")
        filt = Filter.make(date_from=date_from, date_to=date_to, min_authors=min_authors,
                           max_authors=max_authors, source=source, where=where)
        pos = list(dict.fromkeys(self._row_of(p) for p in positive))
        neg = [r for r in dict.fromkeys(self._row_of(p) for p in negative) if r not in pos]
        dense = np.asarray(self._vectors[pos], dtype=np.float32).mean(axis=0)
        if neg:
            dense = dense - negative_weight * np.asarray(self._vectors[neg], dtype=np.float32).mean(axis=0)
        norm = float(np.linalg.norm(dense))
        dense = dense / norm if norm > 0 else dense
        q = Query(dense=dense.astype(np.float32), lexical=self.lexical.rows_vector(pos, neg, negative_weight),
                  exclude=frozenset(pos + neg))
        return self._run(q, k, mode, filt, why)

    def evaluate(self, labels: str | Path | Labels | None = None, *, modes: tuple[str, ...] = MODES,
                 weight: float | None = None) -> list[EvalResult]:
        """Precision@10, recall@10, nDCG@10 and MAP of :meth:`related` for each mode, on labels.

        ``labels`` is a theme CSV (``title,theme``), a query JSON (``[{"query", "relevant"}]``),
        a loaded :class:`~paperscope.evaluate.Labels`, or None for both shipped label sets.
        Scores are given on all queries and on the held-out split (see ``evaluate.split_of``).
        """
        from paperscope import evaluate as ev

        sets = ev.shipped_labels() if labels is None else [labels if isinstance(labels, ev.Labels)
                                                            else ev.load_labels(labels)]
        return [ev.evaluate(self, s, modes=modes, weight=weight) for s in sets]

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
        try:
            embedder = load_embedder(lock, for_query=True)
        except (ModelLockError, ValueError, OSError) as e:  # say which model the store needs, and both ways out
            raise ModelLockError(f"{e} [this store's vectors come from {lock.name} (backend {lock.backend}, "
                                 f"fingerprint {lock.fingerprint}); install that model, or re-index with the "
                                 "current one: paperscope index --rebuild]") from None
        recorded = self.generation.manifest["model"].get("artifact_sha256")
        actual = getattr(embedder, "artifact_sha256", None) if lock.backend != "torch" else None
        if recorded != actual:
            raise StoreError(f"{self.store.path}: vectors made by the {lock.backend} model {str(recorded)[:12]}…, "
                             f"the cached one is {str(actual)[:12]}…; re-index: paperscope index --rebuild")
        return embedder

    # ---- the topic map ------------------------------------------------------------------
    def topic_map(self, out: str | Path | None = None, *, params: MapParams | None = None, refit: bool = False,
                  render: bool = True, related_k: int = 5, progress: bool | None = None) -> TopicMap:
        """The corpus map: 2-D coordinates, topics at two levels, labels; saved in the store.

        An up-to-date saved map (same generation, same parameters) is returned as it is. After a
        re-index, papers already on the map keep their place and topic (see
        :func:`paperscope.map.compute_map`); ``refit=True`` starts afresh. With ``render`` the
        PNG, the HTML page and topics.json are written to ``out`` (default: ``STORE/map``);
        their paths are in ``result.stats["outputs"]``. ``progress`` shows a bar over the steps
        (default: in a notebook only; tqdm.auto).
        """
        from paperscope.map import MapParams, compute_map, from_record, to_record

        params = params or MapParams()
        previous = None if refit else self.saved_map()
        if previous is not None and previous.stats.get("fingerprint") != self.fingerprint:
            previous = None  # other vectors: nothing of the old layout carries over
        fresh = not (previous is not None and previous.generation == self.generation.name
                     and previous.params == params)
        if fresh:
            from paperscope.map.topicmap import STEPS
            from paperscope.progress import in_notebook

            bar = None
            if progress or (progress is None and in_notebook()):
                from tqdm.auto import tqdm

                bar = tqdm(total=len(STEPS) + int(render), desc="topic map", unit="step")
            def step(name: str) -> None:
                if bar is not None:
                    bar.set_postfix_str(name)
                    bar.update(0 if name == STEPS[0] else 1)
            ids, titles, texts, hashes, vectors = self.map_inputs()
            tm = compute_map(ids, titles, texts, hashes, vectors, self.generation.name, params, previous, step=step)
            step("render")
            tm.stats["fingerprint"] = self.fingerprint
        else:
            assert previous is not None
            tm = previous
        tm.stats["cached"] = not fresh
        # Render before saving: a map whose outputs could not be written leaves the store as it was.
        outputs = self._render_map(tm, Path(out) if out is not None else self.store.map_dir, related_k) \
            if render else None
        if fresh:
            with self.store.writer():
                self.store.write_map(*to_record(tm))
            if bar is not None:
                bar.update(bar.total - bar.n)
                bar.close()
        if outputs is not None:
            tm.stats["outputs"] = outputs
        return tm

    def map_inputs(self) -> tuple[list[str], list[str], list[str], list[str], np.ndarray]:
        """What :func:`paperscope.map.compute_map` takes, in store order: ids, titles, texts, content hashes, vectors.

        Public so benchmarks and notebooks can fit maps with other parameters without a store write.
        """
        ids, titles, texts, hashes = [], [], [], []
        for start in range(0, self._n, 5000):
            for pid, title, abstract, chash in self._query(
                    "SELECT id, title, abstract, content_hash FROM papers WHERE row >= ? AND row < ? ORDER BY row",
                    (start, start + 5000)):
                ids.append(pid)
                titles.append(title)
                texts.append(f"{title}. {abstract}")
                hashes.append(chash)
        return ids, titles, texts, hashes, np.asarray(self._vectors)

    def saved_map(self) -> TopicMap | None:
        """The last map saved in the store (possibly of an older generation), or None."""
        from paperscope.map import from_record

        record = self.store.read_map()
        if record is None:
            return None
        try:
            return from_record(*record)
        except (KeyError, ValueError, TypeError) as e:
            raise StoreError(f"{self.store.map_dir}: damaged map ({e}); re-run: paperscope map --refit") from None

    def _render_map(self, tm: TopicMap, out: Path, related_k: int) -> dict[str, str]:
        from paperscope.render import write_html, write_png, write_topics_json

        from paperscope.map.topicmap import fit_sample

        # The page holds at most _HTML_POINTS papers (a fixed sample): a browser draws 50k points
        # smoothly, and each needs its related papers computed here.
        rows = fit_sample(tm.ids, _HTML_POINTS)
        related = {tm.ids[i]: [h.paper.id for h in self.related(tm.ids[i], k=related_k)] for i in rows}
        try:
            out.mkdir(parents=True, exist_ok=True)
            return {"png": str(write_png(tm, out / "map.png")),
                    "html": str(write_html(tm, out / "map.html", related, rows=rows)),
                    "topics": str(write_topics_json(tm, out / "topics.json"))}
        except OSError as e:
            raise PaperscopeError(f"{e.filename or out}: cannot write the map there ({e.strerror or e})") from None

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
        return (f"Explorer({str(self.store.path)!r}: {self._n} papers, generation {self.generation.name}, "
                f"model {model.get('name', '?')} {self.dimension}-d)")

    def _repr_html_(self) -> str:
        """What the store holds, for Jupyter: papers, generation, model, index, whether a map is saved."""
        from paperscope.frames import esc, table

        m = self.generation.manifest
        saved = self.store.read_map() is not None
        rows = [("store", str(self.store.path)), ("papers", self._n), ("generation", self.generation.name),
                ("model", f"{m.get('model', {}).get('name', '?')} ({self.dimension}-d)"),
                ("index", (m.get("index") or {}).get("type", "flat")), ("saved map", "yes" if saved else "no")]
        return f"<b>{esc('paperscope Explorer')}</b>" + table(("", ""), rows)

    def close(self) -> None:
        self._con.close()
        if self._lexical_file is not None:
            self._lexical_file.close()

    def __enter__(self) -> Explorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
