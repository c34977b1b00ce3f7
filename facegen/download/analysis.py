"""One image's analysis (decode, detect, sharpness) and one link's status from its cached records.

:func:`analyse` runs once per body (by sha256, under an analysis key); :func:`decide` is pure:
the thresholds applied to cached records, so a threshold change needs no network and no detector.
"""

from __future__ import annotations

import json
from typing import Protocol

import numpy as np

from facegen.common.images import ImageRejected, decode_image, sha256_hex
from facegen.download.cache import Analysis, FetchRecord
from facegen.download.config import DownloadConfig
from facegen.download.fetch import FETCHED
from facegen.faces.detect import STATUSES as DETECTOR_STATUSES
from facegen.faces.detect import Detection, DetectionFailed, box_area
from facegen.faces.quality import region_sharpness

# Every link ends with exactly one of these (docs/download.md explains each).
STATUSES = (
    "ok",
    "duplicate",
    "invalid_url",
    "http_404",
    "http_error",
    "timeout",
    "connection_error",
    "too_large",
    "blocked_host",
    "not_an_image",
    "corrupt",
    "placeholder",
    "too_small",
    "bad_shape",
    "detector_error",
    "no_face",
    "face_too_small",
    "blurry",
)


class Detector(Protocol):
    """What the stage needs from a face detector (``facegen.faces.detect.FaceDetector``, or a stand-in)."""

    def detect(self, image_bgr: np.ndarray) -> list[Detection]: ...


def analyse(data: bytes, detector: Detector, cfg: DownloadConfig, key: str) -> Analysis:
    """Decode ``data`` safely, detect faces (largest first) and measure the largest face's sharpness.

    An image whose shorter side is below ``min_side`` is too_small whatever it holds: it never
    reaches the detector (``detections`` None: not measured). A photo the detector refuses or
    fails on keeps :class:`DetectionFailed`'s status (``bad_shape``, ``detector_error``).
    """
    sha = sha256_hex(data)
    try:
        img = decode_image(data, max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes)
    except ImageRejected as rej:
        return Analysis(sha, key, rej.status, rej.reason, None, None, None, None, None, None, None)
    facts = (img.format, img.ext, img.width, img.height, img.n_frames)
    if min(img.width, img.height) < cfg.min_side:
        return Analysis(sha, key, "decoded", None, *facts, None, None)
    try:
        dets = detector.detect(np.ascontiguousarray(img.rgb[:, :, ::-1]))  # BGR, as insightface expects
    except DetectionFailed as exc:
        return Analysis(sha, key, exc.status, exc.reason, *facts, None, None)
    sharp = region_sharpness(img.rgb, dets[0].bbox, cfg.sharpness_size) if dets else None
    return Analysis(sha, key, "decoded", None, *facts, json.dumps([d.to_record() for d in dets]), sharp)


def stale(an: Analysis, cfg: DownloadConfig) -> bool:
    """Whether a cached analysis must be redone: detection skipped at a larger ``min_side`` than now."""
    return (
        an.status == "decoded"
        and an.detections is None
        and an.width is not None
        and an.height is not None
        and min(an.width, an.height) >= cfg.min_side
    )


def decide(fetch: FetchRecord | None, an: Analysis | None, cfg: DownloadConfig) -> tuple[str, str | None]:
    """(status, error) of one link from its cached fetch and analysis and the thresholds."""
    if fetch is None:
        return "connection_error", "not fetched (run interrupted before this link)"
    if fetch.status != FETCHED:
        return fetch.status, fetch.error
    if fetch.final_url and any(p in fetch.final_url for p in cfg.placeholder_urls):
        return "placeholder", f"redirected to placeholder {fetch.final_url}"
    if an is None:
        return "corrupt", "not analysed (run interrupted before this image)"
    if an.status != "decoded" and an.status not in DETECTOR_STATUSES:
        return an.status, an.error
    assert an.width is not None and an.height is not None
    if an.sha256 in cfg.placeholder_sha256 or f"{an.width}x{an.height}" in cfg.placeholder_sizes:
        return "placeholder", f"known placeholder picture ({an.width}x{an.height}, sha256 {an.sha256[:12]})"
    if min(an.width, an.height) < cfg.min_side:
        return "too_small", f"{an.width}x{an.height}: shorter side < min_side={cfg.min_side}"
    if an.status in DETECTOR_STATUSES:
        return an.status, an.error
    if an.detections is None:
        return "corrupt", "not analysed at this min_side (run interrupted before this image)"
    dets = json.loads(an.detections)
    if not dets:
        return "no_face", None
    area = face_fraction(dets[0], an.width, an.height)
    if area < cfg.min_face_area:
        return "face_too_small", f"largest face covers {area:.4f} < min_face_area={cfg.min_face_area}"
    if an.sharpness is None or an.sharpness < cfg.blur_threshold:
        return "blurry", f"face sharpness {an.sharpness:.1f} < blur_threshold={cfg.blur_threshold}"
    return "ok", None


def face_fraction(det: dict, width: int, height: int) -> float:
    """The share of the image that a detection record's box covers."""
    return box_area(det["bbox"]) / float(width * height)
