"""Face detection with insightface, loaded from an explicit model param.

``faces.model`` may be
- an insightface model pack name (``buffalo_l``): loaded from ``~/.insightface/models/<name>``,
  downloaded there by insightface on a connected machine;
- a directory of insightface ONNX models (detector, optionally genderage and 3D landmarks);
- one detector ``.onnx`` file (e.g. SCRFD ``scrfd_500m_bnkps.onnx``): boxes and 5 keypoints only.

Download and align share this module so both see the same detector and thresholds.

Faces at every scale: SCRFD misses a face that fills the frame (at ``det_size: 640`` it found
a face in 22% of the tight shared portraits), because it learnt faces with context around
them. So :meth:`FaceDetector.detect` runs up to two passes:

1. the photo itself (every face at full resolution: the most exact keypoints);
2. when pass 1 found no face (or always, with ``faces.pad_always``): the photo centred on a
   gray canvas grown by ``faces.pad`` x its longer side on every edge. Its boxes
   and keypoints are shifted back to the photo's pixels (a face cut by the photo's edge keeps
   a box, possibly keypoints, outside it). A face both passes found keeps pass 1's detection
   (IoU >= 0.4, the detector's NMS threshold): the same face gets the same keypoints whether
   or not pass 2 ran, so a repost at another size still aligns the same.

The gray border holds no structure, so it adds no detections of its own (false positives on
non-face images: docs/download.md). Pass 2 costs a second detector run (the shared SCRFD
ONNX has a static 640 input), paid only by frame-filling close-ups and photos without a face,
so photos whose face pass 1 finds keep today's speed. ``pad_always: true`` also finds a
frame-filling face beside smaller ones pass 1 found (a selfie in front of a crowd) at twice
the detection time on every photo; ``pad: 0`` turns pass 2 off.

Shape-proof: one guard (:func:`shape_problem`, :func:`padded_margin`) runs inside
:meth:`FaceDetector.detect`, so every caller (download, studio upload, pose measurement) gets it.
SCRFD resizes the longer side to ``det_size``: a photo more than ``det_size`` times longer than
wide shrinks to 0 px and crashes OpenCV, so a photo past ``faces.max_aspect`` (or with more than
``faces.max_canvas_pixels``) is refused before any detector call (``bad_shape``). Pass 2's
canvas is bounded too: its margin shrinks until the canvas holds at most ``max_canvas_pixels``
(equal margins never raise the aspect ratio), and pass 2 is skipped when no margin fits. Any
exception the detector raises on one photo becomes :class:`DetectionFailed` (``detector_error``)
with its type and message, so the caller records it as that photo's status and carries on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegen.common.config import Range, validate

INSIGHTFACE_ROOT = Path("~/.insightface").expanduser()
PAD_FILL = 127  # gray of the padded canvas: no edges, no texture, nothing face-like
MERGE_IOU = 0.4  # a pass-2 box overlapping a pass-1 box this much is the same face (SCRFD's NMS threshold)
MAX_PAD = 2.0  # faces.pad above this only adds gray: the photo shrinks to < 1/5 of the detector's input
BAD_SHAPE = "bad_shape"  # status of a photo refused by the shape guard (aspect ratio or pixels)
DETECTOR_ERROR = "detector_error"  # status of a photo on which the detector raised
STATUSES = (BAD_SHAPE, DETECTOR_ERROR)  # every status DetectionFailed carries


@dataclass(frozen=True)
class FacesConfig:
    """params.yaml ``faces``: which detector, at what input size and confidence, and its shape guard."""

    model: str = "buffalo_l"
    det_size: int = 640
    min_score: float = 0.5
    pad: float = 0.5  # pass 2: gray margin on every edge / the photo's longer side; 0 = no pass 2
    pad_always: bool = False  # pass 2 on every photo, not only when pass 1 finds no face (2x detection time)
    max_aspect: float = 20.0  # longer / shorter side above this is bad_shape (<= det_size: SCRFD's hard limit)
    max_canvas_pixels: int = 50_000_000  # detector input (photo, padded canvas) pixel cap: 150 MB as BGR

    def __post_init__(self) -> None:
        if self.det_size < 32 or self.det_size % 32:
            raise ValueError(f"faces.det_size={self.det_size} must be a multiple of 32 (640 is the default)")
        if self.pad < 0:
            raise ValueError(f"faces.pad={self.pad} must be >= 0 (0 turns the padded pass off; 0.5 is the default)")
        if not 0.0 < self.min_score < 1.0:
            raise ValueError(f"faces.min_score={self.min_score} must be in (0, 1)")
        validate(
            self,
            "faces",
            {
                "det_size": Range(32, 4096),
                "min_score": Range(0, 1, lo_open=True, hi_open=True),
                "pad": Range(0, MAX_PAD),
                "max_aspect": Range(1, self.det_size),
                "max_canvas_pixels": Range(self.det_size**2, 1_000_000_000),
            },
        )


def box_area(bbox: Sequence[float]) -> float:
    """Area of an (x1, y1, x2, y2) box in px^2; 0 for an inverted box."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def box_iou(box: Sequence[float] | np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of (N, 4) ``boxes``."""
    b = np.asarray(box, dtype=np.float64)
    bs = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(b[2], bs[:, 2]) - np.maximum(b[0], bs[:, 0]), 0, None)
    ih = np.clip(np.minimum(b[3], bs[:, 3]) - np.maximum(b[1], bs[:, 1]), 0, None)
    inter = iw * ih
    union = box_area(b.tolist()) + np.clip(bs[:, 2] - bs[:, 0], 0, None) * np.clip(bs[:, 3] - bs[:, 1], 0, None) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


