"""Candidate faces of one kept image: align, measure, check, write the accepted PNG.

This is the per-image work of the align stage, run in ``align.workers`` processes. It
imports nothing heavy at module level (no pandas) so spawned workers start fast. The checks
run in this order and the first failure is the face's status: the per-image statuses
(``IMAGE_STATUSES``: unreadable, size_mismatch, bad_detections, no_face), then the per-face
checks of ``FACE_CHECKS`` (kps_outside_image, face_too_small, eyes_too_close, extreme_yaw,
crop_outside_image, eyes_occluded, blurry; thresholds in align.*).

A crop that reaches past the photo is filled (facegen.align.geometry.fill_outside) and its
filled share recorded as ``crop_outside``; above ``align.max_crop_outside`` it is rejected.

``near_duplicate`` is decided later, across the whole set (facegen.align.stage).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.align.geometry import AlignConfig, align_face
from facegen.common.atomic import atomic_path
from facegen.faces import appearance, attributes
from facegen.faces.detect import Detection, box_area

NO_FACE_INDEX = -1


@dataclass(frozen=True)
class ImageTask:
    """One kept image to align: where it is and what download found in it."""

    sha256: str
    post_id: str
    source: str  # absolute path of the raw image
    detections: str | None  # JSON list of Detection.to_record()
    width: int | None  # as recorded by download (None: not recorded)
    height: int | None
    restored: tuple[str, ...] = ()  # face ids curation.csv restores: saved even when a check fails


def face_id(sha256: str, index: int) -> str:
    """Stable id of the ``index``-th (largest first) face of an image; -1: the image itself."""
    return f"{sha256[:16]}_{'none' if index == NO_FACE_INDEX else f'{index:02d}'}"


def save_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB PNG with fixed encoder settings (no timestamps: same pixels, same bytes)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=6)


def _base_row(task: ImageTask, index: int, status: str) -> dict[str, Any]:
    return {
        "face_id": face_id(task.sha256, index),
        "sha256": task.sha256,
        "post_id": task.post_id,
        "face_index": index,
        "status": status,
    }


def _detections(task: ImageTask) -> list[Detection]:
    if task.detections is None:
        return []
    records = json.loads(task.detections)
    if not isinstance(records, list):
        raise ValueError(f"detections of image {task.sha256} is not a JSON list: {task.detections[:80]!r}")
    return [Detection.from_record(r) for r in records]


@dataclass(frozen=True)
class FaceCheck:
    """One per-face rejection: its status, the measured column that explains it (captions,
    None: none), and the test that fails the face. Adding a reason is one entry here, its
    threshold in :class:`~facegen.align.geometry.AlignConfig` (and params.yaml) and, for a new
    measurement, its value in :func:`measure_face` and its column in the stage's schema."""

    reason: str
    column: str | None
    failed: Callable[[Detection, dict[str, Any], tuple[int, int], AlignConfig], bool]


# in order: the first failed check is the face's status
FACE_CHECKS: tuple[FaceCheck, ...] = (
    FaceCheck("kps_outside_image", None, lambda d, r, wh, c: not attributes.keypoints_inside(d.kps, *wh)),
    FaceCheck("face_too_small", "face_area", lambda d, r, wh, c: attributes.face_min_side(d.bbox) < c.min_face_size),
    # coincident eyes (nothing was aligned) fail here even with min_eye_distance=0
    FaceCheck(
        "eyes_too_close",
        "eye_distance",
        lambda d, r, wh, c: r["eye_distance"] < c.min_eye_distance or r["eye_distance"] == 0.0,
    ),
    FaceCheck("extreme_yaw", "yaw", lambda d, r, wh, c: abs(r["yaw"]) > c.max_abs_yaw),
    FaceCheck("crop_outside_image", "crop_outside", lambda d, r, wh, c: r["crop_outside"] > c.max_crop_outside),
    FaceCheck("eyes_occluded", "eye_brightness", lambda d, r, wh, c: r["eye_brightness"] < c.min_eye_brightness),
    FaceCheck("blurry", "sharpness", lambda d, r, wh, c: r["sharpness"] < c.min_sharpness),
)
# per image, before any face is measured: nothing to align
IMAGE_STATUSES = ("unreadable", "size_mismatch", "bad_detections", "no_face")
# every status a candidate can end with; near_duplicate is decided across the set (align.stage),
# manual by a person (curation.csv, facegen.align.curation)
STATUSES = ("ok", *IMAGE_STATUSES, *(c.reason for c in FACE_CHECKS), "near_duplicate", "manual")
# which measured column explains each rejection in a contact-sheet caption
REASON_VALUE = {c.reason: c.column for c in FACE_CHECKS if c.column} | {"near_duplicate": "duplicate_of"}


def _face_status(det: Detection, row: dict[str, Any], image_size: tuple[int, int], cfg: AlignConfig) -> str:
    """The first failed per-face check, or ``ok``."""
    return next((c.reason for c in FACE_CHECKS if c.failed(det, row, image_size, cfg)), "ok")


