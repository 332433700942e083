"""The lexical side of ranking: term counts per paper and sublinear TF-IDF cosine over them.

The index stores raw term counts per paper, and separately how many of them are in the title
(CSR arrays in ``lexical.npz``, never pickled; the vocabulary as UTF-8 bytes plus offsets, so a
long term costs its own bytes, not the longest term's width times the vocabulary). Terms are
:func:`paperscope.text.ranking_terms` with phrases: words, compounds and their parts, and bigrams.
Weights are derived when the index is loaded, so adding or changing a paper only re-tokenises
that paper: ``(1 + ln tf) * idf`` with ``tf = count + TITLE_BOOST * title count`` and
``idf = ln((1 + n) / (1 + df)) + 1`` (scikit-learn's smoothed idf), bigrams scaled by
``PHRASE_WEIGHT``, each paper's row L2-normalised. Every lexical score, paper to paper or text to
paper, is the cosine of two such vectors, in [0, 1]. The constants were chosen on the tuning half
of the shipped labels (``paperscope eval --tune``; docs/ranking.md).
"""

from __future__ import annotations

import sqlite3
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from paperscope.errors import DamagedError, StoreError
from paperscope.text import TOKENIZER_VERSION, paper_text, ranking_terms, tokenize

__all__ = [
    "TOKENIZER_VERSION",
    "LexicalIndex",
    "TermVector",
    "build_for_generation",
    "build_from_store",
    "paper_counts",
    "paper_text",
    "tokenize",
]

# Chosen on the tuning half (docs/ranking.md): title terms count this much extra; bigram weight.
TITLE_BOOST = 3.0
PHRASE_WEIGHT = 1.0


def paper_counts(title: str, abstract: str) -> tuple[Counter[str], Counter[str]]:
    """(all term counts, title term counts) of one paper, as the index stores them."""
    return (
        Counter(ranking_terms(paper_text(title, abstract), phrases_too=True)),
        Counter(ranking_terms(title, phrases_too=True)),
    )


