"""Is a sample new, or a copy of a training photo? Each sample's nearest training face, calibrated.

The training set is photographs of real people; FID cannot see a model that hands one back
(an exact copy of the training set scores the best FID there is). For every sample two
distances to its nearest training face are measured:

- ``feature_distance``: cosine distance ``1 - <f, g> / (|f| |g|)`` of the extractor's features
  (the Inception pool features the FID already computes), nearest over the training faces;
- ``pixel_distance``: root-mean-square difference of pixels in [0, 1] at the model's size, for
  a copy the features miss: the centre (H - 2s) x (W - 2s) crop of the sample and of its mirror
  image against every (H - 2s) x (W - 2s) crop of the training face, s = ``fid.pixel_shift``, so
  a flipped copy or one moved by up to s px in x and y scores as a copy. Minimum over the
  2 x (2s + 1)^2 alignments and the training faces.

Calibration: the test split is real faces the model never saw. Each distance's threshold is the
``fid.memorization_quantile`` quantile (numpy's linear interpolation) of the test faces' own
nearest-training distances; a sample is flagged (``memorized``) when either distance is strictly
below its threshold: closer to a training face than all but that fraction of unseen real faces.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def feature_nearest(queries: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine distance (N,), index (N,)) of each query feature's nearest training feature (M, D)."""
    q, t = np.asarray(queries, np.float64), np.asarray(train, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)
    sim = q @ t.T
    index = sim.argmax(axis=1)
    return np.maximum(1.0 - sim[np.arange(len(q)), index], 0.0), index


