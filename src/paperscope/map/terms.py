"""Tokens for topic labels and lexical clustering features, read with :mod:`paperscope.text`.

The tokenizer keeps the terms this field writes with odd casing or symbols as single tokens:
``LoRA``, ``μP`` / ``muP``, ``3D``, ``u-μP``, ``GPT-4``. Tokens are compared lower-cased,
but each keeps the surface form most often written, so labels read ``LoRA``, not ``lora``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from paperscope import text as _text

# The tokenizer, stop words and folding are paperscope.text's (one set of rules for ranking, labels
# and the map page's search); the map adds only its own list of words too common to name a topic.
_ABSTRACT_WORDS = _text.LABEL_STOP_WORDS


def fold(token: str) -> str:
    """Comparison key of a token: NFKC, lower case, ``µ`` (micro sign) as ``μ``, ``mup`` as ``μp``."""
    return _text.fold(token)


def _raw_tokens(text: str) -> list[str]:
    """Surface tokens minus stop words, apostrophe forms and plain numbers (:func:`paperscope.text.surface_tokens`)."""
    return _text.surface_tokens(text)


def tokens(text: str) -> list[str]:
    """Surface tokens that can name a topic on their own (no stop words, no abstract boilerplate)."""
    return [t for t in _raw_tokens(text) if fold(t) not in _ABSTRACT_WORDS]


def _bigrams(toks: list[str]) -> list[tuple[str, str]]:
    # "diffusion models" is a phrase worth keeping although "models" alone says nothing.
    return [(a, b) for a, b in zip(toks, toks[1:]) if not (fold(a) in _ABSTRACT_WORDS and fold(b) in _ABSTRACT_WORDS)]


def terms(text: str) -> list[str]:
    """Folded unigrams plus bigrams of adjacent content words (``diffusion models``, ``low-rank adaptation``).

    Bigrams never span punctuation, so "adaptation (LoRA)" gives no "adaptation lora".
    """
    out: list[str] = []
    for part in _text.phrases(text):
        raw = _raw_tokens(part)
        out += [fold(t) for t in raw if fold(t) not in _ABSTRACT_WORDS]
        out += [f"{fold(a)} {fold(b)}" for a, b in _bigrams(raw)]
    return out


class SurfaceForms:
    """Remembers the most common written form of each folded term, for display."""

    def __init__(self) -> None:
        self._seen: dict[str, Counter[str]] = {}

    def add(self, texts: Iterable[str]) -> None:
        for text in texts:
            for part in _text.phrases(text):
                toks = _raw_tokens(part)
                for tok in toks:
                    self._seen.setdefault(fold(tok), Counter())[tok] += 1
                for a, b in _bigrams(toks):
                    self._seen.setdefault(f"{fold(a)} {fold(b)}", Counter())[f"{a} {b}"] += 1

    def show(self, term: str) -> str:
        forms = self._seen.get(term)
        if not forms:
            return term
        # Prefer a form with capitals when it is common (LoRA over lora), else the most common.
        best, n = forms.most_common(1)[0]
        mixed = [(c, f) for f, c in forms.items() if f != f.lower()]
        if mixed:
            c, f = max(mixed)
            if c * 3 >= n:
                return f
        return best
