"""A generated image's nearest training face, with the fid stage's memorization thresholds.

The detector is :mod:`facegen.fid.memorization`'s (the fid stage's and the trainer's): both
distances (Inception-feature cosine, pixel RMS over a mirror and small shifts) to the accepted
train-split faces of data/faces.parquet at the model's size. Its thresholds are the fid stage's,
read from metrics/fid.json when that was scored at the same size with the same extractor;
otherwise they are calibrated here on the test split exactly as the fid stage would. Built once
per (model size, faces table, fid.json) and reused.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.fid.memorization import Detector, TrainingFaces, nearest_training_face, training_faces
from facegen.fid.score import FidConfig

FID_METRICS = Path("metrics/fid.json")
FID_CACHE = Path("cache/fid")  # the features cache the fid stage and the trainer share


class NoReference(LookupError):
    """Nothing to compare with: no aligned training faces, or no threshold to flag by."""


@dataclass(frozen=True)
class Reference:
    """A built detector, its extractor and where its thresholds came from."""

    detector: Detector
    extractor: Any
    source: str


def fid_config(params: dict[str, Any]) -> FidConfig:
    """params.yaml ``fid`` (FidConfig's defaults when absent)."""
    from facegen.common.config import from_dict

    section = params.get("fid")
    return from_dict(FidConfig, section, "fid") if section is not None else FidConfig()


def stored_thresholds(path: Path, *, size: int, extractor: str) -> dict[str, Any] | None:
    """metrics/fid.json's calibration when it was scored at ``size`` px with ``extractor``, else None."""
    from facegen.fid.features import metric_name

    if not path.is_file():
        return None
    metrics = json.loads(path.read_text(encoding="utf-8"))
    keys = ("memorization_feature_threshold", "memorization_pixel_threshold", "memorization_pixel_shift")
    same = metrics.get("image_size") == size and metric_name(extractor) in metrics
    return metrics if same and all(k in metrics for k in keys) else None


class NearestFinder:
    """Builds (and caches) the memorization detector of a repository for one model size."""

    def __init__(self, root: Path, faces: Path, params: dict[str, Any], device: str) -> None:
        self.root, self.faces, self.device = Path(root), Path(faces), device
        self.cfg = fid_config(params)
        self.lock = threading.Lock()
        self._cached: tuple[tuple[Any, ...], Reference] | None = None

    def _stamp(self, size: int) -> tuple[Any, ...]:
        fid_json = self.root / FID_METRICS
        stored = (fid_json.stat().st_mtime_ns, fid_json.stat().st_size) if fid_json.is_file() else None
        return (size, self.faces.stat().st_mtime_ns, stored)

    def reference(self, size: int) -> Reference:
        """The detector at ``size`` px (NoReference when there is nothing to compare with)."""
        if not self.faces.is_file():
            raise NoReference(f"no aligned faces: {self.faces} not found (run the align stage: dvc repro align)")
        with self.lock:
            stamp = self._stamp(size)
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, self._build(size))
            return self._cached[1]

    def _has(self, split: str) -> bool:
        """Whether faces.parquet has accepted faces in ``split``."""
        from facegen.train.data import face_paths

        try:
            return bool(face_paths(self.faces, split, self.root))
        except ValueError:  # none accepted in that split
            return False

    def _build(self, size: int) -> Reference:
        from facegen.fid.features import get_extractor

        if not self._has("train"):
            raise NoReference(f"no accepted train-split faces in {self.faces}: nothing to compare with")
        extractor = get_extractor(self.cfg.extractor, self.device)
        try:  # the fid stage's features of the training faces, from its cache when it has them
            train = training_faces(
                self.faces,
                self.root,
                size,
                extractor=extractor,
                cache_dir=self.root / FID_CACHE,
                batch_size=self.cfg.batch_size,
            )
        except ValueError as exc:  # one training face: the cached features' statistics need two
            raise NoReference(f"the training faces of {self.faces} cannot be compared with: {exc}") from exc
        stored = stored_thresholds(self.root / FID_METRICS, size=size, extractor=self.cfg.extractor)
        if stored is not None:
            detector = Detector(
                train,
                float(stored["memorization_feature_threshold"]),
                float(stored["memorization_pixel_threshold"]),
                float(stored.get("memorization_quantile", self.cfg.memorization_quantile)),
                int(stored["memorization_pixel_shift"]),
                int(stored.get("memorization_calibration_faces", 0)),
                float(stored.get("memorization_test_flagged_fraction", float("nan"))),
                self.device,
            )
            return Reference(detector, extractor, f"{FID_METRICS.as_posix()} (the fid stage's calibration)")
        return Reference(self._calibrate(train, extractor, size), extractor, "")

    def _calibrate(self, train: TrainingFaces, extractor: Any, size: int) -> Detector:
        """Thresholds from the test split, as the fid stage computes them (no metrics/fid.json to read)."""
        from facegen.fid.features import reference_features
        from facegen.train.data import load_split

        if not self._has("test"):
            raise NoReference(
                f"no memorization threshold: {FID_METRICS} has none for {size} px and {self.faces} has no "
                "test-split faces to calibrate one (run the fid stage: dvc repro fid)"
            )
        test = load_split(self.faces, "test", self.root, size)
        feats = reference_features(test, extractor, self.root / FID_CACHE, self.cfg.batch_size).feats
        return Detector.calibrate(
            train,
            test,
            feats,
            quantile=self.cfg.memorization_quantile,
            pixel_shift=self.cfg.pixel_shift,
            device=self.device,
        )

    def nearest(self, image: np.ndarray, size: int) -> dict[str, Any]:
        """``image``'s nearest training face (its pixels at ``size`` px too), distances, thresholds, flag."""
        ref = self.reference(size)
        det = ref.detector
        row = nearest_training_face(image=image, detector=det, extractor=ref.extractor)
        source = ref.source or (
            f"calibrated now on {det.num_calibration} test faces (the {det.quantile:g} quantile; "
            f"no {FID_METRICS.as_posix()} for this model size)"
        )
        face = det.train.images[det.train.ids.index(row["face_id"])]
        return {**row, "face": face, "quantile": det.quantile, "num_train": len(det.train.ids), "source": source}
