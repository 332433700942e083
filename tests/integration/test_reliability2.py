"""Reliability, round two (issue 12): silent merges, hostile paths, resource bounds, OS errors.

Each test is named after the issue's item it pins down; every one failed on the code before
the fix (see the table in docs/reliability.md). Most use the fake embedder; the two that need
the pinned model's own build path (the optional query-model export) use the real one.
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FakeEmbedder
from hostile import snapshot

from paperscope.cli import main
from paperscope.corpus import ReadReport, bundled_corpus, read_corpus, read_papers
from paperscope.errors import InputError, PaperscopeError, StoreError, StoreLockedError, UnknownPaperError
from paperscope.evaluate import load_labels
from paperscope.explorer import Explorer
from paperscope.map import MapParams
from paperscope.pipeline import build
from paperscope.store import Staging, Store
from paperscope.terminal import dumps, shown

A = "A long enough abstract about neural networks and data, repeated for length. " * 4


def jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def rows(n: int, start: int = 0) -> list[dict[str, object]]:
    words = ["graphs", "diffusion", "scaling", "robots", "speech", "vision", "proteins", "markets"]
    return [
        {"id": f"p{i}", "title": f"Paper {i} on {words[i % len(words)]}", "abstract": f"{words[i % len(words)]} {A}"}
        for i in range(start, start + n)
    ]


def cli(args: list[str], **env: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, args, env=env or None)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is never an answer
    return result.exit_code, result.stdout, result.stderr


def one_error_line(err: str) -> str:
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("paperscope: error:"), err
    assert "Traceback" not in err and lines[0].isprintable(), err
    return lines[0]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = jsonl(tmp_path_factory.mktemp("src") / "s.jsonl", rows(12))
    store = tmp_path_factory.mktemp("store") / "store"
    build([src], store, embedder=FakeEmbedder())
    return store


# ---- 1. ids: distinct titles stay distinct, the same title merges, merges are reported ----------
SYMBOL_TITLES = [
    "A Study of C++ Templates",
    "A Study of C Templates",
    "A Study of C# Templates",
    "Is P = NP? A Survey",
    "Is P ≠ NP? A Survey",
    "\U0001f600",
    "\U0001f622",
    "\u0301\u0302",
]


def test_item1_titles_differing_in_symbols_stay_distinct_papers(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "t.jsonl", [{"title": t, "abstract": f"{i} {A}"} for i, t in enumerate(SYMBOL_TITLES)])
    report = build(src, tmp_path / "s", embedder=FakeEmbedder())
    assert report.added == len(SYMBOL_TITLES) and report.merged == 0
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:
        for t in SYMBOL_TITLES:
            assert ex.paper(t).title == t  # the exact title finds its own paper, not a look-alike
        with pytest.raises(UnknownPaperError):
            ex.paper("!!!")  # normalises to nothing: no paper, not the emoji-titled one


def test_item1_variants_of_one_title_merge_with_a_line_naming_both(tmp_path: Path) -> None:
    src = jsonl(
        tmp_path / "t.jsonl",
        [
            {"title": "A Study of C++ Templates", "abstract": A},
            {"title": "a study of  C ++ templates", "abstract": A},
            {"title": "A Study of C Templates", "abstract": A},
        ],
    )
    report = build(src, tmp_path / "s", embedder=FakeEmbedder())
    assert report.papers == 2 and report.merged == 1
    assert "'a study of C ++ templates'" in report.merges[0] and "'A Study of C++ Templates'" in report.merges[0]
    assert "1 merged" in report.summary()


def test_item1_duplicate_explicit_ids_with_different_text_are_reported(tmp_path: Path) -> None:
    src = jsonl(
        tmp_path / "t.jsonl",
        [
            {"id": "x1", "title": "First paper", "abstract": A},
            {"id": "x1", "title": "Another paper entirely", "abstract": "other " + A},
            {"id": "x2", "title": "Same twice", "abstract": A},
            {"id": "x2", "title": "Same twice", "abstract": A},
        ],
    )
    report = build(src, tmp_path / "s", embedder=FakeEmbedder())
    assert report.merged == 1 and "'Another paper entirely'" in report.merges[0] and "'First paper'" in report.merges[0]


def test_item1_bundled_ids_quoted_in_docs_are_unchanged(tmp_path: Path) -> None:
    ids = {p.id for p in read_corpus(bundled_corpus())}
    assert len(ids) == 432
    assert {"t-6b1401c46806"} <= ids  # quoted in the README and tests


# ---- 2. store paths holding URI characters ----------------------------------------------------
@pytest.mark.parametrize("name", ["run#2", "a?b", "100%", "with space", "q%3Fx#y?z=1&w", "ünï €"])
def test_item2_any_store_path_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(tmp_path)
    src = jsonl(tmp_path / "in.jsonl", rows(6))
    build([src], name, embedder=FakeEmbedder())
    build([jsonl(tmp_path / "more.jsonl", rows(3, 6))], name, embedder=FakeEmbedder())  # ATTACHes the old one
    with Explorer(name, embedder=FakeEmbedder()) as ex:
        assert len(ex) == 9 and len(ex.related("p1", k=3)) == 3
    code, out, err = cli(["related", "p1", "--store", name, "--mode", "lexical"])
    assert code == 0, err
    code, out, _ = cli(["verify", "--store", name])
    assert code == 0 and out.strip().endswith("OK")
    # Nothing outside the store and the inputs (the old code created a stray ./run, ./a, ./100).
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.jsonl", "more.jsonl", name])


def test_item2_store_path_not_valid_utf8(tmp_path: Path) -> None:
    store = Path(os.fsdecode(bytes(tmp_path) + b"/st\xff\xfeore"))
    build([jsonl(tmp_path / "in.jsonl", rows(6))], store, embedder=FakeEmbedder())
    build([jsonl(tmp_path / "more.jsonl", rows(2, 6))], store, embedder=FakeEmbedder())
    with Explorer(store, embedder=FakeEmbedder()) as ex:
        assert len(ex) == 8


# ---- 4. memory per input line is bounded, gzipped or not --------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_item4_a_huge_line_is_skipped_without_being_held(tmp_path: Path, gz: bool) -> None:
    body = b'{"title": "Huge", "abstract": "' + b"a" * 60_000_000 + b'"}\n'
    ok = json.dumps({"title": "Ok", "abstract": A}).encode() + b"\n"
    path = tmp_path / ("in.jsonl.gz" if gz else "in.jsonl")
    path.write_bytes(gzip.compress(body + ok, compresslevel=1) if gz else body + ok)
    del body
    report = ReadReport()
    tracemalloc.start()
    try:
        papers = list(read_papers(path, report))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.title for p in papers] == ["Ok"]
    assert report.skipped == 1 and "line longer than 4,194,304 bytes" in report.skip_examples[0]
    assert peak < 24 * 2**20, f"peak {peak / 2**20:.0f} MiB while reading one 60 MB line"


def test_item4_a_huge_page_line_is_skipped_and_the_page_bounded(tmp_path: Path) -> None:
    path = tmp_path / "page.txt.gz"
    path.write_bytes(gzip.compress(f"Subscribe\nHuge\n{'w ' * 3_000_000}\nOk title\n{A}\n".encode(), compresslevel=1))
    report = ReadReport()
    assert [p.title for p in read_papers(path, report)] == ["Ok title"]
    assert report.skipped == 1 and "line longer than" in report.skip_examples[0]


# ---- 5/6. OS errors: one line, the path and the cause; success only when committed --------------
def test_item5_failure_after_the_commit_is_a_warning_not_a_failed_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(4))], store, embedder=FakeEmbedder())

    def full(self: Staging) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Staging, "clear", full)
    report = build([jsonl(tmp_path / "b.jsonl", rows(3, 4))], store, embedder=FakeEmbedder())
    assert report.generation == "g000002" and (store / "CURRENT").read_text().strip() == "g000002"
    assert len(report.warnings) == 1 and "database or disk is full" in report.warnings[0]
    assert "committed" in report.warnings[0]


_CHILD = textwrap.dedent("""
    import resource, signal, sys
    sys.path[:0] = sys.argv[3:]
    from conftest import FakeEmbedder
    from paperscope.pipeline import build
    from paperscope.errors import PaperscopeError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
    try:
        build([sys.argv[1] + "/big.jsonl"], sys.argv[1] + "/s", embedder=FakeEmbedder())
    except PaperscopeError as e:
        print(e, file=sys.stderr)
        sys.exit(2)
