"""The page in a real browser: headless Chromium walks every tab of the studio over a tiny
conditional model, an MLflow run with an epoch checkpoint, and an aligned face set.

One module-scoped server and browser; the tests run in file order and share the page. Each tab
is also checked at 390 px and 1600 px wide for horizontal overflow, with a screenshot.
"""

from __future__ import annotations

import base64
import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from studio_browser import CHROMIUM, DOCS_WIDTH, DRIVER, chromium, idle, page_width, serve, wait

TABS = ("generate", "explore", "edit", "runs", "judge", "dataset")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.network,
    pytest.mark.timeout(300),
    pytest.mark.skipif(
        CHROMIUM is None or DRIVER is None,
        reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; "
        ".ci/run installs them)",
    ),
]

# the sample stage's settings the studio reads from params.yaml: few steps, small batches
# not the default data/studio_judgements.parquet: the end screen must say the server's file
JUDGEMENTS = "data/judge_answers.parquet"
SAMPLE = {"seed": 0, "sampler": "ddim", "steps": 4, "timestep_spacing": "trailing", "batch_size": 2, "device": "cpu"}


@pytest.fixture(scope="module")
def studio_repo(tmp_path_factory) -> tuple[Path, str, str, dict[str, str]]:
    """A repository: an aligned face set (tests/curation_faces.py), models/best a tiny model
    conditioned on brightness, and an MLflow run whose best folder and epoch-2 checkpoint exist."""
    import mlflow
    import numpy as np
    import torch
    import yaml
    from curation_faces import build_repo, run_stage
    from diffusers.training_utils import EMAModel
    from mlflow_runs import log_run
    from PIL import Image

    from facegen.diffusion import conditional
    from facegen.diffusion.model import save_model_dir, unet_config
    from facegen.diffusion.noise import make_noise_scheduler

    root, ids = build_repo(tmp_path_factory.mktemp("studio"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["align"]["test_fraction"] = 0.0  # both accepted faces train: the nearest-face check has two
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert run_stage(root).returncode == 0
    fid = {"extractor": "offline", "batch_size": 8}  # the nearest-training-face check: no Inception download
    (root / "params.yaml").write_text(
        yaml.safe_dump({**params, "sample": SAMPLE, "train": {"experiment": "exp"}, "fid": fid})
    )
    stats = {"names": ["brightness"], "mean": [120.0], "std": [30.0], "min": [40.0], "max": [200.0], "margin": 0.0}
    torch.manual_seed(0)
    unet = conditional.build(unet_config("tiny", 16, (8, 16)), stats).eval()
    with torch.no_grad():  # a trained-looking embedding: the fresh one is zero and would ignore the condition
        unet.condition_embedding[2].weight.normal_(0, 0.5)
    train_config = {"model": "tiny", "condition": ["brightness"]}
    save_model_dir(root / "models" / "best", unet, make_noise_scheduler(), train_config)
    run_dir = root / "models" / "checkpoints" / "abc123"
    save_model_dir(run_dir / "best", unet, make_noise_scheduler(), train_config)
    torch.manual_seed(1)
    other = conditional.build(unet_config("tiny", 16, (8, 16)), stats)  # other weights: epoch 2's EMA
    (run_dir / "epoch_00002").mkdir()
    torch.save(EMAModel(other.parameters()).state_dict(), run_dir / "epoch_00002" / "ema.pt")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    run_id = log_run(uri, "r1", {1: 3.0, 2: 2.0, 3: 2.5}, str(run_dir / "best"))
    mlflow.MlflowClient(uri).log_image(
        run_id, Image.fromarray(np.zeros((8, 8, 3), np.uint8)), "samples/epoch_00002.png"
    )
    return root, uri, run_id, ids


@pytest.fixture(scope="module")
def server(studio_repo, scrfd_model):
    from facegen.studio.app import StudioConfig

    root, uri, _, _ = studio_repo
    cfg = StudioConfig(
        root=root, tracking_uri=uri, experiment="exp", detector=str(scrfd_model), judgements=Path(JUDGEMENTS)
    )
    with serve(cfg) as url:
        yield url


@pytest.fixture(scope="module")
def browser(server):
    driver = chromium(1200, 900)
    driver.get(server + "/")
    _wait(driver, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1")
    # record every request the page sends (method, path, X-Facegen-Studio header, JSON body)
    driver.execute_script(
        """window.SENT = []; const real = window.fetch;
        window.fetch = (path, init = {}) => { const h = init.headers || {};
          window.SENT.push({method: init.method || 'GET', path: String(path), header: h['X-Facegen-Studio'] || null,
                            body: typeof init.body === 'string' ? init.body : null});
          return real(path, init); };"""
    )
    yield driver
    driver.quit()


_wait = wait
_idle = idle


def _tab(driver, name: str) -> None:
    driver.find_element("css selector", f"nav button[data-tab={name}]").click()


def _by_id(driver, element_id: str):
    return driver.find_element("id", element_id)


def _sent(driver, path: str) -> list[dict]:
    return [r for r in driver.execute_script("return window.SENT") if r["path"].startswith(path)]


def _set(driver, element_id: str, value: str) -> None:
    el = _by_id(driver, element_id)
    el.clear()
    el.send_keys(value)


def _srcs(driver, css: str) -> list[str]:
    return [e.get_attribute("src") for e in driver.find_elements("css selector", css)]


def _api(server: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "X-Facegen-Studio": "1"} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(server + path, data, headers), timeout=60) as resp:
        return json.loads(resp.read())


def test_page_head_viewport_favicon_and_header_fit(browser, server) -> None:
    viewport = browser.execute_script("return document.querySelector('meta[name=viewport]').content")
    assert viewport == "width=device-width, initial-scale=1"
    icon = browser.execute_script("return document.querySelector('link[rel=icon]').href")
    with urllib.request.urlopen(icon, timeout=10) as resp:
        assert resp.status == 200 and resp.read().startswith(b"<svg")
    # a long checkpoint id is cut in the header and never pushes the tabs onto a second row
    browser.execute_script("document.getElementById('model-info').textContent = 'model run:' + 'f'.repeat(300)")
    for width in (390, 1600):
        browser.set_window_size(width, 900)
        tops = browser.execute_script("return [...document.querySelectorAll('nav button')].map(b => b.offsetTop)")
        assert len(set(tops)) == 1, (width, tops)
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    browser.set_window_size(1200, 900)


def test_generate_same_seed_same_bytes_the_condition_toggle_and_the_reproduce_line(browser, server) -> None:
    _set(browser, "gen-n", "3")
    _by_id(browser, "generate-btn").click()
    _wait(browser, lambda d: len(d.find_elements("css selector", "#gen-images img")) == 3)
    _idle(browser)
    captions = [e.text for e in browser.find_elements("css selector", "#gen-images figcaption")]
    assert captions == ["seed 0", "seed 1", "seed 2"]
    first = _srcs(browser, "#gen-images img")
    assert "unconditional" in _by_id(browser, "gen-status").text
    # the page's bytes are the API's unconditional images of those seeds (test_app: the sample stage's)
    plain = _api(server, "/api/generate", {"seed": 0, "n": 3})
    assert first == ["data:image/png;base64," + b for b in plain["images"]]
    reproduce = plain.get("reproduce")
    shown = _by_id(browser, "gen-reproduce").is_displayed()
    assert shown == bool(reproduce)
    if reproduce:
        assert _by_id(browser, "gen-command").text == reproduce
    sent = json.loads(_sent(browser, "/api/generate")[-1]["body"])
    assert "condition" not in sent and "guidance" not in sent

    # same seed again: the same bytes; several quick clicks while it runs send one request
    before = len(_sent(browser, "/api/generate"))
    disabled = browser.execute_script(
        "const b = document.getElementById('generate-btn'); b.click(); const d = b.disabled; b.click(); b.click();"
        "document.getElementById('generate-form').requestSubmit(); return d"
    )
    assert disabled is True
    _idle(browser)
    assert len(_sent(browser, "/api/generate")) == before + 1
    assert _srcs(browser, "#gen-images img") == first

    # the condition toggle: unconditional by default; brightness on shows its slider and guidance
    assert not _by_id(browser, "guidance").is_displayed()
    browser.find_element("css selector", "#condition-toggle button[data-name=brightness]").click()
    slider = browser.find_element("css selector", "#condition-sliders input[data-name=brightness]")
    assert slider.is_displayed() and _by_id(browser, "guidance").is_displayed()
    assert browser.find_element("css selector", "#condition-sliders output").text == "120"
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    sent = json.loads(_sent(browser, "/api/generate")[-1]["body"])
    assert sent["condition"] == {"brightness": 120} and "guidance" not in sent  # empty: the server's default
    conditioned = _srcs(browser, "#gen-images img")
    assert conditioned != first and "brightness 120" in _by_id(browser, "gen-status").text
    with_cond = _api(server, "/api/generate", {"seed": 0, "n": 3, "condition": {"brightness": 120}})
    assert conditioned == ["data:image/png;base64," + b for b in with_cond["images"]]
    if with_cond.get("reproduce"):
        assert _by_id(browser, "gen-command").text == with_cond["reproduce"]
    else:
        assert not _by_id(browser, "gen-reproduce").is_displayed()
    browser.find_element("css selector", "#condition-toggle button:not([data-name])").click()
    assert not slider.is_displayed()
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    assert _srcs(browser, "#gen-images img") == first

    # an error stays (a tab switch does not clear it) until the next action
    _set(browser, "gen-steps", "999")
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    line = _by_id(browser, "gen-status")
    assert "max_steps=250" in line.text and "error" in line.get_attribute("class")
    _tab(browser, "explore")
    _tab(browser, "generate")
    assert "max_steps=250" in _by_id(browser, "gen-status").text
    _set(browser, "gen-steps", "4")
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    assert "error" not in _by_id(browser, "gen-status").get_attribute("class")
    # every non-GET request carried the studio's header
    posts = [r for r in browser.execute_script("return window.SENT") if r["method"] != "GET"]
    assert posts and all(r["header"] == "1" for r in posts)


def test_nearest_training_face_of_a_generated_image_and_the_flagged_mark(browser, server, studio_repo) -> None:
    root = studio_repo[0]
    _tab(browser, "generate")
    _set(browser, "gen-steps", "4")
    _by_id(browser, "generate-btn").click()  # its own images: the test runs alone too (-k nearest)
    _idle(browser)
    figures = browser.find_elements("css selector", "#gen-images figure")
    # no test split (test_fraction 0) and no metrics/fid.json: nothing to flag by, said plainly
    figures[0].find_element("css selector", ".nearest-btn").click()
    _idle(browser)
    assert "no memorization threshold" in _by_id(browser, "gen-status").text
    assert "error" in _by_id(browser, "gen-status").get_attribute("class")
    # the fid stage's thresholds (metrics/fid.json at the model's 16 px): 5.0 flags every image
    stored = {"fd_offline": 1.0, "image_size": 16, "memorization_feature_threshold": 5.0}
    stored.update(memorization_pixel_threshold=0.0, memorization_pixel_shift=2)
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics" / "fid.json").write_text(json.dumps(stored))
    try:
        figures[1].find_element("css selector", ".nearest-btn").click()
        _idle(browser)
        assert figures[1].find_elements("css selector", ".flag"), _by_id(browser, "gen-status").text
        assert "flagged" in figures[1].get_attribute("class")
        assert figures[1].find_element("css selector", ".flag").text == "⚠ near copy of a training face"
        status = _by_id(browser, "gen-status").text
        assert "FLAGGED" in status and "metrics/fid.json" in status
        # thresholds of 0 flag nothing: no mark; the tile shows the server's nearest face
        (root / "metrics" / "fid.json").write_text(json.dumps({**stored, "memorization_feature_threshold": 0.0}))
        figures[2].find_element("css selector", ".nearest-btn").click()
        _idle(browser)
        image = figures[2].find_element("css selector", "img").get_attribute("src").split(",", 1)[1]
        answer = _api(server, "/api/nearest", {"image": image})
        assert answer["flagged"] is False and "not a copy" in _by_id(browser, "gen-status").text
        assert f"nearest training face {answer['face_id']}" in _by_id(browser, "gen-status").text
        assert "flagged" not in figures[2].get_attribute("class") and not figures[2].find_elements(
            "css selector", ".flag"
        )
        shown = figures[2].find_element("css selector", ".nearest img").get_attribute("src")
        assert shown == "data:image/png;base64," + answer["face_image"]
    finally:
        (root / "metrics" / "fid.json").unlink()


def test_the_generate_tab_at_1600_px_for_the_docs(browser, studio_repo, tmp_path_factory) -> None:
    """The Generate tab with 8 images, the first flagged, at 1600 px: what tests/studio_browser.py
    takes as docs/img/studio.png (docs/studio.md) over a real repository."""
    from PIL import Image

    root = studio_repo[0]
    _tab(browser, "generate")
    browser.execute_async_script("loadModel().then(arguments[0])")  # the header as loaded (a test above padded it)
    _set(browser, "gen-n", "8")
    _by_id(browser, "generate-btn").click()
    _wait(browser, lambda d: len(d.find_elements("css selector", "#gen-images img")) == 8)
    _idle(browser)
    stored = {"fd_offline": 1.0, "image_size": 16, "memorization_feature_threshold": 5.0}
    stored.update(memorization_pixel_threshold=0.0, memorization_pixel_shift=2)
    (root / "metrics" / "fid.json").write_text(json.dumps(stored))  # flags everything: the mark is shown
    try:
        browser.find_element("css selector", "#gen-images figure .nearest-btn").click()
        _idle(browser)
        assert browser.find_elements("css selector", "#gen-images figure.flagged .flag")
    finally:
        (root / "metrics" / "fid.json").unlink()
    try:
        page_width(browser, DOCS_WIDTH)
        shot = tmp_path_factory.mktemp("docs") / "studio.png"
        assert browser.save_screenshot(str(shot))
        with Image.open(shot) as im:
            assert im.width == DOCS_WIDTH, im.size
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        browser.set_window_size(1200, 900)


def test_progress_and_cancel_of_a_long_job(browser, server) -> None:
    """A long job shows its progress in the header; Cancel stops it on the server."""
    cancelled = _api(server, "/api/status")["cancelled"]
    _set(browser, "gen-n", "8")
    browser.execute_script("document.getElementById('gen-sampler').value = 'ddpm'")
    _set(browser, "gen-steps", "250")
    _by_id(browser, "generate-btn").click()
    assert _by_id(browser, "busy").is_displayed() and not _by_id(browser, "generate-btn").is_enabled()
    has_progress = True
    try:
        _api(server, "/api/progress")
    except urllib.error.HTTPError:
        has_progress = False
    if has_progress:  # the sampler's steps, polled
        step = re.compile(r"^generate\w*: step \d+ of \d+ · ")  # the sampler's steps, from the server
        _wait(browser, lambda d: step.match(d.find_element("id", "progress-text").text), 30)
    else:
        _wait(browser, lambda d: d.find_element("id", "progress-text").text.startswith("generating · "), 30)
    _by_id(browser, "cancel-btn").click()
    _idle(browser)
    assert _by_id(browser, "gen-status").text == "generating: cancelled"
    assert not _by_id(browser, "busy").is_displayed() and _by_id(browser, "generate-btn").is_enabled()
    stopped = {"cancelled": cancelled + 1, "running": None}  # the server's worker is free again
    _wait(browser, lambda d: {k: _api(server, "/api/status")[k] for k in stopped} == stopped, 10)
    browser.execute_script("document.getElementById('gen-sampler').value = 'ddim'")
    _set(browser, "gen-steps", "4")
    if not has_progress:
        pytest.skip("GET /api/progress answers 404: the step counter is not checked (studio-server's endpoint)")


def test_interpolate_and_variations_each_with_its_own_status(browser) -> None:
    _tab(browser, "explore")
    _by_id(browser, "interpolate-btn").click()
    _wait(browser, lambda d: len(d.find_elements("css selector", "#interp-images img")) == 8)
    _idle(browser)
    assert "slerp 0 → 1" in _by_id(browser, "interp-status").text
    _set(browser, "var-n", "3")
    _set(browser, "var-steps", "2")
    assert _by_id(browser, "var-amount-value").text == "0.20 of the way (slerp)"
    _by_id(browser, "variations-btn").click()
    _wait(browser, lambda d: len(d.find_elements("css selector", "#var-images img")) == 3)
    _idle(browser)
    assert _by_id(browser, "var-status").text == "variations of seed 0, amount 0.2, ddim 2 steps"
    assert "slerp 0 → 1" in _by_id(browser, "interp-status").text  # untouched
    assert json.loads(_sent(browser, "/api/variations")[-1]["body"])["steps"] == 2


def _mask_alpha(browser) -> int:
    return browser.execute_script(
        "const d = document.getElementById('mask-canvas').getContext('2d').getImageData(0, 0, 256, 256).data;"
        "let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n"
    )


def test_upload_sdedit_paint_repaint_undo_download_and_result_as_input(browser, faces_dir) -> None:
    import wild_faces as w
    from selenium.webdriver.common.action_chains import ActionChains

    _tab(browser, "edit")
    _by_id(browser, "upload-file").send_keys(str(faces_dir / "wild" / w.FRONTAL))
    _wait(browser, lambda d: "aligned face of" in d.find_element("id", "edit-status").text)
    face = browser.execute_script("return document.getElementById('edit-canvas').toDataURL()")
    _by_id(browser, "edit-btn").click()  # SDEdit at strength 0.5
    _wait(browser, lambda d: d.find_element("id", "edit-status").text == "sdedit done")
    result = _by_id(browser, "edit-result").get_attribute("src")
    assert result.startswith("data:image/png;base64,")
    assert _by_id(browser, "result-download").get_attribute("href") == result
    assert _by_id(browser, "edit-strength-value").text == "50 % of the noise schedule"

    # paint a mask over the face (the overlay canvas), repaint it, undo the stroke
    canvas = _by_id(browser, "mask-canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, -40, 0).click_and_hold().move_by_offset(
        60, 20
    ).release().perform()
    painted = _mask_alpha(browser)
    assert painted > 200
    browser.execute_script("document.getElementById('edit-mode').value = 'repaint'")
    _by_id(browser, "edit-btn").click()
    _wait(browser, lambda d: d.find_element("id", "edit-status").text == "repaint done")
    mask = json.loads(_sent(browser, "/api/edit")[-1]["body"])["mask"]
    import io

    from PIL import Image

    drawn = Image.open(io.BytesIO(base64.b64decode(mask))).convert("L")
    assert drawn.size == (16, 16) and 0 < sum(v > 127 for v in drawn.getdata()) < 256
    _by_id(browser, "undo-btn").click()
    assert _mask_alpha(browser) == 0  # the stroke is undone
    assert browser.execute_script("return document.getElementById('edit-canvas').toDataURL()") == face

    # paint on the face, then take the repaint result as the next input
    browser.execute_script("document.getElementById('brush').value = 'paint'")
    ActionChains(browser).move_to_element(canvas).click_and_hold().move_by_offset(30, 0).release().perform()
    assert browser.execute_script("return document.getElementById('edit-canvas').toDataURL()") != face
    _by_id(browser, "use-result-btn").click()
    _wait(browser, lambda d: d.find_element("id", "edit-status").text == "the result is the input now")
    browser.execute_script("document.getElementById('brush').value = 'mask'")
    browser.execute_script("document.getElementById('edit-mode').value = 'sdedit'")


def test_a_generated_face_round_trips_the_canvas_and_sdedit_at_strength_1_gives_it_back(browser, server) -> None:
    import io

    from PIL import Image

    import facegen.studio.editing as studio_editing

    _tab(browser, "edit")
    _set(browser, "edit-seed", "3")
    _by_id(browser, "use-sample-btn").click()
    _wait(browser, lambda d: d.find_element("id", "edit-status").text.startswith("generated face of seed 3"))
    face = _api(server, "/api/generate", {"seed": 3, "n": 1})["images"][0]
    sent = browser.execute_script("return canvasB64(document.getElementById('edit-canvas'), MODEL.size)")
    pixels = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB").tobytes() for b in (face, sent)]
    assert pixels[0] == pixels[1]  # the canvas sends the face's own pixels back
    if hasattr(studio_editing, "sdedit"):
        pytest.skip(
            "the studio still has its own sdedit loop (issue 24 item 2: facegen/diffusion/edit.py, studio-server)"
        )
    browser.execute_script(
        "const s = document.getElementById('edit-strength'); s.value = '1'; s.dispatchEvent(new Event('input'))"
    )
    _by_id(browser, "edit-btn").click()
    _wait(browser, lambda d: d.find_element("id", "edit-status").text == "sdedit done")
    result = _by_id(browser, "edit-result").get_attribute("src").split(",", 1)[1]
    assert Image.open(io.BytesIO(base64.b64decode(result))).convert("RGB").tobytes() == pixels[0]


def test_runs_curves_grid_epoch_and_checkpoint_switching_then_generate(browser, studio_repo) -> None:
    _, _, run_id, _ = studio_repo
    _tab(browser, "generate")
    _set(browser, "gen-n", "2")
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    best = _srcs(browser, "#gen-images img")
    _tab(browser, "runs")
    _wait(browser, lambda d: len(d.find_elements("css selector", ".run")) == 1)
    texts = browser.execute_script("return [...document.querySelectorAll('.curves svg text')].map(t => t.textContent)")
    assert texts.count("epoch") == 2  # loss and fd_offline, each with an x axis
    assert "fd_offline · last 2.50 (epoch 3) · min 2.00" in texts and {"1", "2", "3"} <= set(texts)
    browser.find_element("css selector", "a[data-epoch='2']").click()
    caption = _wait(browser, lambda d: d.find_element("css selector", ".grid-view figcaption"))
    assert caption.text.startswith("sample grid of epoch 2")
    _wait(browser, lambda d: d.execute_script("return document.querySelector('.grid-view img').naturalWidth") == 8)
    browser.find_element("css selector", f"button[data-load='run:{run_id}:epoch:2']").click()
    _idle(browser)
    assert _by_id(browser, "runs-status").text.startswith(f"generator is now run:{run_id}:epoch:2")
    assert "epoch 2" in _by_id(browser, "model-info").get_attribute("title")
    _tab(browser, "generate")
    _by_id(browser, "generate-btn").click()
    _idle(browser)
    status = _by_id(browser, "gen-status").text
    epoch2 = _srcs(browser, "#gen-images img")
    # back to the run's best folder (the judge then samples it)
    _tab(browser, "runs")
    _wait(browser, lambda d: d.find_element("id", "runs-status").text.startswith("1 runs of experiment exp"))
    browser.find_element("css selector", f"button[data-load='run:{run_id}']").click()
    _idle(browser)
    assert _by_id(browser, "runs-status").text.startswith(f"generator is now run:{run_id}:")
    if "class_labels should be provided" in status:
        pytest.skip(
            "generating from a conditional model's epoch checkpoint fails on this server "
            "(issue 24 item 1: one model-loading path, studio-server's branch)"
        )
    assert f"model run:{run_id}:epoch:2" in status and epoch2 != best, status


def test_judging_ten_rounds_to_the_end_screen(browser, studio_repo) -> None:
    import pandas as pd

    root = studio_repo[0]
    _tab(browser, "judge")
    for k in range(1, 11):
        _wait(browser, lambda d: d.find_element("id", "judge-real").is_enabled())
        assert _by_id(browser, "judge-round").text == f"round {k} of 10"
        off = browser.execute_script("const b = document.getElementById('judge-fake'); b.click(); return b.disabled")
        assert off is True  # no second answer while the next face loads
    end = _wait(
        browser,
        lambda d: d.find_element("id", "judge-end") if d.find_element("id", "judge-end").is_displayed() else None,
    )
    table = pd.read_parquet(root / JUDGEMENTS)
    assert len(table) == 10 and set(table["answer"]) == {"fake"}
    wrong = int((~table["correct"]).sum())
    assert f"Game over after 10 rounds: {wrong} wrong, error rate {100 * wrong / 10:.1f} %" in end.text
    assert "95 % Wilson interval" in end.text and f"Your answers are saved in {JUDGEMENTS}." in end.text
    assert not _by_id(browser, "judge-play").is_displayed()


def test_dataset_lists_filters_and_a_rejection_reaches_curation_csv(browser, studio_repo) -> None:
    root, _, _, ids = studio_repo
    _tab(browser, "dataset")
    _wait(browser, lambda d: len(d.find_elements("css selector", "#ds-faces figure")) == 4)
    assert "faces 1–4 of 4 · the set: 2 accepted, 2 rejected" in _by_id(browser, "ds-status-line").text
    browser.execute_script(
        "const s = document.getElementById('ds-status'); s.value = 'rejected'; s.dispatchEvent(new Event('change'))"
    )
    _wait(browser, lambda d: len(d.find_elements("css selector", "#ds-faces figure")) == 2)
    shown = [e.get_attribute("data-face") for e in browser.find_elements("css selector", "#ds-faces figure")]
    assert shown == sorted([ids["flat"], ids["a_twin"]])
    browser.execute_script(
        "const s = document.getElementById('ds-status'); s.value = 'accepted'; s.dispatchEvent(new Event('change'))"
    )
    _wait(browser, lambda d: len(d.find_elements("css selector", "#ds-faces figure")) == 2)
    _set(browser, "ds-note", "a drawing")
    browser.find_element(
        "css selector", f"#ds-faces figure[data-face='{ids['b']}'] button[data-decision=reject]"
    ).click()
    _wait(browser, lambda d: "recorded in curation.csv" in d.find_element("id", "ds-status-line").text)
    assert (root / "curation.csv").read_text() == f"face_id,decision,note\n{ids['b']},reject,a drawing\n"
    tile = browser.find_element("css selector", f"#ds-faces figure[data-face='{ids['b']}']")
    assert "rejected by hand · pending dvc repro" in tile.text
    assert tile.find_element("css selector", "button").text == "restore"
    _wait(
        browser,
        lambda d: d.execute_script(f"return document.querySelector(\"img[alt='face {ids['b']}']\").naturalWidth") == 64,
    )


@pytest.mark.parametrize("width", [390, 1600])
def test_every_tab_fits_without_horizontal_overflow(browser, tmp_path_factory, width: int) -> None:
    shots = tmp_path_factory.mktemp(f"shots{width}")
    browser.set_window_size(width, 900)
    try:
        for name in TABS:
            _tab(browser, name)
            _idle(browser)
            time.sleep(0.2)
            assert browser.save_screenshot(str(shots / f"{name}.png"))
            fits = browser.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
            assert fits[0] <= fits[1], (name, width, fits)
    finally:
        browser.set_window_size(1200, 900)


def test_no_script_errors_on_the_console(browser) -> None:
    """The walk above raised no JavaScript error (refused requests are logged by Chromium as
    failed loads: those are the tests' deliberate 4xx, each shown on the page)."""
    logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e["message"] for e in logs if "Failed to load resource" not in e["message"]] == []
