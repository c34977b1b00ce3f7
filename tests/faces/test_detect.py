"""facegen.faces.detect: the real SCRFD detector finds the faces of real photos; missing weights say how to fix it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from config_bounds import assert_named_in_one_line, bad_numbers

from facegen.faces.detect import (
    Detection,
    DetectionFailed,
    FaceDetector,
    FacesConfig,
    WeightsMissingError,
    padded_margin,
    shape_problem,
)


def test_scrfd_finds_faces_largest_first(scrfd_model, faces_dir):
    det = FaceDetector(FacesConfig(model=str(scrfd_model), det_size=640, min_score=0.5))
    faces = det.detect(cv2.imread(str(faces_dir / "wild" / "facerec__knn_test_obama_and_biden.jpg")))
    # Biden, Obama, and the girl at the bottom right (partly hidden, smallest)
    assert len(faces) == 3
    assert faces[0].area >= faces[1].area >= faces[2].area
    assert faces[2].bbox[0] > 1600 and faces[2].bbox[1] > 900
    for f in faces:
        assert f.score >= 0.5 and len(f.kps) == 5
        x1, y1, x2, y2 = f.bbox
        (lx, ly), (rx, _ry), (_nx, ny) = f.kps[:3]
        assert x1 < lx < rx < x2 and y1 < ly < ny < y2  # eyes left-to-right, nose below the eyes
    assert Detection.from_record(faces[0].to_record()) == faces[0]


def test_directory_of_onnx_models_loads(scrfd_model, faces_dir):
    det = FaceDetector(FacesConfig(model=str(scrfd_model.parent)))
    assert len(det.detect(cv2.imread(str(faces_dir / "wild" / "facerec__biden.jpg")))) == 1


def test_missing_weights_error_names_the_value_and_the_ways_out(tmp_path):
    with pytest.raises(WeightsMissingError) as info:
        FaceDetector(FacesConfig(model=str(tmp_path / "nope.onnx")))
    msg = str(info.value)
    assert "faces.model=" in msg and "nope.onnx" in msg
    assert ".insightface/models" in msg and "directory of insightface ONNX models" in msg


# tight crops from ../shared/faces/portraits: the face fills the frame
TIGHT = (
    "dlib__johns_John_Salley_000179_02159509.jpg",
    "dlib__johns_John_Savage_000274_01099061.jpg",
    "dlib__johns_John_Schneider_000329_00925859.jpg",
    "dlib__johns_John_Simm_000305_00470717.jpg",
    "facemaskdet__0_0_jianailiang_0015.jpg",
    "facemaskdet__1_0_anhu_0202.jpg",
)


def _bgr(path) -> np.ndarray:
    from facegen.common.images import read_image

    return np.ascontiguousarray(read_image(path)[:, :, ::-1])


def test_frame_filling_faces_are_found_by_the_padded_pass(scrfd_model, faces_dir):
    padded = FaceDetector(FacesConfig(model=str(scrfd_model)))
    plain = FaceDetector(FacesConfig(model=str(scrfd_model), pad=0.0))
    for name in TIGHT:
        bgr = _bgr(faces_dir / "portraits" / name)
        h, w = bgr.shape[:2]
        assert plain.detect(bgr) == [], f"{name}: pass 1 alone should miss this frame-filling face"
        faces = padded.detect(bgr)
        assert len(faces) == 1, name
        x1, y1, x2, y2 = faces[0].bbox
        assert (x2 - x1) > 0.7 * w and (y2 - y1) > 0.8 * h  # the face fills the frame
        (lx, ly), (rx, ry) = faces[0].kps[:2]
        assert 0 < lx < rx < w and 0 < ly < h and 0 < ry < h  # eyes inside the photo, left to right
    assert (padded.images, padded.padded) == (len(TIGHT), len(TIGHT))


def test_padded_pass_maps_boxes_and_keypoints_back_to_the_photo(scrfd_model, faces_dir):
    """A face found by pass 2 has the coordinates pass 1 gives the same face on a larger canvas."""
    bgr = _bgr(faces_dir / "portraits" / TIGHT[0])
    h, w = bgr.shape[:2]
    face = FaceDetector(FacesConfig(model=str(scrfd_model))).detect(bgr)[0]
    canvas = np.full((2 * h, 2 * w, 3), 127, np.uint8)
    canvas[h // 2 : h // 2 + h, w // 2 : w // 2 + w] = bgr
    plain = FaceDetector(FacesConfig(model=str(scrfd_model), pad=0.0)).detect(canvas)[0]
    assert np.abs(np.subtract(plain.bbox, face.bbox) - [w // 2, h // 2] * 2).max() < 0.06 * w
    assert np.abs(np.subtract(plain.kps, face.kps) - [w // 2, h // 2]).max() < 0.04 * w


def test_photos_whose_face_pass_1_finds_keep_pass_1_and_skip_pass_2(scrfd_model, faces_dir):
    det = FaceDetector(FacesConfig(model=str(scrfd_model)))
    plain = FaceDetector(FacesConfig(model=str(scrfd_model), pad=0.0))
    bgr = _bgr(faces_dir / "wild" / "facerec__biden.jpg")
    assert det.detect(bgr) == plain.detect(bgr) and (det.images, det.padded) == (1, 0)
    always = FaceDetector(FacesConfig(model=str(scrfd_model), pad_always=True))
    assert always.detect(bgr) == plain.detect(bgr) and always.padded == 1  # the same face keeps pass 1's detection


def non_face_images(faces_dir) -> list[np.ndarray]:
    """Synthetic scenes and face-free crops of real photos (BGR)."""
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, 300)[:, None, None]
    sky = ((np.array([90, 150, 230]) * (1 - y) + np.array([200, 220, 255]) * y) * np.ones((1, 400, 1))).astype(np.uint8)
    sky[200:] = (60, 140, 60)
    yy, xx = np.mgrid[:240, :320]
    checker = np.repeat((((yy // 16 + xx // 16) % 2) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    messi = _bgr(faces_dir / "wild" / "opencvsamples__messi5.jpg")  # the pitch below the players
    pascal = _bgr(faces_dir / "wild" / "dlib__2008_002506.jpg")
    return [
        sky,
        checker,
        rng.integers(0, 256, (150, 150, 3), dtype=np.uint8),
        np.full((200, 200, 3), 127, np.uint8),
        np.ascontiguousarray(messi[300:, :250]),
        np.ascontiguousarray(messi[:, -120:]),
        np.ascontiguousarray(pascal[-100:, :]),
    ]


def test_non_face_images_stay_without_faces(scrfd_model, faces_dir):
    det = FaceDetector(FacesConfig(model=str(scrfd_model)))
    images = non_face_images(faces_dir)
    assert [len(det.detect(im)) for im in images] == [0] * len(images)
    assert det.padded == len(images)  # every one was searched on the padded canvas too


def test_faces_config_names_bad_values():
    with pytest.raises(ValueError, match=r"faces\.pad=-0\.1"):
        FacesConfig(pad=-0.1)
    with pytest.raises(ValueError, match=r"faces\.det_size=600"):
        FacesConfig(det_size=600)
    with pytest.raises(ValueError, match=r"faces\.min_score=1\.5"):
        FacesConfig(min_score=1.5)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pad", float("inf")),
        ("pad", 1000.0),
        ("pad", float("nan")),
        ("pad", 2.01),
        ("min_score", float("nan")),
        ("max_aspect", 641.0),  # past det_size the shorter side reaches the detector at 0 px
        ("max_aspect", 0.5),
        ("max_aspect", float("inf")),
        ("max_canvas_pixels", 10**12),
        ("max_canvas_pixels", 1000),
        ("det_size", 8192),
    ],
)
def test_faces_config_names_each_bad_value_in_one_line(key, value):
    from facegen.common.config import from_dict

    with pytest.raises(ValueError) as info:
        from_dict(FacesConfig, {key: value}, "faces")
    msg = str(info.value)
    assert f"faces.{key}" in msg and "\n" not in msg


def test_shape_guard_bounds_aspect_and_pixels():
    cfg = FacesConfig()
    assert shape_problem(641, 1, cfg) is not None and "faces.max_aspect=20" in shape_problem(641, 1, cfg)
    assert "0 px" in shape_problem(641, 1, cfg)  # what SCRFD's resize would have made of it
    assert shape_problem(50000, 100, cfg) is not None and shape_problem(16000, 64, cfg) is not None
    assert shape_problem(2000, 100, cfg) is None and shape_problem(2001, 100, cfg) is not None  # ratio 20 kept
    assert "max_canvas_pixels" in shape_problem(8000, 7000, cfg)  # 56 Mpx
    assert shape_problem(0, 10, cfg) is not None


def test_padded_margin_keeps_the_canvas_within_max_canvas_pixels():
    cfg = FacesConfig()
    assert padded_margin(900, 600, cfg) == 450  # pad x the longer side, unbounded by the cap
    assert padded_margin(900, 600, FacesConfig(pad=0.0)) == 0
    for h, w in [(16000, 64), (50000, 100), (3000, 4000), (7000, 7000), (5000, 9999)]:
        m = padded_margin(h, w, cfg)
        assert m < round(0.5 * max(h, w))  # shrunk ...
        assert (h + 2 * m) * (w + 2 * m) <= cfg.max_canvas_pixels < (h + 2 * m + 2) * (w + 2 * m + 2)  # ... just enough
    assert padded_margin(7072, 7070, cfg) == 0  # the photo alone fills the cap: no pass 2


def _counting(det: FaceDetector) -> list[tuple[int, ...]]:
    """Record the shape of every image the SCRFD model itself is given."""
    calls: list[tuple[int, ...]] = []
    inner = det._det.detect

    def detect(img, **kw):
        calls.append(img.shape)
        return inner(img, **kw)

    det._det.detect = detect  # type: ignore[attr-defined]
    return calls


def test_thin_images_are_refused_before_any_detector_call(scrfd_model):
    det = FaceDetector(FacesConfig(model=str(scrfd_model)))
    calls = _counting(det)
    for h, w in [(641, 1), (50000, 100), (16000, 64), (1, 641)]:
        with pytest.raises(DetectionFailed) as info:
            det.detect(np.zeros((h, w, 3), np.uint8))
        assert info.value.status == "bad_shape" and f"{w}x{h}" in info.value.reason
    with pytest.raises(DetectionFailed, match="H, W, 3"):
        det.detect(np.zeros((64, 64), np.uint8))
    assert calls == [] and det.images == 0


def test_padded_pass_on_a_thin_image_stays_within_the_canvas_bound(scrfd_model):
    """64x16000 past the default max_aspect: pass 2's canvas was 16064 x 32000 (1.5 GB), now within the cap."""
    import tracemalloc

    cfg = FacesConfig(model=str(scrfd_model), max_aspect=640.0, max_canvas_pixels=4_000_000)
    det = FaceDetector(cfg)
    calls = _counting(det)
    image = np.full((16000, 64, 3), 200, np.uint8)
    tracemalloc.start()
    try:
        assert det.detect(image) == []
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    m = padded_margin(16000, 64, cfg)
    assert calls == [(16000, 64, 3), (16000 + 2 * m, 64 + 2 * m, 3)] and det.padded == 1
    assert (16000 + 2 * m) * (64 + 2 * m) <= 4_000_000
    assert peak < 3 * 4_000_000 + 20_000_000  # one BGR canvas at the cap plus the detector's 640^2 buffers


