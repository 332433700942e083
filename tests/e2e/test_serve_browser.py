"""The served page in real headless Chromium, talking to a real `paperscope serve` app (uvicorn, in-process).

The browser may reach 127.0.0.1 only (every host name resolves nowhere, any proxy use fails).
Driven through the element ids of the page/server contract (docs/serve.md): type a query, see
ranked results, open one, see its abstract and related papers, put two papers in the basket and
see the recommendations change, export BibTeX. Needs ``render.html.page_html`` (the served page).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from paperscope.corpus import bundled_corpus
from paperscope.explorer import Explorer
from paperscope.pipeline import build
from tests.browser import chromium, require_browser
from tests.conftest import FakeEmbedder
from tests.served import running

HOSTILE = "<img src=x onerror=window.__pwned=1> Robust attention under hostile inputs"


def _wait(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _ids(driver: Any, css: str) -> list[str]:
    return driver.execute_script(f"return [...document.querySelectorAll({css!r})].map(e => e.dataset.id);")


def _text(driver: Any, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent;")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_browser()
    tmp = tmp_path_factory.mktemp("served-page")
    extra = tmp / "hostile.jsonl"
    extra.write_text(
        json.dumps(
            {
                "id": "hostile-1",
                "title": HOSTILE,
                "date": "2024-02-02",
                "abstract": "Robust attention under hostile inputs: <b>bold</b> claims.",
            }
        )
        + "\n"
    )
    fake = FakeEmbedder()
    path = tmp / "store"
    build([bundled_corpus(), extra], path, embedder=fake)
    with Explorer(path, embedder=fake) as ex:
        ex.topic_map(render=False)  # the saved map the page shows
    return path


def test_served_page_search_panel_basket_export(store: Path) -> None:
    require_browser()
    fake = FakeEmbedder()
    query = "diffusion models for image generation"
    with (
        running(store, fake) as base,
        chromium(Path(tempfile.mkdtemp(prefix="ps-profile-")), logs=True, loopback=True) as driver,
        httpx.Client(base_url=base, timeout=60) as api,
    ):
        driver.get(base + "/")
        assert _wait(
            "the served page",
            lambda: driver.execute_script(
                "return window.paperscopeMap && window.paperscopeMap.served === true && window.paperscopeMap.ready"
            ),
        )

        # Type a query: ranked results with scores, in the API's order.
        from selenium.webdriver.common.keys import Keys

        box = driver.find_element("id", "search")
        box.send_keys(query)
        expected = list(api.get("/api/search", params={"q": query, "k": 20}).json()["hits"])
        got = _wait("search results", lambda: _ids(driver, "#results li[data-id]"))
        assert got == [h["id"] for h in expected][: len(got)] and len(got) >= 10
        first = driver.find_element("css selector", "#results li[data-id]")
        assert expected[0]["title"] in first.text and f"{expected[0]['score']:.3f}" in first.text

        # Open the first result: its abstract and its related papers.
        first.click()
        paper = api.get(f"/api/paper/{expected[0]['id']}").json()
        _wait("the paper panel", lambda: _text(driver, "paper-title") == paper["title"])
        assert _text(driver, "paper-abstract") == paper["abstract"]
        related = [h["id"] for h in api.get(f"/api/related/{paper['id']}", params={"k": 10}).json()["hits"]]
        assert _wait("related papers", lambda: _ids(driver, "#related li[data-id]")) == related

        # Basket: + the first paper, then + a related one; the recommendations follow the basket.
        driver.find_element("id", "basket-add").click()
        one = [h["id"] for h in api.post("/api/recommend", json={"positive": [paper["id"]], "k": 10}).json()["hits"]]
        _wait("recommendations for one paper", lambda: _ids(driver, "#recommendations li[data-id]") == one)
        second = related[0]
        driver.find_element("css selector", f"#related li[data-id='{second}']").click()
        _wait(
            "the second paper", lambda: _text(driver, "paper-title") == api.get(f"/api/paper/{second}").json()["title"]
        )
        driver.find_element("id", "basket-add").click()
        assert _wait("two papers in the basket", lambda: _ids(driver, "#basket li[data-id]")) == [paper["id"], second]
        two = [
            h["id"]
            for h in api.post("/api/recommend", json={"positive": [paper["id"], second], "k": 10}).json()["hits"]
        ]
        assert two != one
        _wait("recommendations for two papers", lambda: _ids(driver, "#recommendations li[data-id]") == two)

        # Export BibTeX: catch the Blob handed to URL.createObjectURL and read it.
        driver.execute_script(
            "window.__blobs = []; const make = URL.createObjectURL;"
            "URL.createObjectURL = b => { window.__blobs.push(b); return make.call(URL, b); };"
        )
        driver.find_element("id", "export-bibtex").click()
        _wait("the BibTeX blob", lambda: driver.execute_script("return window.__blobs.length"))
        bib = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];window.__blobs[0].text().then(done);"
        )
        titles = [paper["title"], api.get(f"/api/paper/{second}").json()["title"]]
        assert bib.count("@misc{") == 2
        for t in titles:
            assert "{" + t.replace("{", "").replace("}", "") + "}" in bib

        # A hostile title is shown as text, and its markup never runs.
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys("robust attention hostile inputs")
        _wait("the hostile paper in the results", lambda: "hostile-1" in _ids(driver, "#results li[data-id]"))
        li = driver.find_element("css selector", "#results li[data-id='hostile-1']")
        assert HOSTILE in li.text
        assert driver.execute_script(
            "return window.__pwned === undefined && document.querySelectorAll('#results img, #panel img').length === 0"
        )

        # Every request the page made went to this server.
        hosts = set()
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                url = msg["params"]["request"]["url"]
                if url.startswith(("http:", "https:", "ws:", "wss:")):  # not data:, blob:, the browser's chrome://
                    hosts.add(url.split("/")[2])
        assert hosts == {base.split("/")[2]}, hosts
