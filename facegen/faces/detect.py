"""Face detection with insightface, loaded from an explicit model param.

``faces.model`` may be
- an insightface model pack name (``buffalo_l``): loaded from ``~/.insightface/models/<name>``,
  downloaded there by insightface on a connected machine;
- a directory of insightface ONNX models (detector, optionally genderage and 3D landmarks);
- one detector ``.onnx`` file (e.g. SCRFD ``scrfd_500m_bnkps.onnx``): boxes and 5 keypoints only.

Download and align share this module so both see the same detector and thresholds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facegen.common.config import FRACTION, Range, validate

INSIGHTFACE_ROOT = Path("~/.insightface").expanduser()


@dataclass(frozen=True)
class FacesConfig:
    """params.yaml ``faces``: which detector, at what input size and confidence."""

    model: str = "buffalo_l"
    det_size: int = 640
    min_score: float = 0.5

    def __post_init__(self) -> None:
        validate(self, "faces", {"det_size": Range(32), "min_score": FRACTION})
        if self.det_size % 32:  # SCRFD's anchors sit on strides 8, 16 and 32
            raise ValueError(f"faces.det_size = {self.det_size} is not a multiple of 32 (e.g. 640)")


def box_area(bbox: Sequence[float]) -> float:
    """Area of an (x1, y1, x2, y2) box in px^2; 0 for an inverted box."""
    x1, y1, x2, y2 = (float(v) for v in bbox)
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


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
    def from_record(cls, rec: dict) -> "Detection":
        """Inverse of :meth:`to_record`."""
        return cls(
            bbox=tuple(float(v) for v in rec["bbox"]),  # type: ignore[arg-type]
            kps=tuple((float(x), float(y)) for x, y in rec["kps"]),
            score=float(rec["score"]),
            gender=None if rec.get("gender") is None else int(rec["gender"]),
            age=None if rec.get("age") is None else int(rec["age"]),
            pose=None if rec.get("pose") is None else tuple(float(v) for v in rec["pose"]),  # type: ignore[arg-type]
        )


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

    def __post_init__(self) -> None:
        import onnxruntime  # heavy: imported only when a detector is built

        from insightface.model_zoo import model_zoo

        onnxruntime.set_default_logger_severity(3)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in onnxruntime.get_available_providers()]
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

    @property
    def has_attributes(self) -> bool:
        """True when gender/age come with each detection."""
        return self._app is not None and "genderage" in self._app.models  # type: ignore[attr-defined]

    @property
    def has_pose(self) -> bool:
        """True when a 3D landmark model gives (pitch, yaw, roll)."""
        return self._app is not None and "landmark_3d_68" in self._app.models  # type: ignore[attr-defined]

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Faces in an (H, W, 3) uint8 BGR image, largest first, score >= ``faces.min_score``."""
        out: list[Detection] = []
        if self._app is not None:
            for f in self._app.get(image_bgr):  # type: ignore[attr-defined]
                gender = getattr(f, "gender", None)
                age = getattr(f, "age", None)
                pose = getattr(f, "pose", None)
                out.append(
                    Detection(
                        bbox=tuple(float(v) for v in f.bbox),  # type: ignore[arg-type]
                        kps=tuple((float(x), float(y)) for x, y in f.kps),
                        score=float(f.det_score),
                        gender=None if gender is None else int(gender),
                        age=None if age is None else int(age),
                        pose=None if pose is None else tuple(float(v) for v in pose),  # type: ignore[arg-type]
                    )
                )
        else:
            size = (self.cfg.det_size, self.cfg.det_size)
            boxes, kpss = self._det.detect(image_bgr, input_size=size)  # type: ignore[attr-defined]
            for i in range(boxes.shape[0]):
                kps = kpss[i] if kpss is not None else np.zeros((5, 2))
                out.append(
                    Detection(
                        bbox=tuple(float(v) for v in boxes[i, :4]),  # type: ignore[arg-type]
                        kps=tuple((float(x), float(y)) for x, y in kps),
                        score=float(boxes[i, 4]),
                    )
                )
        out = [d for d in out if d.score >= self.cfg.min_score]
        out.sort(key=lambda d: (-d.area, d.bbox))
        return out
