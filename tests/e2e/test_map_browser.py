"""The HTML map opened in real headless Chromium: points and labels render, a click shows related papers,
and corpus text never runs as script."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from paperscope.explorer import Explorer
from paperscope.pipeline import build
from tests.browser import chromium, require_browser
from tests.conftest import TENSOR_PROGRAMS_V, FakeEmbedder


def _click_at(driver, x: float, y: float) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.action_chains import ActionChains

    builder = ActionChains(driver).w3c_actions  # a real pointer move and click at viewport coordinates
    builder.pointer_action.move_to_location(int(x), int(y)).click()
    builder.perform()


def _canvas_offset(driver) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    r = driver.execute_script(
        "const r = document.getElementById('canvas').getBoundingClientRect(); return [r.left, r.top];"
    )
    return float(r[0]), float(r[1])


def _isolated(driver, ids: list[str], first: str) -> str:  # type: ignore[no-untyped-def]
    """A paper (``first`` if possible) with no other point within 10 px, so a click hits only it."""
    pos = driver.execute_script("return arguments[0].map(id => window.paperscopeMap.screenPosition(id));", ids)
    for cand in [first] + ids:
        i = ids.index(cand)
        if all(j == i or (pos[j][0] - pos[i][0]) ** 2 + (pos[j][1] - pos[i][1]) ** 2 > 100 for j in range(len(ids))):
            return cand
    raise AssertionError("no isolated point to click")


@pytest.mark.model
def test_map_page_renders_and_click_shows_related(real_store: Path, tmp_path: Path) -> None:
    require_browser()
    with Explorer(real_store) as ex:
        tm = ex.topic_map(tmp_path / "out")
        page = Path(tm.stats["outputs"]["html"])
        target_id = ex.paper(TENSOR_PROGRAMS_V).id
        with chromium(tmp_path / "profile") as driver:
            driver.get(page.as_uri())
            drawn = driver.execute_script("return window.paperscopeMap.pointsDrawn")
            assert drawn == len(tm) == 432
            # Pixels really painted: count non-transparent pixels of the canvas.
            painted = driver.execute_script(
                "const c = document.getElementById('canvas'); const d = c.getContext('2d')"
                ".getImageData(0, 0, c.width, c.height).data; let n = 0;"
                "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n;"
            )
            assert painted > 432 * 10
            # Zoomed out the page shows theme labels (fine topic labels appear as one zooms in).
            labels = [e.text for e in driver.find_elements("css selector", "#labels .label")]
            assert labels and set(labels) <= {t.label for t in tm.topics if t.level == 0}, labels
            pick = _isolated(driver, tm.ids, target_id)
            x, y = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", pick)
            ox, oy = _canvas_offset(driver)
            _click_at(driver, ox + x, oy + y)
            assert driver.execute_script("return window.paperscopeMap.selectedId()") == pick
            shown = [e.text for e in driver.find_elements("css selector", "#related li .t")]
            expected = [h.paper.title for h in ex.related(pick, k=5)]
            assert shown == expected and len(shown) == 5
            heading = driver.find_element("id", "paper-title").text
            assert heading == ex.paper(pick).title
            # The search box ranks matching papers.
            driver.find_element("id", "search").send_keys("LoRA")
            time.sleep(0.3)
            assert "papers match" in driver.find_element("id", "matches").text
            driver.save_screenshot(str(tmp_path / "page.png"))


def test_corpus_text_is_shown_as_text_never_run(tmp_path: Path) -> None:
    require_browser()
    evil = "<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned2'</script>"
    rows = [
        {
            "id": f"p{i}",
            "title": (evil if i == 0 else f"Paper {i} about topic {i % 3}"),
            "abstract": f"{evil} words about topic {i % 3} " + " ".join(f"w{i % 3}x{j}" for j in range(30)),
        }
        for i in range(40)
    ]
    src = tmp_path / "evil.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    build([src], store, embedder=FakeEmbedder())
    with Explorer(store) as ex:
        tm = ex.topic_map(tmp_path / "out")
    with chromium(tmp_path / "profile") as driver:
        driver.get(Path(tm.stats["outputs"]["html"]).as_uri())
        x, y = driver.execute_script("return window.paperscopeMap.screenPosition('p0');")
        ox, oy = _canvas_offset(driver)
        _click_at(driver, ox + x, oy + y)
        assert driver.execute_script("return window.paperscopeMap.selectedId()") == "p0"
        assert driver.find_element("id", "paper-title").text == evil  # shown literally
        assert driver.title == "paperscope topic map"  # neither payload ran
        assert driver.find_elements("css selector", "#paper img, #labels img, #tip img") == []


def test_ids_topic_labels_and_keywords_are_text_too(tmp_path: Path) -> None:
    """Issue 7: not only titles: a paper id (free text in JSONL) and a topic label or keyword carrying markup
    (labels come from tokenised words today, but the page must not rely on that) show as text."""
    import dataclasses

    from paperscope.render import write_html

    require_browser()
    evil = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script></script><!--'
    rows = [
        {
            "id": (evil if i == 0 else f"q{i}"),
            "title": f"Paper {i} about topic {i % 3}",
            "abstract": "words about topic " + " ".join(f"w{i % 3}x{j}" for j in range(30)),
        }
        for i in range(40)
    ]
    src = tmp_path / "evil.jsonl"
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    build([src], store, embedder=FakeEmbedder())
    with Explorer(store) as ex:
        tm = ex.topic_map(tmp_path / "out", render=False)
        related = {pid: [h.paper.id for h in ex.related(pid, k=3)] for pid in tm.ids}
    tm.topics = [dataclasses.replace(t, label=f"{evil} {t.id}", keywords=[evil, f"kw{t.id}"]) for t in tm.topics]
    page = write_html(tm, tmp_path / "map.html", related)
    assert "<img" not in page.read_text(encoding="utf-8").split('id="data"', 1)[1]
    with chromium(tmp_path / "profile") as driver:
        driver.get(page.as_uri())
        x, y = driver.execute_script("return window.paperscopeMap.screenPosition(arguments[0]);", evil)
        ox, oy = _canvas_offset(driver)
        _click_at(driver, ox + x, oy + y)
        assert driver.execute_script("return window.paperscopeMap.selectedId()") == evil
        panel = driver.find_element("id", "paper").text
        assert evil in panel  # the id, shown literally
        labels = driver.find_element("id", "labels").text
        options = [o.text for o in driver.find_elements("css selector", "#filter option")]
        assert evil in labels and any(o.startswith(evil) for o in options)
        assert driver.execute_script(
            "return window.pwned === undefined && document.querySelectorAll('img').length === 0"
        )
        assert driver.title == "paperscope topic map"
