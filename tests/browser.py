"""Real headless Chromium (Debian's package) driven by Selenium, with the network switched off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def require_browser() -> None:
    """Skip where no Chromium is installed, except in CI, where its absence is a failure."""
    if CHROMIUM and CHROMEDRIVER:
        return
    if os.environ.get("CI"):
        pytest.fail("chromium and chromedriver are required in CI (.ci/run installs them with apt-get)")
    pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")


@contextmanager
def chromium(
    user_data: Path, *, size: tuple[int, int] = (1400, 900), logs: bool = False, loopback: bool = False
) -> Iterator[object]:
    """A headless Chromium session; the page may not reach any network host.

    ``size`` is the window size; ``logs`` records the console and the DevTools performance log
    (``driver.get_log("performance")`` then lists every ``Network.requestWillBeSent``); ``loopback``
    lets the page reach 127.0.0.1 (a local ``paperscope serve``) and still no other host.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--window-size={size[0]},{size[1]}",
        f"--user-data-dir={user_data}",
        # Every host name resolves nowhere: a page that tried to fetch anything would fail.
        "--host-resolver-rules=MAP * ~NOTFOUND" + (", EXCLUDE 127.0.0.1" if loopback else ""),
        "--proxy-server=127.0.0.1:9",
    ):
        opts.add_argument(arg)
    if logs:
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