def _encode_vocab(vocab: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [t.encode("utf-8", "surrogatepass") for t in vocab]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets


def _decode_vocab(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


@dataclass
class LexicalIndex:
    """Term counts per paper row (CSR arrays) and the TF-IDF weights derived from them."""

    vocab: Sequence[str]  # sorted; term id = position
    indptr: np.ndarray  # int64, len n + 1
    terms: np.ndarray  # int32 term ids, row by row
    counts: np.ndarray  # int32, parallel to terms
    title_counts: np.ndarray | None = None  # int32, parallel to terms (None: no title information)
    title_boost: float = TITLE_BOOST
    phrase_weight: float = PHRASE_WEIGHT
    version: int = TOKENIZER_VERSION  # the tokenizer that made these counts
    _term_id: dict[str, int] = field(default_factory=dict, repr=False)
    _unit: np.ndarray | None = field(default=None, repr=False)
    _idf: np.ndarray | None = field(default=None, repr=False)
    _rows: np.ndarray | None = field(default=None, repr=False)
    _post: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.vocab = [str(t) for t in self.vocab] if not isinstance(self.vocab, list) else self.vocab
        self._term_id = {t: i for i, t in enumerate(self.vocab)}
        if self.title_counts is None:
            self.title_counts = np.zeros_like(self.counts)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    def with_weights(self, *, title_boost: float | None = None, phrase_weight: float | None = None) -> LexicalIndex:
        """The same counts weighted with other constants (used to tune them on the tuning half)."""
        return LexicalIndex(
            self.vocab,
            self.indptr,
            self.terms,
            self.counts,
            self.title_counts,
            self.title_boost if title_boost is None else title_boost,
            self.phrase_weight if phrase_weight is None else phrase_weight,
            self.version,
        )

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_counts(cls, rows: Iterable[Counter[str] | tuple[Counter[str], Counter[str]]]) -> LexicalIndex:
        """Build from one term Counter (or (all, title) Counter pair) per paper row, in row order.

        Streams ``rows``: only flat arrays of term ids and counts are kept (a list of a million
        Counters would take tens of GB). Terms get ids in first-seen order while reading, then
        are renumbered in sorted order and each row's entries re-sorted by term.
        """
        first_id: dict[str, int] = {}
        bounds = array("q", [0])
        terms, counts, titles = array("i"), array("i"), array("i")
        for r in rows:
            c, tc = r if isinstance(r, tuple) else (r, Counter())
            for t, v in c.items():
                i = first_id.get(t)
                if i is None:
                    i = first_id[t] = len(first_id)
                terms.append(i)
                counts.append(v)
                titles.append(min(tc.get(t, 0), v))
            bounds.append(len(terms))
        vocab = sorted(first_id)
        rank = np.empty(len(vocab), dtype=np.int32)
        rank[np.fromiter((first_id[t] for t in vocab), dtype=np.int64, count=len(vocab))] = np.arange(
            len(vocab), dtype=np.int32
        )
        del first_id
        indptr = np.frombuffer(bounds, dtype=np.int64).copy()
        term_ids = rank[np.frombuffer(terms, dtype=np.int32)]
        del terms, rank
        count_arr = np.frombuffer(counts, dtype=np.int32).copy()
        title_arr = np.frombuffer(titles, dtype=np.int32).copy()
        del counts, titles
        for lo, hi in zip(indptr[:-1].tolist(), indptr[1:].tolist()):
            if hi - lo > 1:
                order = np.argsort(term_ids[lo:hi]) + lo
                term_ids[lo:hi], count_arr[lo:hi], title_arr[lo:hi] = (
                    term_ids[order],
                    count_arr[order],
                    title_arr[order],
                )
        return cls(vocab, indptr, term_ids, count_arr, title_arr)

    def row_counts(self, row: int) -> tuple[Counter[str], Counter[str]]:
        """The stored (all, title) term counts of one row (to carry unchanged papers into a new generation)."""
        lo, hi = self.indptr[row], self.indptr[row + 1]
        names = [self.vocab[t] for t in self.terms[lo:hi].tolist()]
        assert self.title_counts is not None
        titles = {t: c for t, c in zip(names, self.title_counts[lo:hi].tolist()) if c}
        return Counter(dict(zip(names, self.counts[lo:hi].tolist()))), Counter(titles)

    def save(self, path: Path) -> None:
        data, offsets = _encode_vocab(self.vocab)
        with open(path, "wb") as fh:  # a file object: np.savez must not append ".npz" to the name
            np.savez(
                fh,
                vocab_utf8=data,
                vocab_offsets=offsets,
                indptr=self.indptr,
                terms=self.terms,
                counts=self.counts,
                title_counts=self.title_counts,
                tokenizer_version=np.array(TOKENIZER_VERSION),
            )

    @classmethod
    def load(
        cls, path: Path, n: int | None = None, *, any_version: bool = True, fileobj: BinaryIO | None = None
    ) -> LexicalIndex:
        """Read ``lexical.npz`` (from ``fileobj`` if given, already open on it); checks shapes (and ``n``
        rows) so a damaged file is named, not used. An index from an older tokenizer (``any_version``)
        is read as it is: its terms still match, only less well, until the next index re-tokenises."""
        try:
            with np.load(fileobj if fileobj is not None else path, allow_pickle=False) as z:
                version = int(z["tokenizer_version"])
                if "vocab_utf8" in z.files:
                    vocab: Sequence[str] = _decode_vocab(z["vocab_utf8"], z["vocab_offsets"])
                    titles = z["title_counts"]
                else:  # version 1: a fixed-width unicode vocabulary, no title counts
                    vocab, titles = z["vocab"].tolist(), None
                arrays = {k: z[k] for k in ("indptr", "terms", "counts")}
        except Exception as e:  # noqa: BLE001 - also zipfile.BadZipFile (bad CRC) and header parse errors
            raise DamagedError(path, f"damaged ({e})") from None
        if not any_version and version != TOKENIZER_VERSION:
            raise StoreError(f"{path}: tokenizer version {version}, expected {TOKENIZER_VERSION}")
        ip, terms = arrays["indptr"], arrays["terms"]
        ok = (
            ip.ndim == 1
            and len(ip) >= 1
            and ip[0] == 0
            and ip[-1] == len(terms) == len(arrays["counts"])
            and (titles is None or len(titles) == len(terms))
            and bool(np.all(np.diff(ip) >= 0))
            and (len(terms) == 0 or int(terms.max()) < len(vocab))
        )
        if not ok or (n is not None and len(ip) - 1 != n):
            raise DamagedError(path, f"inconsistent lexical index (rows {len(ip) - 1}, expected {n})")
        return cls(
            vocab,
            ip.astype(np.int64),
            terms.astype(np.int32),
            arrays["counts"].astype(np.int32),
            None if titles is None else titles.astype(np.int32),
            version=version,
        )

    # ---- weights -------------------------------------------------------------------------------
    # Plain numpy over the CSR arrays (no scipy): opening a store for `related` must stay light.
    def _row_of_nnz(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
        return self._rows

    def idf(self) -> np.ndarray:
        """Smoothed idf of every vocabulary term, bigrams scaled by ``phrase_weight``."""
        if self._idf is None:
            df = np.bincount(self.terms, minlength=len(self.vocab)).astype(np.float64)
            idf = np.log((1.0 + self.n) / (1.0 + df)) + 1.0
            if self.phrase_weight != 1.0:
                phrase = np.fromiter((" " in t for t in self.vocab), dtype=bool, count=len(self.vocab))
                idf[phrase] *= self.phrase_weight
            self._idf = idf.astype(np.float32)
        return self._idf

    def weights(self) -> np.ndarray:
        """Unnormalised TF-IDF weight of every stored (paper, term) entry, parallel to ``terms``."""
        assert self.title_counts is not None
        tf = self.counts.astype(np.float32) + np.float32(self.title_boost) * self.title_counts.astype(np.float32)
        return ((1.0 + np.log(np.maximum(tf, 1e-12))) * self.idf()[self.terms]).astype(np.float32)

    def unit(self) -> np.ndarray:
        """TF-IDF weights with each paper's row scaled to unit length: row dot products are cosines."""
        if self._unit is None:
            w = self.weights()
            sq = np.bincount(self._row_of_nnz(), weights=w.astype(np.float64) ** 2, minlength=self.n)
            lengths = np.sqrt(sq).astype(np.float32)
            lengths[lengths == 0] = 1.0
            self._unit = (w / np.repeat(lengths, np.diff(self.indptr))).astype(np.float32)
        return self._unit

    # ---- queries -------------------------------------------------------------------------------
    def text_vector(self, text: str) -> TermVector:
        """A query vector for free text, weighted like a paper's row and of unit length.

        Terms the corpus never uses count in the length with the largest idf, so a query matching
        one word of five scores lower than one matching all five ("cooking recipes for pasta" is not
        a strong match for a paper about training recipes).
        """
        counts = Counter(ranking_terms(text, phrases_too=True))
        if not counts:
            return TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        unseen_idf = float(np.log(1.0 + self.n) + 1.0)
        idf = self.idf()
        known = sorted((self._term_id[t], c) for t, c in counts.items() if t in self._term_id)
        unknown = np.array([c for t, c in counts.items() if t not in self._term_id], dtype=np.float64)
        ids = np.array([i for i, _ in known], dtype=np.int64)
        w = (1.0 + np.log(np.array([c for _, c in known], dtype=np.float64))) * idf[ids]
        norm = float(np.sqrt((w**2).sum() + (((1.0 + np.log(unknown)) * unseen_idf) ** 2).sum()))
        return TermVector(ids, (w / norm).astype(np.float32))

    def title_vector(self, row: int) -> TermVector:
        """The query :meth:`text_vector` makes of this paper's title, from the stored title counts."""
        assert self.title_counts is not None
        lo, hi = self.indptr[row], self.indptr[row + 1]
        tc = self.title_counts[lo:hi]
        keep = tc > 0
        ids = self.terms[lo:hi][keep].astype(np.int64)
        if not len(ids):
            return TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        w = (1.0 + np.log(tc[keep].astype(np.float64))) * self.idf()[ids]
        order = np.argsort(ids)
        return TermVector(ids[order], (w[order] / np.linalg.norm(w)).astype(np.float32))

    def rows_vector(self, positive: list[int], negative: list[int] = (), beta: float = 0.5) -> TermVector:
        """Rocchio query from paper rows: mean of positive unit rows minus ``beta`` x mean of negative ones."""
        u = self.unit()
        ids, vals = [], []
        for rows, scale in ((list(positive), 1.0), (list(negative), -beta)):
            for r in rows:
                lo, hi = self.indptr[r], self.indptr[r + 1]
                ids.append(self.terms[lo:hi].astype(np.int64))
                vals.append(u[lo:hi].astype(np.float64) * (scale / len(rows)))
        if not ids:
            return TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        uniq, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate(vals), minlength=len(uniq))
        keep = summed != 0
        return TermVector(uniq[keep], summed[keep].astype(np.float32))

    def _postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term start offsets, rows, entry positions) grouped by term: the inverted index, built once."""
        if self._post is None:
            order = np.argsort(self.terms, kind="stable")
            starts = np.searchsorted(self.terms[order], np.arange(len(self.vocab) + 1)).astype(np.int64)
            self._post = (starts, self._row_of_nnz()[order], order.astype(np.int64))
        return self._post

    def _score(self, data: np.ndarray, query: TermVector) -> np.ndarray:
        """Sum of data x query weight over the query's terms, reading only their postings."""
        if not query.nnz:
            return np.zeros(self.n, dtype=np.float64)
        starts, rows, pos = self._postings()
        lo, hi = starts[query.ids], starts[query.ids + 1]
        lengths = hi - lo
        idx = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
        weights = data[pos[idx]] * np.repeat(query.values, lengths)
        return np.bincount(rows[idx], weights=weights, minlength=self.n)

    def score_text(self, query: TermVector) -> np.ndarray:
        """Cosine of every paper with a text query vector (from :meth:`text_vector`)."""
        return self._score(self.unit(), query)

    def score_vector(self, query: TermVector) -> np.ndarray:
        """Cosine-style score of every paper against a vector built from paper rows."""
        return self._score(self.unit(), query)

    def score_rows(self, query: TermVector, rows: np.ndarray, *, text: bool = False) -> np.ndarray:
        """The scores of :meth:`score_text` / :meth:`score_vector` for just these rows."""
        data = self.unit()
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        out = np.zeros(len(rows), dtype=np.float64)
        for i, r in enumerate(rows):
            lo, hi = self.indptr[r], self.indptr[r + 1]
            w = [q.get(t, 0.0) for t in self.terms[lo:hi].tolist()]
            out[i] = float(np.dot(data[lo:hi].astype(np.float64), w)) if w else 0.0
        return out

    def shared_terms(self, query: TermVector, row: int, n: int = 5, *, text_query: bool = False) -> list[str]:
        """The terms that contribute most to ``row``'s lexical score against ``query``."""
        data = self.unit()
        lo, hi = self.indptr[row], self.indptr[row + 1]
        terms = self.terms[lo:hi]
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        contrib = data[lo:hi] * np.array([q.get(int(t), 0.0) for t in terms], dtype=np.float32)
        order = np.argsort(-contrib, kind="stable")
        return [self.vocab[terms[i]] for i in order[:n] if contrib[i] > 0]


@dataclass(frozen=True)
class TermVector:
    """A sparse query over the vocabulary: sorted term ids and their weights."""

    ids: np.ndarray
    values: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.ids)


