"""Acronyms and their long forms as the corpus writes them: "Low-Rank Adaptation (LoRA)".

Labels read better as "Low-rank adaptation (LoRA)" than as "LoRA" or "low-rank": when a
topic's best term is an acronym (or the long form of one), the label gives both. Long forms
are found with the Schwartz-Hearst rule (each letter of the short form appears, in order,
in the words before the parenthesis, the first one starting a word).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from paperscope.map.terms import fold

_PAREN = re.compile(r"((?:[^\W_][\w\-]*\s+){1,6})\(([^\s()]{2,12})\)")


def _letters(short: str) -> str:
    # μ reads as "mu": "Maximal Update Parametrization (μP)" matches m-u-p.
    return "".join("mu" if c in "μµ" else c for c in short.lower() if c.isalnum())


def long_form(short: str, words: str) -> str | None:
    """The shortest tail of ``words`` that spells ``short`` (Schwartz-Hearst), or None."""
    letters = _letters(short)
    if len(letters) < 2 or not any(c.isalpha() for c in letters):
        return None
    text = words.rstrip()
    li = len(text) - 1
    for si in range(len(letters) - 1, -1, -1):
        c = letters[si]
        while li >= 0 and (text[li].lower() != c or (si == 0 and li > 0 and text[li - 1].isalnum())):
            li -= 1
        if li < 0:
            return None
        li -= 1
    start = text.rfind(" ", 0, li + 1) + 1
    found = text[start:]
    n_words = len(found.split())
    return found if 1 <= n_words <= len(letters) + 1 and n_words < 7 else None


def is_short_form(token: str) -> bool:
    """True for a token written like an acronym: LoRA, PDE, μP, S4."""
    # Acronyms carry a capital, digit or μ after their first character: LoRA, PDE, μP, S4, GANs.
    return any(c.isupper() or c.isdigit() or c in "μµ" for c in token[1:]) or token.isupper() or token[0] in "μµ"


class Acronyms:
    """Folded short form -> its most common long form, and folded long form -> short form."""

    def __init__(self) -> None:
        self._long: dict[str, Counter[str]] = {}
        self._short: dict[str, Counter[str]] = {}

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            for m in _PAREN.finditer(text):
                short = m.group(2).strip(".,;:")
                if not is_short_form(short):
                    continue
                found = long_form(short, m.group(1))
                if found is None:
                    continue
                key = fold(short)
                self._long.setdefault(key, Counter())[found] += 1
                self._short.setdefault(" ".join(fold(w) for w in found.split()), Counter())[short] += 1

    def expand(self, term: str) -> str | None:
        """The long form of a folded short form, as most often written; None if never expanded."""
        forms = self._long.get(term)
        if not forms:
            return None
        by_fold: Counter[str] = Counter()
        for f, c in forms.items():
            by_fold[" ".join(fold(w) for w in f.split())] += c
        best = by_fold.most_common(1)[0][0]
        return max((c, f) for f, c in forms.items() if " ".join(fold(w) for w in f.split()) == best)[1]

    def long_form_words(self) -> frozenset[str]:
        """Folded words of every long form: capitalised there for the acronym, not because they are names."""
        return frozenset(w for forms in self._long.values() for f in forms for w in fold(f).replace("-", " ").split())

    def short_of(self, phrase: str) -> str | None:
        """The short form written after a folded long form (``low-rank adaptation`` -> ``LoRA``), if any."""
        forms = self._short.get(phrase)
        return forms.most_common(1)[0][0] if forms else None
