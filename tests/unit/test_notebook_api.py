"""Jupyter-facing API with the fake embedder: reprs stay small, HTML is escaped, DataFrames have the
documented columns; the labels read as phrases; `paperscope show`, `--json` with abstracts, `map --open`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from paperscope.cli import main
from paperscope.explorer import Explorer
from paperscope.map.acronyms import Acronyms, long_form
from paperscope.map.cluster import merge_topics
from paperscope.map.labels import Labeller, label_topics
from paperscope.paper import Hit, Hits, Paper
from paperscope.pipeline import build


def html_of(obj: object) -> str:
    """What Jupyter shows for ``obj`` (IPython's display formatter calls its _repr_html_)."""
    from IPython.core.formatters import DisplayFormatter

    return DisplayFormatter().format(obj)[0]["text/html"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import FakeEmbedder

    path = tmp_path_factory.mktemp("nbapi") / "store"
    build(None, path, embedder=FakeEmbedder())
    return path


@pytest.fixture(scope="module")
def tm(store: Path, tmp_path_factory: pytest.TempPathFactory):
    with Explorer(store) as ex:
        return ex.topic_map(tmp_path_factory.mktemp("map"))


def test_paper_and_hits_show_compactly_and_escape_markup() -> None:
    p = Paper("2203.03466", "<b>Tensor</b> Programs V", "word " * 400, authors=("A. One", "B. Two"), date="2022-03-07")
    assert len(repr(p)) < 120 and "word word" not in repr(p)
    html = html_of(p)
    assert "&lt;b&gt;Tensor" in html and "<b>Tensor" not in html and "https://arxiv.org/abs/2203.03466" in html
    hits = Hits([Hit(p, 0.9 - i / 100, i + 1) for i in range(10)], note="filtered")
    assert len(repr(hits)) < 2048 and "filtered" in repr(hits)
    table = html_of(hits)
    assert table.count("<tr>") == 11 and len(table) < 20_000  # abstracts cut short
    df = hits.to_pandas()
    assert (
        list(df.columns[:4]) == ["rank", "score", "id", "title"]
        and len(df) == 10
        and df["abstract"].str.len().min() > 1000
    )
    assert Paper("t-abc", "x", "y").link is None


def test_hit_json_keeps_the_abstract() -> None:
    d = Hit(Paper("a", "T", "the abstract"), 0.5, 1).to_dict()
    assert d["abstract"] == "the abstract" and d["score"] == 0.5


def test_topic_map_frames_and_repr(tm) -> None:
    assert len(repr(tm)) < 2048 and f"{len(tm)} papers" in repr(tm)
    df = tm.to_pandas()
    assert list(df.columns) == [
        "id",
        "title",
        "x",
        "y",
        "theme",
        "theme_label",
        "topic",
        "topic_label",
        "margin",
        "low_confidence",
    ]
    assert len(df) == len(tm) and df["low_confidence"].sum() == tm.low_confidence
    topics = tm.topics_to_pandas()
    assert set(topics["level"]) == {"theme", "topic"} and len(topics) == len(tm.topics)
    assert (topics["examples"].str.count(r" \| ") <= 2).all()
    first = next(t for t in tm.topics if t.level == 1)
    members = tm.members(first)
    assert list(members) == tm.members(1, first.id) and len(members) == first.size
    assert set(members.to_pandas()["topic"]) == {first.id}
    page = html_of(tm)
    assert "<iframe srcdoc=" in page and "<script" not in page.split("srcdoc=")[1][:200]  # the page is escaped
    view = html_of(tm.view(first))
    assert "<iframe" in view and len(view) < len(page)


def test_explorer_repr_and_frame(store: Path) -> None:
    with Explorer(store) as ex:
        assert "432 papers" in repr(ex) and "saved map" in html_of(ex)
        df = ex.to_pandas(abstracts=False)
        assert len(df) == 432 and "abstract" not in df.columns and {"id", "title", "date"} <= set(df.columns)


def test_acronyms_and_labels_read_as_phrases() -> None:
    assert long_form("LoRA", "we use Low-Rank Adaptation") == "Low-Rank Adaptation"
    assert long_form("μP", "the Maximal Update Parametrization") == "Maximal Update Parametrization"
    assert long_form("PDE", "some words here") is None
    texts = [f"Paper {i}. We study Low-Rank Adaptation (LoRA) of models. LoRA, again." for i in range(4)]
    texts += [f"Paper {i}. Score-based diffusion models sample images; diffusion models denoise." for i in range(4)]
    texts += [
        f"Paper {i}. Maximal Update Parametrization (μP) transfers hyperparameters. muP, again." for i in range(4)
    ]
    named = label_topics(texts, np.repeat([0, 1, 2], 4), labeller=Labeller(texts))
    assert named[0][0] == "Low-rank adaptation (LoRA)"
    assert named[1][0] == "Diffusion models"
    assert named[2][0] == "Maximal update parametrization (μP)"
    a = Acronyms()
    a.add(["the Hyperparameter (HP) of it"])
    assert a.expand("hp") == "Hyperparameter"  # one word: found, but too short to be a label's long form


def test_themes_merge_by_ward_on_topics_with_their_sizes() -> None:
    # Two big topics close together and two small ones far apart: plain Ward on centroids would
    # pair the big ones first; counting papers, the small far pair is cheaper to merge.
    centroids = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [12.0, 0.0]])
    sizes = np.array([100, 100, 1, 1])
    parents = merge_topics(centroids, sizes, 3)
    assert parents[2] == parents[3] and parents[0] != parents[1]
    assert len(set(merge_topics(centroids, sizes, 1))) == 1