def stored_version(path: Path) -> int | None:
    """The tokenizer version of a ``lexical.npz`` (None when it cannot be read)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["tokenizer_version"])
    except Exception:  # noqa: BLE001 - damaged or missing: the caller re-tokenises
        return None


def build_for_generation(con: sqlite3.Connection, out: Path, prev_index: Path | None) -> tuple[int, int]:
    """Write ``lexical.npz`` for the papers table in ``con`` (row order); returns (tokenised, reused).

    Term counts are carried over from the previous generation's index for every paper whose
    title and abstract are unchanged, so only new or edited papers are tokenised again. The
    comparison is on the text itself, not the model's content hash: a model template that
    leaves out the abstract must not hide an edited abstract from the lexical index. ``con``
    must have the previous papers table attached as ``old`` whenever ``prev_index`` is given.
    """
    old: LexicalIndex | None = None
    if prev_index is not None and prev_index.is_file():
        try:
            old = LexicalIndex.load(prev_index, any_version=False)
        except StoreError:
            old = None  # another tokenizer version or damaged: tokenise everything again
    join = (
        "LEFT JOIN old.papers o ON o.id = p.id AND o.title = p.title AND o.abstract = p.abstract"
        if old is not None
        else ""
    )
    tokenised = reused = 0

    def counts() -> Iterator[tuple[Counter[str], Counter[str]]]:
        nonlocal tokenised, reused
        for title, abstract, old_row in con.execute(
            f"SELECT p.title, p.abstract, {'o.row' if old is not None else 'NULL'} FROM papers p {join} ORDER BY p.row"
        ):
            if old is not None and old_row is not None and old_row < old.n:
                reused += 1
                yield old.row_counts(old_row)
            else:
                tokenised += 1
                yield paper_counts(title, abstract)

    LexicalIndex.from_counts(counts()).save(out)
    return tokenised, reused


def build_from_store(con: sqlite3.Connection) -> LexicalIndex:
    """An in-memory index for a generation written before lexical indexes existed."""
    return LexicalIndex.from_counts(
        paper_counts(t, a) for t, a in con.execute("SELECT title, abstract FROM papers ORDER BY row")
    )
