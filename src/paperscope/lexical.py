"""The lexical side of ranking: term counts per paper and sublinear TF-IDF cosine over them.

The index stores raw term counts per paper, and separately how many of them are in the title
(CSR arrays in ``lexical.npz``, never pickled; the vocabulary as UTF-8 bytes plus offsets, so a
long term costs its own bytes, not the longest term's width times the vocabulary). Terms are
:func:`paperscope.text.ranking_terms` with phrases: words, compounds and their parts, and bigrams.
Weights are a function of the counts, so adding or changing a paper only re-tokenises that
paper; they are derived when a generation is written (:mod:`paperscope.impact`, memory-mapped on
open), or in memory for an index without that file: ``(1 + ln tf) * idf`` with ``tf = count + TITLE_BOOST * title count`` and
``idf = ln((1 + n) / (1 + df)) + 1`` (scikit-learn's smoothed idf), bigrams scaled by
``PHRASE_WEIGHT``, each paper's row L2-normalised. Every lexical score, paper to paper or text to
paper, is the cosine of two such vectors, in [0, 1]. The constants were chosen on the tuning half
of the shipped labels (``paperscope eval --tune``; docs/ranking.md).
"""

from __future__ import annotations

import bisect
import mmap
import os
import sqlite3
import struct
import threading
import zipfile
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from paperscope import layered_papers
from paperscope.errors import DamagedError, StoreError
from paperscope.layered_lexical import FIELDS, Entries, LayeredRows, ranges
from paperscope.text import TOKENIZER_VERSION, paper_text, ranking_terms, tokenize

__all__ = [
    "TOKENIZER_VERSION",
    "Carry",
    "LexicalIndex",
    "TermVector",
    "Vocab",
    "build_for_generation",
    "build_from_store",
    "mmap_npz",
    "PageReleaser",
    "paper_counts",
    "release_pages",
    "runs_of",
    "unit_weights",
    "paper_text",
    "tokenize",
]

# Entries per block when weights are derived (bounds the temporaries at a million papers).
_CHUNK = 1 << 23
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


def _write_npz(
    path: Path,
    vocab_utf8: np.ndarray,
    vocab_offsets: np.ndarray,
    indptr: np.ndarray,
    terms: np.ndarray,
    counts: np.ndarray,
    title_counts: np.ndarray,
    df: np.ndarray | None = None,
) -> None:
    """The arrays of ``lexical.npz``, one writer for a fresh index and a carried one.

    ``df`` (int32 per term: the rows using it) is counted from ``terms`` when not given: the next
    re-run carries it instead of counting every entry again (1.9 s at a million papers)."""
    if df is None:
        df = _bincount(np.asarray(terms), len(vocab_offsets) - 1)
    with open(path, "wb") as fh:  # a file object: np.savez must not append ".npz" to the name
        np.savez(
            fh,
            vocab_utf8=vocab_utf8,
            vocab_offsets=vocab_offsets,
            indptr=indptr,
            terms=terms,
            counts=counts,
            title_counts=title_counts,
            df=np.asarray(df, dtype=np.int32),
            tokenizer_version=np.array(TOKENIZER_VERSION),
        )


def _decode_vocab(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    raw = data.tobytes()
    return [raw[a:b].decode("utf-8", "surrogatepass") for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())]


