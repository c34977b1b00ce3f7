"""facegen.faces.detect: the real SCRFD detector finds the faces of real photos; missing weights say how to fix it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facegen.faces.detect import Detection, FaceDetector, FacesConfig, WeightsMissingError


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
