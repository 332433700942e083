"""`paperscope serve`: a real uvicorn server and a real HTTP client (httpx) on 127.0.0.1.

Answers are compared with the Explorer's own for the same store, so the API is checked to be the
library's answer in the CLI's --json shape, not just well-formed JSON.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paperscope.corpus import bundled_corpus
from paperscope.errors import StoreError, UnknownPaperError
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.serve import CSP
from tests.conftest import TENSOR_PROGRAMS_V, FakeEmbedder
from tests.served import running

TESTS = Path(__file__).resolve().parents[1]
SRC = TESTS.parent / "src"
HTTP = httpx.Client(timeout=120)  # generous: the machine running the suite may be busy
HOSTILE_TITLE = "<img src=x onerror=alert(1)> Robust attention for hostile inputs"


def _hostile_input(tmp: Path) -> Path:
    path = tmp / "hostile.jsonl"
    path.write_text(
        json.dumps(
            {
                "id": "hostile-1",
                "title": HOSTILE_TITLE,
                "date": "2024-05-01",
                "abstract": "</script><script>alert(2)</script> attention models that stay "
                "robust when the inputs are hostile, with experiments.",
            }
        )
        + "\n"
    )
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled corpus plus one hostile paper, embedded with the fake embedder."""
    tmp = tmp_path_factory.mktemp("serve")
    path = tmp / "store"
    build([bundled_corpus(), _hostile_input(tmp)], path, embedder=FakeEmbedder())
    return path


@pytest.fixture(scope="module")
def url(store: Path) -> str:
    with running(store, FakeEmbedder()) as base:
        yield base


@pytest.fixture(scope="module")
def ex(store: Path) -> Explorer:
    with Explorer(store, embedder=FakeEmbedder()) as explorer:
        yield explorer


def _same(hits: list[dict], expected: list) -> None:
    assert hits == json.loads(json.dumps([h.to_dict() for h in expected]))


def _check_error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["error"], str) and body["error"] and "\n" not in body["error"]
    assert "Traceback" not in r.text
    return body


