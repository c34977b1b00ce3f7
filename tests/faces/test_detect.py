"""facegen.faces.detect: the real SCRFD detector finds the faces of real photos; missing weights say how to fix it."""

from __future__ import annotations

import cv2
import pytest

from facegen.faces.detect import Detection, FaceDetector, FacesConfig, WeightsMissingError


def test_scrfd_finds_faces_largest_first(scrfd_model, faces_dir):
    det = FaceDetector(FacesConfig(model=str(scrfd_model), det_size=640, min_score=0.5))
    assert not det.has_attributes and not det.has_pose
    faces = det.detect(cv2.imread(str(faces_dir / "wild" / "facerec__knn_test_obama_and_biden.jpg")))
    # Biden, Obama, and the girl at the bottom right (partly hidden, smallest)
    assert len(faces) == 3
    assert faces[0].area >= faces[1].area >= faces[2].area
    assert faces[2].bbox[0] > 1600 and faces[2].bbox[1] > 900
    for f in faces:
        assert f.score >= 0.5 and len(f.kps) == 5
        x1, y1, x2, y2 = f.bbox
        (lx, ly), (rx, ry), (nx, ny) = f.kps[:3]
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