@dataclass(frozen=True)
class Detection:
    """One detected face, in pixel coordinates of the image it was found in.

    ``bbox`` is (x1, y1, x2, y2); ``kps`` is (5, 2): left eye, right eye, nose,
    left mouth corner, right mouth corner (image left/right, as insightface orders them).
    ``gender`` (0 female, 1 male), ``age`` and ``pose`` (pitch, yaw, roll in degrees) are
    set only when the model pack has the matching models.
    """

    bbox: tuple[float, float, float, float]
    kps: tuple[tuple[float, float], ...]
    score: float
    gender: int | None = None
    age: int | None = None
    pose: tuple[float, float, float] | None = None

    @property
    def area(self) -> float:
        return box_area(self.bbox)

    def to_record(self) -> dict:
        """A JSON/Parquet-friendly dict."""
        return {
            "bbox": [float(v) for v in self.bbox],
            "kps": [[float(x), float(y)] for x, y in self.kps],
            "score": float(self.score),
            "gender": self.gender,
            "age": self.age,
            "pose": None if self.pose is None else [float(v) for v in self.pose],
        }

    @classmethod
    def from_record(cls, rec: dict) -> Detection:
        """Inverse of :meth:`to_record`."""
        return cls(
            bbox=tuple(float(v) for v in rec["bbox"]),  # type: ignore[arg-type]
            kps=tuple((float(x), float(y)) for x, y in rec["kps"]),
            score=float(rec["score"]),
            gender=None if rec.get("gender") is None else int(rec["gender"]),
            age=None if rec.get("age") is None else int(rec["age"]),
            pose=None if rec.get("pose") is None else tuple(float(v) for v in rec["pose"]),  # type: ignore[arg-type]
        )


