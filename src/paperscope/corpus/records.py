"""What a reader yields, and the tally of rows it had to skip."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from paperscope.paper import Paper
from paperscope.terminal import shown


@dataclass
class ReadReport:
    """Counts kept while reading inputs: entries read, rows skipped and why (first few kept)."""

    entries: int = 0
    skipped: int = 0
    skip_examples: list[str] = field(default_factory=list)

    def skip(self, where: str, why: str) -> None:
        self.skipped += 1
        if len(self.skip_examples) < 5:
            # Text, storable in the manifest: a file name's control characters and undecodable bytes escaped.
            self.skip_examples.append(shown(f"{where}: {why}"))


def merge(old: Paper, new: Paper) -> Paper:
    """Combine two readings of the same paper id.

    The newer reading wins for text and for every metadata field it has; fields it lacks
    keep the older value (so a page that omits the author count does not erase it), and
    ``sources`` is the union, in first-seen order.
    """
    sources = tuple(dict.fromkeys(old.sources + new.sources))
    return replace(
        new,
        authors=new.authors or old.authors,
        authors_count=new.authors_count if new.authors_count is not None else old.authors_count,
        date=new.date or old.date,
        upvotes=new.upvotes if new.upvotes is not None else old.upvotes,
        organisation=new.organisation or old.organisation,
        categories=new.categories or old.categories,
        sources=sources,
    )