# ---- every endpoint ---------------------------------------------------------------------------------------
def test_health(url: str, ex: Explorer, store: Path) -> None:
    r = HTTP.get(f"{url}/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "store": str(store), "generation": ex.generation.name, "papers": 433}


def test_search_is_the_explorers_answer(url: str, ex: Explorer) -> None:
    r = HTTP.get(f"{url}/api/search", params={"q": "scaling laws for language models", "k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "scaling laws for language models" and body["note"] is None
    assert [h["rank"] for h in body["hits"]] == list(range(1, 8))
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True)
    _same(body["hits"], ex.search("scaling laws for language models", k=7))
    for mode in ("dense", "lexical", "hybrid"):
        got = HTTP.get(f"{url}/api/search", params={"q": "diffusion models", "k": 3, "mode": mode, "why": 1}).json()
        _same(got["hits"], ex.search("diffusion models", k=3, mode=mode, why=True))
        assert all("why" in h for h in got["hits"])


def test_search_filters(url: str, ex: Explorer) -> None:
    params = {"q": "diffusion", "k": 5, "date_from": "2024-01", "date_to": "2024-12", "min_authors": "", "source": ""}
    body = HTTP.get(f"{url}/api/search", params=params).json()
    expected = ex.search("diffusion", k=5, date_from="2024-01", date_to="2024-12")
    _same(body["hits"], expected)
    assert body["hits"] and all(h["date"].startswith("2024") for h in body["hits"])
    none = HTTP.get(f"{url}/api/search", params={"q": "diffusion", "date_from": "1990", "date_to": "1990"}).json()
    assert none["hits"] == [] and "no paper matches the filter" in none["note"]


def test_related_and_paper(url: str, ex: Explorer) -> None:
    target = ex.paper(TENSOR_PROGRAMS_V)
    r = HTTP.get(f"{url}/api/related/{target.id}", params={"k": 5, "why": "1"})
    assert r.status_code == 200
    body = r.json()
    assert body["paper"] == json.loads(json.dumps(target.to_dict())) and body["paper"]["abstract"]
    _same(body["hits"], ex.related(target.id, k=5, why=True))
    assert target.id not in [h["id"] for h in body["hits"]]
    paper = HTTP.get(f"{url}/api/paper/{target.id}").json()
    assert paper == body["paper"]


def test_recommend(url: str, ex: Explorer) -> None:
    ids = [h.paper.id for h in ex.search("diffusion models for images", k=3)]
    r = HTTP.post(f"{url}/api/recommend", json={"positive": ids[:2], "negative": ids[2:], "k": 6})
    assert r.status_code == 200
    _same(r.json()["hits"], ex.recommend(ids[:2], ids[2:], k=6))
    assert not set(ids) & {h["id"] for h in r.json()["hits"]}
    one = HTTP.post(f"{url}/api/recommend", json={"positive": ids[:1], "why": True, "date_from": None}).json()
    _same(one["hits"], ex.recommend(ids[:1], why=True))


def test_no_saved_map(url: str, store: Path) -> None:
    body = _check_error(HTTP.get(f"{url}/api/map"), 404)
    assert f"paperscope map --store {store}" in body["error"]
    page = HTTP.get(f"{url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "paperscope map --store" in page.text


def test_page_and_map_from_the_saved_map(tmp_path: Path) -> None:
    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    with Explorer(store, embedder=fake) as ex:
        tm = ex.topic_map(render=False)
    before = _snapshot(store)
    with running(store, fake) as base:
        m = HTTP.get(f"{base}/api/map")
        assert m.status_code == 200
        doc = m.json()
        assert doc["generation"] == tm.generation and doc["ids"] == list(tm.ids)
        assert len(doc["x"]) == len(doc["y"]) == len(tm) == 432
        assert doc["x"][0] == pytest.approx(float(tm.coords[0, 0]), abs=1e-5)
        assert doc["levels"]["topic"] == [int(t) for t in tm.levels[1]]
        assert set(doc["labels"]["topic"]) == {str(t.id) for t in tm.topics if t.level == 1}
        page = HTTP.get(f"{base}/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "paperscope map --store" not in page.text
        assert tm.ids[0] in page.text and '"generation":"' + tm.generation in page.text
        assert HTTP.get(f"{base}/").content == page.content  # cached per generation and map
    assert _snapshot(store) == before  # read-only


# ---- errors -----------------------------------------------------------------------------------------------
def test_unknown_paper_is_404_with_suggestions(url: str, ex: Explorer) -> None:
    target = ex.paper(TENSOR_PROGRAMS_V)
    typo = TENSOR_PROGRAMS_V.replace("Tuning", "Tunning")
    for r in (
        HTTP.get(f"{url}/api/paper/{typo}"),
        HTTP.get(f"{url}/api/related/{typo}"),
        HTTP.post(f"{url}/api/recommend", json={"positive": [typo]}),
    ):
        body = _check_error(r, 404)
        assert {"id": target.id, "title": target.title} in body["suggestions"]
    body = _check_error(HTTP.get(f"{url}/api/paper/zzzz-no-such-paper-qqqq"), 404)
    assert body["suggestions"] == []


@pytest.mark.parametrize(
    "params, where",
    [
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "k": 1001}, "k"),
        ({"q": "x", "k": "ten"}, "k"),
        ({"q": "x" * 1001}, "q"),
        ({"q": ""}, "q"),
        ({}, "q"),
        ({"q": "x", "date_from": "2020-13"}, "date_from"),
        ({"q": "x", "date_to": "yesterday"}, "date_to"),
        ({"q": "x", "mode": "best"}, "mode"),
        ({"q": "x", "why": "maybe"}, "why"),
        ({"q": "x", "min_authors": "-1"}, "min_authors"),
        ({"q": "x", "date_from": "2024", "date_to": "2020"}, "date"),
    ],
)
def test_bad_search_parameter_is_422(url: str, params: dict, where: str) -> None:
    body = _check_error(HTTP.get(f"{url}/api/search", params=params), 422)
    assert where in body["error"]


def test_bad_related_parameter_is_422(url: str, ex: Explorer) -> None:
    pid = ex.paper(TENSOR_PROGRAMS_V).id
    for params in ({"k": 0}, {"k": 5000}, {"date_from": "2020-1"}, {"mode": "x"}, {"max_authors": "many"}):
        _check_error(HTTP.get(f"{url}/api/related/{pid}", params=params), 422)


@pytest.mark.parametrize(
    "body, where",
    [
        (b"{not json", "malformed JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"x"', "JSON object"),
        (b"{}", "positive"),
        (b'{"positive": []}', "positive"),
        (b'{"positive": "abc"}', "positive"),
        (b'{"positive": [1]}', "positive"),
        (b'{"positive": ["a"], "negative": {"b": 1}}', "negative"),
        (b'{"positive": ["a"], "k": "5"}', "k"),
        (b'{"positive": ["a"], "k": 0}', "k"),
        (b'{"positive": ["a"], "k": true}', "k"),
        (b'{"positive": ["a"], "why": "yes"}', "why"),
        (b'{"positive": ["a"], "colour": "red"}', "colour"),
        (b'{"positive": ["a"], "date_from": 2020}', "date_from"),
        (b'{"positive": ["a"], "negative_weight": 2}', "negative_weight"),
        (b"\xff\xfe", "malformed JSON"),
    ],
)
def test_bad_recommend_body_is_422(url: str, body: bytes, where: str) -> None:
    r = HTTP.post(f"{url}/api/recommend", content=body, headers={"content-type": "application/json"})
    assert where in _check_error(r, 422)["error"]


def test_wrong_method_and_unknown_path(url: str) -> None:
    _check_error(HTTP.post(f"{url}/api/health"), 405)
    _check_error(HTTP.get(f"{url}/api/recommend"), 405)
    _check_error(HTTP.delete(f"{url}/api/paper/x"), 405)
    _check_error(HTTP.get(f"{url}/api/nothing"), 404)
    _check_error(HTTP.post(f"{url}/api/recommend", content=b"[" * 1_000_001), 413)


def test_internal_error_is_one_line_of_json(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Explorer, key: str) -> None:
        raise RuntimeError("a bug\nwith a second line")

    monkeypatch.setattr(Explorer, "paper", broken)
    with running(store, FakeEmbedder()) as base:
        r = HTTP.get(f"{base}/api/paper/anything")
    body = _check_error(r, 500)
    assert "RuntimeError" in body["error"] and "a bug" not in body["error"]
    assert r.headers["content-security-policy"] == CSP


# ---- safety -----------------------------------------------------------------------------------------------
def test_security_headers_and_no_cors(url: str) -> None:
    for r in (
        HTTP.get(f"{url}/api/health", headers={"origin": "https://evil.example"}),
        HTTP.get(f"{url}/"),
        HTTP.get(f"{url}/api/paper/none"),
        HTTP.options(
            f"{url}/api/recommend", headers={"origin": "https://evil.example", "access-control-request-method": "POST"}
        ),
    ):
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert not [h for h in r.headers if h.startswith("access-control-")]


def test_foreign_host_header_is_refused(url: str) -> None:
    # A page on another site whose DNS name now points at 127.0.0.1 (DNS rebinding) sends its own Host.
    _check_error(HTTP.get(f"{url}/api/health", headers={"host": "evil.example"}), 421)
    assert HTTP.get(f"{url}/api/health", headers={"host": "localhost:1234"}).status_code == 200


def test_hostile_title_comes_back_as_json_text(url: str) -> None:
    r = HTTP.get(f"{url}/api/paper/hostile-1")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.json()["title"] == HOSTILE_TITLE and r.json()["abstract"].startswith("</script><script>")
    hits = HTTP.get(f"{url}/api/search", params={"q": "robust attention hostile inputs", "k": 3}).json()["hits"]
    assert HOSTILE_TITLE in [h["title"] for h in hits]


def _snapshot(store: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(store)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def test_serving_never_writes_the_store(store: Path) -> None:
    before = _snapshot(store)
    with running(store, FakeEmbedder()) as base:
        for path in ("/", "/api/health", "/api/map", "/api/search?q=graph", "/api/related/hostile-1"):
            HTTP.get(base + path)
        HTTP.post(f"{base}/api/recommend", json={"positive": ["hostile-1"]})
    assert _snapshot(store) == before


# ---- live data --------------------------------------------------------------------------------------------
WRITER = """
import sys, time
sys.path.insert(0, sys.argv[3])
from conftest import FakeEmbedder
from paperscope.pipeline import build

class Slow(FakeEmbedder):
    def embed_batch(self, texts):
        time.sleep(0.05)
        return super().embed_batch(texts)

print(build([sys.argv[2]], sys.argv[1], embedder=Slow(), chunk_size=32).generation)
"""


def test_reindex_while_serving(tmp_path: Path) -> None:
    """Another process re-indexes (adding papers) during a stream of requests: none fails, and the
    new papers are served afterwards without a restart."""
    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    with Explorer(store, embedder=fake) as ex:
        first_gen, probe = ex.generation.name, next(ex.papers()).id
    extra = tmp_path / "more.jsonl"
    extra.write_text(
        "".join(
            json.dumps(
                {
                    "id": f"new{i}",
                    "title": f"Freshly indexed paper {i} on zebrafish",
                    "abstract": f"zebrafish topic{i % 7} regeneration study number {i}.",
                }
            )
            + "\n"
            for i in range(300)
        )
    )
    failures: list[str] = []
    generations: set[str] = set()
    count = 0
    stop = threading.Event()

    def client(base: str) -> None:
        nonlocal count
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                for r in (
                    c.get(f"/api/related/{probe}", params={"k": 5}),
                    c.get("/api/search", params={"q": "zebrafish"}),
                    c.get("/api/health"),
                ):
                    count += 1
                    if r.status_code != 200:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                generations.add(r.json()["generation"])

    with running(store, fake) as base:
        readers = [threading.Thread(target=client, args=(base,)) for _ in range(3)]
        for t in readers:
            t.start()
        writer = subprocess.run(
            [sys.executable, "-c", WRITER, str(store), str(extra), str(TESTS)],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHONPATH": str(SRC)},
        )
        assert writer.returncode == 0, writer.stderr
        new_gen = writer.stdout.strip().splitlines()[-1]
        time.sleep(0.5)  # a few more requests on the new generation
        stop.set()
        for t in readers:
            t.join(timeout=60)
        assert not failures, failures[:5]
        assert count > 30
        assert new_gen != first_gen and {first_gen, new_gen} <= generations
        health = HTTP.get(f"{base}/api/health").json()
        assert health["generation"] == new_gen and health["papers"] == 732
        assert HTTP.get(f"{base}/api/paper/new7").json()["title"] == "Freshly indexed paper 7 on zebrafish"
        hits = HTTP.get(f"{base}/api/search", params={"q": "zebrafish regeneration", "k": 5}).json()["hits"]
        assert all(h["id"].startswith("new") for h in hits)


# ---- the command ------------------------------------------------------------------------------------------
def _start(args: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen, list[str], float]:
    """``paperscope serve ARGS`` in a subprocess; returns it, its stdout lines up to "ready", and seconds to ready."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "paperscope.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})},
    )
    lines: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=30)
            raise AssertionError(f"serve exited {proc.returncode}: {proc.stderr.read()}")
        lines.append(line.rstrip("\n"))
        if line.startswith("ready"):
            return proc, lines, time.perf_counter() - t0


def _url(lines: list[str]) -> str:
    return next(line.split()[2] for line in lines if line.startswith("serving on "))


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    return out, err


def test_cli_serves_then_stops_cleanly_on_ctrl_c(store: Path) -> None:
    proc, lines, _ = _start(["--store", str(store)])
    try:
        url = _url(lines)
        assert url.startswith("http://127.0.0.1:")
        assert HTTP.get(f"{url}api/health").json()["papers"] == 433
        assert HTTP.get(f"{url}api/related/hostile-1", params={"k": 2}).status_code == 200
    finally:
        out, err = _interrupt(proc)
    assert out.strip().endswith("stopped")
    assert "WARNING" not in err


def test_cli_warns_loudly_when_not_on_the_loopback(store: Path) -> None:
    proc, lines, _ = _start(["--store", str(store), "--host", "0.0.0.0", "--no-preload"])
    try:
        url = _url(lines)
        assert HTTP.get(f"{url}api/health").status_code == 200
    finally:
        _, err = _interrupt(proc)
    warning = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert warning and "0.0.0.0" in warning[0] and "no authentication" in warning[0]


def test_cli_errors_are_one_line(store: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    missing = subprocess.run(
        [sys.executable, "-m", "paperscope.cli", "serve", "--store", str(tmp_path / "none"), "--port", "0"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert missing.returncode == 2 and "no paperscope store here" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    no_extra = subprocess.run(
        [
            sys.executable,
            "-c",
            ("import sys; sys.modules['uvicorn'] = None; from paperscope.cli import main; main(['serve'])"),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert no_extra.returncode == 2
    assert (
        no_extra.stderr.strip() == "paperscope: error: paperscope serve needs the serve extra: "
        'pip install "paperscope[serve]"'
    )
    proc, lines, _ = _start(["--store", str(store)])
    try:
        port = _url(lines).rstrip("/").rsplit(":", 1)[1]
        taken = subprocess.run(
            [sys.executable, "-m", "paperscope.cli", "serve", "--store", str(store), "--port", port],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert len(taken.stderr.strip().splitlines()) == 1
    finally:
        _interrupt(proc)


# ---- the real model ---------------------------------------------------------------------------------------
@pytest.mark.model
def test_real_model_search_and_ready_time(real_store: Path) -> None:
    proc, lines, wall = _start(["--store", str(real_store)])
    try:
        url = _url(lines)
        ready = float(next(line.split()[2] for line in lines if line.startswith("ready in")))
        print(f"serve on the bundled store: ready {ready:.2f} s after serve() began, {wall:.2f} s after Popen")
        # A guard against "ready" waiting for the slow parts (the page, the query model), not a
        # timing: it is 0.1-0.3 s on a quiet machine (docs/serve.md); a CI run here once took 2.03 s,
        # so a tight bound only measured the machine's noise. Speed is the benchmarks' to measure.
        assert ready <= 5.0
        r = HTTP.get(
            f"{url}api/search", params={"q": "learning-rate transfer across model widths", "k": 5}, timeout=120
        )
        assert r.status_code == 200, r.text
        assert "A Proof of Learning Rate Transfer under μP" in [h["title"] for h in r.json()["hits"]]
        with Explorer(real_store) as ex:
            _same(r.json()["hits"], ex.search("learning-rate transfer across model widths", k=5))
    finally:
        _interrupt(proc)


# ---- the query batcher ------------------------------------------------------------------------------------
class _SlowFake(FakeEmbedder):
    def embed_batch(self, texts):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return super().embed_batch(texts)


def test_concurrent_queries_share_model_calls() -> None:
    from paperscope.serve import QueryBatcher

    model = _SlowFake()
    batcher = QueryBatcher(model.fingerprint, model.dimension, model=model)
    texts = [f"query number {i} about graphs" for i in range(24)]
    got: dict[str, object] = {}
    barrier = threading.Barrier(len(texts))

    def ask(t: str) -> None:
        barrier.wait()
        got[t] = batcher.embed(t)

    threads = [threading.Thread(target=ask, args=(t,)) for t in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reference = FakeEmbedder().embed_batch(texts)
    for i, t in enumerate(texts):
        assert got[t] == pytest.approx(reference[i], abs=1e-6)
    assert batcher.texts == 24 and batcher.calls < 12, batcher.calls  # one call served several requests


def test_a_failing_model_fails_each_waiting_query() -> None:
    from paperscope.serve import QueryBatcher

    class Broken(_SlowFake):
        def embed_batch(self, texts):  # type: ignore[no-untyped-def]
            time.sleep(0.02)
            raise RuntimeError("model gone")

    model = Broken()
    batcher = QueryBatcher(model.fingerprint, model.dimension, model=model)
    errors: list[str] = []

    def ask(i: int) -> None:
        try:
            batcher.embed(f"q{i}")
        except RuntimeError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == ["model gone"] * 8


def test_concurrent_searches_over_http_are_each_answered_correctly(store: Path, ex: Explorer) -> None:
    texts = [f"diffusion models for {w}" for w in ("video", "images", "audio", "graphs", "molecules", "text")] * 3
    with running(store, _SlowFake()) as base:
        results: dict[int, list] = {}

        def ask(i: int) -> None:
            results[i] = HTTP.get(f"{base}/api/search", params={"q": texts[i], "k": 5}).json()["hits"]

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(texts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for i, text in enumerate(texts):
        _same(results[i], ex.search(text, k=5))


def test_a_damaged_new_generation_leaves_the_old_one_in_service(tmp_path: Path) -> None:
    import shutil

    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    with Explorer(store, embedder=fake) as ex:
        good, probe = ex.generation.name, next(ex.papers()).id
    with running(store, fake) as base:
        assert HTTP.get(f"{base}/api/health").json()["generation"] == good
        # What a crashed or tampered re-index could leave: CURRENT naming a generation that does not open.
        bad = store / "generations" / "g000099"
        shutil.copytree(store / "generations" / good, bad)
        (bad / "manifest.json").write_text("{ not json")
        (store / "CURRENT").write_text("g000099\n")
        for _ in range(20):
            r = HTTP.get(f"{base}/api/related/{probe}", params={"k": 3})
            assert r.status_code == 200, r.text
            assert HTTP.get(f"{base}/api/health").json()["generation"] == good
            time.sleep(0.05)


def test_a_request_in_flight_keeps_its_generation(tmp_path: Path) -> None:
    """LiveExplorer: an Explorer in use survives the swap to a new generation and is closed after its last user."""
    from paperscope.serve import LiveExplorer

    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    live = LiveExplorer(store, embedder=fake, check_interval=0.0)
    try:
        with live.use() as old:
            probe = next(old.papers()).id
            extra = tmp_path / "one.jsonl"
            extra.write_text(json.dumps({"id": "late-1", "title": "A late paper", "abstract": "late words"}) + "\n")
            build([extra], store, embedder=fake)
            with live.use() as new:  # a later request sees the new generation
                assert new.generation.name != old.generation.name and len(new) == len(old) + 1
                assert new.paper("late-1").title == "A late paper"
            assert [h.paper.id for h in old.related(probe, k=3)]  # the request in flight still answers
            with pytest.raises(UnknownPaperError):
                old.paper("late-1")
        with pytest.raises(StoreError, match="closed database"):  # retired and unused: closed
            old.paper(probe)
    finally:
        live.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["q", "k", "mode", "why", "date_from", "date_to", "min_authors", "max_authors", "source"]),
        st.text(max_size=12)
        | st.sampled_from(["0", "1", "10", "-5", "1e3", "2024-02", "dense", "lexical", "true", "\x00", "９"]),
        max_size=6,
    )
)
def test_any_query_parameters_answer_200_or_one_line_422(url: str, params: dict[str, str]) -> None:
    params.setdefault("q", "graph neural networks")
    r = HTTP.get(f"{url}/api/search", params=params)
    if r.status_code != 200:
        _check_error(r, 422)


def test_each_served_generation_is_preloaded(tmp_path: Path) -> None:
    """LiveExplorer(preload=True), as `paperscope serve` runs it: every generation it opens is mapped in, in a thread."""
    from paperscope.serve import LiveExplorer

    fake = FakeEmbedder()
    store = tmp_path / "s"
    build(None, store, embedder=fake)
    live = LiveExplorer(store, embedder=fake, check_interval=0.0, preload=True)

    def preloaded(name: str) -> int:
        for _ in range(200):
            if name in live.preloaded:
                return live.preloaded[name][0]
            time.sleep(0.05)
        raise AssertionError(f"generation {name} was not preloaded: {live.preloaded}")

    try:
        with live.use() as ex:
            first = ex.generation.name
            assert preloaded(first) >= ex.index.vectors.nbytes
        extra = tmp_path / "one.jsonl"
        extra.write_text(json.dumps({"id": "late-1", "title": "A late paper", "abstract": "late words"}) + "\n")
        build([extra], store, embedder=fake)
        with live.use() as ex:
            assert ex.generation.name != first
            assert preloaded(ex.generation.name) >= ex.index.vectors.nbytes
    finally:
        live.close()
    off = LiveExplorer(store, embedder=fake)  # off unless asked
    try:
        time.sleep(0.2)
        assert off.preloaded == {}
    finally:
        off.close()
