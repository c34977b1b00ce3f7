"""Face alignment: level the eyes, frame forehead to chin, resize to ``align.size``.

One similarity transform (rotation about the eye midpoint, translation; no shear) maps
the source image to a square crop at the source's own scale; the crop is then resized to
``align.size`` with the chosen interpolation (``area`` by default: no aliasing when a
large face is shrunk). The 5 keypoints are mapped through the same transform, so the
aligned face is never detected again.

Framing, in the eye-levelled frame (``d_e`` = eye distance, ``d_m`` = distance from the
eye line down to the mouth midpoint, both in source pixels):

- face size ``F = max(2.0 * d_e, 1.8 * d_m)`` (FFHQ's face size: the larger term wins, so
  a turned head, whose eyes look closer together, keeps its full height);
- crop side ``S = align.margin * F``;
- crop centre = eye midpoint moved ``align.center_shift * d_m`` down towards the mouth, so
  the forehead and chin both fit.

Crops that reach past the photo (a face that fills the frame, or sits at its edge) are filled
the way FFHQ's alignment does it (Karras et al. 2019, ``recreate_aligned_images``), so the
model does not learn mirrored half faces: the outside is first reflected (no value jump at
the edge), then blurred progressively, from ``align.fill_blur`` x size at the photo's edge to
``align.fill_blur_outer`` x size at ``align.fill_ramp`` x size beyond it (FFHQ: one blur of
0.02 x the crop side), the blur fading in over the last ``fill_ramp / 3`` inside the photo
so there is no seam, and finally blended toward the photo's median colour, reaching it at
``fill_ramp`` x size outside. :func:`crop_outside_fraction` is the share of the output so
filled; faces above ``align.max_crop_outside`` are rejected.

The optional feather (``align.feather``) blends a circle of radius
``align.feather_radius * F`` (in output pixels) around the crop centre, Gaussian-blurred by
``align.feather_sigma * size``, into ``align.feather_fill`` gray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from facegen.common.config import FRACTION, Range, validate

Interpolation = Literal["area", "linear", "cubic", "lanczos", "nearest"]
FACE_SIZE_EYES = 2.0  # F >= 2.0 x eye distance
FACE_SIZE_MOUTH = 1.8  # F >= 1.8 x eye-line-to-mouth distance


# every number of params.yaml ``align``: finite, and within what a crop, a mask or a hash can use
ALIGN_RANGES = {
    "size": Range(8, 4096),
    "margin": Range(0, 10, lo_open=True),  # crop side / face size: 10 F is a scene, not a face
    "center_shift": Range(-2, 2),  # eye-to-mouth distances: beyond 2 the face leaves the crop
    "feather_radius": Range(0, 10, lo_open=True),
    "feather_sigma": Range(0, 1, lo_open=True),
    "feather_fill": Range(0, 255),
    "min_face_size": Range(0, 100_000),
    "min_eye_distance": Range(0, 100_000),
    "max_abs_yaw": Range(0, 180),
    "max_crop_outside": FRACTION,
    "fill_blur": Range(0, 1, lo_open=True),  # Gaussian sigma / size
    "fill_blur_outer": Range(0, 1, lo_open=True),
    "fill_ramp": Range(0, 10, lo_open=True),
    "min_eye_brightness": Range(0, 255),
    "eye_patch": Range(0, 2, lo_open=True),
    "min_sharpness": Range(0, 1e7),  # above any 8-bit Laplacian variance
    "dedupe_hash_size": Range(2, 64),  # hash_size^2 bits
    "dedupe_max_distance": Range(0, 4096),
    "test_fraction": Range(0, 1, hi_open=True),
    "seed": Range(0, 2**32 - 1),  # numpy's seed range, as train.seed
    "workers": Range(1, 256),
    "preview_max": Range(1, 10_000),
}


@dataclass(frozen=True)
class AlignConfig:
    """params.yaml ``align``: framing, rejection thresholds, dedupe, split and workers."""

    size: int = 64  # output side, px
    margin: float = 1.6  # crop side / face size F
    center_shift: float = 0.45  # crop centre below the eye midpoint, in eye-to-mouth distances
    interpolation: Interpolation = "area"  # resize of the crop to size x size
    feather: bool = False  # blend a circular feathered mask into feather_fill
    feather_radius: float = 0.55  # mask radius / face size F
    feather_sigma: float = 0.06  # Gaussian blur of the mask edge / size
    feather_fill: int = 0  # gray level outside the mask, 0..255
    faces_per_image: Literal["largest", "all"] = "largest"
    min_face_size: float = 40.0  # shorter side of the detection box, source px
    min_eye_distance: float = 15.0  # source px
    max_abs_yaw: float = 45.0  # degrees
    max_crop_outside: float = 0.6  # fraction of the crop beyond the image border (filled: reflect, blur, blend)
    fill_blur: float = 0.02  # Gaussian sigma / size of the fill at the photo's edge (FFHQ's 0.02)
    fill_blur_outer: float = 0.08  # ... growing to this at fill_ramp beyond the edge
    fill_ramp: float = 0.3  # distance / size beyond the edge where the fill is fully the photo's median colour
    min_eye_brightness: float = 25.0  # darker eye patch mean gray, 0..255 (sunglasses, bangs)
    eye_patch: float = 0.15  # eye patch half-side / eye distance
    min_sharpness: float = 130.0  # Laplacian variance of the aligned gray face
    dedupe_hash_size: int = 8  # perceptual hash of hash_size^2 bits
    dedupe_max_distance: int = 6  # Hamming distance <= this: near-duplicates
    test_fraction: float = 0.1
    seed: int = 0
    workers: int = 2  # processes; 1 = in the calling process
    preview_max: int = 64  # tiles per contact sheet

    def __post_init__(self) -> None:
        if self.size < 8:
            raise ValueError(f"align.size={self.size} is too small: use 8 or more (64 is the default)")
        if not 0.0 <= self.max_crop_outside <= 1.0:
            raise ValueError(f"align.max_crop_outside={self.max_crop_outside} must be a fraction in [0, 1]")
        if self.fill_blur_outer < self.fill_blur:
            raise ValueError(
                f"align.fill_blur_outer={self.fill_blur_outer} must be >= align.fill_blur={self.fill_blur}"
            )
        for name in ("margin", "feather_radius", "feather_sigma", "fill_blur", "fill_ramp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"align.{name}={getattr(self, name)} must be > 0")
        if not 0 <= self.feather_fill <= 255:
            raise ValueError(f"align.feather_fill={self.feather_fill} must be a gray level in 0..255")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"align.test_fraction={self.test_fraction} must be in [0, 1)")
        if self.workers < 1:
            raise ValueError(f"align.workers={self.workers} must be >= 1")
        if self.dedupe_hash_size < 2:
            raise ValueError(f"align.dedupe_hash_size={self.dedupe_hash_size} must be >= 2")
        validate(self, "align", ALIGN_RANGES)


@dataclass(frozen=True)
class Aligned:
    """An aligned face: ``image`` (size, size, 3) uint8 RGB, ``kps`` (5, 2) in its pixels.

    ``matrix`` (2, 3) maps source pixel coordinates to output ones; ``roll`` is the eye
    line's angle in the source (degrees, positive = clockwise on screen); ``face_size`` is F;
    ``outside`` the fraction of the output beyond the source photo (filled, see the module doc).
    """

    image: np.ndarray
    kps: np.ndarray
    matrix: np.ndarray
    roll: float
    face_size: float
    outside: float = 0.0


def _cv2_interpolation(name: str) -> int:
    import cv2

    flags = {
        "area": cv2.INTER_AREA,
        "linear": cv2.INTER_LINEAR,
        "cubic": cv2.INTER_CUBIC,
        "lanczos": cv2.INTER_LANCZOS4,
        "nearest": cv2.INTER_NEAREST,
    }
    if name not in flags:
        raise ValueError(f"align.interpolation={name!r} is not one of {sorted(flags)}")
    return flags[name]


def crop_geometry(kps: np.ndarray, cfg: AlignConfig) -> tuple[np.ndarray, float, float, float]:
    """Crop centre (2,), crop side S, eye angle (degrees) and face size F from (5, 2) kps."""
    kps = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    eye_l, eye_r, _, mouth_l, mouth_r = kps
    eye_mid = (eye_l + eye_r) / 2.0
    eye_vec = eye_r - eye_l
    d_e = float(np.hypot(*eye_vec))
    if d_e == 0.0:
        raise ValueError("the two eye keypoints coincide: no eye line to level")
    u = eye_vec / d_e  # along the eye line
    n = np.array([-u[1], u[0]])  # perpendicular, pointing down the face
    d_m = abs(float(((mouth_l + mouth_r) / 2.0 - eye_mid) @ n))
    face_size = max(FACE_SIZE_EYES * d_e, FACE_SIZE_MOUTH * d_m)
    center = eye_mid + cfg.center_shift * d_m * n
    angle = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return center, cfg.margin * face_size, angle, face_size


def _feather(image: np.ndarray, face_size_px: float, cfg: AlignConfig) -> np.ndarray:
    """Blend a Gaussian-blurred disc (radius feather_radius * F) of ``image`` into the fill."""
    import cv2

    size = image.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2.0
    disc = ((xx - c) ** 2 + (yy - c) ** 2 <= (cfg.feather_radius * face_size_px) ** 2).astype(np.float32)
    mask = cv2.GaussianBlur(disc, (0, 0), sigmaX=cfg.feather_sigma * size)[:, :, None]
    out = image.astype(np.float32) * mask + float(cfg.feather_fill) * (1.0 - mask)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def outside_distance(matrix: np.ndarray, size: int, width: int, height: int) -> np.ndarray:
    """(size, size) distance of each output pixel centre beyond a width x height source, in output px.

    Per axis, as FFHQ's fill mask: max(left, right, top, bottom overshoot); negative inside
    (minus the distance to the nearest edge). ``matrix`` maps source to output pixels.
    """
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    yy, xx = np.mgrid[0:size, 0:size]
    pts = np.stack([xx.ravel(), yy.ravel(), np.ones(size * size)], axis=0).astype(np.float64)
    sx, sy = inverse @ pts
    over = np.max(np.stack([-0.5 - sx, sx - (width - 0.5), -0.5 - sy, sy - (height - 0.5)]), axis=0)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))  # output px per source px
    return (over * scale).reshape(size, size)


def fill_outside(image: np.ndarray, distance: np.ndarray, cfg: AlignConfig) -> np.ndarray:
    """FFHQ-style fill of a reflected (size, size, 3) uint8 crop where ``distance`` > 0 (output px).

    Blur with sigma growing linearly from ``fill_blur`` to ``fill_blur_outer`` (x size) over
    ``fill_ramp`` x size beyond the edge, faded in from ``fill_ramp / 3`` inside it; then a
    blend toward the median colour of the inside pixels, 0 at the edge, 1 at ``fill_ramp``.
    """
    import cv2

    size = image.shape[0]
    ramp = cfg.fill_ramp * size
    mask = (distance / ramp).astype(np.float32)[:, :, None]  # 0 at the edge, 1 at the ramp's end
    if not (mask > -1.0 / 3.0).any():
        return image
    img = image.astype(np.float32)
    t = np.clip(mask, 0.0, 1.0)
    sigmas = np.linspace(cfg.fill_blur, cfg.fill_blur_outer, 4) * size
    blurred = [cv2.GaussianBlur(img, (0, 0), sigmaX=float(sg)) for sg in sigmas]
    position = t * (len(sigmas) - 1)  # which blur levels to interpolate between
    blur = np.zeros_like(img)
    for k, level in enumerate(blurred):
        blur += level * np.clip(1.0 - np.abs(position - k), 0.0, 1.0)
    out = img + (blur - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    inside = distance <= 0
    median = np.median(img[inside], axis=0) if inside.any() else np.full(3, 127.0, np.float32)
    out += (median - out) * t
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align_face(image: np.ndarray, kps: np.ndarray, cfg: AlignConfig, feather: bool | None = None) -> Aligned:
    """Align one face of an (H, W, 3) uint8 RGB image given its (5, 2) keypoints.

    The crop is warped at the source's scale (bilinear rotation, reflected border where the
    crop leaves the image), resized to ``cfg.size`` with ``cfg.interpolation``, and where it
    leaves the image filled by :func:`fill_outside`. ``feather`` overrides ``cfg.feather``
    (sharpness is measured before feathering).
    """
    import cv2

    center, side, angle, face_size = crop_geometry(kps, cfg)
    side_px = max(1, int(round(side)))
    k = side_px / side  # ~1: makes the native crop a whole number of pixels
    rot = np.asarray(cv2.getRotationMatrix2D((float(center[0]), float(center[1])), angle, k), np.float64)
    rot[:, 2] += (side_px - 1) / 2.0 - center  # crop centre -> native crop centre
    crop = cv2.warpAffine(
        np.ascontiguousarray(image), rot, (side_px, side_px), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    out = cv2.resize(crop, (cfg.size, cfg.size), interpolation=_cv2_interpolation(cfg.interpolation))
    # cv2.resize maps pixel centres: x_out = (x_in + 0.5) * s - 0.5
    s = cfg.size / side_px
    matrix = np.hstack([s * rot[:, :2], (s * rot[:, 2] + 0.5 * s - 0.5)[:, None]])
    pts = np.asarray(kps, dtype=np.float64).reshape(5, 2)
    mapped = pts @ matrix[:, :2].T + matrix[:, 2]
    distance = outside_distance(matrix, cfg.size, image.shape[1], image.shape[0])
    out = fill_outside(out, distance, cfg)
    face_px = face_size * cfg.size / side
    if feather if feather is not None else cfg.feather:
        out = _feather(out, face_px, cfg)
    outside = float((distance > 0).mean())
    return Aligned(image=out, kps=mapped, matrix=matrix, roll=angle, face_size=face_size, outside=outside)


def crop_outside_fraction(matrix: np.ndarray, size: int, width: int, height: int) -> float:
    """Fraction of the (size, size) output whose pixel centres map outside a width x height source.

    Those pixels were filled (:func:`fill_outside`): a large fraction means a face cut by the
    photo's edge, much of it made up.
    """
    return float((outside_distance(matrix, size, width, height) > 0).mean())
