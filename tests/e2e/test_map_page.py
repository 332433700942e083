"""The map page in real headless Chromium with the network off: zoom and pan, the paper panel, ranked search
with the lexical tokenizer (a JavaScript port checked against Python's), narrow screens, dark scheme, no
network request; and the page's data (size, scores, abstracts) from Python."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from paperscope.explorer import Explorer
from paperscope.pipeline import build
from paperscope.render.html import ABSTRACT_LIMIT, page_document, page_html
from paperscope.text import tokenize
from tests.browser import chromium, require_browser
from tests.conftest import FakeEmbedder

# Strings the tokenizer treats specially: case, μ spellings and LaTeX, digits, hyphen compounds, plurals,
# stop words, apostrophes, synonyms; the JS port must give exactly Python's terms for each.
PARITY = [
    "LoRA",
    "low-rank adapters",
    "Low-Rank Adaptation of Large Language Models",
    "μP",
    "muP",
    "µP",
    "u-$μ$P",
    "u-$\\mu$P",
    "3D",
    "text-to-3d",
    "Text-to-3D generation",
    "models",
    "studies",
    "classes",
    "analysis",
    "bias",
    "gas",
    "the of and with",
    "we propose a novel method",
    "Warmup",
    "FLoRA",
    "μ-Transfer",
    "mu-transfer",
    "muTransfer",
    "model's",
    "don't",
    "2024",
    "x",
    "μ",
    "GPT-4o",
    "Ünïcödé naïve café",
    "ﬁne-tuning",
    "self-attention's heads",
    "{LoRA}^2 \\cite{x}",
    "S4",
    "a_b c-d-e",
    "Mixture-of-Experts MoEs",
    "   ",
    "über-große Modelle",
    "日本語 テキスト",
    "İstanbul",
    "ΣΑΣ",
    # rules added with paperscope.text (tokenizer version 2): dot compounds, numbers, the stem rules, long tokens
    "GPT-3.5 and Llama-2.7b, v1.2 in 2024.",
    "studies analyses losses focus analysis pers",
    "a" * 41 + " " + "b" * 40,
    "Diffusion models, LoRA; low-rank adapters (PEFT)",
]

TOPICS = [
    ("LoRA", "Low-rank adaptation LoRA adapters for parameter-efficient fine-tuning of language models"),
    ("μP", "Maximal update parametrization μP transfers hyperparameters across width"),
    ("Diffusion", "Denoising diffusion models generate images by reversing a noising process"),
    ("Warmup", "Learning rate warmup schedules stabilise early training of transformers"),
]


def _rows(n: int = 48) -> list[dict[str, object]]:
    rows = []
    for i in range(n):
        name, text = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "id": f"2401.{10000 + i:05d}" if i % 2 == 0 else f"local-{i}",
                "title": f"{name} study {i}: " + text.split(" ", 3)[3][:40],
                "abstract": f"{text}. Variant {i} with " + " ".join(f"w{i % 4}x{j}" for j in range(25)),
                "authors": [f"Author {i}", f"Coauthor {i % 5}"],
                "date": f"202{(i // 4) % 4}-0{1 + i % 9}-15",
            }
        )
    return rows


@pytest.fixture(scope="module")
def fake_page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small store (fake embedder) with arXiv and non-arXiv ids, dates, authors and two sources; its page."""
    tmp = tmp_path_factory.mktemp("page")
    rows = _rows()
    files = [tmp / "first.jsonl", tmp / "second.jsonl"]
    for k, f in enumerate(files):
        half = rows[: len(rows) // 2] if k == 0 else rows[len(rows) // 2 :]
        f.write_text("\n".join(json.dumps(r) for r in half) + "\n", encoding="utf-8")
    store = tmp / "store"
    build(files, store, embedder=FakeEmbedder())
    with Explorer(store) as ex:
        tm = ex.topic_map(tmp / "out")
    return store, Path(tm.stats["outputs"]["html"])


def _wait(driver, script: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def _open(driver, page: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(page.as_uri())
    assert _wait(driver, "return window.paperscopeMap && window.paperscopeMap.ready")


def _click_at(driver, x: float, y: float) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains

    builder = ActionChains(driver).w3c_actions
    builder.pointer_action.move_to_location(int(x), int(y)).click()
    builder.perform()


def _click_paper(driver, pid: str) -> None:  # type: ignore[no-untyped-def]
    x, y = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid)
    r = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect(); return [r.left, r.top];"
    )
    _click_at(driver, r[0] + x, r[1] + y)


def _search(driver, query: str) -> list[str]:  # type: ignore[no-untyped-def]
    box = driver.find_element("id", "search")
    box.clear()
    box.send_keys(query)
    _wait(driver, "return document.querySelectorAll('#results li').length > 0", 5)
    time.sleep(0.2)  # the search runs 60 ms after the last key
    return [li.get_attribute("data-id") for li in driver.find_elements("css selector", "#results li")]


def test_js_tokenizer_matches_python(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    """The parity guard: if tokenize() changes in Python, this fails until the page's port follows."""
    require_browser()
    with chromium(tmp_path / "profile") as driver:
        _open(driver, fake_page[1])
        got = driver.execute_script("return arguments[0].map(s => window.paperscopeMap.tokenize(s));", PARITY)
    mismatches = [(s, g, tokenize(s)) for s, g in zip(PARITY, got) if g != tokenize(s)]
    assert not mismatches, mismatches
    assert tokenize("muP") == ["μp"] and tokenize("Warmup") == ["warmup"]  # the cases the issue names


def test_zoom_pan_reset_and_labels(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.actions.wheel_input import ScrollOrigin

    with chromium(tmp_path / "profile") as driver:
        _open(driver, fake_page[1])
        pid = driver.execute_script("return JSON.parse(document.getElementById('data').textContent).ids[3]")
        before = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid)
        assert driver.execute_script("return window.paperscopeMap.level()") == "theme"
        themes = driver.execute_script("return window.paperscopeMap.labels()")
        assert themes
        # A real wheel over the canvas (CDP input, not a synthetic event) zooms in about the cursor.
        canvas = driver.find_element("id", "canvas")
        for _ in range(3):
            ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()
            time.sleep(0.15)
        view = driver.execute_script("return window.paperscopeMap.view()")
        assert view["k"] > 1.5, view
        after = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid)
        assert after != before
        # Zoomed in far enough, the fine level is shown: fine labels and colours by topic.
        for _ in range(4):
            ActionChains(driver).scroll_from_origin(ScrollOrigin.from_element(canvas), 0, -300).perform()
            time.sleep(0.1)
        assert _wait(driver, "return window.paperscopeMap.level() === 'topic'", 3)
        assert "by topic" in driver.find_element("id", "legend").text
        # Labels shown never overlap each other.
        boxes = driver.execute_script(
            "return [...document.querySelectorAll('#labels .label')].map(e => {"
            "const r = e.getBoundingClientRect(); "
            "return [r.left, r.top, r.right, r.bottom];})"
        )
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
        # Drag pans the view by the distance dragged.
        x0 = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid)
        ActionChains(driver).move_to_element_with_offset(canvas, 10, 10).click_and_hold().move_by_offset(
            40, 10
        ).move_by_offset(40, 10).release().perform()
        x1 = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid)
        assert abs((x1[0] - x0[0]) - 80) < 2 and abs((x1[1] - x0[1]) - 20) < 2, (x0, x1)
        # "0" resets the view.
        driver.find_element("tag name", "body").send_keys("0")
        assert _wait(driver, "return window.paperscopeMap.view().k === 1", 3)
        time.sleep(0.1)
        assert driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pid) == before


