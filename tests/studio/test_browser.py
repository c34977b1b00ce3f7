"""The page in a real browser: headless Chromium opens it, generates, interpolates and judges."""

from __future__ import annotations

import shutil
import socket
import threading
import time

import pytest

from facegen.studio.app import StudioConfig, create_app

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                       reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
                              ".ci/run installs them)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(repo):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(create_app(StudioConfig(root=repo)), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture()
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_page_generates_interpolates_and_records_a_judgement(server, browser, repo):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server + "/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert "model best" in browser.find_element(By.ID, "model-info").text
    assert not browser.find_element(By.ID, "conditions").is_displayed()  # unconditional: no sliders

    n = browser.find_element(By.ID, "gen-n")
    n.clear()
    n.send_keys("5")
    browser.find_element(By.ID, "generate-btn").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gen-images img")) == 5)
    captions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#gen-images figcaption")]
    assert captions == ["seed 0", "seed 1", "seed 2", "seed 3", "seed 4"]
    size = browser.execute_script("return document.querySelector('#gen-images img').naturalWidth")
    assert size == 16

    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=explore]").click()
    browser.find_element(By.ID, "interpolate-btn").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#interp-images img")) == 8)
    assert "slerp 0 → 1" in browser.find_element(By.ID, "interp-status").text

    browser.find_element(By.CSS_SELECTOR, "nav button[data-tab=judge]").click()
    wait.until(lambda d: (d.find_element(By.ID, "judge-image").get_attribute("src") or "").startswith("data:image/png"))
    wait.until(ec.element_to_be_clickable((By.ID, "judge-real"))).click()
    wait.until(lambda d: "over 1 judgements" in d.find_element(By.ID, "judge-summary").text)
    assert (repo / "data" / "studio_judgements.parquet").is_file()