def mmap_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an uncompressed ``.npz`` as a read-only memory map (np.load reads them whole).

    ``np.savez`` stores members uncompressed: each is a ``.npy`` file at an offset inside the zip,
    found from the member's local header. A compressed member is read normally.
    """
    out: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
            whole = None
            for info in zf.infolist():
                name = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED:
                    with zf.open(info) as member:
                        out[name] = np.lib.format.read_array(member, allow_pickle=False)
                    continue
                fh.seek(info.header_offset)
                header = fh.read(30)
                name_len, extra_len = struct.unpack("<HH", header[26:30])
                fh.seek(info.header_offset + 30 + name_len + extra_len)
                version = np.lib.format.read_magic(fh)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                if dtype.hasobject or fortran:
                    raise ValueError(f"member {name}: object or Fortran-ordered array")
                count = int(np.prod(shape, dtype=np.int64))
                if count == 0 or shape == ():
                    out[name] = np.fromfile(fh, dtype=dtype, count=count).reshape(shape)
                    continue
                if whole is None:
                    whole = np.memmap(path, dtype=np.uint8, mode="r")
                start = fh.tell()
                nbytes = count * dtype.itemsize
                if start + nbytes > len(whole):
                    raise ValueError(f"member {name} runs past the end of the file")
                out[name] = whole[start : start + nbytes].view(np.ndarray).view(dtype).reshape(shape)
    except (OSError, ValueError, zipfile.BadZipFile, struct.error) as e:
        raise DamagedError(path, f"damaged ({e})") from None
    return out


def release_pages(*arrays: np.ndarray) -> None:
    """Drop the resident pages of the memory maps behind ``arrays`` (no-op for arrays in memory).

    Pages of a read-only file map are clean: the kernel reads them again if they are touched
    again. A build that streams through gigabytes of a previous generation's arrays would
    otherwise keep them all resident, and they count in its peak RSS (8.4 GB at a million papers).
    """
    _advise(arrays, "MADV_DONTNEED")


def advise_random(*arrays: np.ndarray) -> None:
    """Tell the kernel that the memory maps behind ``arrays`` are read at random (``MADV_RANDOM``).

    A query reads a few hundred scattered rows of maps that are gigabytes at a million papers.
    Without the advice, each page fault on a cold map reads the device's whole read-ahead window
    (8 MB on this machine), not the page: 64 random rows of a cold 1M ``vectors.npy`` took 0.43 s,
    and 0.006 s advised. Only for maps read at random: a sequential scan loses its read-ahead.
    """
    _advise(arrays, "MADV_RANDOM")


def _advise(arrays: tuple[np.ndarray, ...], flag: str) -> None:
    advice = getattr(mmap, flag, None)
    seen: set[int] = set()
    for arr in arrays:
        base = arr
        while base is not None and not isinstance(base, mmap.mmap):
            base = getattr(base, "base", None)
        if base is not None and advice is not None and hasattr(base, "madvise") and id(base) not in seen:
            seen.add(id(base))
            base.madvise(advice)


class PageReleaser:
    """Calls :func:`release_pages` once every ``every`` bytes read, not per slice: each call walks the
    whole mapping's page tables (ten thousand calls per 1% edit at a million papers cost seconds)."""

    def __init__(self, *arrays: np.ndarray, every: int = 1 << 28):
        self.arrays, self.every, self.pending = arrays, every, 0

    def read(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= self.every:
            release_pages(*self.arrays)
            self.pending = 0


class Vocab(Sequence[str]):
    """The vocabulary read in place from its UTF-8 bytes and offsets (memory-mapped): nothing decoded on open.

    At a million papers the vocabulary holds millions of terms: a list and a dict of them cost
    seconds and gigabytes on every open. A term is decoded when asked for, and found by binary
    search over the bytes (the vocabulary is sorted, and UTF-8 bytes sort as code points do),
    or through ``order`` (the term ids in sorted order) for a vocabulary that is not sorted.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, order: np.ndarray | None = None):
        self.data = data
        self.offsets = offsets
        self.order = order

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.data[a:b].tobytes().decode("utf-8", "surrogatepass")

    def _bytes(self, i: int) -> bytes:
        if self.order is not None:
            i = int(self.order[i])
        return self.data[int(self.offsets[i]) : int(self.offsets[i + 1])].tobytes()

    def id_of(self, term: str) -> int | None:
        """The term's id, or None when the corpus never uses it."""
        key = term.encode("utf-8", "surrogatepass")
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._bytes(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        if lo < len(self) and self._bytes(lo) == key:
            return lo if self.order is None else int(self.order[lo])
        return None

    def is_sorted(self) -> bool:
        """Whether the terms are in sorted order (so ``id_of`` needs no ``order``)."""
        prev = None
        for i in range(len(self)):
            b = self._bytes(i)
            if prev is not None and b <= prev:
                return False
            prev = b
        return True


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
    # Set when the rows are a base and a delta (paperscope.layered_lexical): the CSR arrays above are
    # then empty, and every row is read through it.
    layers: LayeredRows | None = None
    _term_id: dict[str, int] = field(default_factory=dict, repr=False)
    _unit: np.ndarray | None = field(default=None, repr=False)
    _idf: np.ndarray | None = field(default=None, repr=False)
    _rows: np.ndarray | None = field(default=None, repr=False)
    _post: tuple[np.ndarray, np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.vocab, (list, Vocab)):
            self.vocab = [str(t) for t in self.vocab]
        # A memory-mapped Vocab is searched in place; a list gets a dict (small stores, builds).
        self._term_id = {t: i for i, t in enumerate(self.vocab)} if isinstance(self.vocab, list) else {}
        if self.title_counts is None:
            self.title_counts = np.zeros_like(self.counts)

    def term_id(self, term: str) -> int | None:
        """The id of a term, None when the corpus never uses it."""
        if isinstance(self.vocab, Vocab):
            return self.vocab.id_of(term)
        return self._term_id.get(term)

    @property
    def n(self) -> int:
        return self.layers.n if self.layers is not None else len(self.indptr) - 1

    def entries(self, rows: Sequence[int] | np.ndarray, fields: tuple[str, ...] = FIELDS) -> Entries:
        """The stored entries of ``rows`` (in that order): sizes, then of ``fields`` (terms, counts,
        titles, unit; the others empty) each entry's value. Without "unit" an index without
        weights does not derive them."""
        if self.layers is not None:
            return self.layers.gather(np.asarray(rows, dtype=np.int64), fields)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        pos, sizes = _gather(np.asarray(self.indptr), rows)
        source = {"terms": self.terms, "counts": self.counts, "titles": self.title_counts}
        out = {}
        for name in FIELDS:
            if name not in fields:
                out[name] = np.zeros(0, dtype=np.float32 if name == "unit" else np.int32)
            else:
                array = self.unit() if name == "unit" else source[name]
                out[name] = np.asarray(array[pos], dtype=np.float32 if name == "unit" else np.int32)
        return Entries(sizes, **out)

    def whole(self) -> LexicalIndex:
        """This index with its rows in one set of CSR arrays (itself unless layered; a copy of every
        row then: for whole-index scoring, which a query of a layered store never does)."""
        if self.layers is None:
            return self
        e = self.layers.gather(np.arange(self.n, dtype=np.int64))
        indptr = np.concatenate(([0], np.cumsum(e.sizes))).astype(np.int64)
        out = LexicalIndex(
            self.vocab, indptr, e.terms, e.counts, e.titles, self.title_boost, self.phrase_weight, self.version
        )
        out.attach_weights(e.unit, self.idf())
        return out

    def with_weights(self, *, title_boost: float | None = None, phrase_weight: float | None = None) -> LexicalIndex:
        """The same counts weighted with other constants (used to tune them on the tuning half)."""
        base = self.whole()
        return LexicalIndex(
            base.vocab,
            base.indptr,
            base.terms,
            base.counts,
            base.title_counts,
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
        e = self.entries([row], ("terms", "counts", "titles"))
        names = [self.vocab[t] for t in e.terms.tolist()]
        titles = {t: c for t, c in zip(names, e.titles.tolist()) if c}
        return Counter(dict(zip(names, e.counts.tolist()))), Counter(titles)

    def save(self, path: Path) -> None:
        data, offsets = _encode_vocab(self.vocab)
        assert self.title_counts is not None
        _write_npz(path, data, offsets, self.indptr, self.terms, self.counts, self.title_counts)

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

    @classmethod
    def open(cls, path: Path, n: int) -> LexicalIndex:
        """``lexical.npz`` memory-mapped for queries: O(1) checks only (the build checked the arrays,
        ``paperscope verify`` checks every byte); weights come from :meth:`attach_weights`."""
        z = mmap_npz(path)
        need = ("vocab_utf8", "vocab_offsets", "indptr", "terms", "counts", "title_counts", "tokenizer_version")
        if not all(k in z for k in need):
            raise DamagedError(path, "damaged (not a lexical index of this version)")
        ip, terms = z["indptr"], z["terms"]
        ok = (
            ip.ndim == 1
            and len(ip) == n + 1
            and ip.dtype == np.int64
            and terms.dtype == np.int32
            and int(ip[0]) == 0
            and int(ip[-1]) == len(terms) == len(z["counts"]) == len(z["title_counts"])
        )
        if not ok:
            raise DamagedError(path, f"inconsistent lexical index (rows {len(ip) - 1}, expected {n})")
        return cls(
            Vocab(z["vocab_utf8"], z["vocab_offsets"]),
            ip,
            terms,
            z["counts"],
            z["title_counts"],
            version=int(z["tokenizer_version"]),
        )

    def attach_weights(self, unit: np.ndarray | None, idf: np.ndarray) -> None:
        """Use precomputed weights (the derived file's) instead of deriving them from the counts
        (``unit`` None for a layered index: its rows carry their own)."""
        self._unit, self._idf = unit, idf

    # ---- weights -------------------------------------------------------------------------------
    # Plain numpy over the CSR arrays (no scipy): opening a store for `related` must stay light.
    def _row_of_nnz(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))
        return self._rows

    def idf(self) -> np.ndarray:
        """Smoothed idf of every vocabulary term, bigrams scaled by ``phrase_weight``."""
        if self._idf is None:
            if self.layers is not None:
                raise ValueError("a layered lexical index has its weights attached when opened")
            df = np.bincount(self.terms, minlength=len(self.vocab)).astype(np.float64)
            idf = np.log((1.0 + self.n) / (1.0 + df)) + 1.0
            if self.phrase_weight != 1.0:
                phrase = np.fromiter((" " in t for t in self.vocab), dtype=bool, count=len(self.vocab))
                idf[phrase] *= self.phrase_weight
            self._idf = idf.astype(np.float32)
        return self._idf

    def weights(self) -> np.ndarray:
        """Unnormalised TF-IDF weight of every stored (paper, term) entry, parallel to ``terms``."""
        if self.layers is not None:
            return self.whole().weights()
        assert self.title_counts is not None
        tf = self.counts.astype(np.float32) + np.float32(self.title_boost) * self.title_counts.astype(np.float32)
        return ((1.0 + np.log(np.maximum(tf, 1e-12))) * self.idf()[self.terms]).astype(np.float32)

    def unit(self) -> np.ndarray:
        """TF-IDF weights with each paper's row scaled to unit length: row dot products are cosines."""
        if self._unit is None:
            if self.layers is not None:
                return self.whole().unit()
            assert self.title_counts is not None
            self._unit = unit_weights(
                np.asarray(self.indptr), self.terms, self.counts, self.title_counts, self.idf(), self.title_boost
            )
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
        found = {t: self.term_id(t) for t in counts}
        known = sorted((i, counts[t]) for t, i in found.items() if i is not None)
        unknown = np.array([counts[t] for t, i in found.items() if i is None], dtype=np.float64)
        ids = np.array([i for i, _ in known], dtype=np.int64)
        w = (1.0 + np.log(np.array([c for _, c in known], dtype=np.float64))) * idf[ids]
        norm = float(np.sqrt((w**2).sum() + (((1.0 + np.log(unknown)) * unseen_idf) ** 2).sum()))
        return TermVector(ids, (w / norm).astype(np.float32))

    def title_vector(self, row: int) -> TermVector:
        """The query :meth:`text_vector` makes of this paper's title, from the stored title counts."""
        e = self.entries([row], ("terms", "titles"))
        tc = e.titles
        keep = tc > 0
        ids = e.terms[keep].astype(np.int64)
        if not len(ids):
            return TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        w = (1.0 + np.log(tc[keep].astype(np.float64))) * self.idf()[ids]
        order = np.argsort(ids)
        return TermVector(ids[order], (w[order] / np.linalg.norm(w)).astype(np.float32))

    def rows_vector(self, positive: list[int], negative: list[int] = (), beta: float = 0.5) -> TermVector:
        """Rocchio query from paper rows: mean of positive unit rows minus ``beta`` x mean of negative ones."""
        ids, vals = [], []
        for rows, scale in ((list(positive), 1.0), (list(negative), -beta)):
            if rows:
                e = self.entries(rows, ("terms", "unit"))
                ids.append(e.terms.astype(np.int64))
                vals.append(e.unit.astype(np.float64) * (scale / len(rows)))
        if not ids:
            return TermVector(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
        uniq, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        summed = np.bincount(inverse, weights=np.concatenate(vals), minlength=len(uniq))
        keep = summed != 0
        return TermVector(uniq[keep], summed[keep].astype(np.float32))

    def _postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(term start offsets, rows, entry positions) grouped by term: the inverted index, built once."""
        if self.layers is not None:
            return self.whole()._postings()
        if self._post is None:
            order = np.argsort(self.terms, kind="stable")
            starts = np.searchsorted(self.terms[order], np.arange(len(self.vocab) + 1)).astype(np.int64)
            self._post = (starts, self._row_of_nnz()[order], order.astype(np.int64))
        return self._post

    def _score(self, data: np.ndarray, query: TermVector) -> np.ndarray:
        """Sum of data x query weight over the query's terms, reading only their postings."""
        if not query.nnz:
            return np.zeros(self.n, dtype=np.float64)
        if self.layers is not None:
            return self.whole()._score(data, query)
        starts, rows, pos = self._postings()
        lo, hi = starts[query.ids], starts[query.ids + 1]
        lengths = hi - lo
        idx = np.repeat(lo - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(lengths.sum())
        weights = data[pos[idx]] * np.repeat(query.values, lengths)
        return np.bincount(rows[idx], weights=weights, minlength=self.n)

    def score_text(self, query: TermVector) -> np.ndarray:
        """Cosine of every paper with a text query vector (from :meth:`text_vector`)."""
        whole = self.whole()
        return whole._score(whole.unit(), query)

    def score_vector(self, query: TermVector) -> np.ndarray:
        """Cosine-style score of every paper against a vector built from paper rows."""
        return self.score_text(query)

    def score_rows(self, query: TermVector, rows: np.ndarray, *, text: bool = False) -> np.ndarray:
        """The scores of :meth:`score_text` / :meth:`score_vector` for just these rows."""
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        out = np.zeros(len(rows), dtype=np.float64)
        for i, r in enumerate(rows):
            e = self.entries([int(r)], ("terms", "unit"))
            w = [q.get(t, 0.0) for t in e.terms.tolist()]
            out[i] = float(np.dot(e.unit.astype(np.float64), w)) if w else 0.0
        return out

    def shared_terms(self, query: TermVector, row: int, n: int = 5, *, text_query: bool = False) -> list[str]:
        """The terms that contribute most to ``row``'s lexical score against ``query``."""
        e = self.entries([row], ("terms", "unit"))
        terms = e.terms
        q = dict(zip(query.ids.tolist(), query.values.tolist()))
        contrib = e.unit * np.array([q.get(int(t), 0.0) for t in terms], dtype=np.float32)
        order = np.argsort(-contrib, kind="stable")
        return [self.vocab[terms[i]] for i in order[:n] if contrib[i] > 0]


def unit_weights(
    indptr: np.ndarray,
    terms: np.ndarray,
    counts: np.ndarray,
    title_counts: np.ndarray,
    idf: np.ndarray,
    title_boost: float = TITLE_BOOST,
) -> np.ndarray:
    """The unit-row TF-IDF weight of every entry of these CSR rows (:meth:`LexicalIndex.unit`)."""
    out = np.empty(len(terms), dtype=np.float32)
    n = len(indptr) - 1
    # Row blocks of about _CHUNK entries: at a million papers the whole-array temporaries
    # (float64 squares, row ids) would take gigabytes; each row's sum is the same either way.
    r0 = 0
    while r0 < n:
        r1 = min(n, max(r0 + 1, int(np.searchsorted(indptr, indptr[r0] + _CHUNK, side="right")) - 1))
        lo, hi = int(indptr[r0]), int(indptr[r1])
        tf = counts[lo:hi].astype(np.float32) + np.float32(title_boost) * title_counts[lo:hi].astype(np.float32)
        w = ((1.0 + np.log(np.maximum(tf, 1e-12))) * idf[terms[lo:hi]]).astype(np.float32)
        sizes = np.diff(indptr[r0 : r1 + 1])
        rows = np.repeat(np.arange(r1 - r0), sizes)
        lengths = np.sqrt(np.bincount(rows, weights=w.astype(np.float64) ** 2, minlength=r1 - r0))
        lengths = lengths.astype(np.float32)
        lengths[lengths == 0] = 1.0
        out[lo:hi] = w / np.repeat(lengths, sizes)
        r0 = r1
    return out


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


@dataclass(frozen=True)
class Carry:
    """How a ``lexical.npz`` was made from the previous one: ``mapping[r]`` is new row r's previous
    row (-1: tokenised afresh), ``old_to_new[t]`` previous term t's id now (-1: no row uses it)."""

    mapping: np.ndarray
    old_to_new: np.ndarray


_EMPTY = (np.zeros(0, np.int32),) * 3


def build_for_generation(
    con: sqlite3.Connection,
    out: Path,
    prev_index: Path | None,
    written: np.ndarray | None = None,
    layered: LayeredRows | None = None,
) -> tuple[int, int, Carry | None]:
    """Write ``lexical.npz`` for the papers table in ``con`` (row order).

    Returns (tokenised, reused, carry): ``carry`` says how the rows and terms of the previous
    index map into this one (None when nothing was carried, or the file was linked).

    ``written``, when given, holds the only rows that may differ from the previous generation's
    row of the same number (the build wrote them; no row moved): the rest are carried unasked.
    ``layered``: the previous rows, when that ``lexical.npz`` holds them as a base and a delta
    (:mod:`paperscope.layered_lexical`); they are carried from it, and never linked.

    Term counts are carried over from the previous generation's index for every paper whose
    title and abstract are unchanged, so only new or edited papers are tokenised again. The
    comparison is on the text itself, not the model's content hash: a model template that
    leaves out the abstract must not hide an edited abstract from the lexical index. ``con``
    must have the previous papers table as the view ``old_papers`` whenever ``prev_index`` is given
    (:func:`paperscope.pipeline` attaches it, whole or layered).

    Carried rows never pass through Python one by one: their CSR slices are gathered with numpy
    and their term ids remapped into the merged vocabulary (:func:`carry_rows`), so a re-run with
    1% of papers edited tokenises 1% and moves the rest as arrays. The result is the index a
    from-scratch build would write, array for array (same vocabulary, ids and order).
    """
    old: CarriedArrays | None = None
    if layered is not None and prev_index is not None:  # its rows are a base and a delta: read through ``layered``
        z = mmap_npz(prev_index)
        old = CarriedArrays(z["vocab_utf8"], z["vocab_offsets"], np.zeros(layered.n + 1, np.int64), *_EMPTY, df=z["df"])
    elif prev_index is not None and prev_index.is_file():
        try:
            old = CarriedArrays.load(prev_index)
        except StoreError:
            old = None  # another tokenizer version or damaged: tokenise everything again
    if old is None:
        # A generator, never a list: from_counts streams into flat arrays (N Counters are tens of GB at 1M).
        index = LexicalIndex.from_counts(
            paper_counts(t, a) for t, a in con.execute("SELECT title, abstract FROM papers ORDER BY row")
        )
        index.save(out)
        return index.n, 0, None
    join = "LEFT JOIN old_papers o ON o.id = p.id AND o.title = p.title AND o.abstract = p.abstract"
    if written is not None and old.n == layered_papers.rows_of(con, "old_papers"):
        mapping = mapping_of_written(con, written, old.n)
    else:
        mapping = np.array(
            [r if r is not None else -1 for (r,) in con.execute(f"SELECT o.row FROM papers p {join} ORDER BY p.row")],
            dtype=np.int64,
        )
        mapping[mapping >= old.n] = -1
    if layered is None and len(mapping) == old.n and np.array_equal(mapping, np.arange(old.n)):
        os.link(prev_index, out)  # every row as before: the previous file itself, not a copy of it
        return 0, old.n, None
    fresh_rows = np.flatnonzero(mapping < 0)
    fresh = tokenise_rows(con, fresh_rows)
    carried = carry_rows(old, mapping, fresh, layered)
    carried.write(out)
    assert carried.old_to_new is not None
    return len(fresh_rows), len(mapping) - len(fresh_rows), Carry(mapping, carried.old_to_new)


def tokenise_rows(con: sqlite3.Connection, rows: np.ndarray) -> LexicalIndex:
    """An index of just these rows of the papers table (in this order), tokenised afresh."""
    texts: dict[int, str] = {}
    for part in layered_papers.batches(np.asarray(rows).tolist()):
        texts.update(
            con.execute(
                f"SELECT row, title || char(0) || abstract FROM papers WHERE row IN ({','.join('?' * len(part))})",
                part,
            )
        )
    return LexicalIndex.from_counts(paper_counts(*texts[int(r)].split("\0", 1)) for r in rows)


def mapping_of_written(con: sqlite3.Connection, written: np.ndarray, old_n: int) -> np.ndarray:
    """Each row's previous row (-1: tokenise it) when only ``written`` rows may have changed.

    Rows past the previous count are new; a written row keeps its previous row when its id,
    title and abstract are the previous row's (its authors or sources changed, say).
    """
    n = layered_papers.rows_of(con)
    mapping = np.arange(n, dtype=np.int64)
    mapping[old_n:] = -1
    for part in layered_papers.batches(written[written < old_n].tolist()):
        # Correlated, not a join: a join would materialise a layered table's view (paperscope.layered_papers).
        for (r,) in con.execute(
            f"SELECT p.row FROM papers p WHERE p.row IN ({','.join('?' * len(part))}) AND NOT EXISTS "
            "(SELECT 1 FROM old_papers o WHERE o.row = p.row AND o.id = p.id "
            "AND o.title = p.title AND o.abstract = p.abstract)",
            part,
        ):
            mapping[r] = -1
    return mapping


@dataclass
class CarriedArrays:
    """The raw arrays of a ``lexical.npz``, vocabulary left as UTF-8 bytes (never decoded term by term)."""

    vocab_utf8: np.ndarray  # uint8
    vocab_offsets: np.ndarray  # int64, len V + 1
    indptr: np.ndarray
    terms: np.ndarray
    counts: np.ndarray
    title_counts: np.ndarray
    old_to_new: np.ndarray | None = None  # set by carry_rows: each previous term's id here (-1: dropped)
    df: np.ndarray | None = None  # rows using each term (None: a file written before it was stored)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def load(cls, path: Path) -> CarriedArrays:
        """The arrays of the current tokenizer's ``lexical.npz``; StoreError if damaged or of another version."""
        try:
            # Memory-mapped, not read: a re-run reads the carried rows from the page cache (2.3 GB of
            # term arrays at 1M papers that would otherwise be copied into the process).
            z = mmap_npz(path)
            if int(z["tokenizer_version"]) != TOKENIZER_VERSION or "vocab_utf8" not in z:
                raise StoreError(f"{path}: tokenizer version {int(z['tokenizer_version'])}")
            arrays = {k: z[k] for k in ("vocab_utf8", "vocab_offsets", "indptr", "terms", "counts", "title_counts")}
            df = z.get("df")
        except StoreError:
            raise
        except Exception as e:  # noqa: BLE001 - as LexicalIndex.load: any read failure is damage
            raise DamagedError(path, f"damaged ({e})") from None
        ip, off = arrays["indptr"], arrays["vocab_offsets"]
        ok = (
            ip.ndim == 1
            and len(ip) >= 1
            and ip[0] == 0
            and ip[-1] == len(arrays["terms"]) == len(arrays["counts"]) == len(arrays["title_counts"])
            and len(off) >= 1
            and off[-1] == len(arrays["vocab_utf8"])
            and (len(arrays["terms"]) == 0 or int(arrays["terms"].max()) < len(off) - 1)
        )
        # The stored document frequencies: one per term, one per entry in all (cheap to check here).
        if df is not None and (df.shape != (len(off) - 1,) or int(df.sum(dtype=np.int64)) != len(arrays["terms"])):
            ok = False
        if not ok:
            raise DamagedError(path, "inconsistent lexical index")
        return cls(  # no copy where the stored type is already the one used
            np.asarray(arrays["vocab_utf8"], dtype=np.uint8),
            np.asarray(off, dtype=np.int64),
            np.asarray(ip, dtype=np.int64),
            np.asarray(arrays["terms"], dtype=np.int32),
            np.asarray(arrays["counts"], dtype=np.int32),
            np.asarray(arrays["title_counts"], dtype=np.int32),
            df=df,
        )

    @classmethod
    def of(cls, idx: LexicalIndex) -> CarriedArrays:
        data, offsets = _encode_vocab(idx.vocab)
        assert idx.title_counts is not None
        df = _bincount(np.asarray(idx.terms), len(offsets) - 1)
        return cls(data, offsets, idx.indptr, idx.terms, idx.counts, idx.title_counts, df=df)

    def term(self, i: int) -> bytes:
        return self.vocab_utf8[self.vocab_offsets[i] : self.vocab_offsets[i + 1]].tobytes()

    def write(self, path: Path) -> None:
        """``lexical.npz`` with exactly the keys :meth:`LexicalIndex.save` writes."""
        _write_npz(
            path, self.vocab_utf8, self.vocab_offsets, self.indptr, self.terms, self.counts, self.title_counts, self.df
        )


def _gather(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the CSR entries of ``rows``, in row order; entries per row) with no per-row Python."""
    lengths = indptr[rows + 1] - indptr[rows]
    return ranges(indptr[rows], lengths), lengths


# Above this many dropped plus inserted terms the vocabulary is spliced by one gather of every byte.
_SPLICE_EVENTS = 50_000


def _splice_vocab(
    data: np.ndarray, offsets: np.ndarray, keep: np.ndarray, insert_at: np.ndarray, new_terms: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and offsets of the old terms in ``keep`` with ``new_terms`` (sorted) inserted,
    each before old position ``insert_at``: the merged vocabulary, still sorted, never decoded.

    A small edit drops and inserts a few terms among millions: the old terms between two such
    places are copied as one slice (a 1M-paper store's 4.8M terms: 3 s as a gather of every
    byte). Many changes go to :func:`_splice_vocab_gathered`, which gives the same arrays.
    """
    dropped = np.flatnonzero(~keep)
    if len(dropped) + len(insert_at) > _SPLICE_EVENTS:
        return _splice_vocab_gathered(data, offsets, keep, insert_at, new_terms)
    lengths = np.diff(offsets)
    parts: list[np.ndarray] = []
    sizes: list[np.ndarray] = []
    # In old order; at one position the inserted terms (in order) come before the old term there.
    events = sorted([(p, 0, j) for j, p in enumerate(insert_at.tolist())] + [(p, 1, 0) for p in dropped.tolist()])
    at = 0  # the first old term not yet placed
    for pos, dropping, j in events:
        if pos > at:
            parts.append(data[offsets[at] : offsets[pos]])
            sizes.append(lengths[at:pos])
            at = pos
        if dropping:
            at = pos + 1
        else:
            parts.append(np.frombuffer(new_terms[j], dtype=np.uint8))
            sizes.append(np.array([len(new_terms[j])], dtype=np.int64))
    if at < len(lengths):
        parts.append(data[offsets[at] : offsets[-1]])
        sizes.append(lengths[at:])
    merged_off = np.zeros(sum(len(x) for x in sizes) + 1, dtype=np.int64)
    if sizes:
        np.cumsum(np.concatenate(sizes), out=merged_off[1:])
    merged = np.concatenate(parts).astype(np.uint8, copy=False) if parts else np.zeros(0, dtype=np.uint8)
    return merged, merged_off


def _splice_vocab_gathered(
    data: np.ndarray, offsets: np.ndarray, keep: np.ndarray, insert_at: np.ndarray, new_terms: list[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_splice_vocab` by one gather of every byte of the merged vocabulary."""
    lengths = np.diff(offsets)
    new_len = np.array([len(t) for t in new_terms], dtype=np.int64)
    new_start = len(data) + np.concatenate(([0], np.cumsum(new_len)[:-1])) if len(new_len) else new_len
    kept = np.flatnonzero(keep)
    # Merged order: kept old term i sorts at key 2i+1, a new term inserted before old term i at 2i.
    order = np.argsort(np.concatenate((2 * kept + 1, 2 * insert_at)), kind="stable")
    starts = np.concatenate((offsets[kept], new_start))[order]
    sizes = np.concatenate((lengths[kept], new_len))[order]
    source = np.concatenate((data, np.frombuffer(b"".join(new_terms), dtype=np.uint8)))
    merged_off = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=merged_off[1:])
    return source[ranges(starts, sizes)].astype(np.uint8), merged_off


# Carried rows moved per block (bounds the int64 position arrays to about 130 MB at 200 terms a row).
_CARRY_ROWS = 65_536
# Entries copied per slice when carried rows run in order (bounds the remapping's temporaries).
_CARRY_ENTRIES = 1 << 24
# Carried rows are copied as runs of slices while there are fewer runs than rows / _RUNS_PER_ROW.
_RUNS_PER_ROW = 16


def runs_of(rows: np.ndarray, sources: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of each run of ascending ``rows`` whose ``sources`` are consecutive too: the
    rows a carry can move as one slice of the previous arrays."""
    if not len(rows):
        return []
    breaks = np.flatnonzero((np.diff(rows) != 1) | (np.diff(sources) != 1))
    firsts = np.concatenate(([0], breaks + 1))
    lasts = np.concatenate((breaks, [len(rows) - 1]))
    return list(zip(rows[firsts].tolist(), rows[lasts].tolist(), strict=True))


def _bincount(values: np.ndarray, size: int) -> np.ndarray:
    """``np.bincount(values, minlength=size)`` a block at a time (bincount copies its input to int64)."""
    out = np.zeros(size, dtype=np.int64)
    for lo in range(0, len(values), _CARRY_ENTRIES):
        out += np.bincount(values[lo : lo + _CARRY_ENTRIES], minlength=size)
    return out


def carry_rows(
    old: CarriedArrays, mapping: np.ndarray, fresh: LexicalIndex, layered: LayeredRows | None = None
) -> CarriedArrays:
    """The index whose row ``r`` is old row ``mapping[r]`` (where >= 0) or the next row of ``fresh``.

    Arrays only: old rows are gathered by position, old term ids remapped through the merged,
    sorted vocabulary (terms no row uses any more are dropped, as a fresh build never has them),
    and the fresh rows' ids mapped into it. UTF-8 bytes compare in code point order, so the
    merged vocabulary is sorted exactly as ``sorted()`` sorts the terms as text.

    With ``layered`` the old rows are a base and a delta (:mod:`paperscope.layered_lexical`; ``old``
    then gives the vocabulary and document frequencies only): they are gathered through it.
    """
    n = len(mapping)
    carried = np.flatnonzero(mapping >= 0)
    fresh_rows = np.flatnonzero(mapping < 0)
    if len(fresh_rows) != fresh.n:
        raise ValueError(f"{len(fresh_rows)} rows to fill, {fresh.n} fresh rows given")
    if layered is not None:
        old_n, old_len = layered.n, layered.sizes(mapping[carried])
    else:
        old_n, old_len = old.n, old.indptr[mapping[carried] + 1] - old.indptr[mapping[carried]]
    fresh_pos, fresh_len = _gather(fresh.indptr, np.arange(fresh.n, dtype=np.int64))
    # Old terms still used by a carried row; each fresh term looked up in the old vocabulary by bisection
    # (the fresh vocabulary is that of the edited rows only: this loop is over their distinct terms).
    v_old = len(old.vocab_offsets) - 1
    runs: list[tuple[int, int]] | None = runs_of(carried, mapping[carried])
    if layered is not None or len(runs) > max(1, len(carried) // _RUNS_PER_ROW):
        runs = None  # so many runs that gathering by position beats a Python loop over them
    df = None
    if layered is not None and old.df is None:
        raise ValueError("layered rows carry their document frequencies")
    if runs is not None or layered is not None:
        # Few runs (an edit here and there): every old term's use (stored, else counted), minus the rows not carried.
        if old.df is not None:
            df = np.asarray(old.df, dtype=np.int64)  # a copy: the stored int32 counts, widened
        else:
            df = _bincount(old.terms, v_old)
            release_pages(old.terms)
        still = np.zeros(old_n, dtype=bool)  # a mask, not setdiff1d's sort of a million rows (0.8 s at 1M)
        still[mapping[carried]] = True
        gone = np.flatnonzero(~still)
        gone_terms = (
            layered.gather(gone, ("terms",)).terms if layered is not None else old.terms[_gather(old.indptr, gone)[0]]
        )
        df -= _bincount(gone_terms, v_old)
        used_old = df > 0
    else:
        used_old = np.zeros(v_old, dtype=bool)
        for start in range(0, len(carried), _CARRY_ROWS):
            used_old[old.terms[_gather(old.indptr, mapping[carried[start : start + _CARRY_ROWS]])[0]]] = True
    data, offsets, old_to_new, fresh_map = merge_vocab(old, used_old, fresh)
    # Rows in their new order: lengths first, then every entry placed by one gather per source.
    lengths = np.zeros(n, dtype=np.int64)
    lengths[carried], lengths[fresh_rows] = old_len, fresh_len
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    terms = np.empty(int(indptr[-1]), dtype=np.int32)
    counts = np.empty_like(terms)
    titles = np.empty_like(terms)
    dst_fresh, _ = _gather(indptr, fresh_rows)
    assert fresh.title_counts is not None
    if runs is not None:
        # Runs of rows carried in order are slices of the old arrays: copied, ids remapped, no positions.
        remap = old_to_new.astype(np.int32)
        same_ids = bool(np.array_equal(old_to_new, np.arange(v_old)))  # no term added or dropped
        released = PageReleaser(old.terms)  # the previous file's pages, read once
        lock = threading.Lock()
        moves: list[tuple[int, int, int]] = []  # (destination, source start, source end)
        for first, last in runs:
            a, b = int(old.indptr[mapping[first]]), int(old.indptr[mapping[last] + 1])
            c = int(indptr[first])
            moves.extend((c + lo - a, lo, min(b, lo + _CARRY_ENTRIES)) for lo in range(a, b, _CARRY_ENTRIES))

        def move(part: list[tuple[int, int, int]]) -> None:
            for d, lo, hi in part:
                dst = slice(d, d + hi - lo)
                terms[dst] = old.terms[lo:hi] if same_ids else remap[old.terms[lo:hi]]
                counts[dst], titles[dst] = old.counts[lo:hi], old.title_counts[lo:hi]
                with lock:
                    released.read(12 * (hi - lo))

        # Two halves (by entries) side by side: numpy releases the GIL in the gathers and copies,
        # and the second core is mostly idle here (the previous generation's check hashes fast).
        sizes = np.cumsum([hi - lo for _, lo, hi in moves]) if moves else np.zeros(0)
        half = int(np.searchsorted(sizes, sizes[-1] / 2)) + 1 if len(moves) > 1 else len(moves)
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(move, [moves[:half], moves[half:]]))
    else:
        # Carried rows a block at a time: whole-array int64 positions (source and destination) and their
        # temporaries were most of a 1M-paper re-run's 9.2 GB peak; the result is the same.
        base = (layered.base_terms, layered.base_counts, layered.base_titles) if layered is not None else ()
        released = PageReleaser(*base)
        for start in range(0, len(carried), _CARRY_ROWS):
            block = carried[start : start + _CARRY_ROWS]
            dst, _ = _gather(indptr, block)
            if layered is not None:
                e = layered.gather(mapping[block], ("terms", "counts", "titles"))
                terms[dst], counts[dst], titles[dst] = old_to_new[e.terms], e.counts, e.titles
                released.read(12 * len(dst))
                continue
            src, _ = _gather(old.indptr, mapping[block])
            terms[dst] = old_to_new[old.terms[src]]
            counts[dst], titles[dst] = old.counts[src], old.title_counts[src]
            release_pages(old.terms)
    terms[dst_fresh] = fresh_map[fresh.terms[fresh_pos]]
    counts[dst_fresh], titles[dst_fresh] = fresh.counts[fresh_pos], fresh.title_counts[fresh_pos]
    # This index's document frequencies: the carried rows' (the previous counts without the rows
    # gone, under the new ids) plus the fresh rows'. Counted from every entry when not carried.
    if df is not None:
        new_df = np.zeros(len(offsets) - 1, dtype=np.int64)
        new_df[old_to_new[used_old]] = df[used_old]
        new_df += np.bincount(fresh_map[fresh.terms[fresh_pos]], minlength=len(new_df))
    else:
        new_df = _bincount(terms, len(offsets) - 1)
    return CarriedArrays(data, offsets, indptr, terms, counts, titles, old_to_new, new_df)


def merge_vocab(
    old: CarriedArrays, used_old: np.ndarray, fresh: LexicalIndex
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(UTF-8 bytes, offsets, each old term's id in it or -1, each fresh term's id in it) of the
    merged vocabulary: the old terms ``used_old`` marks (modified: a fresh term found among the old
    ones is used) and the fresh index's terms, sorted as ``sorted()`` sorts them as text."""
    v_old = len(old.vocab_offsets) - 1
    view = _BytesVocab(old)
    fresh_bytes = [t.encode("utf-8", "surrogatepass") for t in fresh.vocab]
    at = _positions(old, fresh_bytes)
    found = np.array([a < v_old and view[a] == t for a, t in zip(at.tolist(), fresh_bytes)], dtype=bool)
    used_old[at[found]] = True
    insert_at = at[~found]  # non-decreasing: the fresh vocabulary is sorted
    new_terms = [t for t, f in zip(fresh_bytes, found.tolist()) if not f]
    # A kept old term's new id: kept old terms before it, plus new terms inserted at or before it.
    kept_before = np.concatenate(([0], np.cumsum(used_old))).astype(np.int64)
    old_to_new = np.where(used_old, kept_before[:-1] + np.searchsorted(insert_at, np.arange(v_old), side="right"), -1)
    fresh_map = np.empty(len(fresh_bytes), dtype=np.int64)
    fresh_map[found] = old_to_new[at[found]]
    fresh_map[~found] = kept_before[insert_at] + np.arange(len(insert_at))
    data, offsets = _splice_vocab(old.vocab_utf8, old.vocab_offsets, used_old, insert_at, new_terms)
    return data, offsets, old_to_new, fresh_map


# Bytes of each term compared as a fixed-width prefix when fresh terms are looked up (longer ties bisected).
_PREFIX = 24


def _prefixes(data: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The first ``_PREFIX`` bytes of every term as fixed-width ``S`` values (which compare as the bytes do)."""
    lengths = np.diff(offsets)
    out = np.zeros((len(lengths), _PREFIX), dtype=np.uint8)
    starts = offsets[:-1]
    for j in range(_PREFIX):
        has = np.flatnonzero(lengths > j)
        if not len(has):
            break
        out[has, j] = data[starts[has] + j]
    return out.view(f"S{_PREFIX}").ravel()


def _positions(old: CarriedArrays, terms: list[bytes]) -> np.ndarray:
    """``bisect_left`` of each term in the old sorted vocabulary: numpy's search over fixed-width
    prefixes, then a bisection only among the old terms that share a term's prefix (a Python
    bisection of the whole vocabulary per term took seconds for a 1% edit at a million papers)."""
    if not terms:
        return np.zeros(0, dtype=np.int64)
    old_prefix = _prefixes(old.vocab_utf8, old.vocab_offsets)
    lens = np.fromiter((len(t) for t in terms), dtype=np.int64, count=len(terms))
    offsets = np.concatenate(([0], np.cumsum(lens)))
    new_prefix = _prefixes(np.frombuffer(b"".join(terms), dtype=np.uint8), offsets)
    lo = np.searchsorted(old_prefix, new_prefix, side="left").tolist()
    hi = np.searchsorted(old_prefix, new_prefix, side="right").tolist()
    view = _BytesVocab(old)
    return np.array(
        [a if a == b else bisect.bisect_left(view, t, a, b) for t, a, b in zip(terms, lo, hi, strict=True)],
        dtype=np.int64,
    )


class _BytesVocab:
    """The sorted vocabulary as a sequence of UTF-8 terms, for :func:`bisect.bisect_left`."""

    def __init__(self, arrays: CarriedArrays):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(self.arrays.vocab_offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self.arrays.term(i)


def build_from_store(con: sqlite3.Connection) -> LexicalIndex:
    """An in-memory index for a generation written before lexical indexes existed."""
    return LexicalIndex.from_counts(
        paper_counts(t, a) for t, a in con.execute("SELECT title, abstract FROM papers ORDER BY row")
    )
