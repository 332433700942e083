"""A re-index's lexical files when the forward index stays a base and a delta (:mod:`paperscope.layered_lexical`).

:func:`write` is the path of a small edit: only the rows tokenised since the forward base are
written (with this vocabulary and its document frequencies), and the postings of the rows
tokenised since the postings base, as :func:`paperscope.impact.delta` writes them. It applies
when :func:`paperscope.impact.delta` would: no row renumbered or removed, the idf check not due,
the postings delta under ``impact.DELTA_MAX`` of the rows. Otherwise the pipeline writes the
files whole as before, carrying the previous rows through :func:`previous_rows` when they were a
base and a delta (``lexical.carry_rows`` and ``impact.rebase`` gather them a block at a time).

Every array a query reads is the one a whole write gives (the same terms, weights and postings:
``tests/unit/test_layered_lexical.py`` checks it array for array and query for query).
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paperscope import impact, layered_lexical, layered_papers, lexical
from paperscope.errors import StoreError
from paperscope.layered_lexical import FORWARD_FILE, FORWARD_UNIT_FILE, LayeredRows
from paperscope.lexical import TOKENIZER_VERSION, CarriedArrays, LexicalIndex, Vocab, mmap_npz

__all__ = ["Previous", "previous_rows", "write", "write_rows"]


@dataclass(frozen=True)
class Previous:
    """The previous generation's lexical files: ``base`` its base postings (``impact.BASE_FILE``)
    and ``forward`` its forward base files, each when it has them."""

    lexical: Path
    derived: Path
    base: Path | None = None
    forward: tuple[Path, Path] | None = None

    @classmethod
    def of(cls, directory: Path, files: dict[str, object]) -> Previous:
        """The files of the generation in ``directory`` (``files``: its manifest's record of them)."""
        return cls(
            directory / "lexical.npz",
            directory / impact.DERIVED_FILE,
            directory / impact.BASE_FILE if impact.BASE_FILE in files else None,
            impact.forward_files(directory, files),
        )


def write(
    con: sqlite3.Connection, tmp: Path, prev: Previous, written: np.ndarray | None
) -> tuple[int, impact.Derived] | None:
    """Write ``lexical.npz``, ``lexical-impact.npz`` and the base links into ``tmp`` with the forward
    index as a base and a delta; (rows tokenised, how). None when this does not apply (see the
    module docstring): nothing is written then.

    ``con`` holds this generation's papers and the previous ones as ``old_papers``; ``written``
    the only rows that may differ from the previous generation's row of the same number.
    """
    if not layered_lexical.ENABLED or written is None:
        return None
    try:
        z, d = mmap_npz(prev.lexical), mmap_npz(prev.derived)
        meta = d["meta"]
        fmt, old_n = int(meta[0]), int(meta[1])
        if int(z["tokenizer_version"]) != TOKENIZER_VERSION or "df" not in z or len(d["vocab_order"]):
            return None
        layered_prev = "forward_meta" in z
        if layered_prev != (fmt == impact.LAYERED_FORMAT_VERSION) or (layered_prev and prev.forward is None):
            return None
        if fmt == impact.FORMAT_VERSION:
            post_base_path, post_base, before = prev.derived, d, None
        elif fmt in (impact.DELTA_FORMAT_VERSION, impact.LAYERED_FORMAT_VERSION) and prev.base is not None:
            post_base_path, post_base, before = prev.base, mmap_npz(prev.base), impact.delta_of(d)
        else:
            return None
        if impact.stored_marks(post_base, "marks", post_base["post_starts"], post_base_path) is None:
            return None
        basis = d["idf_basis"]
        prev_rows = _rows_of(z, d, prev, old_n, layered_prev)
    except (OSError, KeyError, ValueError, IndexError, StoreError):
        return None
    n = layered_papers.rows_of(con)
    if n < old_n or old_n != layered_papers.rows_of(con, "old_papers"):
        return None
    mapping = lexical.mapping_of_written(con, written, old_n)
    fresh = np.flatnonzero(mapping < 0)
    basis_n, since = (int(basis[0]), int(basis[1])) if basis.shape == (2,) else (old_n, 0)
    since += len(fresh)  # rows tokenised afresh or added (an edit counts once)
    members = np.union1d(before.members if before is not None else np.zeros(0, dtype=np.int64), fresh)
    if since > impact.IDF_CHECK * max(n, 1) or len(members) > impact.DELTA_MAX * max(n, 1):
        return None
    if not len(fresh):  # no title or abstract changed: every lexical file is the previous one
        for source, name in _links(prev, post_base_path if before is not None else None, layered_prev, layered_prev):
            os.link(source, tmp / name)
        return 0, impact.Derived(
            "linked",
            delta_rows=len(before.members) if before is not None else None,
            forward_rows=len(prev_rows.rows) if layered_prev else None,
        )
    fresh_lex = lexical.tokenise_rows(con, fresh)
    # The vocabulary: the previous terms still used (the stored document frequencies, less those of
    # the rows tokenised again) and the fresh rows' terms, sorted.
    old = CarriedArrays(z["vocab_utf8"], z["vocab_offsets"], *(np.zeros(1, np.int64), *[np.zeros(0, np.int32)] * 3))
    df = np.asarray(z["df"], dtype=np.int64)
    gone = fresh[fresh < old_n]
    df -= np.bincount(prev_rows.gather(gone, ("terms",)).terms, minlength=len(df))
    data, offsets, o2n, fresh_map = lexical.merge_vocab(old, df > 0, fresh_lex)
    vocab = len(offsets) - 1
    new_df = np.zeros(vocab, dtype=np.int64)
    new_df[o2n[o2n >= 0]] = df[o2n >= 0]
    f_terms = fresh_map[fresh_lex.terms].astype(np.int32)
    new_df += np.bincount(f_terms, minlength=vocab)
    # The forward delta: the previous one's rows (ids mapped) and the fresh rows.
    f_rows = np.union1d(prev_rows.rows, fresh)
    kept = np.setdiff1d(prev_rows.rows, fresh, assume_unique=True)
    k = prev_rows.gather(kept)
    f_sizes = np.diff(fresh_lex.indptr)
    sizes = np.zeros(len(f_rows), dtype=np.int64)
    is_fresh = np.isin(f_rows, fresh, assume_unique=True)
    sizes[~is_fresh], sizes[is_fresh] = k.sizes, f_sizes
    indptr = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    at_fresh = np.repeat(is_fresh, sizes)
    terms = np.empty(int(indptr[-1]), dtype=np.int32)
    counts, titles = np.empty_like(terms), np.empty_like(terms)
    unit = np.empty(len(terms), dtype=np.float32)
    terms[~at_fresh], terms[at_fresh] = o2n[k.terms], f_terms
    counts[~at_fresh], counts[at_fresh] = k.counts, fresh_lex.counts
    assert fresh_lex.title_counts is not None
    titles[~at_fresh], titles[at_fresh] = k.titles, fresh_lex.title_counts
    # Weights: the carried idf (a new term's from this generation's counts), as impact.delta weights them.
    vocab_terms = Vocab(data, offsets)
    idf = impact.carried_idf(vocab_terms, n, lexical.PHRASE_WEIGHT, d["idf"], o2n, f_terms)
    unit[~at_fresh] = k.unit
    unit[at_fresh] = lexical.unit_weights(
        np.asarray(fresh_lex.indptr), f_terms, fresh_lex.counts, fresh_lex.title_counts, idf, lexical.TITLE_BOOST
    )
    prev_to_forward = np.asarray(z["forward_to_base"]) if layered_prev else np.arange(len(df), dtype=np.int32)
    rows = LayeredRows(
        n, prev_rows.base_indptr, prev_rows.base_terms, prev_rows.base_counts, prev_rows.base_titles,
        prev_rows.base_unit, prev_rows.base_vocab, impact.map_to_base(prev_to_forward, o2n, vocab), f_rows, indptr,
        terms, counts, titles, unit,
    )  # fmt: skip
    lex = LexicalIndex(vocab_terms, np.zeros(1, np.int64), *[np.zeros(0, np.int32)] * 3, layers=rows)
    lex.attach_weights(None, idf)
    # The postings delta: every entry of the rows tokenised since the postings base, impact order per term.
    e = rows.gather(members, ("terms", "unit"))
    e_rows = np.repeat(members, e.sizes).astype(np.int32)
    order = np.lexsort((e_rows, np.uint32(0xFFFFFFFF) - e.unit.view(np.uint32), e.terms))
    starts = np.zeros(vocab + 1, dtype=np.int64)
    np.cumsum(np.bincount(e.terms, minlength=vocab), out=starts[1:])
    prev_to_base = before.to_base if before is not None else np.arange(len(d["idf"]), dtype=np.int32)
    post = impact.Postings(
        n, lex.indptr, lex.terms, unit, idf, post_base["post_starts"], post_base["post_rows"], post_base["post_vals"]
    )
    post.layers = rows
    post.delta = impact.Delta(
        int(post_base["meta"][1]),
        members.astype(np.int32),
        impact.map_to_base(prev_to_base, o2n, vocab),
        starts,
        e_rows[order],
        e.unit[order],
    )
    post.vocab_order = np.zeros(0, dtype=np.int32)
    post.idf_basis = (basis_n, since)
    post.reference = impact.lexical_reference(lex, post)
    write_rows(
        tmp / "lexical.npz",
        {
            "vocab_utf8": data,
            "vocab_offsets": offsets,
            "df": new_df.astype(np.int32),
            "tokenizer_version": np.array(TOKENIZER_VERSION),
            "forward_meta": np.array([n, rows.base_n], dtype=np.int64),
            "forward_to_base": rows.to_base.astype(np.int32),
            "delta_rows": f_rows.astype(np.int64),
            "delta_indptr": indptr,
            "delta_terms": terms,
            "delta_counts": counts,
            "delta_titles": titles,
        },
    )
    post.save(tmp / impact.DERIVED_FILE)
    for source, name in _links(prev, post_base_path, layered_prev, True)[2:]:
        os.link(source, tmp / name)
    return len(fresh), impact.Derived("delta", delta_rows=len(members), forward_rows=len(f_rows))


def write_rows(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """A ``lexical.npz`` whose rows are a delta (the keys ``layered_lexical.KEYS``, the vocabulary,
    ``df`` and the tokenizer version), uncompressed so that a query memory-maps it."""
    with open(path, "wb") as fh:  # a file object: np.savez must not append ".npz"
        np.savez(fh, **arrays)


def _links(prev: Previous, post_base: Path | None, layered_prev: bool, forward: bool) -> list[tuple[Path, str]]:
    """(source, name): the previous generation's lexical files and its bases, as this one's.

    The first two are its ``lexical.npz`` and derived file (linked only when nothing changed); then
    the base postings (``post_base``), and with ``forward`` the forward base: the previous one's,
    or the previous generation's own files when its forward index is whole.
    """
    out = [(prev.lexical, "lexical.npz"), (prev.derived, impact.DERIVED_FILE)]
    if post_base is not None:
        out.append((post_base, impact.BASE_FILE))
    if forward and layered_prev:
        assert prev.forward is not None
        out += [(prev.forward[0], FORWARD_FILE), (prev.forward[1], FORWARD_UNIT_FILE)]
    elif forward:
        out += [(prev.lexical, FORWARD_FILE), (prev.derived, FORWARD_UNIT_FILE)]
    return out


def _rows_of(z: dict[str, np.ndarray], d: dict[str, np.ndarray], prev: Previous, n: int, layered: bool) -> LayeredRows:
    """The previous generation's forward index as a :class:`LayeredRows` (a whole one: a base and no delta)."""
    if layered:
        lex = impact.open_layered(z, d, prev.lexical, prev.derived, n, prev.forward)
        assert lex.layers is not None
        return lex.layers
    empty = np.zeros(0, dtype=np.int32)
    vocab = len(z["vocab_offsets"]) - 1
    return LayeredRows(
        n, z["indptr"], z["terms"], z["counts"], z["title_counts"], d["unit"], vocab,
        np.arange(vocab, dtype=np.int32), np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64),
        empty, empty, empty, np.zeros(0, dtype=np.float32),
    )  # fmt: skip


def previous_rows(prev: Previous) -> LayeredRows | None:
    """The previous generation's rows when they are a base and a delta (None when written whole):
    what a run that writes them whole carries them from."""
    z = mmap_npz(prev.lexical)
    if "forward_meta" not in z:
        return None
    return _rows_of(z, mmap_npz(prev.derived), prev, int(z["forward_meta"][0]), True)
