"""Tokens for topic labels and lexical clustering features.

The tokenizer keeps the terms this field writes with odd casing or symbols as single tokens:
``LoRA``, ``μP`` / ``muP``, ``3D``, ``u-μP``, ``GPT-4``. Tokens are compared lower-cased,
but each keeps the surface form most often written, so labels read ``LoRA``, not ``lora``.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

# A token starts and ends with a letter or digit and may contain inner hyphens, dots or
# apostrophes; unicode \w keeps Greek letters (μ) and accented names.
_TOKEN = re.compile(r"[^\W_](?:[\w'.\-]*[^\W_])?")
# Words so common in abstracts that they say nothing about a topic.
_ABSTRACT_WORDS = frozenset("""
    paper propose proposed proposes present presents introduce introduces introduced approach approaches
    method methods model models result results show shows shown demonstrate demonstrates achieve achieves
    achieved performance state art new novel based using use used task tasks work works existing study
    studies significantly significant improve improves improved improvement improvements different various
    code available https github com www org experiments experimental extensive furthermore moreover
    however while also including include includes recent recently address provide provides problem problems
    framework frameworks leverage leverages enable enables effective effectively efficient efficiently
    approach key via like make makes made high low large small well better best outperforms outperform
    compared existing prior previous first second set sets number across within without does way ways
    allows allow need needs given specific general particular simple strong
    learning learn learned training train trained neural network networks deep data dataset datasets
    algorithm algorithms function functions terms term called able
""".split())


def fold(token: str) -> str:
    """Comparison key of a token: NFKC, lower case, ``µ`` (micro sign) as ``μ``, ``mup`` as ``μp``."""
    t = unicodedata.normalize("NFKC", token).casefold()
    return "μp" if t == "mup" else t


def _raw_tokens(text: str) -> list[str]:
    """Surface tokens minus English function words, apostrophe forms and plain numbers."""
    out = []
    for m in _TOKEN.finditer(text):
        tok = m.group(0).strip(".'")
        if len(tok) < 2:
            continue
        key = fold(tok)
        if "'" in key or key in ENGLISH_STOP_WORDS or key.replace(".", "").isdigit():
            continue
        out.append(tok)
    return out


def tokens(text: str) -> list[str]:
    """Surface tokens that can name a topic on their own (no stop words, no abstract boilerplate)."""
    return [t for t in _raw_tokens(text) if fold(t) not in _ABSTRACT_WORDS]


_PHRASE_BREAK = re.compile(r"[,;:()\[\]{}!?\"]|\.\s")


def _bigrams(toks: list[str]) -> list[tuple[str, str]]:
    # "diffusion models" is a phrase worth keeping although "models" alone says nothing.
    return [(a, b) for a, b in zip(toks, toks[1:])
            if not (fold(a) in _ABSTRACT_WORDS and fold(b) in _ABSTRACT_WORDS)]


def terms(text: str) -> list[str]:
    """Folded unigrams plus bigrams of adjacent content words (``diffusion models``, ``low-rank adaptation``).

    Bigrams never span punctuation, so "adaptation (LoRA)" gives no "adaptation lora".
    """
    out: list[str] = []
    for part in _PHRASE_BREAK.split(text):
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
            for part in _PHRASE_BREAK.split(text):
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