def test_click_shows_abstract_link_related_scores(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    store, page = fake_page
    with Explorer(store) as ex, chromium(tmp_path / "profile") as driver:
        _open(driver, page)
        for pid, link in (("2401.10004", "https://arxiv.org/abs/2401.10004"), ("local-5", None)):
            driver.execute_script("window.paperscopeMap.select(arguments[0]);", pid)  # a click is tested below
            paper = ex.paper(pid)
            assert driver.find_element("id", "paper-title").text == paper.title
            assert driver.find_element("id", "paper-abstract").text == paper.abstract
            assert paper.authors[0] in driver.find_element("id", "paper-authors").text
            meta = driver.find_element("id", "paper-meta").text
            assert paper.date in meta and Path(paper.sources[0]).name in meta
            a = driver.find_element("id", "paper-link")
            assert (a.get_attribute("href") if a.is_displayed() else None) == link
            related = ex.related(pid, k=5)
            items = driver.find_elements("css selector", "#related li")
            assert [li.get_attribute("data-id") for li in items] == [h.paper.id for h in related]
            assert [li.find_element("css selector", ".s").text for li in items] == [f"{h.score:.3f}" for h in related]
            assert driver.execute_script("return window.paperscopeMap.relatedIds()") == [h.paper.id for h in related]
        # A real click on a point selects it; clicking a related paper moves to it.
        _click_paper(driver, "2401.10000")
        assert _wait(driver, "return window.paperscopeMap.selectedId() === '2401.10000'", 3)
        first = driver.find_element("css selector", "#related li")
        target = first.get_attribute("data-id")
        first.click()
        assert driver.execute_script("return window.paperscopeMap.selectedId()") == target
        # Esc clears the selection.
        driver.find_element("tag name", "body").send_keys("\ue00c")
        assert _wait(driver, "return window.paperscopeMap.selectedId() === null", 3)


def test_search_ranks_with_the_lexical_tokenizer_and_filters(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    store, page = fake_page
    with Explorer(store) as ex, chromium(tmp_path / "profile") as driver:
        _open(driver, page)
        found = _search(driver, "LoRA")
        assert found and all(ex.paper(pid).title.startswith("LoRA") for pid in found)
        # The same papers as the store's own lexical search (the same terms; the page ranks them by BM25).
        assert set(found) == {h.paper.id for h in ex.search("LoRA", k=100, mode="lexical")}
        for q in ("μP", "muP", "µP"):
            got = _search(driver, q)
            assert got and all(ex.paper(pid).title.startswith("μP") for pid in got), q
        assert not any(ex.paper(p).title.startswith("Warmup") for p in _search(driver, "muP"))
        # "/" focuses the search box; Esc clears it.
        driver.find_element("tag name", "body").click()
        driver.find_element("tag name", "body").send_keys("/")
        assert driver.execute_script("return document.activeElement.id") == "search"
        driver.switch_to.active_element.send_keys("\ue00c")
        assert driver.find_element("id", "search").get_attribute("value") == ""
        assert driver.find_elements("css selector", "#results li") == []
        # A date filter narrows the results to papers in range (dates are 2020..2023).
        driver.find_element("id", "date-from").send_keys("2022\n")
        driver.find_element("id", "date-from").send_keys("\t")
        got = _search(driver, "LoRA")
        assert got and all(ex.paper(pid).date >= "2022" for pid in got) and len(got) < len(found)
        # A source filter keeps papers read from that file only.
        driver.find_element("id", "date-from").clear()
        driver.find_element("id", "date-from").send_keys("\t")
        driver.find_element("id", "source").send_keys("second.jsonl\t")
        got = _search(driver, "LoRA")
        assert got and all(any(s.endswith("second.jsonl") for s in ex.paper(pid).sources) for pid in got)
        assert len(got) < len(found)


def test_narrow_screen_and_dark_scheme(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    with chromium(tmp_path / "profile") as driver:
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride", {"width": 420, "height": 860, "deviceScaleFactor": 1, "mobile": False}
        )
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia", {"features": [{"name": "prefers-color-scheme", "value": "dark"}]}
        )
        _open(driver, fake_page[1])
        w, h = driver.execute_script(
            "const r = document.getElementById('canvas').getBoundingClientRect(); return [r.width, r.height];"
        )
        vw = driver.execute_script("return document.documentElement.clientWidth")  # 420 less a scroll bar
        assert vw >= 400 and w == vw and 300 <= h <= 860 * 0.75, (vw, w, h)
        # The panel sits below the map, full width, and is reached by selecting a paper.
        side = driver.execute_script(
            "const r = document.getElementById('side').getBoundingClientRect(); return [r.left, r.top, r.width];"
        )
        assert side[0] == 0 and side[1] >= h - 1 and side[2] == vw
        _click_paper(driver, "2401.10002")
        assert _wait(driver, "return window.paperscopeMap.selectedId() === '2401.10002'", 3)
        title = driver.find_element("id", "paper-title")
        assert title.is_displayed() and title.text
        top = driver.execute_script("return document.getElementById('paper-title').getBoundingClientRect().top")
        assert 0 <= top < 860  # scrolled into view
        assert driver.execute_script("return document.documentElement.scrollWidth") <= 420  # no sideways scroll
        # Dark scheme: dark page and plot background.
        bg = driver.execute_script("return getComputedStyle(document.body).backgroundColor")
        rgb = [int(v) for v in bg[bg.index("(") + 1 : bg.index(")")].split(",")[:3]]
        assert sum(rgb) < 3 * 60, bg
        corner = driver.execute_script(
            "const c = document.getElementById('canvas'); "
            "return Array.from(c.getContext('2d').getImageData(1, 1, 1, 1).data);"
        )
        assert sum(corner[:3]) < 3 * 60, corner


def test_tooltip_stays_inside_the_plot(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    from selenium.webdriver.common.action_chains import ActionChains

    with chromium(tmp_path / "profile") as driver:
        _open(driver, fake_page[1])
        pos = driver.execute_script(
            "const D = JSON.parse(document.getElementById('data').textContent); "
            "return D.ids.map(id => [id].concat(window.paperscopeMap.screenPosition(id)));"
        )
        r = driver.execute_script(
            "const r = document.getElementById('plot').getBoundingClientRect(); "
            "return [r.left, r.top, r.right, r.bottom];"
        )
        for pick in (max(pos, key=lambda p: p[1] + p[2]), max(pos, key=lambda p: p[1] - p[2])):
            builder = ActionChains(driver).w3c_actions
            builder.pointer_action.move_to_location(int(r[0] + pick[1]), int(r[1] + pick[2]))
            builder.perform()
            assert _wait(driver, "return document.getElementById('tip').style.display === 'block'", 3)
            t = driver.execute_script(
                "const r = document.getElementById('tip').getBoundingClientRect(); "
                "return [r.left, r.top, r.right, r.bottom];"
            )
            assert t[0] >= r[0] and t[1] >= r[1] and t[2] <= r[2] and t[3] <= r[3], (t, r)


def test_the_page_makes_no_network_request(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    with chromium(tmp_path / "profile", logs=True) as driver:
        _open(driver, fake_page[1])
        _search(driver, "LoRA")
        driver.execute_script("window.paperscopeMap.select('2401.10000');")
        driver.find_element("id", "export-json").click()
        time.sleep(0.3)
        requests = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
        sent = [m["params"] for m in requests if m["method"] == "Network.requestWillBeSent"]
        # Chromium's own new-tab page loads chrome:// resources into the log too; the page's are those whose
        # document is the page. Only the page itself (and the export's blob: download) may be fetched.
        ours = [p["request"]["url"] for p in sent if p.get("documentURL") == fake_page[1].as_uri()]
        assert ours and ours[0] == fake_page[1].as_uri() and all(u.startswith("blob:") for u in ours[1:]), ours
        # (chrome-untrusted: is the new-tab page's own frames in newer Chromium: the browser's, not the page's)
        local = ("chrome:", "chrome-untrusted:", "file:", "blob:", "data:")
        assert not [p["request"]["url"] for p in sent if not p["request"]["url"].startswith(local)]
        assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == []


def test_basket_export_in_the_static_page(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    with chromium(tmp_path / "profile") as driver:
        _open(driver, fake_page[1])
        for pid, button in (("2401.10000", "basket-add"), ("local-3", "basket-not")):
            driver.execute_script("window.paperscopeMap.select(arguments[0]);", pid)
            driver.find_element("id", button).click()
        assert [li.get_attribute("data-id") for li in driver.find_elements("css selector", "#basket li")] == [
            "2401.10000",
            "local-3",
        ]
        bib = driver.execute_script("return window.paperscopeMap.exportText('bibtex')")
        assert "@misc{2401.10000," in bib and "eprint = {2401.10000}" in bib and "@misc{local-3," in bib
        csv = driver.execute_script("return window.paperscopeMap.exportText('csv')").splitlines()
        assert csv[0] == "basket,id,title,authors,date,sources,link" and csv[1].startswith("+,2401.10000,")
        items = json.loads(driver.execute_script("return window.paperscopeMap.exportText('json')"))
        assert [(p["id"], p["basket"]) for p in items] == [("2401.10000", "+"), ("local-3", "-")]


@pytest.mark.model
def test_real_store_lora_and_mup_search(real_store: Path, tmp_path: Path) -> None:
    """On the bundled corpus: "LoRA" lists LoRA papers first (not "Exploration", not FLoRA first), "μP" and
    "muP" find u-μP, "muP" does not match "Warmup"; the page stays under 1.5 MB."""
    require_browser()
    with Explorer(real_store) as ex:
        tm = ex.topic_map(tmp_path / "out")
        page = Path(tm.stats["outputs"]["html"])
        assert page.stat().st_size < 1_500_000
        with chromium(tmp_path / "profile") as driver:
            _open(driver, page)
            found = _search(driver, "LoRA")
            titles = [ex.paper(pid).title for pid in found]
            assert "LoRA" in titles[0] and "LoRA" in titles[1], titles[:3]
            assert not any("Exploration" in t and "LoRA" not in t for t in titles), titles
            # The same papers as `search --mode lexical` (the same terms); the page ranks them by BM25, the
            # CLI by TF-IDF with phrases, so only the set is compared.
            assert set(found) == {h.paper.id for h in ex.search("LoRA", k=100, mode="lexical")}
            umup = ex.paper("u-$μ$P: The Unit-Scaled Maximal Update Parametrization").id
            for q in ("μP", "muP", "µP"):
                got = _search(driver, q)
                assert umup in got, q
                assert not any("Warmup" in ex.paper(pid).title for pid in got), q


def test_page_document_scores_abstract_limit_and_served(fake_page: tuple[Path, Path]) -> None:
    """Related pairs keep their scores (plain ids still work); above ABSTRACT_LIMIT papers the abstracts are
    left out and the page says so; the served page carries no index and the served CSP."""
    store, _ = fake_page
    with Explorer(store) as ex:
        tm = ex.saved_map()
        assert tm is not None
        papers = {p.id: p for p in ex.papers()}
        pid = tm.ids[0]
        hits = ex.related(pid, k=3)
        with_scores = page_document(tm, {pid: [(h.paper.id, h.score) for h in hits]}, papers=papers)
        plain = page_document(tm, {pid: [h.paper.id for h in hits]}, papers=papers)
    row = with_scores["ids"].index(pid)
    assert with_scores["related"][row][1::2] == [round(h.score, 4) for h in hits]
    assert plain["related"][row][1::2] == [-1] * 3 and plain["related"][row][0::2] == with_scores["related"][row][0::2]
    assert with_scores["abstracts"][row] == papers[pid].abstract and with_scores["note"] is None
    many = page_document(tm, {}, rows=list(range(len(tm))) * (ABSTRACT_LIMIT // len(tm) + 1), papers=papers)
    assert many["abstracts"] is None and "abstracts are left out" in many["note"]
    served = page_html(tm, {}, served=True)
    assert "connect-src 'self'" in served and '"served":true' in served and '"index":null' in served
    static = page_html(tm, {})
    assert "default-src 'none'" in static and '"served":false' in static


def test_pinch_zooms_about_the_fingers(fake_page: tuple[Path, Path], tmp_path: Path) -> None:
    require_browser()
    with chromium(tmp_path / "profile") as driver:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 2})
        _open(driver, fake_page[1])
        r = driver.execute_script(
            "const r = document.getElementById('canvas').getBoundingClientRect(); "
            "return [r.left + r.width / 2, r.top + r.height / 2];"
        )

        def touch(kind: str, spread: float | None) -> None:
            points = (
                []
                if spread is None
                else [{"x": r[0] - spread, "y": r[1], "id": 0}, {"x": r[0] + spread, "y": r[1], "id": 1}]
            )
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

        touch("touchStart", 40)
        for spread in (60, 90, 120):
            touch("touchMove", spread)
        touch("touchEnd", None)
        k = driver.execute_script("return window.paperscopeMap.view().k")
        assert 2.7 < k < 3.3, k  # fingers 80 px apart -> 240 px apart: three times the scale
