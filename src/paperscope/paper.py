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
    """A ranked result: the paper, its cosine similarity to the query, and its 1-based rank."""

    paper: Paper
    score: float
    rank: int

    def to_dict(self) -> dict[str, object]:
        """Flat JSON shape used by ``--json``: id, title, score, rank, then the metadata."""
        d = self.paper.to_dict()
        d.pop("abstract")
        return {"id": self.paper.id, "title": self.paper.title, "score": round(self.score, 6),
                "rank": self.rank, **{k: v for k, v in d.items() if k not in ("id", "title")}}
