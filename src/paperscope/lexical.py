"""The lexical side of ranking: a tokenizer for paper text and a BM25 index over title + abstract.

The index stores raw term counts per paper (CSR arrays in ``lexical.npz``, never pickled);
document frequencies and BM25 weights are derived when it is loaded, so adding or changing a
paper only re-tokenises that paper. Paper-to-paper similarity is the cosine of BM25-weighted
term vectors (the arxiv-sanity TF-IDF idea with BM25's saturation); a free-text query is
scored with plain BM25.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from paperscope.errors import DamagedError, StoreError

# Bump when tokenize() changes: stored term counts from another version are not reused.
TOKENIZER_VERSION = 1
K1, B = 1.2, 0.75

# English function words plus words every abstract uses; none of them says what a paper is about.
STOP_WORDS = frozenset("""
a about above across after again against all almost alone along already also although always am among an
and another any anyone anything anywhere are around as at back be became because become becomes been before
beforehand behind being below beside besides between beyond both but by can cannot could de did do does doing
done down due during each eg either else elsewhere enough et etc even ever every everything except few first
for former formerly from further had has have having he her here hereby herein hers herself him himself his
how however i ie if in indeed into is it its itself just last latter least less made many may me meanwhile
might mine more moreover most mostly much must my myself namely neither never nevertheless next no nobody
none nor not nothing now nowhere of off often on once one only onto or other others otherwise our ours
ourselves out over own per perhaps please put rather re same see seem seemed seeming seems several she
should show shows shown since so some somehow something sometime sometimes somewhere still such than that the
their theirs them themselves then thence there thereafter thereby therefore therein thereupon these they this
those though through throughout thru thus to together too toward towards under until up upon us use used
uses using very via was we well were what whatever when whence whenever where whereas whereby wherein
whether which while who whoever whole whom whose why will with within without would yet you your yours
yourself yourselves don doesn isn aren won
paper propose proposed proposes present presents introduce introduces approach approaches method methods
new novel result results work works based demonstrate demonstrates achieve achieves existing different
various specifically particular significantly significant state art stateoftheart code available
""".split())

# Spellings of the same term that tokenisation alone would keep apart.
_SYNONYMS = {"mup": "μp", "mutransfer": "μtransfer", "μ-transfer": "μtransfer", "mu-transfer": "μtransfer",
             "μ-p": "μp"}
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
_APOSTROPHE = re.compile(r"['’]\w*")  # "don't" -> "don", "model's" -> "model"
_LATEX = re.compile(r"[$\\{}^]")


def _fold_plural(word: str) -> str:
    """A deliberately small stemmer: plural -> singular, so "models" meets "model"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "as")) and word.isalpha():
        return word[:-1]
    return word


def _keep(token: str) -> bool:
    return token not in STOP_WORDS and not token.isdigit() and (len(token) > 1 or token == "μ")


def tokenize(text: str) -> list[str]:
    """Lower-cased terms of ``text``, stop words and bare numbers removed.

    Kept as terms: "LoRA" -> ``lora``, "μP"/"muP"/"µP" -> ``μp``, "3D" -> ``3d``. A hyphenated
    term yields the whole compound and its parts ("text-to-3D" -> ``text-to-3d``, ``text``,
    ``3d``), so it matches both the exact phrase and each word. LaTeX markup ("u-$μ$P") is dropped.
    """
    # NFKC turns the micro sign into Greek mu, so "µP" and "μP" are one term.
    text = _APOSTROPHE.sub("", unicodedata.normalize("NFKC", _LATEX.sub("", text)).lower())
    out: list[str] = []
    for match in _TOKEN.finditer(text):
        raw = match.group()
        raw = _SYNONYMS.get(raw, raw)
        parts = raw.split("-")
        if len(parts) > 1:
            if _keep(raw):
                out.append(raw)
            out.extend(_SYNONYMS.get(p, _fold_plural(p)) for p in parts if _keep(p))
        elif _keep(raw):
            out.append(_SYNONYMS.get(raw, _fold_plural(raw)))
    return out


def paper_text(title: str, abstract: str) -> str:
    """What the lexical index reads for a paper."""
    return f"{title}. {abstract}"


