"""Yaw measured on face images (aligned faces, generated samples) by detecting them again.

Why: a model asked for a head turn is judged with the measurement its training faces carry:
the detector's 5 keypoints and :func:`facegen.faces.attributes.yaw` (insightface's 3D pose
when the pack has it, else keypoint yaw; degrees, negative = the face turned to the image's
left). A sample is small (32-64 px) and filled by its face, so it is enlarged to ``size`` px
(bicubic) and detected with the pipeline's detector (``faces.*``, its padded pass included).
An image where no face is found (or the detector fails: ``DetectionFailed``) measures NaN:
counted by the caller, never guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from facegen.faces import attributes
from facegen.faces.detect import DetectionFailed

if TYPE_CHECKING:  # pragma: no cover
    from facegen.faces.detect import FaceDetector

MEASURE_SIZE = 160  # px: samples are enlarged to this before detection (SCRFD's smallest stride is 8)


def measure_yaw(images: np.ndarray, detector: FaceDetector, size: int = MEASURE_SIZE) -> np.ndarray:
    """Yaw in degrees of the largest face in each RGB uint8 image (N, H, W, 3): float64 (N,), NaN
    where the detector finds no face."""
    import cv2

    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images (N, H, W, 3), got shape {images.shape}")
    out = np.full(len(images), np.nan)
    for i, image in enumerate(images):
        big = cv2.resize(image, (size, size), interpolation=cv2.INTER_CUBIC)
        try:
            found = detector.detect(np.ascontiguousarray(big[:, :, ::-1]))
        except DetectionFailed:  # a failed detection measures nothing, as a missed face does
            continue
        if found:
            out[i] = attributes.yaw(found[0].kps, found[0].pose)
    return out
