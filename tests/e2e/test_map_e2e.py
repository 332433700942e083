"""The topic map with the real pinned model on the bundled corpus: the named themes come out as topics."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from paperscope.corpus.normalize import normalise_title
from paperscope.explorer import Explorer
from paperscope.map.quality import best_topics

pytestmark = pytest.mark.model


def test_named_themes_are_their_own_topics(real_store: Path, tmp_path: Path) -> None:
    path = resources.files("paperscope") / "data" / "labels" / "themes.csv"
    with path.open(encoding="utf-8") as fh:
        labels = {normalise_title(r["title"]): r["theme"] for r in csv.DictReader(fh)}
    with Explorer(real_store) as ex:
        tm = ex.topic_map(tmp_path, refit=True)
    themes = [labels.get(normalise_title(t)) for t in tm.titles]
    assert None not in themes
    quality = best_topics(themes, tm.levels)
    for theme in ("mup", "peft", "diffusion"):
        m = quality[theme]
        # "most papers of that theme in it, and most of its members of that theme"
        assert m.recall > 0.5 and m.precision > 0.5, m
    mup = tm.find("muP")
    assert quality["mup"].topic == mup.id and quality["mup"].level == 1
    assert tm.low_confidence < 0.1 * len(tm)
    assert np.isfinite(tm.coords).all()
