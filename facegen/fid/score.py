"""Score a folder of samples against the test split: the `fid` stage's metric.

The score is the Fréchet distance between feature statistics of the samples and of the
accepted test-split faces of data/faces.parquet, with the extractor of ``fid.extractor``
(facegen.fid.features): clean-fid Inception gives ``fid``; the offline extractor gives ``fd_offline``
(never called FID). Reference statistics are cached by content hash, so the test split is
featurised once for all runs and for the train stage's per-epoch FID alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.common.config import AT_LEAST_ONE, validate
from facegen.fid.features import EXTRACTORS


@dataclass(frozen=True)
class FidConfig:
    """params.yaml ``fid``: which feature extractor, batch size and device."""

    extractor: str = "inception"
    batch_size: int = 64
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"fid.extractor={self.extractor!r} is not one of {list(EXTRACTORS)}")
        if self.batch_size < 1:
            raise ValueError(f"fid.batch_size must be >= 1, got {self.batch_size}")
        validate(self, "fid", {"batch_size": AT_LEAST_ONE})


def sample_paths(samples_dir: str | Path) -> list[Path]:
    """The numbered sample PNGs (00001.png, ...) of ``samples_dir``, in order."""
    paths = sorted(p for p in Path(samples_dir).glob("*.png") if p.stem.isdigit())
    if len(paths) < 2:
        raise ValueError(f"{samples_dir}: found {len(paths)} sample image(s); a score needs at least 2 "
                         f"(raise sample.num_images and rerun the sample stage)")
    return paths


def score_samples(cfg: FidConfig, samples_dir: str | Path, faces_parquet: str | Path,
                  cache_dir: str | Path, root: str | Path = ".") -> dict[str, Any]:
    """``{<metric>: score, num_samples, num_reference}`` for the samples vs the test split.

    ``<metric>`` is ``fid`` or ``fd_offline`` (facegen.fid.features.metric_name); ``root`` is the
    repository root that faces.parquet paths are relative to.
    """
    from facegen.train.data import face_paths
    from facegen.common.images import load_images
    from facegen.fid.features import frechet_distance, get_extractor, image_stats, metric_name, reference_stats
    from facegen.common.device import resolve_device

    reference = face_paths(faces_parquet, "test", root)
    if len(reference) < 2:
        raise ValueError(f"{faces_parquet}: the test split has {len(reference)} face(s); a score needs at least 2 "
                         f"(raise align.test_fraction or crawl more posts)")
    samples = sample_paths(samples_dir)
    extractor = get_extractor(cfg.extractor, resolve_device(cfg.device))
    mu_ref, sigma_ref = reference_stats(reference, extractor, cache_dir, cfg.batch_size)
    mu, sigma = image_stats(load_images(samples), extractor, cfg.batch_size)
    return {
        metric_name(cfg.extractor): frechet_distance(mu, sigma, mu_ref, sigma_ref),
        "num_samples": len(samples),
        "num_reference": len(reference),
    }


def write_metrics(metrics: dict[str, Any], path: str | Path) -> None:
    """Write the metrics JSON (a DVC metric, tracked in git)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", encoding="utf-8")
