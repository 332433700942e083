"""How well topics recover hand-labelled themes: per theme, precision, recall and F1 of the best topic."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThemeMatch:
    """The topic (at any level) that best matches one labelled theme."""

    theme: str
    papers: int
    level: int
    topic: int
    size: int
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def best_topics(
    themes: Sequence[str | None], levels: Sequence[np.ndarray], skip: frozenset[str] = frozenset({"other"})
) -> dict[str, ThemeMatch]:
    """For each theme, the topic at any level with the highest F1 against the theme's papers.

    ``themes[i]`` is paper i's hand label (None when unlabelled); ``levels[l][i]`` its topic at level l.
    On a tie the finer level wins: a theme that holds a single topic is the same set of papers, and
    the topic is the one a reader finds by its label.
    """
    theme_arr = np.array([t or "" for t in themes], dtype=object)
    out: dict[str, ThemeMatch] = {}
    for theme in sorted(set(theme_arr) - skip - {""}):
        members = theme_arr == theme
        best = ThemeMatch(theme, int(members.sum()), -1, -1, 0, 0.0, 0.0)
        for level, labels in reversed(list(enumerate(levels))):  # finest first: ties keep the finer level
            for topic in np.unique(labels[members]):
                in_topic = labels == topic
                tp = int((in_topic & members).sum())
                cand = ThemeMatch(
                    theme,
                    int(members.sum()),
                    level,
                    int(topic),
                    int(in_topic.sum()),
                    tp / int(in_topic.sum()),
                    tp / int(members.sum()),
                )
                if cand.f1 > best.f1:
                    best = cand
        out[theme] = best
    return out


def themes_for(ids_titles: Sequence[tuple[str, str]], labels: Mapping[str, str]) -> list[str | None]:
    """Hand labels keyed by normalised title, looked up for each (id, title) in map order."""
    from paperscope.corpus.normalize import normalise_title

    return [labels.get(normalise_title(title)) for _, title in ids_titles]
