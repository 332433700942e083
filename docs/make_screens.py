"""Regenerates docs/serve.png: the page `paperscope serve` shows, after a search and a click.

    python docs/make_screens.py --store DIR     # a store with a saved map (paperscope index && paperscope map)

Starts `paperscope serve` on a free 127.0.0.1 port, drives headless Debian Chromium (network limited
to that server) at 1400x900: types a query, waits for the ranked results, opens the first one, adds it
to the basket, and saves the screen. Needs the serve extra, selenium and /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "learning-rate transfer across model widths"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/api/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not become ready")


def shoot(url: str, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,900",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            driver.get(url + "/")
            wait = WebDriverWait(driver, 60)
            box = wait.until(ec.element_to_be_clickable((By.ID, "search")))
            box.send_keys(QUERY)
            first = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#results li[data-id]")))
            first.click()
            wait.until(lambda d: d.find_element(By.ID, "paper-abstract").text.strip())
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#related li[data-id]")))
            driver.find_element(By.ID, "basket-add").click()
            time.sleep(1.0)  # let the recommendations and the highlight redraw
            driver.save_screenshot(str(out))
        finally:
            driver.quit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "serve.png")
    args = ap.parse_args()
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "paperscope.cli", "serve", "--store", str(args.store), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        shoot(url, args.out)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
