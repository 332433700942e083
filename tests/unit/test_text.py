"""paperscope.text: the one tokenizer for lexical ranking, map labels and the map page's search."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from paperscope import text
from paperscope.map import terms as map_terms


def test_field_terms_fold_together() -> None:
    for spelling in ("μP", "muP", "µP", "MUP", "u-$μ$P"):
        assert "μp" in text.ranking_terms(spelling), spelling
    assert text.ranking_terms("LoRA 3D") == ["lora", "3d"]
    assert text.ranking_terms("text-to-3D") == ["text-to-3d", "text", "3d"]
    assert text.ranking_terms("GPT-3.5") == ["gpt-3.5", "gpt"]  # the number part alone is dropped
    assert text.ranking_terms("the of and we propose a novel method") == []


def test_plural_folding_rules() -> None:
    assert [text.stem(w) for w in ("models", "studies", "loss", "focus", "analysis", "gas", "its")] == [
        "model",
        "study",
        "loss",
        "focus",
        "analysis",
        "gas",
        "its",
    ]


def test_phrases_never_cross_punctuation() -> None:
    got = text.ranking_terms("Low-rank adaptation (LoRA) of diffusion models.", phrases_too=True)
    assert "diffusion model" in got and "adaptation lora" not in got


def test_one_tokenizer_for_ranking_and_map_labels() -> None:
    sample = "We tune u-μP and muP with LoRA adapters for 3D Gaussian splatting on GPT-4, and don't stop."
    assert map_terms.tokens(sample) == [
        t for t in text.surface_tokens(sample) if text.fold(t) not in text.LABEL_STOP_WORDS
    ]
    assert {text.stem(text.fold(t)) for t in map_terms.tokens(sample)} <= set(text.ranking_terms(sample))
    assert map_terms.fold("µP") == text.fold("µP") == "μp"


def test_rules_are_plain_regexes() -> None:
    # The map page ports these to JavaScript: no lookbehind, no possessive or atomic groups.
    for rx in (text.TOKEN, text.LATEX, text.APOSTROPHE, text.NUMBER, text.PHRASE_BREAK):
        assert isinstance(rx, re.Pattern) and "(?<" not in rx.pattern and "(?>" not in rx.pattern


def test_long_tokens_are_dropped() -> None:
    assert text.surface_tokens("ACGT" * 12500 + " genome LoRA") == ["genome", "LoRA"]
    assert text.ranking_terms("x" * 99_960) == []
    assert text.ranking_terms("a" * text.MAX_TOKEN_CHARS) == ["a" * text.MAX_TOKEN_CHARS]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_every_term_is_bounded_and_folded(s: str) -> None:
    for t in text.ranking_terms(s, phrases_too=True):
        assert all(len(part) <= text.MAX_TOKEN_CHARS for part in t.split(" "))
        assert t == t.lower() and t not in text.STOP_WORDS
