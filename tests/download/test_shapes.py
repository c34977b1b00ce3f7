"""Crafted shapes on a local board: a 1x641, a 100x50000 and a 64x16000 PNG among good faces.

Each gets a status (too_small before detection, bad_shape before any detector call), the stage
finishes, and a rerun gives the same statuses with no request and no detector call; a detector
exception on one image is that image's ``detector_error``, recorded once.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from localserver import LocalServer, Route
from PIL import Image

from facegen.download.stage import STATUSES, DownloadConfig, analyse, metrics, run_download
from facegen.faces.detect import DetectionFailed, FacesConfig

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.network

CFG = DownloadConfig(timeout_s=2.0, retries=1, backoff_s=0.01, host_delay_s=0.0, allow_private_hosts=("127.0.0.1",))


def png(width: int, height: int) -> bytes:
    """A one-colour gray PNG of ``width`` x ``height`` (a few hundred bytes to a few KB)."""
    buf = io.BytesIO()
    Image.new("L", (width, height), 180).save(buf, "PNG", optimize=True)
    return buf.getvalue()


CRAFTED = {"/thin.png": png(1, 641), "/long.png": png(100, 50000), "/strip.png": png(64, 16000)}
EXPECTED = {
    "/face.jpg": "ok",
    "/thin.png": "too_small",
    "/long.png": "bad_shape",
    "/strip.png": "bad_shape",
    "/small.jpg": "ok",
}


class NoDetector:
    def detect(self, bgr):  # pragma: no cover - must not run
        raise AssertionError("detector used on a cached image")


@pytest.fixture(scope="module")
def board(faces_dir: Path):
    face = (faces_dir / "wild" / "deepface__img20.jpg").read_bytes()
    small = (faces_dir / "wild" / "facerec__obama_small.jpg").read_bytes()
    routes = {
        "/face.jpg": Route(face),
        "/small.jpg": Route(small),
        **{p: Route(b, "image/png") for p, b in CRAFTED.items()},
    }
    with LocalServer(routes) as srv:
        links = pd.DataFrame(
            {"post_id": [f"M.{i}" for i in range(len(EXPECTED))], "url": [srv.url(p) for p in EXPECTED]}
        )
        yield srv, links


@pytest.fixture(scope="module")
def faces_cfg(scrfd_model: Path) -> FacesConfig:
    return FacesConfig(model=str(scrfd_model))


def test_crafted_shapes_get_a_status_and_a_rerun_is_stable(board, faces_cfg, tmp_path):
    srv, links = board
    before = srv.hits
    table = run_download(links, CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", progress=False)
    assert table.status.tolist() == list(EXPECTED.values())
    assert srv.hits - before == dict.fromkeys(EXPECTED, 1)
    row = table.set_index(table.url.str.rsplit("/", n=1).str[1])
    assert "faces.max_aspect=20" in row.loc["long.png", "error"] and "100x50000" in row.loc["long.png", "error"]
    assert (row.loc["strip.png", "width"], row.loc["strip.png", "height"]) == (64, 16000)  # facts kept
    assert pd.isna(row.loc["strip.png", "n_faces"]) and pd.isna(row.loc["thin.png", "detections"])
    assert metrics(table)["yield"]["rejected"]["bad_shape"] == 2
    mid = srv.hits
    again = run_download(
        links, CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", detector=NoDetector(), progress=False
    )
    assert srv.hits == mid  # no request
    pd.testing.assert_frame_equal(again, table)


def test_min_side_is_checked_before_detection_and_a_lower_one_detects_again(board, faces_cfg, tmp_path):
    srv, links = board
    run_download(links, CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", detector=None, progress=False)
    seen: list[tuple[int, ...]] = []

    class Recording:
        def detect(self, bgr):
            seen.append(bgr.shape)
            raise DetectionFailed("bad_shape", "recorded")

    mid = srv.hits
    low = replace(CFG, min_side=1)  # the 1x641 now reaches the detector's guard
    again = run_download(
        links, low, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", detector=Recording(), progress=False
    )
    assert srv.hits == mid and seen == [(641, 1, 3)]  # only the image that was too small before
    assert again.status.tolist() == ["ok", "bad_shape", "bad_shape", "bad_shape", "ok"]


def test_the_real_guard_refuses_the_1x641_png_when_min_side_lets_it_through(faces_cfg):
    from facegen.faces.detect import FaceDetector

    an = analyse(CRAFTED["/thin.png"], FaceDetector(faces_cfg), replace(CFG, min_side=1), "k")
    assert an.status == "bad_shape" and "1x641" in an.error and (an.width, an.height) == (1, 641)


def test_analysing_the_64x16000_png_stays_small(faces_cfg):
    import tracemalloc

    from facegen.faces.detect import FaceDetector

    det = FaceDetector(faces_cfg)
    tracemalloc.start()
    try:
        an = analyse(CRAFTED["/strip.png"], det, CFG, "k")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert an.status == "bad_shape" and peak < 200_000_000  # was 1.8 GB: the padded canvas of 16064 x 32000


def test_a_detector_exception_is_recorded_once_as_detector_error(board, faces_cfg, tmp_path):
    srv, links = board

    class Broken:
        calls = 0

        def detect(self, bgr):
            Broken.calls += 1
            raise DetectionFailed("detector_error", "error: OpenCV resize.cpp inv_scale_x > 0")

    table = run_download(
        links, CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", detector=Broken(), progress=False
    )
    assert table.status.tolist() == [
        "detector_error",
        "too_small",
        "detector_error",
        "detector_error",
        "detector_error",
    ]
    assert "inv_scale_x" in table.error[0] and Broken.calls == 4
    mid = srv.hits
    again = run_download(
        links, CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache", detector=NoDetector(), progress=False
    )
    assert srv.hits == mid and again.status.tolist() == table.status.tolist()
    assert {"bad_shape", "detector_error"} <= set(STATUSES)


@pytest.mark.slow
def test_stage_exits_0_twice_on_a_board_with_crafted_shapes(board, download_stage, tmp_path):
    srv, links = board
    tables, hits = [], []
    for _ in range(2):
        before = srv.hits
        proc = download_stage(tmp_path, links, srv.url("").split("//")[1])
        assert proc.returncode == 0, proc.stderr
        hits.append(srv.hits - before)
        tables.append(pd.read_parquet(tmp_path / "data" / "downloads.parquet"))
    assert tables[0].status.tolist() == list(EXPECTED.values())
    assert sum(hits[1].values()) == 0
    pd.testing.assert_frame_equal(tables[1], tables[0])
    metrics_ = json.loads((tmp_path / "metrics" / "download.json").read_text())
    assert metrics_["status"] == {"bad_shape": 2, "ok": 2, "too_small": 1}
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == sorted(
        f"{sha}.jpg" for sha in tables[0].sha256[[0, 4]]
    )