def test_a_detector_exception_becomes_the_images_status(scrfd_model):
    import cv2

    det = FaceDetector(FacesConfig(model=str(scrfd_model)))

    def broken(img, **kw):
        raise cv2.error("OpenCV(4.x) resize.cpp: error: (-215:Assertion failed) inv_scale_x > 0")

    det._det.detect = broken  # type: ignore[attr-defined]
    with pytest.raises(DetectionFailed) as info:
        det.detect(np.zeros((200, 200, 3), np.uint8))
    assert info.value.status == "detector_error" and "inv_scale_x > 0" in info.value.reason
    assert "error" in info.value.reason.split(":")[0]  # the exception's type comes first


def test_pose_measurement_counts_a_refused_image_as_unmeasured(scrfd_model):
    from facegen.faces.pose import measure_yaw

    det = FaceDetector(FacesConfig(model=str(scrfd_model)))

    def broken(img, **kw):
        raise RuntimeError("onnxruntime Fail")

    det._det.detect = broken  # type: ignore[attr-defined]
    out = measure_yaw(np.zeros((2, 32, 32, 3), np.uint8), det)
    assert np.isnan(out).all()


@pytest.mark.parametrize(("key", "value"), bad_numbers(FacesConfig))
def test_every_number_is_finite_and_bounded(key, value):
    assert_named_in_one_line(FacesConfig, "faces", key, value)
