"""Image quality measures shared by download (whole-image face region) and align (aligned face).

Sharpness is the variance of the Laplacian (Pech-Pacheco et al., 2000): a blurred image
has weak second derivatives everywhere, so the variance of the 3x3 Laplacian response is
small. The classic PTT-Beauty filter keeps a face when this is >= 60 on the 8-bit gray
image, which is why the input here stays in [0, 255] (never rescaled to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _gray(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 gray from (H, W), (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA uint8."""
    import cv2

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 numpy image, got {getattr(image, 'dtype', type(image).__name__)}")
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4) and image.shape[0] and image.shape[1]:
        # ITU-R BT.601 luma (cv2's RGB2GRAY, like PIL's "L")
        code = cv2.COLOR_RGB2GRAY if image.shape[2] == 3 else cv2.COLOR_RGBA2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.zeros(image.shape[:2], dtype=np.uint8)
    raise ValueError(f"expected an (H, W) or (H, W, C) image with C in 1, 3, 4; got shape {image.shape}")


def laplacian_variance(image: np.ndarray) -> float:
    """Sharpness of an (H, W) gray or (H, W, 3) RGB uint8 image in [0, 255]: var of its Laplacian.

    Uses OpenCV's 3x3 aperture Laplacian on the gray image in float64, the same measure as
    ``cv2.Laplacian(gray, cv2.CV_64F).var()``. A constant image scores 0.0; images smaller
    than 3x3 score 0.0 (no interior pixels to measure).
    """
    import cv2  # heavy: imported only when measuring

    gray = _gray(image)
    if gray.shape[0] < 3 or gray.shape[1] < 3:
        return 0.0
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def crop_box(image: np.ndarray, bbox: Sequence[float]) -> np.ndarray:
    """The part of an (H, W, ...) image inside bbox (x1, y1, x2, y2), clipped to the image.

    Coordinates are floats from a detector (may fall outside the image); the crop is
    rounded outward to whole pixels. An empty intersection gives an empty (0-sized) array.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in bbox)
    left, top = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
    right, bottom = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    return image[top : max(top, bottom), left : max(left, right)]


def region_sharpness(image: np.ndarray, bbox: Sequence[float], max_side: int = 0) -> float:
    """Laplacian variance of the bbox (x1, y1, x2, y2) region of an RGB/gray uint8 image.

    The Laplacian variance of the same face falls as its pixel size grows (detail spreads over
    more pixels), so a 900 px sharp face can score below a 90 px one. With ``max_side`` > 0 the
    crop is first shrunk (area interpolation, never enlarged) so its longer side is at most
    ``max_side``, which puts big and small faces on a comparable scale. The download stage uses
    the aligned output's side (``align.size``), so the score is the detail the model trains on:
    an upscaled low-resolution crop is soft at its native size but not at 64 px.
    """
    crop = crop_box(image, bbox)
    longest = max(crop.shape[:2]) if crop.size else 0
    if max_side > 0 and longest > max_side:
        import cv2

        scale = max_side / longest
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(np.ascontiguousarray(crop), size, interpolation=cv2.INTER_AREA)
    return laplacian_variance(crop)
