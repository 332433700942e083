"""The map page served by `paperscope serve` (issue 15's server; skipped until it is merged): the page's own
served-mode behaviour beyond tests/test_serve_browser.py: the served CSP, filters and `why` passed to the API,
an API error shown as one line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from paperscope.explorer import Explorer
from paperscope.pipeline import build
from tests.browser import chromium, require_browser
from tests.conftest import FakeEmbedder
from tests.e2e.test_map_page import _rows

pytest.importorskip("paperscope.serve")
served = pytest.importorskip("tests.served")


def _wait(driver, script: str, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def _api_urls(driver) -> list[str]:  # type: ignore[no-untyped-def]
    out = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent" and "/api/" in msg["params"]["request"]["url"]:
            out.append(msg["params"]["request"]["url"])
    return out


def test_served_page_passes_filters_and_why_to_the_api(tmp_path: Path) -> None:
    require_browser()
    src = tmp_path / "papers.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in _rows()) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    fake = FakeEmbedder()
    build([src], store, embedder=fake)
    with Explorer(store, embedder=fake) as ex:
        ex.topic_map(render=False)
    with served.running(store, fake) as base, chromium(tmp_path / "profile", logs=True, loopback=True) as driver:
        driver.get(base + "/")
        assert _wait(driver, "return window.paperscopeMap && window.paperscopeMap.ready && window.paperscopeMap.served")
        csp = driver.execute_script("return document.querySelector('meta[http-equiv=Content-Security-Policy]').content")
        assert "connect-src 'self'" in csp and "default-src 'self'" in csp
        driver.find_element("id", "date-from").send_keys("2022\t")
        driver.find_element("id", "why-toggle").click()
        driver.find_element("id", "search").send_keys("LoRA adapters")
        assert _wait(driver, "return document.querySelectorAll('#results li[data-id]').length > 0")
        time.sleep(0.5)
        urls = _api_urls(driver)
        last = [u for u in urls if "/api/search" in u][-1]
        assert "date_from=2022" in last and "why=1" in last, last
        with Explorer(store, embedder=fake) as ex:
            got = driver.execute_script(
                "return [...document.querySelectorAll('#results li[data-id]')].map(e => e.dataset.id)"
            )
            assert got and all(ex.paper(pid).date >= "2022" for pid in got)
        why = driver.find_elements("css selector", "#results li .w")
        assert why and all("dense" in w.text or "lexical" in w.text for w in why)
        # An unknown id reaches the API and its one-line error is shown, not a broken panel.
        driver.execute_script("window.paperscopeMap.select('no-such-paper')")
        assert _wait(driver, "return document.getElementById('status').textContent.length > 0")
        assert "\n" not in driver.find_element("id", "status").text
