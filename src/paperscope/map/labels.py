"""Topic labels from class-based TF-IDF (c-TF-IDF) over each topic's members.

A term's weight in topic c is ``tf(t, c) * log(1 + A / f(t))`` where tf is its share of the
topic's terms, f its count over the corpus and A the mean number of terms per topic, as in
BERTopic. A label is the top two or three terms, skipping any already contained in a
better-ranked phrase ("diffusion" after "diffusion models").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from paperscope.map.terms import SurfaceForms, terms


def keywords(texts: Sequence[str], labels: np.ndarray, n: int = 8) -> dict[int, list[str]]:
    """Top ``n`` c-TF-IDF terms (display forms) per topic label."""
    forms = SurfaceForms()
    forms.add(texts)
    per_topic: dict[int, Counter[str]] = {}
    for text, label in zip(texts, labels):
        per_topic.setdefault(int(label), Counter()).update(terms(text))
    total: Counter[str] = Counter()
    for c in per_topic.values():
        total.update(c)
    avg = sum(total.values()) / max(1, len(per_topic))
    sizes = Counter(int(x) for x in labels)
    out: dict[int, list[str]] = {}
    for label, counts in per_topic.items():
        size = sum(counts.values()) or 1
        # A term used by a single paper of a topic is a quirk of that paper, not of the topic.
        min_count = 2 if sizes[label] >= 4 else 1
        scored = sorted(((counts[t] / size * np.log(1 + avg / total[t]), t) for t in counts if counts[t] >= min_count),
                        reverse=True)
        out[label] = [forms.show(t) for _, t in _dedupe([t for _, t in scored], n)]
    return out


def _stem(word: str) -> str:
    # "hyperparameter" and "hyperparameters" (or "PDE" and "PDEs") should not both label a topic.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _dedupe(ranked: list[str], n: int) -> list[tuple[int, str]]:
    kept: list[str] = []
    kept_words: list[set[str]] = []
    for term in ranked:
        words = {_stem(w) for w in term.split()}
        if any(words <= k or k <= words for k in kept_words):
            continue
        kept.append(term)
        kept_words.append(words)
        if len(kept) == n:
            break
    return list(enumerate(kept))


def label_of(words: list[str], k: int = 3) -> str:
    """A short human label: the top ``k`` keywords joined by " / "."""
    return " / ".join(words[:k]) if words else "(no terms)"
