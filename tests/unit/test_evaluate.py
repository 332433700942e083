"""Label files, metrics, the fixed split and the eval/recommend CLI, with the fake embedder."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder

from paperscope import evaluate as ev
from paperscope.cli import main
from paperscope.errors import InputError
from paperscope.explorer import Explorer
from paperscope.pipeline import build


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "s"
    build(None, path, embedder=FakeEmbedder())
    return path


@pytest.fixture(scope="module")
def ex(store: Path) -> Explorer:
    return Explorer(store, embedder=FakeEmbedder())


def test_metrics_by_hand() -> None:
    p, r, ndcg, ap = ev.query_metrics([5, 1, 7, 2], {1, 2}, k=2)
    assert p == 0.5 and r == 0.5
    assert ndcg == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert ap == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert ev.query_metrics([1, 2, 3], {1, 2}, k=2) == (1.0, 1.0, 1.0, 1.0)


def test_split_is_fixed_and_about_half() -> None:
    titles = [q.query for q in ev.shipped_labels()[0].queries]
    held = [t for t in titles if ev.is_held_out(t)]
    assert 0.35 < len(held) / len(titles) < 0.65
    assert ev.is_held_out("  " + held[0].upper()) and held == [t for t in titles if ev.is_held_out(t)]


def test_shipped_labels_resolve_and_exclude_other(ex: Explorer) -> None:
    themes, queries = ev.shipped_labels()
    assert len(queries.queries) >= 20 and all(q.relevant for q in queries.queries)
    others = {t for t, th in _rows(ev.labels_dir() / "themes.csv") if th == "other"}
    assert others and not others & {q.query for q in themes.queries}
    assert len(ev.resolve(ex, themes)) == len(themes.queries)  # every label names a bundled paper
    assert len(ev.resolve(ex, queries)) == len(queries.queries)


def _rows(path: Path) -> list[tuple[str, str]]:
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        return [(r["title"], r["theme"]) for r in csv.DictReader(fh)]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("t.csv", "name,label\na,b\n", "t.csv: line 1: expected a header with columns title,theme"),
        ("t.csv", "title,theme\nA paper,\n", "t.csv: line 2: needs both a title and a theme"),
        ("t.csv", "title,theme\nA paper,x\nA  PAPER,y\n", "t.csv: line 3: 'A  PAPER' is labelled both 'x' and 'y'"),
        ("q.json", '[{"query": "a", "relevant": ["b"]},\n{"query": "c"', "q.json: line 2: malformed JSON"),
        ("q.json", '[{"query": "a", "relevant": []}]', "q.json: entry 0: expected"),
        ("q.json", '{"query": "a"}', "q.json: expected a non-empty JSON list"),
        ("q.txt", "whatever", "q.txt: unknown label format"),
    ],
)
def test_malformed_labels_name_file_and_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace("[", r"\[")):
        ev.load_labels(tmp_path / name)


def test_labels_naming_unknown_papers_are_refused(ex: Explorer, tmp_path: Path) -> None:
    (tmp_path / "q.json").write_text(f'[{{"query": "{TENSOR_PROGRAMS_V}", "relevant": ["No Such Paper"]}}]')
    with pytest.raises(InputError, match="1 labelled titles are not in the store.*No Such Paper"):
        ex.evaluate(tmp_path / "q.json")


def test_evaluate_reports_every_mode_on_user_labels(ex: Explorer, tmp_path: Path) -> None:
    mup = [t for t, th in _rows(ev.labels_dir() / "themes.csv") if th == "mup"]
    (tmp_path / "themes.csv").write_text("title,theme\n" + "".join(f'"{t}",mup\n' for t in mup), encoding="utf-8")
    (res,) = ex.evaluate(tmp_path / "themes.csv")
    assert set(res.all) == {"dense", "lexical", "hybrid"}
    assert all(m.queries == len(mup) for m in res.all.values())
    assert all(0 <= m.ndcg <= 1 and 0 <= m.map <= 1 for m in res.all.values())
    # Only mup papers are relevant, so precision@10 is the share of mup papers among the top 10.
    hits = ex.related(mup[0], k=10, mode="lexical")
    first = ev.query_metrics([ex.row(h.paper.id) for h in hits], {ex.row(t) for t in mup[1:]})
    assert first[0] == pytest.approx(sum(h.paper.title in mup for h in hits) / 10)


# ---- CLI ---------------------------------------------------------------------------------------
def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_eval_prints_all_modes(store: Path) -> None:
    # The fake store's fingerprint differs from the lock's, but eval never embeds: it uses stored vectors.
    code, out, err = run("eval", "--store", str(store))
    assert code == 0, err
    rows = [line.split("|")[0].strip() for line in out.splitlines() if "|" in line]
    assert rows.count("dense") == rows.count("lexical") == rows.count("hybrid") == 2 and "held-out" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "nope.csv"], "nope.csv: no such label file"),
        (["related", TENSOR_PROGRAMS_V, "--date-from", "notadate"], "'notadate' is not a date"),
        (["related", TENSOR_PROGRAMS_V, "--mode", "bogus"], "'bogus' is not one of"),
        (["related", TENSOR_PROGRAMS_V, "--where", "oops"], "--where: expected KEY=VALUE, got 'oops'"),
        (["related", TENSOR_PROGRAMS_V, "--where", "colour=red"], "where: unknown field 'colour'"),
        (
            ["recommend", TENSOR_PROGRAMS_V, "--not", "No Such Paper Title"],
            "no paper with id or title 'No Such Paper Title'",
        ),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(store: Path, args: list[str], message: str) -> None:
    code, out, err = run(*args, "--store", str(store))
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err


def test_cli_recommend_and_filtered_empty(store: Path) -> None:
    code, out, err = run("recommend", TENSOR_PROGRAMS_V, "--store", str(store), "-k", "3", "--mode", "lexical", "--why")
    assert code == 0, err
    assert out.count("why: dense similarity") == 3
    code, out, err = run(
        "related", TENSOR_PROGRAMS_V, "--store", str(store), "--mode", "lexical", "--date-from", "2099"
    )
    assert code == 0 and "no results: no paper matches the filter (date >= 2099)" in out
