"""Topic labels from class-based TF-IDF (c-TF-IDF) over each topic's members, written as phrases.

A term's weight in topic c is ``tf(t, c) * log(1 + A / f(t))`` where tf is its share of the
topic's terms, f its count over the corpus and A the mean number of terms per topic, as in
BERTopic. The ranked terms are the topic's ``keywords``; its ``label`` is what a person would
write from them: the best phrase rather than a word it contains ("Diffusion models", not
"diffusion"), an acronym with its long form ("Low-rank adaptation (LoRA)"), sentence case
that keeps acronyms and names as written, and no generic words ("space", "weight").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from paperscope.map.acronyms import Acronyms, is_short_form
from paperscope.map.terms import SurfaceForms, fold, terms

# Words that are fine inside a phrase ("state space", "weight decay") but say nothing as a label alone.
GENERIC = frozenset(
    """
    space spaces weight weights long short time times large small scale scales size sizes order orders
    rate rates step steps level levels point points value values form forms type types class classes
    case cases error errors loss losses cost costs quality number numbers range ranges series structure
    structures information features feature parameter parameters layer layers analysis theory
    theoretical process processes image images text texts language languages domain domains sample
    samples generation generative inference evaluation benchmark benchmarks prediction predictions tasks
    task optimal optimization stochastic linear nonlinear dynamics system systems complex robust
    efficient accuracy fine tuning fine-tuning pre-trained pretrained trained training scaling
    representation representations distribution distributions applications application solution
    solutions human real world open source one two three multi multiple single standard potential
    limited field fields