def measure_face(image: np.ndarray, gray: np.ndarray, det: Detection, cfg: AlignConfig) -> tuple[dict[str, Any], Any]:
    """Attributes of one detected face and its alignment (``Aligned``; None when both eye
    keypoints coincide, which the eye-distance check then rejects), before any check."""
    from facegen.faces.quality import laplacian_variance

    degenerate = attributes.eye_distance(det.kps) == 0.0  # no eye line: nothing to align
    aligned = None if degenerate else align_face(image, np.asarray(det.kps), cfg, feather=False)
    row = {
        "det_score": det.score,
        "bbox": [float(v) for v in det.bbox],
        "kps": [[float(x), float(y)] for x, y in det.kps],
        "roll": float("nan") if aligned is None else aligned.roll,
        "yaw": attributes.yaw(det.kps, det.pose),
        "eye_distance": attributes.eye_distance(det.kps),
        "eye_brightness": attributes.eye_brightness(gray, det.kps, cfg.eye_patch),
        # before the feather mask adds an edge
        "sharpness": float("nan") if aligned is None else laplacian_variance(aligned.image),
        "face_area": box_area(det.bbox),
        "gender": det.gender,
        "age": det.age,
        **appearance.model_attributes(det.pose),
    }
    return row, aligned


def process_image(task: ImageTask, cfg: AlignConfig, faces_dir: str) -> list[dict[str, Any]]:
    """Rows for every candidate face of one image; writes the PNGs of faces passing all checks.

    Runs in a worker process: everything it needs comes in its arguments.
    """
    import cv2

    from facegen.align.dedupe import phash_hex
    from facegen.common.images import read_image

    try:
        image = read_image(task.source)  # decoded exactly as download decoded it (EXIF applied)
    except (OSError, ValueError) as exc:  # missing, truncated or undecodable file (ImageRejected)
        return [{**_base_row(task, NO_FACE_INDEX, "unreadable"), "error": f"{type(exc).__name__}: {exc}"}]
    height, width = image.shape[:2]
    if task.width is not None and task.height is not None and (width, height) != (task.width, task.height):
        error = f"image is {width}x{height} but download recorded {task.width}x{task.height}: detections do not fit"
        return [{**_base_row(task, NO_FACE_INDEX, "size_mismatch"), "error": error}]
    try:
        dets = _detections(task)
    except (ValueError, KeyError, TypeError) as exc:  # not JSON, or records missing bbox/kps/score
        return [{**_base_row(task, NO_FACE_INDEX, "bad_detections"), "error": f"{type(exc).__name__}: {exc}"}]
    if not dets:
        return [_base_row(task, NO_FACE_INDEX, "no_face")]
    if cfg.faces_per_image == "largest":
        dets = dets[:1]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rows = []
    for index, det in enumerate(dets):
        measured, aligned = measure_face(image, gray, det, cfg)
        outside = 1.0 if aligned is None else aligned.outside  # the share filled past the photo's edge
        row = {**_base_row(task, index, "ok"), **measured, "crop_outside": outside}
        row["status"] = _face_status(det, row, (width, height), cfg)
        if row["face_id"] in task.restored and aligned is not None:
            row["status"] = "ok"  # a person overrode the automatic check (facegen.align.curation)
        if row["status"] == "ok" and aligned is not None:
            face = align_face(image, np.asarray(det.kps), cfg).image if cfg.feather else aligned.image
            save_png(face, Path(faces_dir) / f"{row['face_id']}.png")
            row["phash"] = phash_hex(face, cfg.dedupe_hash_size)
            row.update(appearance.measure(face))  # on the stored face, as training sees it
        rows.append(row)
    return rows


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one image per process: no nested thread pools on a small machine


def _call(args: tuple[ImageTask, AlignConfig, str]) -> list[dict[str, Any]]:
    return process_image(*args)


def run_tasks(tasks: list[ImageTask], cfg: AlignConfig, faces_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Process every image (in ``cfg.workers`` processes) and return all rows in task order."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    jobs = [(task, cfg, str(faces_dir)) for task in tasks]
    bar = tqdm(total=len(jobs), desc="align", unit="img", disable=not progress)
    rows: list[dict[str, Any]] = []

    def collect(results: Iterator[list[dict[str, Any]]]) -> None:
        for result in results:
            rows.extend(result)
            bar.update()

    if cfg.workers == 1 or len(jobs) <= 1:
        collect(map(_call, jobs))
    else:
        import multiprocessing

        # spawn, not fork: a parent holding onnxruntime/OpenCV thread pools (a notebook, the
        # benchmark) deadlocks forked children
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context, initializer=_worker_init) as pool:
            collect(pool.map(_call, jobs, chunksize=max(1, min(16, len(jobs) // (4 * cfg.workers)))))
    bar.close()
    return rows
