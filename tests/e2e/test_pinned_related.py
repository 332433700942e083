"""Behaviour pinned across refactors: the top-10 related ids of four bundled papers, real model.

The ids in pinned_related.json were computed before the Explorer was split (issue 11). A change
that moves them on purpose (tokenizer, fusion, model) regenerates them with
``python tests/e2e/pin_related.py`` and says why in the commit message.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperscope.explorer import Explorer
from paperscope.rank import DEFAULT_MODE

pytestmark = pytest.mark.model
PINNED = json.loads((Path(__file__).with_name("pinned_related.json")).read_text(encoding="utf-8"))


@pytest.mark.parametrize("title", sorted(PINNED["related"]))
def test_top10_related_ids_are_the_pinned_ones(real_store: Path, title: str) -> None:
    assert PINNED["mode"] == DEFAULT_MODE and PINNED["k"] == 10
    with Explorer(real_store) as ex:
        got = [h.paper.id for h in ex.related(title, k=10)]
    assert got == PINNED["related"][title]