""")


def test_item6_disk_full_is_one_line_and_keeps_the_previous_generation(tmp_path: Path) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(4))], store, embedder=FakeEmbedder())
    jsonl(
        tmp_path / "big.jsonl", [{"id": f"b{i}", "title": f"Big {i}", "abstract": f"{i} {A}" * 20} for i in range(300)]
    )
    gens = sorted(p.name for p in (store / "generations").iterdir())
    before = {k: v for k, v in snapshot(store).items() if k.startswith(("CURRENT", "generations"))}
    tests, src = str(Path(__file__).parents[1]), str(Path(__file__).parents[2] / "src")
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(tmp_path), str(200_000), tests, src],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert child.returncode == 2, child.stderr
    line = child.stderr.strip()
    # SQLite reports EFBIG as a disk I/O error, numpy as the OS's "File too large": either, on one line.
    assert "\n" not in line and ("File too large" in line or "disk I/O error" in line), line
    assert "previous generation is unchanged" in line and "free space" in line
    assert str(store) in line
    assert {k: v for k, v in snapshot(store).items() if k.startswith(("CURRENT", "generations"))} == before
    assert sorted(p.name for p in (store / "generations").iterdir()) == gens  # no half-written generation left


def test_item6_store_under_a_file_is_one_line(tmp_path: Path, small_store: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StoreError, match=f"^{tmp_path}/afile.*Not a directory"):
        build([jsonl(tmp_path / "a.jsonl", rows(2))], tmp_path / "afile" / "sub", embedder=FakeEmbedder())
    code, _, err = cli(["index", str(tmp_path / "a.jsonl"), "--store", str(tmp_path / "afile" / "sub"), "-q"])
    assert code == 2 and "Not a directory" in one_error_line(err) and "afile" in err


def test_item6_home_that_cannot_hold_a_store_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    env = {"HOME": str(tmp_path / "afile" / "home"), "PAPERSCOPE_HOME": "", "XDG_DATA_HOME": ""}
    code, _, err = cli(["index", str(jsonl(tmp_path / "a.jsonl", rows(2))), "-q"], **env)
    assert code == 2 and "afile" in one_error_line(err) and "Not a directory" in err


def test_item6_read_only_store_is_one_line_and_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "s"
    build([jsonl(tmp_path / "a.jsonl", rows(4))], store, embedder=FakeEmbedder())
    before = snapshot(store)
    real_open = open

    def read_only(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        # Root ignores chmod, so the read-only file system is simulated where Python opens files for writing.
        if isinstance(file, (str, Path)) and str(file).startswith(str(store)) and set(mode) & set("wa+x"):
            raise OSError(30, "Read-only file system", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    with pytest.raises(StoreError, match=r"\.writer\.lock: cannot write the store \(Read-only file system\)"):
        build([jsonl(tmp_path / "b.jsonl", rows(2, 4))], store, embedder=FakeEmbedder())
    with Explorer(store, embedder=FakeEmbedder()) as ex, pytest.raises(StoreError, match="Read-only"):
        ex.topic_map(tmp_path / "elsewhere", params=MapParams(), render=True)
    monkeypatch.undo()
    assert snapshot(store) == before
    assert not (tmp_path / "elsewhere").exists() or not any((tmp_path / "elsewhere").iterdir())


# ---- 7 and 13 (real model): an unwritable cache, hostile file names printed safely --------------
@pytest.mark.model
def test_item7_item13_unwritable_cache_and_hostile_file_name(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    name = "evil\x1b]0;pwned\x07\x1b[2J\u202e\udcff.jsonl"  # OSC title, clear screen, bidi, a non-UTF-8 byte
    src = tmp_path / name
    jsonl(src, rows(4) + [{"title": "no abstract"}])
    env = {"PAPERSCOPE_CACHE": str(tmp_path / "afile" / "cache"), "HF_HUB_OFFLINE": "1"}

    def index(*extra: str) -> subprocess.CompletedProcess[bytes]:
        cmd = [sys.executable, "-m", "paperscope.cli", "index", os.fsencode(src), "--store", str(tmp_path / "s")]
        return subprocess.run([*cmd, "-q", *extra], capture_output=True, env={**os.environ, **env}, timeout=600)

    # The default backend runs a derived ONNX model, so it needs the cache: one line naming it, no store.
    proc = index()
    err = proc.stderr.decode()
    assert proc.returncode == 2 and len(err.strip().splitlines()) == 1, err
    assert "afile/cache" in err and "cannot write the model cache" in err and "PAPERSCOPE_CACHE" in err
    assert not (tmp_path / "s" / "CURRENT").exists()
    # torch needs no cache: the build succeeds and only the query-model export is skipped.
    proc = index("--backend", "torch")
    out, err = proc.stdout.decode(), proc.stderr.decode()
    assert proc.returncode == 0, err
    assert "generation g000001: 4 papers" in out
    assert "\x1b" not in err + out and "\u202e" not in err and "\x07" not in err
    assert "skipped " in err and "\\x1b]0;pwned" in err and "\\u202e" in err
    assert "paperscope: warning: skipped the ONNX query-model export" in err
    assert all(line.isprintable() for line in (err + out).splitlines())


# ---- 8. categories are cleaned; JSON output always encodes -------------------------------------
def test_item8_categories_are_cleaned_and_json_always_encodes(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl"
    src.write_text(
        "".join(
            json.dumps(
                {"id": f"c{i}", "title": f"Cat {i}", "abstract": A, "categories": "cs.LG\ud800 \x1b[2Jstat.ML\x07 \x00"}
            )
            + "\n"
            for i in range(4)
        )
    )
    build(src, tmp_path / "s", embedder=FakeEmbedder())
    with Explorer(tmp_path / "s", embedder=FakeEmbedder()) as ex:
        assert ex.paper("c0").categories == ("cs.LG", "[2Jstat.ML")
    code, out, err = cli(["related", "c0", "--store", str(tmp_path / "s"), "--json", "--mode", "lexical"])
    assert code == 0, err and json.loads(out)
    assert json.loads(dumps({"t": "x\ud800y"})) == {"t": "x\ud800y"}  # a lone surrogate from an old store


# ---- 9. map beside index: refuse before work; outputs atomic, with the state -------------------
def test_item9_map_refit_while_locked_refuses_before_any_work(tmp_path: Path, small_store: Path) -> None:
    out = tmp_path / "out"
    with Store(small_store).writer():
        code, _, err = cli(["map", "--store", str(small_store), "--refit", "--out", str(out)])
    assert code == 2 and "another paperscope index is writing" in one_error_line(err)
    assert not out.exists()
    with Store(small_store).writer(), Explorer(small_store) as ex, pytest.raises(StoreLockedError, match="waited 0.3s"):
        ex.topic_map(out, refit=True, lock_wait=0.3)


def test_item9_map_outputs_are_replaced_whole_or_not_at_all(
    tmp_path: Path, small_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    with Explorer(small_store) as ex:
        ex.topic_map(out, params=MapParams(seed=1))
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    state = (small_store / "map" / "CURRENT").read_text()
    assert set(files) == {"map.png", "map.html", "topics.json"}

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", str(out / "topics.json"))

    monkeypatch.setattr("paperscope.render.outputs.write_topics_json", broken)
    with Explorer(small_store) as ex, pytest.raises(PaperscopeError, match="No space left on device"):
        ex.topic_map(out, params=MapParams(seed=2))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files  # png and html not half-replaced
    assert (small_store / "map" / "CURRENT").read_text() == state  # the state did not move on alone


# ---- 10. the store is never an input -----------------------------------------------------------
@pytest.mark.parametrize("store_name", [".paperscope", "store"])
def test_item10_store_inside_the_input_directory_is_never_read(tmp_path: Path, store_name: str) -> None:
    proj = tmp_path / "proj"
    proj.mkdir()
    jsonl(proj / "a.jsonl", rows(4))
    build(proj, proj / store_name, embedder=FakeEmbedder())
    jsonl(proj / "b.jsonl", rows(2, 4))
    report = build(proj, proj / store_name, embedder=FakeEmbedder())
    assert report.papers == 6 and report.rows_skipped == 0
    with pytest.raises(InputError, match="inside the store"):
        build(proj / store_name / "generations", proj / store_name, embedder=FakeEmbedder())


# ---- 11. one path is one path -------------------------------------------------------------------
def test_item11_a_single_str_or_path_is_one_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "n1.jsonl", rows(3))
    assert build("n1.jsonl", "s1", embedder=FakeEmbedder()).papers == 3
    assert build("./n1.jsonl", "s2", embedder=FakeEmbedder()).papers == 3
    assert build(Path("n1.jsonl"), "s3", embedder=FakeEmbedder()).papers == 3


# ---- 12. maps of degenerate stores ----------------------------------------------------------------
@pytest.mark.parametrize("seed", [-1, 99_999_999_999, 2**32, True])
def test_item12_seed_out_of_range_is_refused_before_work(small_store: Path, seed: int) -> None:
    with pytest.raises(ValueError, match="seed must be an integer in"):
        MapParams(seed=seed)
    if not isinstance(seed, bool):
        code, _, err = cli(["map", "--store", str(small_store), "--seed", str(seed)])
        assert code == 2 and "--seed" in one_error_line(err)


@pytest.mark.parametrize("n", [1, 2])
def test_item12_too_few_papers_is_one_clear_line(tmp_path: Path, n: int) -> None:
    build(jsonl(tmp_path / "a.jsonl", rows(n)), tmp_path / "s", embedder=FakeEmbedder())
    code, _, err = cli(["map", "--store", str(tmp_path / "s"), "--out", str(tmp_path / "o")])
    assert code == 2 and "a map needs at least 4 papers" in one_error_line(err)


def test_item12_unrelated_and_identical_papers_give_valid_maps(tmp_path: Path) -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    disjoint = [{"id": f"d{i}", "title": w, "abstract": f"{w}{w} " * 60} for i, w in enumerate(words)]
    same = [{"id": f"s{i}", "title": "Same", "abstract": A} for i in range(6)]
    for name, data in (("disjoint", disjoint), ("same", same)):
        build(jsonl(tmp_path / f"{name}.jsonl", data), tmp_path / name, embedder=FakeEmbedder())
        with Explorer(tmp_path / name) as ex:
            tm = ex.topic_map(render=False)
        assert len(tm) == 6 and np.isfinite(tm.coords).all()
        if name == "same":
            assert tm.stats["topics"]["topic"] == 1  # six identical papers are one topic, not a split of ties


# ---- 13. corpus text printed by the CLI is inert and on one line ---------------------------------
def test_item13_titles_and_ids_are_escaped_in_tables(tmp_path: Path) -> None:
    evil = [{"id": f"e\x1b[2J{i}", "title": f"\u202eevil\x1b]0;title\x07 {i}", "abstract": A} for i in range(4)]
    build(jsonl(tmp_path / "e.jsonl", evil), tmp_path / "s", embedder=FakeEmbedder())
    # Control characters are dropped on reading (ids become "e[2J0"); bidi overrides are text and are kept.
    for args in (["related", "e[2J0"], ["search", "evil \x1b[31m\u202e"], ["recommend", "e[2J0"]):
        code, out, err = cli([*args, "--store", str(tmp_path / "s"), "--mode", "lexical", "--why"])
        assert code == 0, err
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
        assert all(line.isprintable() for line in out.splitlines())
        assert "\\u202eevil" in out
    assert shown("a\udcffb\n") == "a\\udcffb\\n"


# ---- 15. the smaller items ------------------------------------------------------------------------
def test_item15_labels_with_bom_and_spaced_header(tmp_path: Path) -> None:
    path = tmp_path / "themes.csv"
    path.write_bytes("\ufefftitle, theme\nPaper one,x\nPaper two,x\n".encode())
    labels = load_labels(path)
    assert {q.query for q in labels.queries} == {"Paper one", "Paper two"}
    (tmp_path / "q.json").write_bytes(b"\xef\xbb\xbf" + json.dumps([{"query": "a", "relevant": ["b"]}]).encode())
    assert load_labels(tmp_path / "q.json").queries[0].query == "a"


def test_item15_jsonl_with_bom_reads(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"title": "T", "abstract": A}).encode() + b"\n")
    assert [p.title for p in read_corpus(path)] == ["T"]


def test_item15_map_out_inside_generations_is_refused(small_store: Path) -> None:
    gens = sorted(p.name for p in (small_store / "generations").iterdir())
    code, _, err = cli(["map", "--store", str(small_store), "--out", str(small_store / "generations" / "g000009")])
    assert code == 2 and "generations" in one_error_line(err)
    assert sorted(p.name for p in (small_store / "generations").iterdir()) == gens


def test_item15_model_mismatch_names_the_lock_file_read(tmp_path: Path) -> None:
    from paperscope.embed.lock import packaged_lock_path

    build(jsonl(tmp_path / "a.jsonl", rows(3)), tmp_path / "s", embedder=FakeEmbedder())
    with pytest.raises(StoreError) as err:
        build(tmp_path / "a.jsonl", tmp_path / "s", lock=packaged_lock_path())
    msg = str(err.value)
    assert f"read from {packaged_lock_path()}" in msg and "to keep FakeEmbedder, pass --lock" in msg


def test_item15_search_echo_is_truncated_and_recommend_header_counts_what_was_used(small_store: Path) -> None:
    code, out, _ = cli(["search", "x" * 100_000, "--store", str(small_store), "--mode", "lexical"])
    assert code == 0 and len(out.splitlines()[0]) < 300
    code, out, _ = cli(["recommend", "p1", "--not", "p1", "--store", str(small_store), "--mode", "lexical"])
    assert code == 0 and "unlike" not in out.splitlines()[0] and "--not ignored for 1 paper" in out.splitlines()[0]


def test_item_numbers_counts_on_pages_are_range_checked(tmp_path: Path) -> None:
    """Class of 'every number is range-checked': a page's author and upvote counts reached SQLite unchecked."""
    page = tmp_path / "p.txt"
    page.write_text(
        f"Subscribe\nBig counts\n{A}\n• {'9' * 30} authors\nJun 13, 2022 {'7' * 40}\n"
        f"Fine counts\n{A}\n• 6 authors\nJun 13, 2022 4\n",
        encoding="utf-8",
    )
    papers = {p.title: p for p in read_corpus(page)}
    assert (papers["Big counts"].authors_count, papers["Big counts"].upvotes) == (None, None)
    assert (papers["Fine counts"].authors_count, papers["Fine counts"].upvotes) == (6, 4)
    assert build(page, tmp_path / "s", embedder=FakeEmbedder()).papers == 2


def test_item_values_a_float_id_is_skipped_not_silently_changed(tmp_path: Path) -> None:
    """Class of 'no field changes value': JSON 1706.03760 parses as 1706.0376, a different arXiv id."""
    path = tmp_path / "f.jsonl"
    path.write_text(
        f'{{"id": 1706.03760, "title": "Attention", "abstract": "{A}"}}\n'
        f'{{"id": 42, "title": "Int", "abstract": "{A}"}}\n'
    )
    report = ReadReport()
    assert [p.id for p in read_papers(path, report)] == ["42"]
    assert report.skipped == 1 and "write ids as strings" in report.skip_examples[0]
