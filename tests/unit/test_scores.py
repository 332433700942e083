"""Scores that mean something: calibrated, comparable across queries, independent of the other candidates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder

from paperscope.cli import main
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.rank import (
    CALIBRATION,
    EXPANSION,
    HYBRID_WEIGHT,
    MODES,
    Ranker,
    Reference,
    calibrated,
    check_min_score,
    dense_reference,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scores") / "s"
    build(None, path, embedder=FakeEmbedder())
    return path


@pytest.fixture(scope="module")
def ex(store: Path) -> Explorer:
    return Explorer(store, embedder=FakeEmbedder())


def test_calibrated_scores_are_probabilities_increasing_with_z() -> None:
    z = np.linspace(-5, 20, 101)
    for mode in MODES:
        p = calibrated(mode, z)
        assert np.all((p > 0) & (p < 1)) and np.all(np.diff(p) > 0)
        assert CALIBRATION[mode][1] > 0


@pytest.mark.parametrize("mode", MODES)
def test_a_lone_candidate_keeps_its_score(ex: Explorer, mode: str) -> None:
    full = ex.related(TENSOR_PROGRAMS_V, k=10, mode=mode)
    for h in (full[0], full[-1]):
        alone = ex.related(TENSOR_PROGRAMS_V, k=10, mode=mode, where={"id": h.paper.id})
        assert [x.paper.id for x in alone] == [h.paper.id]
        # the same score as among all candidates: never forced to the worst (0) or the best (1)
        assert alone[0].score == pytest.approx(h.score, abs=1e-6) and 0.0 < alone[0].score < 1.0
        assert alone[0].dense == pytest.approx(h.dense) and alone[0].lexical == pytest.approx(h.lexical)


def test_two_paper_store_does_not_show_the_match_as_worst(tmp_path: Path, fake: FakeEmbedder) -> None:
    (tmp_path / "two.jsonl").write_text(
        '{"id": "a", "title": "LoRA adapters for diffusion", "abstract": "low-rank adapters for diffusion models"}\n'
        '{"id": "b", "title": "LoRA adapters for language", "abstract": "low-rank adapters for language models"}\n'
    )
    build([tmp_path / "two.jsonl"], tmp_path / "s", embedder=fake)
    small = Explorer(tmp_path / "s", embedder=fake)
    for mode in MODES:
        hits = small.related("a", k=10, mode=mode)
        assert [h.paper.id for h in hits] == ["b"] and hits[0].score > 0.05, (mode, hits[0].score)


def test_scores_do_not_depend_on_k_or_on_other_candidates(ex: Explorer) -> None:
    ten = ex.related(TENSOR_PROGRAMS_V, k=10)
    fifty = ex.related(TENSOR_PROGRAMS_V, k=50)
    assert [(h.paper.id, h.score) for h in ten] == [(h.paper.id, h.score) for h in fifty[:10]]
    assert ten[0].score < 1.0  # the best hit is not 1.0 by construction
    assert [h.score for h in fifty] == sorted((h.score for h in fifty), reverse=True)


def test_no_score_cliff_after_the_feedback_papers(ex: Explorer) -> None:
    # Query expansion adds the first three hits to the query. Scored against an expansion holding
    # themselves, those three scored far above the fourth (mean gap 0.56 between hits 3 and 4, 0.02
    # between hits 1 and 2, on this store); each is now scored against the other two only.
    scores = np.array([[h.score for h in ex.related(p.id, k=10)] for p in list(ex.papers())[::4]])
    gaps = (scores[:, :-1] - scores[:, 1:]).mean(axis=0)
    assert gaps[2] <= gaps[0], np.round(gaps, 3)
    assert gaps[2] < 0.1, np.round(gaps, 3)


def test_a_feedback_paper_is_scored_against_the_other_feedback_papers(ex: Explorer) -> None:
    q = ex.related_query(ex.row(TENSOR_PROGRAMS_V))
    ranker, ref = ex.ranker, ex.ranker.reference()
    first = [r.row for r in ranker.rank(q, 3, "hybrid", expand=0.0)]
    hits = {r.row: r for r in ranker.rank(q, 10, "hybrid")}
    assert set(first) <= set(hits)
    for paper in first:
        others = ranker.expanded(q, np.array([r for r in first if r != paper]), EXPANSION)
        dense = float(np.asarray(ranker.vectors[paper]) @ others.dense)
        lexical = float(ranker.lexical_rows(others, np.array([paper]))[0])
        z = HYBRID_WEIGHT * ref.z_dense(dense) + (1 - HYBRID_WEIGHT) * ref.z_lexical(lexical)
        assert hits[paper].z == pytest.approx(float(z)), paper
        assert hits[paper].score == pytest.approx(float(calibrated("hybrid", z)))


def test_a_near_copy_of_a_feedback_paper_does_not_lift_its_score(
    ex: Explorer, tmp_path: Path, fake: FakeEmbedder
) -> None:
    # The same paper under a second id: scored against an expansion holding its copy, each copy
    # showed 0.998 on the bundled corpus (DeepMesh / MeshSDF). Its score must stay about what it
    # is without the copy in the store.
    rows = [{"id": p.id, "title": p.title, "abstract": p.abstract} for p in ex.papers()]
    first = ex.related(TENSOR_PROGRAMS_V, k=10)[0].paper
    copy = {"id": "copy-of-the-first-hit", "title": first.title, "abstract": first.abstract}
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, copy]))
    build([tmp_path / "a.jsonl"], tmp_path / "a", embedder=fake)
    build([tmp_path / "b.jsonl"], tmp_path / "b", embedder=fake)
    alone = {h.paper.id: h.score for h in Explorer(tmp_path / "a", embedder=fake).related(TENSOR_PROGRAMS_V, k=10)}
    doubled = {h.paper.id: h.score for h in Explorer(tmp_path / "b", embedder=fake).related(TENSOR_PROGRAMS_V, k=10)}
    assert {first.id, copy["id"]} <= set(doubled)
    assert doubled[first.id] == pytest.approx(doubled[copy["id"]])
    assert abs(doubled[first.id] - alone[first.id]) < 0.1, (alone[first.id], doubled[first.id])


def test_min_score_drops_weak_matches_and_says_how_many(ex: Explorer) -> None:
    hits = ex.related(TENSOR_PROGRAMS_V, k=20)
    cut = (hits[4].score + hits[5].score) / 2
    assert hits[4].score > hits[5].score  # a real cut between the 5th and the 6th hit
    kept = ex.related(TENSOR_PROGRAMS_V, k=20, min_score=cut)
    assert [h.paper.id for h in kept] == [h.paper.id for h in hits[:5]]
    assert kept.note == f"15 of the top 20 scored below min_score {cut:g}"
    assert ex.search("maximal update parametrization", k=5, mode="lexical", min_score=1.0).note.startswith("5 of")
    for bad in (-0.1, 1.5, "high", True):
        with pytest.raises(ValueError, match="min_score"):
            check_min_score(bad)  # type: ignore[arg-type]


def test_lexical_mode_scores_on_the_same_scale(ex: Explorer) -> None:
    hits = ex.search("LoRA low-rank adaptation", mode="lexical", k=10)
    assert hits and all(0.0 < h.score < 1.0 for h in hits)
    assert all(h.dense is None and 0.0 < h.lexical <= 1.0 for h in hits)  # cosine, not raw BM25


def test_recommend_uses_the_same_fusion(ex: Explorer) -> None:
    one = ex.recommend([TENSOR_PROGRAMS_V], k=5)
    rel = ex.related(TENSOR_PROGRAMS_V, k=5)
    assert [(h.paper.id, round(h.score, 9)) for h in one] == [(h.paper.id, round(h.score, 9)) for h in rel]


def test_reference_is_the_corpus_distribution(ex: Explorer) -> None:
    ref = ex.ranker.reference()
    assert isinstance(ref, Reference) and ref.dense_std > 0 and ref.lexical_std > 0 and ref.text_std > 0
    assert float(ref.z_dense(np.array([ref.dense_mean]))[0]) == pytest.approx(0.0)


def test_the_dense_reference_is_recorded_when_the_generation_is_written(ex: Explorer) -> None:
    # Read from the manifest, not computed at the first query (which reads a sample of vectors:
    # 0.16-0.19 s of a cold first query at 1M papers); the same figures either way.
    recorded = ex.generation.manifest["reference"]["dense"]
    assert recorded == list(dense_reference(ex.index.vectors))
    ref = ex.ranker.reference()
    assert (ref.dense_mean, ref.dense_std) == tuple(recorded)
    computed = Ranker(ex.index.vectors, ex.index.faiss, ex.lexical).reference()
    assert (computed.dense_mean, computed.dense_std) == (ref.dense_mean, ref.dense_std)


def test_cli_shows_both_sides_and_min_score(store: Path) -> None:
    r = CliRunner().invoke(main, ["related", TENSOR_PROGRAMS_V, "--store", str(store), "--json", "-k", "3"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert all({"score", "dense", "lexical"} <= set(row) and "why" not in row for row in rows)
    r = CliRunner().invoke(
        main, ["search", "parametrization", "--mode", "lexical", "--store", str(store), "--min-score", "1"]
    )
    assert r.exit_code == 0 and "scored below min_score 1" in r.output
    r = CliRunner().invoke(main, ["search", "parametrization", "--store", str(store), "--min-score", "2"])
    assert r.exit_code == 2 and "--min-score" in r.output


def test_one_long_token_keeps_the_lexical_index_small(tmp_path: Path, fake: FakeEmbedder) -> None:
    papers = [
        {"id": f"p{i}", "title": f"Genome paper {i}", "abstract": f"Sequencing reads of genome {i}. " * 5}
        for i in range(30)
    ]
    papers[0]["abstract"] = "A sequence: " + "ACGT" * 12500
    papers[1]["abstract"] = "A long token: " + "x" * 99_960
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(p) + "\n" for p in papers))
    build([tmp_path / "p.jsonl"], tmp_path / "s", embedder=fake)
    npz = next((tmp_path / "s").rglob("lexical.npz"))
    assert npz.stat().st_size < 200_000  # was 256 MB for the ACGT abstract alone (fixed-width vocabulary)
    code = (
        # VmHWM, not ru_maxrss: ru_maxrss keeps the high-water mark of the forked parent (this test process,
        # which may hold torch) across exec, VmHWM is this program's own peak.
        "import re, sys; from paperscope.explorer import Explorer; "
        f"ex = Explorer({str(tmp_path / 's')!r}); h = ex.related('p2', k=5, mode='lexical'); "
        "assert len(h) == 5; "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) < 400_000  # KiB; a 99,960-char token made a 2.9 GB vocabulary before