def test_show_prints_the_whole_paper(store: Path) -> None:
    with Explorer(store) as ex:
        p = next(ex.papers())
    r = CliRunner().invoke(main, ["show", p.id, "--store", str(store)])
    assert r.exit_code == 0 and p.title in r.output and f"id: {p.id}" in r.output
    assert " ".join(p.abstract.split()[:5]) in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["show", p.id, "--store", str(store), "--json"])
    assert json.loads(r.output) == p.to_dict()
    r = CliRunner().invoke(main, ["show", "no such paper at all", "--store", str(store)])
    assert r.exit_code != 0 and "no paper" in r.output


def test_related_json_keeps_abstracts(store: Path) -> None:
    with Explorer(store) as ex:
        p = next(ex.papers())
    r = CliRunner().invoke(main, ["related", p.id, "--store", str(store), "--json", "-k", "3"])
    assert r.exit_code == 0, r.output
    assert all(h["abstract"] for h in json.loads(r.output))


def test_map_open_opens_the_page(store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    r = CliRunner().invoke(main, ["map", "--store", str(store), "--out", str(tmp_path), "--open"])
    assert r.exit_code == 0, r.output
    assert opened == [(tmp_path / "map.html").resolve().as_uri()]


def test_picture_frame_ignores_outliers_and_labels_sit_off_the_points() -> None:
    from paperscope.render.png import draw_map

    rng = np.random.default_rng(0)
    coords = np.vstack([rng.normal(size=(300, 2)), [[60.0, 0.0]] * 3])  # three far outliers
    topic = (coords[:, 0] > 0).astype(int)
    fig = draw_map(
        coords,
        topic,
        topic,
        {0: "Left topic", 1: "Right topic"},
        {0: 0, 1: 1},
        muted=np.arange(len(coords)) % 10 == 0,
        title="303 papers",
        subtitle="test",
    )
    ax = fig.axes[0]
    assert ax.get_xlim()[1] < 10  # the outliers do not stretch the frame
    texts = {t.get_text(): t for t in ax.texts if t.get_text()}  # leader lines are empty annotations
    assert set(texts) == {"Left topic", "Right topic"}
    assert any("outside the frame" in t.get_text() for t in fig.texts)
    renderer = fig.canvas.get_renderer()
    pts = ax.transData.transform(coords[:300])
    for t in texts.values():
        box = t.get_window_extent(renderer)
        inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) & (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1)).sum()
        assert inside <= 3  # placed off the points (a few may remain when no free spot is near)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_a_one_word_theme_takes_the_label_its_largest_topic_completes() -> None:
    from paperscope.map.labels import adopt_child_labels

    themes = {0: ("Diffusion", ["diffusion"]), 1: ("Hyperparameter", ["hyperparameter"])}
    topics = {
        10: ("Diffusion models (DMs)", []),
        11: ("Category", []),
        12: ("Scaling laws", []),
        13: ("Hyperparameter optimization (HPO)", []),
    }
    out = adopt_child_labels(themes, topics, {10: 0, 11: 0, 12: 1, 13: 1}, {10: 27, 11: 12, 12: 22, 13: 13})
    assert out[0][0] == "Diffusion models (DMs)"
    assert out[1][0] == "Hyperparameter"  # its largest topic is "Scaling laws": no completion
