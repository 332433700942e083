"""The two value types users see: a Paper, and a Hit (a paper with its score)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paperscope.frames import esc, pandas, short, table


@dataclass(frozen=True)
class Paper:
    """One distinct paper.

    ``date`` is ISO 8601 and only as precise as the source: ``2022-06-13`` when the year is
    known, ``--10-17`` (ISO's year-less form) when the page showed only month and day.
    ``sources`` lists every input page or file the paper was read from.
    """

    id: str
    title: str
    abstract: str
    authors: tuple[str, ...] = ()
    authors_count: int | None = None
    date: str | None = None
    upvotes: int | None = None
    organisation: str | None = None
    categories: tuple[str, ...] = ()
    sources: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict with every field."""
        return {
            "id": self.id,
            "title": self.title,
            "abstract": self.abstract,
            "authors": list(self.authors),
            "authors_count": self.authors_count,
            "date": self.date,
            "upvotes": self.upvotes,
            "organisation": self.organisation,
            "categories": list(self.categories),
            "sources": list(self.sources),
        }

    @property
    def link(self) -> str | None:
        """The arXiv abstract page when the id is an arXiv id (``2203.03466``), else None."""
        return arxiv_link(self.id)

    def __repr__(self) -> str:
        # The dataclass repr would print the whole abstract: a list of papers became kilobytes.
        date = f", {self.date}" if self.date else ""
        return f"Paper({self.id!r}, {short(self.title, 70)!r}{date})"

    def _repr_html_(self) -> str:
        """Title, id (linked on arXiv), authors, date, sources and the abstract, for Jupyter."""
        link = self.link
        pid = f"<a href='{esc(link)}' target='_blank' rel='noopener'>{esc(self.id)}</a>" if link else esc(self.id)
        authors = ", ".join(self.authors[:8]) + (" et al." if len(self.authors) > 8 else "")
        meta = " · ".join(x for x in (authors, self.date or "", self.organisation or "") if x)
        cats = f"<br><small>categories: {esc(', '.join(self.categories))}</small>" if self.categories else ""
        src = f"<br><small>sources: {esc(', '.join(self.sources))}</small>" if self.sources else ""
        return (
            f"<div><b>{esc(self.title)}</b><br><small>{pid}{' · ' + esc(meta) if meta else ''}</small>"
            f"{cats}{src}<p style='max-width:60em'>{esc(self.abstract)}</p></div>"
        )


@dataclass(frozen=True)
class Hit:
    """A ranked result: the paper, its score, its 1-based rank, and each ranking side's own score.

    ``score`` is a calibrated probability in (0, 1) that the paper is related to the query, the
    same scale in every mode and for every query (see :mod:`paperscope.rank`). ``dense`` is the
    cosine similarity of the model's vectors (None when no vector query was made, e.g. a lexical
    search), ``lexical`` the lexical cosine (TF-IDF vectors, in [0, 1]). With ``why=True``,
    ``terms`` lists the shared key terms that contribute most to the lexical score.
    """

    paper: Paper
    score: float
    rank: int
    dense: float | None = None
    lexical: float | None = None
    terms: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, object]:
        """Flat JSON shape used by ``--json``: id, title, score, rank, dense, lexical, then every paper field
        (and ``why``)."""
        d = self.paper.to_dict()
        out = {
            "id": self.paper.id,
            "title": self.paper.title,
            "score": round(self.score, 6),
            "rank": self.rank,
            "dense": None if self.dense is None else round(self.dense, 6),
            "lexical": None if self.lexical is None else round(self.lexical, 6),
            **{k: v for k, v in d.items() if k not in ("id", "title")},
        }
        if self.terms is not None:
            out["why"] = {
                "dense_similarity": out["dense"],
                "lexical_score": out["lexical"],
                "shared_terms": list(self.terms),
            }
        return out


class Hits(list[Hit]):
    """The hits of one query, best first: a plain list, plus ``note`` saying why it is empty or short.

    In Jupyter it shows as a compact table (abstracts cut short); ``to_pandas()`` gives a DataFrame.
    """

    def __init__(self, hits: list[Hit] = (), note: str | None = None):
        super().__init__(hits)
        self.note = note

    def __repr__(self) -> str:
        lines = [f"Hits({len(self)}" + (f", note={self.note!r}" if self.note else "") + ")"]
        lines += [f"  {h.rank:>2}. {h.score:.3f}  {h.paper.id}  {short(h.paper.title, 80)}" for h in self[:20]]
        if len(self) > 20:
            lines.append(f"  … {len(self) - 20} more")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = [
            (h.rank, f"{h.score:.3f}", h.paper.id, h.paper.title, h.paper.date or "", short(h.paper.abstract, 160))
            for h in self
        ]
        note = f"{len(self)} hits" + (f" ({self.note})" if self.note else "")
        return table(("#", "score", "id", "title", "date", "abstract"), rows, caption=note)

    def to_pandas(self) -> Any:
        """One row per hit: rank, score, the why-fields when present, then every paper field."""
        pd = pandas()
        rows = []
        for h in self:
            row: dict[str, object] = {"rank": h.rank, "score": h.score}
            if h.terms is not None:
                row.update(dense=h.dense, lexical=h.lexical, shared_terms=list(h.terms))
            row.update(h.paper.to_dict())
            rows.append(row)
        return pd.DataFrame(rows)


def arxiv_link(paper_id: str) -> str | None:
    """``https://arxiv.org/abs/ID`` for a new-style (``2203.03466``, ``2203.03466v2``) or old-style arXiv id."""
    import re

    pid = paper_id.removeprefix("arXiv:").removeprefix("arxiv:")
    if re.fullmatch(r"\d{4}\.\d{4,5}(v\d+)?|[a-z\-]+(\.[A-Z]{2})?/\d{7}(v\d+)?", pid):
        return f"https://arxiv.org/abs/{pid}"
    return None
