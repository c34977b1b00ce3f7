"""The studio in headless Chromium: a server thread, a browser, and the docs' screenshot.

tests/studio/test_browser.py walks the page with these; run as a script it takes
docs/img/studio.png (docs/studio.md) over a repository's models/best:

    python tests/studio_browser.py --root . --out docs/img/studio.png

It needs Debian's chromium and chromium-driver and the dev extra's selenium.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")
DOCS_WIDTH = 1600  # px: the docs' picture is the page at this width


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(cfg: Any) -> Iterator[str]:
    """``create_app(cfg)`` under uvicorn in a thread on a free port; yields its URL."""
    import uvicorn

    from facegen.studio.app import create_app

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


def chromium(width: int = 1200, height: int = 900) -> Any:
    """A headless Chromium (selenium webdriver) that keeps the console log."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if CHROMIUM is None or DRIVER is None:
        raise RuntimeError("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def wait(driver: Any, cond: Callable[[Any], Any], timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)


def idle(driver: Any) -> None:
    """Until the page runs no job (body data-busy empty)."""
    wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-busy") == "")


def page_width(driver: Any, width: int, height: int = 1000) -> None:
    """Size the window so that the page itself (window.innerWidth) is ``width`` px wide."""
    driver.set_window_size(width, height)
    inner = driver.execute_script("return window.innerWidth")
    driver.set_window_size(2 * width - inner, height)
    time.sleep(0.3)


def shoot_generate(driver: Any, url: str, out: Path, *, n: int, nearest: bool) -> None:
    """Open the page, generate ``n`` images (and check the first against the training faces), save it."""
    driver.get(url + "/")
    wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    page_width(driver, DOCS_WIDTH)
    field = driver.find_element("id", "gen-n")
    field.clear()
    field.send_keys(str(n))
    driver.find_element("id", "generate-btn").click()
    wait(driver, lambda d: len(d.find_elements("css selector", "#gen-images img")) == n, 600)
    idle(driver)
    if nearest:
        driver.find_element("css selector", "#gen-images figure .nearest-btn").click()
        idle(driver)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(out)):
        raise RuntimeError(f"the screenshot could not be written to {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="docs/img/studio.png: the Generate tab at 1600 px")
    parser.add_argument("--root", default=".", help="repository: params.yaml, models/best, data/faces.parquet")
    parser.add_argument("--out", default="docs/img/studio.png")
    parser.add_argument("--images", type=int, default=15, help="images to generate (default 15: one row)")
    parser.add_argument(
        "--nearest",
        action="store_true",
        help="also check the first image's nearest training face (that photo of a real person is then in the picture)",
    )
    args = parser.parse_args(argv)
    from facegen.studio.app import StudioConfig

    root = Path(args.root).resolve()
    with serve(StudioConfig(root=root, model=root / "models" / "best")) as url:
        driver = chromium()
        try:
            shoot_generate(driver, url, Path(args.out), n=args.images, nearest=args.nearest)
        finally:
            driver.quit()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
