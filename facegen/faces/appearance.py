"""Face attributes measured on the aligned image: they work with any detector, and the same
functions measure generated samples (facegen.sample.control), so a requested value and a
measured one are in the same units.

The aligned crop (facegen.align.geometry) has side 1.6 F (F: face size) with the face centred
slightly below the eyes, so fixed fractions of the crop are fixed parts of the head. The
regions are defined here, once, as fractions of the crop side (H rows, W columns):

- face: the central square, rows and columns 0.25..0.75 (eyes, nose, mouth, cheeks);
- top (hair / forehead line): rows 0..0.15, columns 0.3..0.7, above the head's centre;
- background: rows 0..0.5 of the side strips, columns 0..0.1 and 0.9..1 (beside the head).

Attributes (the faces.parquet columns; every value a float):

- ``brightness``: mean luma of the face region, 0..255. Luma Y = 0.299 R + 0.587 G + 0.114 B
  (ITU-R BT.601) on the stored sRGB values.
- ``top_brightness``: mean luma of the top region, 0..255 (dark hair low, blond/bald high).
- ``background_brightness``: mean luma of the background strips, 0..255.
- ``colourfulness``: Hasler & Süsstrunk (2003) M over the whole crop, 0 for a gray image,
  ~15-110 for photos: rg = R - G, yb = (R + G) / 2 - B, M = sqrt(sd(rg)^2 + sd(yb)^2)
  + 0.3 sqrt(mean(rg)^2 + mean(yb)^2), in 0..255 pixel units.

Face-model attributes and why they may be empty (null), never guessed: ``pitch`` needs a 3D
landmark model (insightface's 1k3d68): the keypoint yaw of facegen.faces.attributes has no
pitch counterpart that survives the unknown face proportions; ``eyes_open`` / ``mouth_open``
need eyelid and inner-lip landmarks (insightface's 2d106det / 1k3d68), which the 5-point
SCRFD detector lacks; ``gender`` / ``age`` need insightface's genderage model. The offline
detector here has none of them, so these are null on this machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FACE_REGION = ((0.25, 0.75), (0.25, 0.75))  # (rows, columns) as fractions of the crop side
TOP_REGION = ((0.0, 0.15), (0.3, 0.7))
BACKGROUND_REGIONS = (((0.0, 0.5), (0.0, 0.1)), ((0.0, 0.5), (0.9, 1.0)))
LUMA = np.array([0.299, 0.587, 0.114])

# measured on the image: always present for an aligned face
IMAGE_ATTRIBUTES = ("brightness", "top_brightness", "background_brightness", "colourfulness")
# from the face model: null when it does not give them (module docstring)
MODEL_ATTRIBUTES = ("pitch", "eyes_open", "mouth_open")


def _check(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 4:
        raise ValueError(f"expected an (H, W, 3) RGB image of at least 4x4 px, got shape {image.shape}")
    return image.astype(np.float64)


def _region(h: int, w: int, region: tuple[tuple[float, float], tuple[float, float]]) -> tuple[slice, slice]:
    (r0, r1), (c0, c1) = region
    rows = slice(int(round(r0 * h)), max(int(round(r0 * h)) + 1, int(round(r1 * h))))
    cols = slice(int(round(c0 * w)), max(int(round(c0 * w)) + 1, int(round(c1 * w))))
    return rows, cols


def luma(image: np.ndarray) -> np.ndarray:
    """(H, W) BT.601 luma, 0..255, of an (H, W, 3) RGB image."""
    return _check(image) @ LUMA


def brightness(image: np.ndarray) -> float:
    """Mean luma of the face region, 0..255."""
    y = luma(image)
    return float(y[_region(*y.shape, FACE_REGION)].mean())


def top_brightness(image: np.ndarray) -> float:
    """Mean luma of the top (hair) region, 0..255."""
    y = luma(image)
    return float(y[_region(*y.shape, TOP_REGION)].mean())


def background_brightness(image: np.ndarray) -> float:
    """Mean luma of the two background strips beside the head, 0..255."""
    y = luma(image)
    parts = [y[_region(*y.shape, r)] for r in BACKGROUND_REGIONS]
    return float(np.concatenate([p.ravel() for p in parts]).mean())


def colourfulness(image: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness M of the whole crop (module docstring)."""
    x = _check(image)
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


MEASURES = {"brightness": brightness, "top_brightness": top_brightness,
            "background_brightness": background_brightness, "colourfulness": colourfulness}


def measure(image: np.ndarray) -> dict[str, float]:
    """All image attributes of one aligned (H, W, 3) uint8 face."""
    return {name: fn(image) for name, fn in MEASURES.items()}


def measure_batch(images: np.ndarray, name: str) -> np.ndarray:
    """One image attribute of every image of (N, H, W, 3): float64 (N,)."""
    if name not in MEASURES:
        raise ValueError(f"{name!r} cannot be measured on an image; measurable: {sorted(MEASURES)}")
    return np.array([MEASURES[name](img) for img in images], dtype=np.float64)


def model_attributes(pose: Any) -> dict[str, float | None]:
    """Face-model attributes of one detection: pitch from insightface's 3D pose (pitch, yaw,
    roll) when present; eyes/mouth openness need dense landmarks the detections never carry."""
    return {"pitch": None if pose is None else float(pose[0]), "eyes_open": None, "mouth_open": None}
