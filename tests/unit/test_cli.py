"""CLI habits: -h, an example at the end of every help, --jsonl, $PAPERSCOPE_HOME, bugs keep tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import TENSOR_PROGRAMS_V, FakeEmbedder

from paperscope import cli
from paperscope.pipeline import build


def _commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for name, cmd in cli.main.commands.items():
        out.append((name,))
        if isinstance(cmd, click.Group):
            out += [(name, sub) for sub in cmd.commands]
    return out


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "paperscope")
def test_every_help_accepts_dash_h_and_ends_with_an_example(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli.main, [*path, "-h"])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1].strip()
    assert last.startswith("Example: paperscope"), last


def test_store_help_shows_paperscope_home() -> None:
    result = CliRunner().invoke(cli.main, ["related", "-h"])
    assert "PAPERSCOPE_HOME" in result.output


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "s"
    build(None, path, embedder=FakeEmbedder())
    return path


def test_jsonl_prints_one_object_per_line_like_json(store: Path) -> None:
    args = ["search", "hyperparameter transfer", "--mode", "lexical", "-k", "4", "--store", str(store)]
    lines = CliRunner().invoke(cli.main, [*args, "--jsonl"]).output.strip().splitlines()
    doc = json.loads(CliRunner().invoke(cli.main, [*args, "--json"]).output)
    assert len(lines) == 4 and [json.loads(line) for line in lines] == doc


def test_store_defaults_to_paperscope_home(store: Path) -> None:
    result = CliRunner(env={"PAPERSCOPE_HOME": str(store)}).invoke(
        cli.main, ["related", TENSOR_PROGRAMS_V, "--mode", "lexical", "-k", "2", "--jsonl"]
    )
    assert result.exit_code == 0, result.output
    assert len(result.output.strip().splitlines()) == 2


def test_a_bug_keeps_its_traceback_but_a_user_error_is_one_line(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from paperscope.explorer import Explorer

    bad = CliRunner().invoke(cli.main, ["related", "no such paper at all", "--store", str(store)])
    assert bad.exit_code == 2 and "no paper with id or title" in bad.output

    def broken(self: Explorer, *a: object, **k: object) -> None:
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(Explorer, "related", broken)
    result = CliRunner().invoke(cli.main, ["related", TENSOR_PROGRAMS_V, "--store", str(store)])
    assert isinstance(result.exception, ValueError) and "a bug" in str(result.exception)
    assert "paperscope: error" not in result.output


def test_cli_offers_the_librarys_choices() -> None:
    from paperscope import choices
    from paperscope.embed.registry import BACKENDS

    params = {p.name: p for p in cli.main.commands["index"].params}
    assert tuple(params["backend"].type.choices) == BACKENDS
    assert tuple(params["engine"].type.choices) == choices.ENGINES
    assert tuple(params["index_type"].type.choices) == ("auto", *choices.INDEX_TYPES)
    assert params["chunk_size"].default == choices.CHUNK_SIZE