def pixel_nearest(
    queries: np.ndarray, train: np.ndarray, *, shift: int, device: Any = "cpu", chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """(RMS pixel distance in [0, 1] (N,), index (N,)) of each uint8 query (N, H, W, 3) to ``train`` (M, H, W, 3).

    Minimum over the mirror image and shifts of up to ``shift`` px (module docstring):
    ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, one matrix product per alignment, float32 on ``device``.
    """
    import torch

    if queries.shape[1:] != train.shape[1:]:
        raise ValueError(f"samples {queries.shape[1:]} and training faces {train.shape[1:]} differ in size")
    h, w = train.shape[1:3]
    if shift < 0 or 2 * shift >= min(h, w):
        raise ValueError(f"fid.pixel_shift = {shift}: must be >= 0 and leave a crop of {h}x{w} px images")
    ch, cw = h - 2 * shift, w - 2 * shift
    t = torch.from_numpy(np.require(train, requirements=("C", "W"))).to(device).float().div_(255)
    crops = [
        t[:, dy : dy + ch, dx : dx + cw].reshape(len(t), -1)
        for dy in range(2 * shift + 1)
        for dx in range(2 * shift + 1)
    ]
    norms = [(c * c).sum(1) for c in crops]
    dist, index = [], []
    for start in range(0, len(queries), chunk):
        q = (
            torch.from_numpy(np.require(queries[start : start + chunk], requirements=("C", "W")))
            .to(device)
            .float()
            .div_(255)
        )
        q = torch.cat([q, q.flip(2)])[:, shift : shift + ch, shift : shift + cw].reshape(2 * len(q), -1)
        qn = (q * q).sum(1)[:, None]
        best = torch.stack([qn + n[None, :] - 2.0 * q @ c.T for c, n in zip(crops, norms, strict=True)]).amin(0)
        best = best.view(2, -1, len(t)).amin(0)  # the sample or its mirror image, whichever is closer
        d2, j = best.min(1)
        dist.append(torch.sqrt(d2.clamp_min(0) / (ch * cw * 3)).double().cpu().numpy())
        index.append(j.cpu().numpy())
    return np.concatenate(dist), np.concatenate(index)


@dataclass(frozen=True)
class TrainingFaces:
    """The accepted training faces: ids, repo-relative paths, uint8 images (M, H, W, 3), features (M, D)."""

    ids: tuple[str, ...]
    paths: tuple[str, ...]
    images: np.ndarray
    feats: np.ndarray


def training_faces(
    faces_parquet: str | Path,
    root: str | Path,
    image_size: int,
    *,
    extractor: Any,
    cache_dir: str | Path,
    batch_size: int,
) -> TrainingFaces:
    """The train split of ``faces_parquet`` at ``image_size`` px with its features (cached as the test split's)."""
    import pandas as pd

    from facegen.fid import features as fid
    from facegen.train.data import load_split

    table = pd.read_parquet(faces_parquet, columns=["face_id", "path", "status", "split"])
    rows = table[(table["status"] == "ok") & (table["split"] == "train")].sort_values("face_id")
    images = load_split(faces_parquet, "train", root, image_size)  # same rows, same order
    feats = fid.reference_features(images, extractor, cache_dir, batch_size).feats
    return TrainingFaces(tuple(rows["face_id"]), tuple(rows["path"]), images, feats)


@dataclass(frozen=True)
class Nearest:
    """Per sample (N,): both nearest-training distances and faces, score = min(distance / threshold), flagged."""

    feature_distance: np.ndarray
    feature_index: np.ndarray
    pixel_distance: np.ndarray
    pixel_index: np.ndarray
    score: np.ndarray  # < 1: flagged; the pairs figure ranks by it
    by_pixel: np.ndarray  # True where the pixel distance is the closer one relative to its threshold
    flagged: np.ndarray

    @property
    def index(self) -> np.ndarray:
        """The training face each sample is closest to, relative to that distance's threshold."""
        return np.where(self.by_pixel, self.pixel_index, self.feature_index)


def _ratio(dist: np.ndarray, threshold: float) -> np.ndarray:
    """distance / threshold; a zero threshold flags nothing (inf), a distance of 0 against it too."""
    return dist / threshold if threshold > 0 else np.full_like(dist, math.inf)


@dataclass(frozen=True)
class Detector:
    """The training faces and the two calibrated thresholds (module docstring)."""

    train: TrainingFaces
    feature_threshold: float
    pixel_threshold: float
    quantile: float
    pixel_shift: int
    num_calibration: int
    test_flagged_fraction: float  # share of the calibration (test) faces themselves below a threshold
    device: str = "cpu"

    @classmethod
    def calibrate(
        cls,
        train: TrainingFaces,
        test_images: np.ndarray,
        test_feats: np.ndarray,
        *,
        quantile: float,
        pixel_shift: int,
        device: Any = "cpu",
    ) -> Detector:
        """Thresholds: the ``quantile`` of the test faces' nearest-training feature and pixel distances."""
        if len(train.ids) == 0 or len(test_images) == 0:
            raise ValueError("memorization needs at least one training face and one test face")
        fd, _ = feature_nearest(test_feats, train.feats)
        pd_, _ = pixel_nearest(test_images, train.images, shift=pixel_shift, device=device)
        ft, pt = float(np.quantile(fd, quantile)), float(np.quantile(pd_, quantile))
        flagged = float(((fd < ft) | (pd_ < pt)).mean())
        return cls(train, ft, pt, quantile, pixel_shift, len(test_images), flagged, str(device))

    def nearest(self, images: np.ndarray, feats: np.ndarray) -> Nearest:
        """Nearest training faces of uint8 ``images`` (N, H, W, 3) with features ``feats`` (N, D)."""
        fd, fi = feature_nearest(feats, self.train.feats)
        pd_, pi = pixel_nearest(images, self.train.images, shift=self.pixel_shift, device=self.device)
        fr, pr = _ratio(fd, self.feature_threshold), _ratio(pd_, self.pixel_threshold)
        return Nearest(
            fd, fi, pd_, pi, np.minimum(fr, pr), pr < fr, (fd < self.feature_threshold) | (pd_ < self.pixel_threshold)
        )

    def summary(self, nearest: Nearest) -> dict[str, float]:
        """The per-evaluation numbers: ``memorized_fraction`` and ``memorized_count``."""
        return {"memorized_fraction": float(nearest.flagged.mean()), "memorized_count": int(nearest.flagged.sum())}

    def calibration(self, extractor: str) -> dict[str, Any]:
        """What the thresholds are and how they were calibrated (metrics/fid.json)."""
        return {
            "memorization_quantile": self.quantile,
            "memorization_feature_threshold": self.feature_threshold,
            "memorization_pixel_threshold": self.pixel_threshold,
            "memorization_calibration_faces": self.num_calibration,
            "memorization_test_flagged_fraction": self.test_flagged_fraction,
            "memorization_num_train": len(self.train.ids),
            "memorization_pixel_shift": self.pixel_shift,
            "memorization_calibration": (
                f"thresholds = the {self.quantile:g} quantile of the nearest-training distances of "
                f"{self.num_calibration} test faces; feature: cosine distance of {extractor} features; "
                f"pixel: RMS difference in [0, 1], min over mirror and shifts of up to {self.pixel_shift} px; "
                "flagged when either distance is below its threshold"
            ),
        }

    def rows(self, nearest: Nearest, samples: Sequence[str]) -> Any:
        """data/memorization.parquet: one row per sample (pandas DataFrame)."""
        import pandas as pd

        ids, paths, index = np.asarray(self.train.ids), np.asarray(self.train.paths), nearest.index
        return pd.DataFrame(
            {
                "sample": list(samples),
                "face_id": ids[index],
                "path": paths[index],
                "feature_distance": nearest.feature_distance,
                "feature_face_id": ids[nearest.feature_index],
                "pixel_distance": nearest.pixel_distance,
                "pixel_face_id": ids[nearest.pixel_index],
                "score": nearest.score,
                "flagged": nearest.flagged,
            }
        )


def nearest_training_face(image: np.ndarray, *, detector: Detector, extractor: Any) -> dict[str, Any]:
    """One image's nearest training face (for the studio): uint8 (H, W, 3) at the model's size.

    ``detector`` and ``extractor`` come from a scorer built once (``Scorer.from_config(...)``:
    ``scorer.detector``, ``scorer.extractor``). Returns face_id, path, both distances, both
    thresholds and ``flagged``, as a row of data/memorization.parquet.
    """
    from facegen.fid.features import extract_features

    batch = np.asarray(image)[None]
    nearest = detector.nearest(batch, extract_features(batch, extractor, 1))
    row = detector.rows(nearest, ["image"]).iloc[0].to_dict()
    return {
        **{k: row[k] for k in ("face_id", "path", "feature_face_id", "pixel_face_id")},
        "feature_distance": float(row["feature_distance"]),
        "pixel_distance": float(row["pixel_distance"]),
        "feature_threshold": detector.feature_threshold,
        "pixel_threshold": detector.pixel_threshold,
        "flagged": bool(row["flagged"]),
    }
