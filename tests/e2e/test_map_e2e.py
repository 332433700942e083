"""The topic map with the real pinned model on the bundled corpus: the named themes come out as topics."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from paperscope.corpus.normalize import normalise_title
from paperscope.explorer import Explorer
from paperscope.map import MapParams, compute_map
from paperscope.map.quality import best_topics

pytestmark = pytest.mark.model


# Judged over several seeds, as the map is: one seed's F1 moves by 0.1-0.3 from machine to machine.
SEEDS = (1, 2, 3, 4, 5)
# Floors under the figures measured on seeds 1-5 (docs/topic-map.md, 1.8 sqrt(n) topics; torch / onnx-int8
# stores, mean / worst: muP 0.88 / 0.82 and 0.87 / 0.85, PEFT 0.81 / 0.73 and 0.83 / 0.75, diffusion
# 0.63 / 0.56 and 0.62 / 0.54, all 12 themes 0.726 / 0.708 and 0.732 / 0.716), with room for another
# machine's UMAP. Diffusion's target of 0.70 is missed: its floor guards the level reached, it does not
# claim the target.
FLOORS = {"mup": (0.75, 0.6), "peft": (0.70, 0.6), "diffusion": (0.50, 0.40)}
ALL_THEMES_FLOOR = (0.66, 0.62)  # the mean F1 over every labelled theme: mean and worst over the seeds


def test_named_themes_are_their_own_topics(real_store: Path, tmp_path: Path) -> None:
    path = resources.files("paperscope") / "data" / "labels" / "themes.csv"
    with path.open(encoding="utf-8") as fh:
        labels = {normalise_title(r["title"]): r["theme"] for r in csv.DictReader(fh)}
    with Explorer(real_store) as ex:
        tm = ex.topic_map(tmp_path, refit=True)
        inputs = ex.map_inputs()
    themes = [labels.get(normalise_title(t)) for t in tm.titles]
    assert None not in themes
    f1s: dict[str, list[float]] = {t: [] for t in FLOORS}
    all_themes: list[float] = []
    for seed in SEEDS:
        fit = compute_map(*inputs, f"seed{seed}", MapParams(seed=seed))
        quality = best_topics(themes, fit.levels)
        for theme in FLOORS:
            f1s[theme].append(quality[theme].f1)
        all_themes.append(float(np.mean([m.f1 for m in quality.values()])))
    for theme, (mean_floor, worst_floor) in FLOORS.items():
        assert np.mean(f1s[theme]) >= mean_floor and min(f1s[theme]) >= worst_floor, (theme, f1s[theme])
    assert np.mean(all_themes) >= ALL_THEMES_FLOOR[0] and min(all_themes) >= ALL_THEMES_FLOOR[1], all_themes
    quality = best_topics(themes, tm.levels)
    mup = tm.find("muP")
    assert quality["mup"].topic == mup.id and quality["mup"].level == 1
    assert tm.low_confidence < 0.1 * len(tm)
    assert np.isfinite(tm.coords).all()