""".split()
)  # noqa: SIM905 - a word list reads best as text


def ranked_terms(
    texts: Sequence[str], labels: np.ndarray, n: int = 16, coverage: float = 0.0
) -> dict[int, list[tuple[str, float]]]:
    """Top ``n`` (folded term, weight) per topic label, a term never repeating a better-ranked one.

    The weight is c-TF-IDF, times (share of the topic's papers that use the term) ** ``coverage``:
    with coverage > 0 a term most members use beats a rarer one that a few use heavily.
    """
    per_topic: dict[int, Counter[str]] = {}
    docs: dict[int, Counter[str]] = {}
    for text, label in zip(texts, labels):
        found = terms(text)
        per_topic.setdefault(int(label), Counter()).update(found)
        docs.setdefault(int(label), Counter()).update(set(found))
    total: Counter[str] = Counter()
    for c in per_topic.values():
        total.update(c)
    avg = sum(total.values()) / max(1, len(per_topic))
    sizes = Counter(int(x) for x in labels)
    out: dict[int, list[tuple[str, float]]] = {}
    for label, counts in per_topic.items():
        size = sum(counts.values()) or 1
        # A term used by a single paper of a topic is a quirk of that paper, not of the topic.
        min_count = 2 if sizes[label] >= 4 else 1
        scored = sorted(
            (
                (counts[t] / size * float(np.log(1 + avg / total[t])) * (docs[label][t] / sizes[label]) ** coverage, t)
                for t in counts
                if counts[t] >= min_count
            ),
            key=lambda st: (-st[0], st[1]),
        )
        out[label] = _dedupe([(t, s) for s, t in scored], n)
    return out


def keywords(texts: Sequence[str], labels: np.ndarray, n: int = 8) -> dict[int, list[str]]:
    """Top ``n`` c-TF-IDF terms (display forms) per topic label."""
    forms = SurfaceForms()
    forms.add(texts)
    return {label: [forms.show(t) for t in _shown(ranked, n)] for label, ranked in ranked_terms(texts, labels).items()}


def _shown(ranked: list[tuple[str, float]], n: int) -> list[str]:
    """The first ``n`` terms, minus words that a shown phrase already contains ("diffusion" beside "diffusion models")."""
    shown: list[str] = []
    for t, _ in ranked:
        if len(shown) == n:
            break
        if " " in t:
            shown = [w for w in shown if " " in w or w not in t.split()]
        elif any(t in p.split() for p in shown):
            continue
        shown.append(t)
    return shown


# Head nouns a label may end with although, alone, they are boilerplate (see map/terms.py).
_HEADS = frozenset({"models", "model", "networks", "network", "learning", "theory", "methods"})


class Labeller:
    """Turns ranked terms into labels, knowing the corpus's written forms, acronyms and capitalised names."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.forms = SurfaceForms()
        self.forms.add(texts)
        self.acronyms = Acronyms()
        self.acronyms.add(texts)
        # "Low-Rank Adaptation (LoRA)" capitalises for the acronym: those words are not names.
        self._caps = _capitalised_words(texts) - self.acronyms.long_form_words()
        self._lower = [fold(t) for t in texts]

    def show(self, term: str) -> str:
        shown = self.forms.show(term)
        # "μP" over "muP": the field's own spelling, whenever the corpus uses it at all.
        return shown.replace("mu", "μ", 1) if term.startswith("μ") and shown.lower().startswith("mu") else shown

    def phrase(self, ranked: list[tuple[str, float]]) -> tuple[str, str] | None:
        """The best labelling phrase among ``ranked`` (folded key, display text), or None if all are generic."""
        if not ranked:
            return None
        # A phrase beats the best word it contains when it is nearly as distinctive: "diffusion models".
        for term, score in ranked:
            words = term.split()
            if len(words) == 1 and term in GENERIC:
                continue
            if len(words) == 1:
                longer = [
                    (t, s)
                    for t, s in ranked
                    if " " in t and term in t.split() and s >= 0.35 * score and not all(w in GENERIC for w in t.split())
                ]
                if longer:
                    term = longer[0][0]
            elif all(w in GENERIC for w in words):
                continue
            return term, self._write(term)
        return None

    def complete(self, term: str) -> str:
        """``term`` plus the head noun the tokenizer drops as boilerplate when the corpus mostly writes it next.

        "graph neural" -> "graph neural networks", "diffusion" -> "diffusion models": "models" and
        "networks" say nothing alone, so they never rank, but a label needs its noun.
        """
        if term.split()[-1] in _HEADS:
            return term
        pattern = re.compile(r"(?<![\w-])" + re.escape(term).replace("\\ ", r"[\s-]+") + r"[\s-]+(\w+)")
        follow: Counter[str] = Counter()
        uses = 0
        # Only texts holding the term's first word can match: a substring test picks them, and one
        # regex pass runs over them joined by NUL (which neither [\s-] nor \w matches, so no match
        # spans two texts). A regex per abstract, once per label, was most of a large map's labelling.
        first = term.split()[0]
        for m in pattern.finditer("\0".join(t for t in self._lower if first in t)):
            uses += 1
            follow[m.group(1)] += 1
        if uses >= 3 and follow:
            word, count = follow.most_common(1)[0]
            if word in _HEADS and count * 5 >= uses * 2:
                return f"{term} {word}"
        return term

    def _write(self, term: str) -> str:
        term = self.complete(term)
        # Only a token written as an acronym is expanded: "map" the word is not "MAP" the estimate.
        long = self.acronyms.expand(term) if is_short_form(self.show(term)) else None
        if long is not None and len(long.split()) >= 2:
            return f"{self._sentence(long)} ({self.show(term)})"
        short = self.acronyms.short_of(term)
        text = self._sentence(self.show(term))
        # Only a phrase earns its acronym: "Hyperparameter (HP)" reads worse than "Hyperparameter".
        return f"{text} ({short})" if short is not None and " " in term and fold(short) != term else text

    def _sentence(self, text: str) -> str:
        """Sentence case, keeping acronyms (LoRA, PDEs) and names the corpus capitalises (Gaussian, Transformer)."""
        out = []
        for i, word in enumerate(text.split()):
            # Hyphenated words case each part: "Parameter-Efficient" -> "parameter-efficient", "u-μP" stays.
            parts = [p if (p and (is_short_form(p) or fold(p) in self._caps)) else p.lower() for p in word.split("-")]
            w = "-".join(parts)
            # The first word is capitalised unless written as an acronym: "μP width", not "ΜP width".
            out.append(w[:1].upper() + w[1:] if i == 0 and not is_short_form(word.split("-")[0]) else w)
        return " ".join(out)


# Labels weigh c-TF-IDF by the share of members using the term (square root): a label should name the
# topic, not its three most idiosyncratic papers ("Mathematical reasoning" for an LLM topic).
LABEL_COVERAGE = 0.5


def label_topics(
    texts: Sequence[str], labels: np.ndarray, *, n: int = 8, labeller: Labeller | None = None, phrases: int = 1
) -> dict[int, tuple[str, list[str]]]:
    """Per topic label: (label, keywords). ``phrases`` > 1 joins that many distinct phrases with " and "."""
    lab = labeller or Labeller(texts)
    out: dict[int, tuple[str, list[str]]] = {}
    for topic, ranked in ranked_terms(texts, labels, max(2 * n, 16), coverage=LABEL_COVERAGE).items():
        parts: list[str] = []
        used: set[str] = set()
        rest = ranked
        while len(parts) < phrases:
            best = lab.phrase(rest)
            if best is None:
                break
            key, text = best
            # A second phrase must say something: a phrase or an acronym, not one plain word ("and Sampling").
            if parts and " " not in key and not is_short_form(lab.show(key)):
                break
            parts.append(text)
            used |= set(key.split())
            top = rest[0][1] if rest else 0.0
            # Only phrases about as strong as the first one, sharing no word with those taken.
            rest = [(t, s) for t, s in rest if not (set(t.split()) & used) and s >= 0.6 * top]
        label = " and ".join(parts) if parts else "(no terms)"
        out[topic] = (label, [lab.show(t) for t in _shown(ranked, n)])
    return out


def _capitalised_words(texts: Sequence[str]) -> frozenset[str]:
    """Folded words written capitalised in most of their mid-sentence uses in abstracts (names: Gaussian, Adam)."""
    caps: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for text in texts:
        # Skip the title (Title Case says nothing) and each sentence's first word.
        for sentence in text.split(". ")[1:]:
            for word in sentence.split()[1:]:
                w = word.strip(".,;:()[]\"'")
                if not w.isalpha():
                    continue
                key = fold(w)
                seen[key] += 1
                if w[0].isupper():
                    caps[key] += 1
    return frozenset(k for k, c in caps.items() if c * 2 > seen[k] and seen[k] >= 2)


def _stem(word: str) -> str:
    # "hyperparameter" and "hyperparameters" (or "PDE" and "PDEs") should not both label a topic.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _dedupe(ranked: list[tuple[str, float]], n: int) -> list[tuple[str, float]]:
    kept: list[tuple[str, float]] = []
    kept_words: list[set[str]] = []
    for term, score in ranked:
        words = {_stem(w) for w in term.split()}
        if any(words == k for k in kept_words):
            continue
        # A word already inside a kept phrase ("diffusion" after "diffusion models") adds nothing, and
        # a phrase over a kept word is kept (it may become the label) only when it is new information.
        if any(words < k for k in kept_words):
            continue
        kept.append((term, score))
        kept_words.append(words)
        if len(kept) == n:
            break
    return kept


def label_of(words: list[str], k: int = 3) -> str:
    """The old keyword label: the top ``k`` keywords joined by " / " (kept for callers outside the map)."""
    return " / ".join(words[:k]) if words else "(no terms)"


def unique(
    named: dict[int, tuple[str, list[str]]], texts: Sequence[str], labels: np.ndarray, labeller: Labeller
) -> dict[int, tuple[str, list[str]]]:
    """Two topics of one level never share a label: each duplicate (but the largest) gains its next phrase."""
    sizes = Counter(int(x) for x in labels)
    by_label: dict[str, list[int]] = {}
    for topic, (label, _) in named.items():
        by_label.setdefault(label, []).append(topic)
    out = dict(named)
    for label, group in by_label.items():
        if len(group) < 2:
            continue
        for topic in sorted(group, key=lambda t: (-sizes[t], t))[1:]:
            words = out[topic][1]
            extra = next((w for w in words if fold(w) not in fold(label) and fold(w) not in GENERIC), None)
            out[topic] = (f"{label}: {extra}" if extra else f"{label} ({topic})", words)
    return out


def adopt_child_labels(
    themes: dict[int, tuple[str, list[str]]],
    topics: dict[int, tuple[str, list[str]]],
    parent_of: dict[int, int],
    sizes: dict[int, int],
) -> dict[int, tuple[str, list[str]]]:
    """A theme named by one word that its largest topic's label begins with takes that label.

    "Diffusion" over a theme whose largest topic is "Diffusion models (DMs)" becomes the latter: the
    theme-level terms are broader, so their best phrase is often a word the topic level completes.
    """
    out = dict(themes)
    for theme, (label, words) in themes.items():
        children = [t for t, p in parent_of.items() if p == theme and t in topics]
        if not children or " " in label:
            continue
        largest = max(children, key=lambda t: (sizes.get(t, 0), -t))
        child_label = topics[largest][0]
        if fold(child_label).startswith(fold(label) + " ") and child_label != label:
            out[theme] = (child_label, words)
    return out
