"""Per-face attributes that decide whether a face enters the dataset.

All measures are in source-image pixels unless said otherwise; keypoints are insightface's
5 points (left eye, right eye, nose, left mouth corner, right mouth corner, image left/right).

Yaw from 5 keypoints (used when the model pack has no 3D landmark model): model the head as
the two eyes on a line and the nose tip a depth ``p`` in front of it. Turning the head by
``yaw`` moves the projected nose off the eye midpoint by ``p sin(yaw)`` while the projected
eye distance shrinks to ``w cos(yaw)``. So the measurable ratio

    r = (nose - eye_midpoint) . u / eye_distance      (u: unit vector along the eye line)

equals ``(p / w) tan(yaw)``, and ``yaw = atan(r / NOSE_DEPTH_RATIO)`` with
``NOSE_DEPTH_RATIO = p / w = 0.5`` (the nose tip stands about half an eye distance in front
of the eyes). Positive yaw: the nose points to the image's right. Roll does not change r
(it is measured along the eye line); pitch does not either (it moves the nose along the
perpendicular). On real photos the estimate is ~0 for frontal faces, 20-35 degrees for
three-quarter views and over 50 for profiles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

NOSE_DEPTH_RATIO = 0.5


def _kps(kps: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    arr = np.asarray(kps, dtype=np.float64)
    if arr.shape != (5, 2):
        raise ValueError(f"expected 5 keypoints as a (5, 2) array, got shape {arr.shape}")
    return arr


def eye_distance(kps: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Distance between the two eye keypoints, px."""
    k = _kps(kps)
    return float(np.hypot(*(k[1] - k[0])))


def yaw_from_keypoints(kps: np.ndarray | Sequence[Sequence[float]]) -> float:
    """Yaw in degrees from 5 keypoints (see the module docstring); 90 when the eyes coincide."""
    k = _kps(kps)
    d = eye_distance(k)
    if d == 0.0:
        return 90.0
    u = (k[1] - k[0]) / d
    r = float((k[2] - (k[0] + k[1]) / 2.0) @ u) / d
    return float(np.degrees(np.arctan(r / NOSE_DEPTH_RATIO)))


def yaw(kps: np.ndarray | Sequence[Sequence[float]], pose: Sequence[float] | None) -> float:
    """Yaw in degrees: insightface's 3D-landmark pose (pitch, yaw, roll) when present, else keypoints."""
    if pose is not None:
        return float(pose[1])
    return yaw_from_keypoints(kps)


def eye_brightness(gray: np.ndarray, kps: np.ndarray | Sequence[Sequence[float]], patch: float) -> float:
    """Mean gray level (0..255) of the darker of the two eye patches of an (H, W) uint8 image.

    Each patch is a square of half-side ``patch * eye_distance`` around an eye keypoint,
    clipped to the image. Sunglasses or hair over an eye make its patch dark; the darker eye
    decides, so one covered eye is enough. A patch wholly outside the image scores 0.
    """
    k = _kps(kps)
    if gray.ndim != 2:
        raise ValueError(f"expected an (H, W) gray image, got shape {gray.shape}")
    half = max(1.0, patch * eye_distance(k))
    h, w = gray.shape
    means = []
    for x, y in k[:2]:
        x0, y0 = max(0, int(np.floor(x - half))), max(0, int(np.floor(y - half)))
        x1, y1 = max(x0, min(w, int(np.ceil(x + half)))), max(y0, min(h, int(np.ceil(y + half))))
        region = gray[y0:y1, x0:x1]
        means.append(float(region.mean()) if region.size else 0.0)
    return min(means)


def face_min_side(bbox: Sequence[float]) -> float:
    """Shorter side of the detection box, px."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return max(0.0, min(x2 - x1, y2 - y1))


def keypoints_inside(kps: np.ndarray | Sequence[Sequence[float]], width: int, height: int) -> bool:
    """True when all 5 keypoints lie inside the [0, width) x [0, height) image."""
    k = _kps(kps)
    return bool(np.all((k[:, 0] >= 0) & (k[:, 0] < width) & (k[:, 1] >= 0) & (k[:, 1] < height)))
