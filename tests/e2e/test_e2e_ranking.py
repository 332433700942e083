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
from paperscope.rank import DEFAULT_MODE, EXPANSION, HYBRID_WEIGHT, MODES

pytestmark = pytest.mark.model
# Held-out figures of the second ranking round (docs/ranking.md, `python benchmarks/ranking_baselines.py`):
# themes nDCG@10 hybrid 0.622, dense 0.543, lexical 0.555; queries MAP hybrid 0.627, dense 0.500,
# lexical 0.609. A smaller margin than this is a regression.
MARGIN = 0.01


@pytest.fixture(scope="module")
def results(real_store: Path) -> list[ev.EvalResult]:
    return Explorer(real_store).evaluate()


def test_default_mode_beats_dense_and_lexical_on_held_out_queries(results: list[ev.EvalResult]) -> None:
    assert DEFAULT_MODE == "hybrid"
    themes, queries = results
    held = {m: themes.held_out[m] for m in MODES}
    assert held["hybrid"].ndcg > max(held["dense"].ndcg, held["lexical"].ndcg) + MARGIN, held
    assert held["hybrid"].map > max(held["dense"].map, held["lexical"].map) + MARGIN, held
    held = {m: queries.held_out[m] for m in MODES}
    assert held["hybrid"].map > max(held["dense"].map, held["lexical"].map) + MARGIN, held
    # Measured miss, kept visible: on the 18 held-out hand-picked queries lexical alone has the best
    # nDCG@10 (0.683 vs hybrid 0.673; bootstrap intervals about +-0.15). Hybrid must stay close.
    assert held["hybrid"].ndcg > held["lexical"].ndcg - 0.02 and held["hybrid"].ndcg > held["dense"].ndcg + MARGIN
    assert all(r.held_out["hybrid"].queries >= 15 for r in results)


def test_shipped_settings_are_the_tuning_optimum(real_store: Path) -> None:
    ex = Explorer(real_store)
    curve = dict(ev.tune(ex, ev.shipped_labels(), [0.0, 0.5, 0.6, 0.7, 0.8, 1.0]))
    assert curve[HYBRID_WEIGHT] >= max(curve.values()) - 0.005, curve
    assert curve[HYBRID_WEIGHT] > max(curve[0.0], curve[1.0]) + MARGIN  # fusion helps on tuning too
    betas = dict(ev.tune_expansion(ex, ev.shipped_labels(), HYBRID_WEIGHT, (0.0, 0.5, 1.0)))
    assert betas[EXPANSION] >= max(betas.values()) - 0.005 and betas[EXPANSION] > betas[0.0], betas


def test_default_against_the_baselines(real_store: Path) -> None:
    from paperscope import baselines as bl

    rows = bl.compare(Explorer(real_store), ev.shipped_labels())
    for labels in ("themes.csv", "queries.json"):
        ours = next(r for r in rows if r.labels == labels and r.name == "paperscope hybrid (default)")
        others = [r for r in rows if r.labels == labels and not r.name.startswith("paperscope")]
        assert len(others) == 4 and ours.queries >= 15
        assert ours.map.mean > max(r.map.mean for r in others), labels
        if labels == "themes.csv":
            assert ours.ndcg.mean > max(r.ndcg.mean for r in others), labels
        else:  # measured miss: 0.673 vs 0.678 (TF-IDF + dense z-fusion) on 18 queries; stay within 0.01
            assert ours.ndcg.mean > max(r.ndcg.mean for r in others) - 0.01, labels
        assert all(r.ndcg.low <= r.ndcg.mean <= r.ndcg.high for r in rows)


def test_off_topic_query_scores_below_an_on_topic_tenth_hit(real_store: Path) -> None:
    ex = Explorer(real_store)
    off = ex.search("cooking recipes for pasta", k=10)
    on = ex.search("learning-rate transfer across model widths", k=10)
    assert len(on) == 10 and off[0].score < on[9].score, ([h.score for h in off], [h.score for h in on])
    assert ex.search("cooking recipes for pasta", k=10, min_score=on[9].score).note.startswith("10 of the top 10")


def test_shown_scores_match_how_often_hits_are_relevant(real_store: Path) -> None:
    # Held-out: expected calibration error 0.119 (docs/ranking.md). Before the feedback papers were
    # scored leave-one-out it was 0.242: hits 1-3 showed 0.885 for a relevant share of 0.659.
    r = ev.reliability(Explorer(real_store), ev.shipped_labels())
    assert r.queries >= 150 and r.ece < 0.15, r
    (_, _, top_score, top_share), (_, _, rest_score, rest_share) = r.by_rank
    assert abs(top_score - top_share) < 0.15 and abs(rest_score - rest_share) < 0.2, r.by_rank


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
    out = subprocess.run(
        [sys.executable, "-m", "paperscope.cli", "eval", "--store", str(real_store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "themes.csv: 309 queries" in out.stdout and "queries.json: 42 queries" in out.stdout