@dataclass
class LexicalIndex:
    """Term counts per paper row (CSR arrays) and the BM25 weights derived from them."""

    vocab: np.ndarray  # unicode array, sorted; term id = position
    indptr: np.ndarray  # int64, len n + 1
    terms: np.ndarray  # int32 term ids, row by row
    counts: np.ndarray  # int32, parallel to terms
    _term_id: dict[str, int] = field(default_factory=dict, repr=False)
    _weights: np.ndarray | None = field(default=None, repr=False)
    _unit: np.ndarray | None = field(default=None, repr=False)
    _rows: np.ndarray | None = field(default=None, repr=False)
    _post: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._term_id = {t: i for i, t in enumerate(self.vocab.tolist())}

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def from_counts(cls, rows: Iterable[Counter[str]]) -> LexicalIndex:
        """Build from one term Counter per paper row, in row order."""
        rows = list(rows)
        vocab = sorted({t for c in rows for t in c})
        tid = {t: i for i, t in enumerate(vocab)}
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        terms: list[int] = []
        counts: list[int] = []
        for i, c in enumerate(rows):
            for t, v in sorted(c.items()):
                terms.append(tid[t])
                counts.append(v)
            indptr[i + 1] = len(terms)
        return cls(np.array(vocab, dtype=np.str_) if vocab else np.zeros(0, dtype="<U1"), indptr,
                   np.array(terms, dtype=np.int32), np.array(counts, dtype=np.int32))

    def row_counts(self, row: int) -> Counter[str]:
        """The stored term counts of one row (used to carry unchanged papers into a new generation)."""
        lo, hi = self.indptr[row], self.indptr[row + 1]
        return Counter(dict(zip(self.vocab[self.terms[lo:hi]].tolist(), self.counts[lo:hi].tolist())))

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:  # a file object: np.savez must not append ".npz" to the name
            np.savez(fh, vocab=self.vocab, indptr=self.indptr, terms=self.terms, counts=self.counts,
                     tokenizer_version=np.array(TOKENIZER_VERSION))

    @classmethod
    def load(cls, path: Path, n: int | None = None, *, any_version: bool = True,
             fileobj: BinaryIO | None = None) -> LexicalIndex:
        """Read ``lexical.npz`` (from ``fileobj`` if given, already open on it); checks shapes (and ``n``
        rows) so a damaged file is named, not used."""
        try:
            with np.load(fileobj if fileobj is not None else path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("vocab", "indptr", "terms", "counts", "tokenizer_version")}
        except Exception as e:  # noqa: BLE001 - also zipfile.BadZipFile (bad CRC) and header parse errors
            raise DamagedError(path, f"damaged ({e})") from None
        if not any_version and int(arrays["tokenizer_version"]) != TOKENIZER_VERSION:
            raise StoreError(f"{path}: tokenizer version {int(arrays['tokenizer_version'])}, "
                             f"expected {TOKENIZER_VERSION}")
        ip, terms = arrays["indptr"], arrays["terms"]
        ok = (ip.ndim == 1 and len(ip) >= 1 and ip[0] == 0 and ip[-1] == len(terms) == len(arrays["counts"])
              and bool(np.all(np.diff(ip) >= 0)) and (len(terms) == 0 or int(terms.max()) < len(arrays["vocab"])))
        if not ok or (n is not None and len(ip) - 1 != n):
            raise DamagedError(path, f"inconsistent lexical index (rows {len(ip) - 1}, expected {n})")
        return cls(arrays["vocab"], ip.astype(np.int64), terms.astype(np.int32), arrays["counts"].astype(np.int32))

    # ---- weights -------------------------------------------------------------------------------
    # Plain numpy over the CSR arrays (no scipy): opening a store for `related` must stay light.
    def _row_of_nnz(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
        return self._rows

    def weights(self) -> np.ndarray:
        """BM25 term weight of every stored (paper, term) entry, parallel to ``terms``."""
        if self._weights is None:
            tf = self.counts.astype(np.float32)
            df = np.bincount(self.terms, minlength=len(self.vocab)).astype(np.float32)
            idf = np.log1p((self.n - df + 0.5) / (df + 0.5)).astype(np.float32)
            dl = np.diff(self.indptr).astype(np.float32)
            avgdl = float(dl.mean()) if self.n and dl.mean() > 0 else 1.0
            norm = np.repeat(K1 * (1 - B + B * dl / avgdl), np.diff(self.indptr)).astype(np.float32)
            self._weights = (idf[self.terms] * tf * np.float32(K1 + 1) / (tf + norm)).astype(np.float32)
        return self._weights

    def unit(self) -> np.ndarray:
        """BM25 weights with each paper's row scaled to unit length: row dot products are cosines."""
        if self._unit is None:
            w = self.weights()
            sq = np.bincount(self._row_of_nnz(), weights=w.astype(np.float64) ** 2, minlength=self.n)
            lengths = np.sqrt(sq).astype(np.float32)
            lengths[lengths == 0] = 1.0
            self._unit = (w / np.repeat(lengths, np.diff(self.indptr))).astype(np.float32)
        return self._unit

    # ---- queries -------------------------------------------------------------------------------
    def text_vector(self, text: str) -> TermVector:
        """A query vector: 1 per known query term (BM25 ignores query term counts here)."""
        ids = sorted({self._term_id[t] for t in tokenize(text) if t in self._term_id})
        return TermVector(np.array(ids, dtype=np.int64), np.ones(len(ids), dtype=np.float32))

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
        """BM25 score of every paper for a text query vector."""
        return self._score(self.weights(), query)

    def score_vector(self, query: TermVector) -> np.ndarray:
        """Cosine-style score of every paper against a vector built from paper rows."""
        return self._score(self.unit(), query)

    def score_rows(self, query: TermVector, rows: np.ndarray, *, text: bool = False) -> np.ndarray:
        """The scores of :meth:`score_text` (``text``) or :meth:`score_vector` for just these rows."""
        data = self.weights() if text else self.unit()
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        out = np.zeros(len(rows), dtype=np.float64)
        for i, r in enumerate(rows):
            lo, hi = self.indptr[r], self.indptr[r + 1]
            w = [q.get(t, 0.0) for t in self.terms[lo:hi].tolist()]
            out[i] = float(np.dot(data[lo:hi].astype(np.float64), w)) if w else 0.0
        return out

    def shared_terms(self, query: TermVector, row: int, n: int = 5, *, text_query: bool = False) -> list[str]:
        """The terms that contribute most to ``row``'s lexical score against ``query``."""
        data = self.weights() if text_query else self.unit()
        lo, hi = self.indptr[row], self.indptr[row + 1]
        terms = self.terms[lo:hi]
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        contrib = data[lo:hi] * np.array([q.get(int(t), 0.0) for t in terms], dtype=np.float32)
        order = np.argsort(-contrib, kind="stable")
        return [str(self.vocab[terms[i]]) for i in order[:n] if contrib[i] > 0]


@dataclass(frozen=True)
class TermVector:
    """A sparse query over the vocabulary: sorted term ids and their weights."""

    ids: np.ndarray
    values: np.ndarray

    @property
    def nnz(self) -> int:
        return len(self.ids)


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
    join = ("LEFT JOIN old.papers o ON o.id = p.id AND o.title = p.title AND o.abstract = p.abstract"
            if old is not None else "")
    tokenised = reused = 0

    def counts() -> Iterator[Counter[str]]:
        nonlocal tokenised, reused
        for title, abstract, old_row in con.execute(
                f"SELECT p.title, p.abstract, {'o.row' if old is not None else 'NULL'} FROM papers p {join} "
                "ORDER BY p.row"):
            if old is not None and old_row is not None and old_row < old.n:
                reused += 1
                yield old.row_counts(old_row)
            else:
                tokenised += 1
                yield Counter(tokenize(paper_text(title, abstract)))

    LexicalIndex.from_counts(counts()).save(out)
    return tokenised, reused


def build_from_store(con: sqlite3.Connection) -> LexicalIndex:
    """An in-memory index for a generation written before lexical indexes existed."""
    return LexicalIndex.from_counts(Counter(tokenize(paper_text(t, a)))
                                    for t, a in con.execute("SELECT title, abstract FROM papers ORDER BY row"))
