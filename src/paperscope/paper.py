"""The two value types users see: a Paper, and a Hit (a paper with its score)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
        """Flat JSON shape used by ``--json``: id, title, score, rank, dense, lexical, then the metadata
        (and ``why``)."""
        d = self.paper.to_dict()
        d.pop("abstract")
        out = {"id": self.paper.id, "title": self.paper.title, "score": round(self.score, 6),
               "rank": self.rank, "dense": None if self.dense is None else round(self.dense, 6),
               "lexical": None if self.lexical is None else round(self.lexical, 6),
               **{k: v for k, v in d.items() if k not in ("id", "title")}}
        if self.terms is not None:
            out["why"] = {"dense_similarity": out["dense"], "lexical_score": out["lexical"],
                          "shared_terms": list(self.terms)}
        return out


class Hits(list[Hit]):
    """The hits of one query, best first: a plain list, plus ``note`` saying why it is empty or short."""

    def __init__(self, hits: list[Hit] = (), note: str | None = None):
        super().__init__(hits)
        self.note = note