class DetectionFailed(ValueError):
    """A photo the detector must not or could not run on; ``status`` (:data:`STATUSES`) is its reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def shape_problem(height: int, width: int, cfg: FacesConfig) -> str | None:
    """Why a ``height`` x ``width`` photo must not reach the detector, or None when it may.

    SCRFD scales the longer side to ``det_size``; the shorter becomes ``det_size / ratio`` px,
    0 (an OpenCV error) past ``det_size`` and too thin for any face long before.
    """
    if height < 1 or width < 1:
        return f"{width}x{height}: an empty image"
    ratio = max(height, width) / min(height, width)
    if ratio > cfg.max_aspect:
        return (
            f"{width}x{height}: aspect ratio {ratio:.1f} > faces.max_aspect={cfg.max_aspect:g} (the detector "
            f"scales the longer side to {cfg.det_size} px, the shorter to {int(cfg.det_size / ratio)} px)"
        )
    if height * width > cfg.max_canvas_pixels:
        return f"{width}x{height}: {height * width} pixels > faces.max_canvas_pixels={cfg.max_canvas_pixels}"
    return None


def padded_margin(height: int, width: int, cfg: FacesConfig) -> int:
    """Pass 2's gray margin in px: ``pad`` x the longer side, shrunk so the canvas fits; 0 = no pass 2.

    The canvas ``(height + 2m) x (width + 2m)`` holds at most ``max_canvas_pixels``: ``m`` is the
    largest integer root of ``4m^2 + 2(h + w)m + hw - P <= 0`` when ``pad`` asks for more. Equal
    margins bring the aspect ratio towards 1, so the canvas passes ``max_aspect`` when the photo does.
    """
    m = int(round(cfg.pad * max(height, width)))
    limit = cfg.max_canvas_pixels
    if (height + 2 * m) * (width + 2 * m) > limit:
        s = height + width
        m = max(0, int((-s + math.sqrt(max(0.0, s * s - 4.0 * (height * width - limit)))) / 4))
        while m > 0 and (height + 2 * m) * (width + 2 * m) > limit:  # float rounding
            m -= 1
    return m


class WeightsMissingError(FileNotFoundError):
    """The face model named by ``faces.model`` is not on this machine and could not be fetched."""


def _missing(model: str, why: str) -> WeightsMissingError:
    return WeightsMissingError(
        f"face model faces.model={model!r} is not available: {why}. Either place the insightface "
        f"pack under {INSIGHTFACE_ROOT / 'models'}/<name>/ (insightface downloads it there on a "
        f"connected machine), or set faces.model in params.yaml to a directory of insightface ONNX "
        f"models or to one detector .onnx file (e.g. scrfd_500m_bnkps.onnx)."
    )


@dataclass
class FaceDetector:
    """An insightface detector (plus attribute models when the pack has them)."""

    cfg: FacesConfig
    _app: object = field(init=False, repr=False)
    _det: object = field(init=False, repr=False)
    images: int = field(init=False, default=0)  # photos detected so far (for benchmarks; approximate across threads)
    padded: int = field(init=False, default=0)  # ... of which needed the padded pass (one more detector run)

    def __post_init__(self) -> None:
        import onnxruntime  # heavy: imported only when a detector is built
        from insightface.model_zoo import model_zoo

        onnxruntime.set_default_logger_severity(3)
        providers = [
            p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in onnxruntime.get_available_providers()
        ]
        size = (self.cfg.det_size, self.cfg.det_size)
        target = Path(self.cfg.model).expanduser()
        self._app = None
        if target.suffix == ".onnx":
            if not target.is_file():
                raise _missing(self.cfg.model, f"file {target} does not exist")
            det = model_zoo.get_model(str(target), providers=providers)
            if det is None or getattr(det, "taskname", None) != "detection":
                raise ValueError(f"faces.model={self.cfg.model!r} is not an insightface face detector")
            det.prepare(ctx_id=-1, input_size=size, det_thresh=self.cfg.min_score)
            self._det = det
            return
        from insightface.app import FaceAnalysis

        name = str(target) if target.is_dir() else self.cfg.model
        if ("/" in self.cfg.model or self.cfg.model.startswith(".")) and not target.is_dir():
            raise _missing(self.cfg.model, f"directory {target} does not exist")
        try:
            app = FaceAnalysis(
                name=name,
                root=str(INSIGHTFACE_ROOT),
                allowed_modules=["detection", "genderage", "landmark_3d_68"],
                providers=providers,
            )
        except (OSError, RuntimeError, AssertionError) as exc:  # download failed / pack incomplete
            raise _missing(self.cfg.model, f"{type(exc).__name__}: {exc}") from exc
        app.prepare(ctx_id=-1, det_size=size, det_thresh=self.cfg.min_score)
        self._app = app
        self._det = app.det_model

    def needs_padded_pass(self, boxes: np.ndarray) -> bool:
        """Whether pass 1's (N, 5) ``boxes`` call for the padded pass."""
        return self.cfg.pad > 0 and (self.cfg.pad_always or boxes.shape[0] == 0)

    def _run(self, img: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
        """One detector pass on ``img``: (N, 5) boxes + score, (N, 5, 2) keypoints, minus ``shift`` px."""
        size = (self.cfg.det_size, self.cfg.det_size)
        b, k = self._det.detect(img, input_size=size)  # type: ignore[attr-defined]
        b = np.array(b, dtype=np.float32).reshape(-1, 5)
        k = np.zeros((b.shape[0], 5, 2), np.float32) if k is None else np.array(k, dtype=np.float32).reshape(-1, 5, 2)
        b[:, :4] -= shift
        return b, k - shift

    def raw_detect(self, image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(N, 5) boxes + score, (N, 5, 2) keypoints in the photo's pixels (best score first), passes run.

        Raises :class:`DetectionFailed` (``bad_shape``) for a photo :func:`shape_problem` refuses,
        before any detector call.
        """
        import cv2

        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise DetectionFailed(BAD_SHAPE, f"expected an (H, W, 3) BGR image, got shape {image_bgr.shape}")
        h, w = image_bgr.shape[:2]
        problem = shape_problem(h, w, self.cfg)
        if problem is not None:
            raise DetectionFailed(BAD_SHAPE, problem)
        m = padded_margin(h, w, self.cfg) if self.cfg.pad > 0 else 0
        self.images += 1

        def padded_pass() -> tuple[np.ndarray, np.ndarray]:
            self.padded += 1
            canvas = cv2.copyMakeBorder(image_bgr, m, m, m, m, cv2.BORDER_CONSTANT, value=(PAD_FILL,) * 3)
            return self._run(canvas, m)

        if m > 0 and max(h, w) + 2 * m <= self.cfg.det_size:
            # a small photo: its padded canvas fits the detector's input without shrinking, so the
            # padded pass alone sees every face at its native size or larger (pass 1 would only
            # enlarge faces far below align.min_face_size) as well as the frame-filling ones
            boxes, kpss = padded_pass()
            order = np.argsort(-boxes[:, 4], kind="stable")
            return boxes[order], kpss[order], 1
        boxes, kpss = self._run(image_bgr, 0)
        if m == 0 or not self.needs_padded_pass(boxes):
            return boxes, kpss, 1
        pboxes, pkpss = padded_pass()
        # a face pass 1 found keeps pass 1's detection; pass 2 adds only the faces it missed
        new = [
            i
            for i in range(pboxes.shape[0])
            if boxes.shape[0] == 0 or box_iou(pboxes[i, :4], boxes[:, :4]).max() < MERGE_IOU
        ]
        allb, allk = np.vstack([boxes, pboxes[new]]), np.vstack([kpss, pkpss[new]])
        order = np.argsort(-allb[:, 4], kind="stable")
        allb, allk = allb[order], allk[order]
        return allb, allk, 2

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 BGR image, largest first, score >= ``faces.min_score``.

        Boxes and keypoints are in the image's pixels and may lie outside it (a face cut by
        the photo's edge, found by the padded pass). Raises :class:`DetectionFailed`, whose
        ``status`` is ``bad_shape`` (refused before any detector call) or ``detector_error``.
        """
        image_bgr = np.ascontiguousarray(image_bgr)
        try:
            return self._detect(image_bgr)
        except DetectionFailed:
            raise
        except Exception as exc:  # third-party code on a stranger's pixels: the photo's status, with its reason
            raise DetectionFailed(DETECTOR_ERROR, f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def _detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """:meth:`detect` without the exception guard."""
        boxes, kpss, _ = self.raw_detect(image_bgr)
        out: list[Detection] = []
        for i in range(boxes.shape[0]):
            gender = age = pose = None
            if self._app is not None:
                from insightface.app.common import Face

                face = Face(bbox=boxes[i, :4], kps=kpss[i], det_score=boxes[i, 4])
                for task, model in self._app.models.items():  # type: ignore[attr-defined]
                    if task != "detection":
                        model.get(image_bgr, face)
                gender, age, pose = (
                    getattr(face, "gender", None),
                    getattr(face, "age", None),
                    getattr(face, "pose", None),
                )
            out.append(
                Detection(
                    bbox=tuple(float(v) for v in boxes[i, :4]),  # type: ignore[arg-type]
                    kps=tuple((float(x), float(y)) for x, y in kpss[i]),
                    score=float(boxes[i, 4]),
                    gender=None if gender is None else int(gender),
                    age=None if age is None else int(age),
                    pose=None if pose is None else tuple(float(v) for v in pose),  # type: ignore[arg-type]
                )
            )
        out = [d for d in out if d.score >= self.cfg.min_score]
        out.sort(key=lambda d: (-d.area, d.bbox))
        return out
