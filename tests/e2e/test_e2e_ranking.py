"""Measured ranking quality with the real pinned model on the bundled corpus and shipped labels."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TENSOR_PROGRAMS_V

from paperscope import evaluate as ev
from paperscope.explorer import Explorer
from paperscope.rank import DEFAULT_MODE, HYBRID_WEIGHT, MODES

pytestmark = pytest.mark.model
# Measured held-out nDCG@10 margins of hybrid over the better single mode: 0.016 (themes, over
# dense) and 0.048 (queries, over lexical). A smaller margin than this is a regression.
MARGIN = 0.01


@pytest.fixture(scope="module")
def results(real_store: Path) -> list[ev.EvalResult]:
    return Explorer(real_store).evaluate()


def test_default_mode_beats_dense_and_lexical_on_held_out_queries(results: list[ev.EvalResult]) -> None:
    assert DEFAULT_MODE == "hybrid"
    for res in results:
        held = {m: res.held_out[m].ndcg for m in MODES}
        assert held["hybrid"] > max(held["dense"], held["lexical"]) + MARGIN, (res.labels, held)
        assert res.held_out["hybrid"].map > max(res.held_out["dense"].map, res.held_out["lexical"].map), res.labels
        assert res.held_out["hybrid"].queries >= 15


def test_shipped_weight_is_the_tuning_optimum(real_store: Path) -> None:
    curve = dict(ev.tune(Explorer(real_store), ev.shipped_labels()))
    best = max(curve.values())
    assert curve[round(HYBRID_WEIGHT, 2)] >= best - 0.005, curve
    assert curve[round(HYBRID_WEIGHT, 2)] > max(curve[0.0], curve[1.0]) + MARGIN  # fusion helps on tuning too


def test_hybrid_mup_neighbourhood(real_store: Path) -> None:
    mup = _mup_titles()
    hits = Explorer(real_store).related(TENSOR_PROGRAMS_V, k=10, why=True)
    assert sum(h.paper.title in mup for h in hits) >= 7
    assert "μp" in hits[0].terms and hits[0].dense is not None and hits[0].dense > 0.5


def _mup_titles() -> set[str]:
    import csv

    with open(ev.labels_dir() / "themes.csv", newline="", encoding="utf-8") as fh:
        return {r["title"] for r in csv.DictReader(fh) if r["theme"] == "mup"}


def test_lexical_search_without_the_model(real_store: Path) -> None:
    ex = Explorer(real_store)
    hits = ex.search("LoRA low-rank adaptation", mode="lexical", k=5, why=True)
    assert not ex.model_loaded and len(hits) == 5
    assert all("lora" in h.terms or "low-rank" in h.terms for h in hits)


def test_cli_eval_with_real_store(real_store: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "paperscope.cli", "eval", "--store", str(real_store)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "themes.csv: 309 queries" in out.stdout and "queries.json: 42 queries" in out.stdout
