"""Real photos from ../shared/faces/wild and their SCRFD detections, for the align tests.

Detection runs once per photo per test session (cached); the align code itself never
detects, so the tests produce its input the way the download stage does.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from facegen.common.images import read_image
from facegen.faces.detect import Detection, FaceDetector, FacesConfig

EXIF_ROTATED = "insightface__inspireface_bulk_image_T1.jpeg"  # EXIF orientation 6
WEBP = "deepface__img47.webp"
RGBA = "facerec__alex-lacamoire.png"
BLURRED = "insightface__inspireface_bulk_blur.jpg"
PROFILE = "insightface__inspireface_pose_right_face.png"  # head turned ~60 degrees (RGBA too)
TILTED_LEFT = "insightface__inspireface_pose_left_wryneck.png"  # head rolled ~30 degrees
TILTED_RIGHT = "insightface__inspireface_pose_right_wryneck.png"
FRONTAL = "dlib__Tom_Cruise_avp_2014_4.jpg"
OBAMA = "facerec__knn_train_obama_obama.jpg"
OBAMA_SMALL = "facerec__obama_small.jpg"  # the same photo as OBAMA, downscaled: a near-duplicate
BIDEN = "facerec__biden.jpg"
MESSI = "opencvsamples__messi5.jpg"  # one small face (eyes 13 px apart)


@functools.lru_cache(maxsize=4)
def detector(model: str) -> FaceDetector:
    return FaceDetector(FacesConfig(model=model, det_size=640, min_score=0.5))


@functools.lru_cache(maxsize=64)
def _detect_file(model: str, path: str) -> tuple[Detection, ...]:
    return tuple(detector(model).detect(np.ascontiguousarray(read_image(path)[:, :, ::-1])))


def detect(model: Path, path: Path) -> list[Detection]:
    """Detections (largest first) on the decoded, EXIF-oriented pixels of ``path``."""
    return list(_detect_file(str(model), str(path)))


def detect_array(model: Path, rgb: np.ndarray) -> list[Detection]:
    """Detections on an (H, W, 3) uint8 RGB array."""
    return detector(str(model)).detect(np.ascontiguousarray(rgb[:, :, ::-1]))


def detections_json(dets: list[Detection]) -> str:
    """The downloads.parquet ``detections`` cell for these detections."""
    return json.dumps([d.to_record() for d in dets])
