"""One scoring path for per-epoch evaluation and the `fid` stage: samples vs the test split.

:class:`Scorer` holds the feature extractor (loaded once) and the cached reference features of
the accepted test-split faces of data/faces.parquet, and scores a uint8 sample set as FID
(``fid``) and KID (``kid``, ``kid_std``) with Inception, or ``fd_offline`` / ``kid_offline``
with the offline extractor (facegen.fid.features; never called FID).

Resolution convention: samples and test faces are compared at the model's image size
(``train.image_size``): the test faces are resized to it (PIL bicubic, as train loads them) and
only then go through clean-fid's resize to 299 px. Training evaluates at ``train.image_size``;
the fid stage at the size of the samples, which the model drew at that same size. The
reference cache key is extractor + resolution + split content, so both share one entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facegen.common.config import AT_LEAST_ONE, Range, validate
from facegen.fid import features as fid


@dataclass(frozen=True)
class FidConfig:
    """params.yaml ``fid``: extractor, batch size, device and KID subsets of the fid stage."""

    extractor: str = "inception"
    batch_size: int = 64
    device: str = "auto"
    kid_subsets: int = 100
    kid_subset_size: int = 1000

    def __post_init__(self) -> None:
        if self.extractor not in fid.EXTRACTORS:
            raise ValueError(f"fid.extractor={self.extractor!r} is not one of {list(fid.EXTRACTORS)}")
        validate(self, "fid", {"batch_size": AT_LEAST_ONE, "kid_subsets": AT_LEAST_ONE, "kid_subset_size": Range(2)})


class Scorer:
    """Scores uint8 sample sets (N, H, W, 3) against one reference set with one extractor."""

    def __init__(
        self,
        extractor: fid.FeatureExtractor,
        reference: fid.Reference,
        batch_size: int = 64,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
    ) -> None:
        self.extractor, self.reference = extractor, reference
        self.batch_size, self.kid_subsets, self.kid_subset_size = batch_size, kid_subsets, kid_subset_size
        self.metric, self.kid = fid.metric_name(extractor.name), fid.kid_name(extractor.name)

    @classmethod
    def for_split(
        cls,
        faces_parquet: str | Path,
        root: str | Path,
        image_size: int,
        extractor: str,
        device: Any,
        cache_dir: str | Path,
        batch_size: int = 64,
        kid_subsets: int = 100,
        kid_subset_size: int = 1000,
    ) -> Scorer:
        """The scorer against the test split of ``faces_parquet`` at ``image_size`` px."""
        from facegen.train.data import load_split

        test = load_split(faces_parquet, "test", root, image_size)
        if len(test) < 2:
            raise ValueError(
                f"{faces_parquet}: the test split has {len(test)} face(s); a score needs at least 2 "
                f"(raise align.test_fraction or crawl more posts)"
            )
        ext = fid.get_extractor(extractor, device)
        return cls(
            ext, fid.reference_features(test, ext, cache_dir, batch_size), batch_size, kid_subsets, kid_subset_size
        )

    @property
    def image_size(self) -> int:
        return int(self.reference.key.split("-")[-2].removesuffix("px"))

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        """``{fid, kid, kid_std}`` (or the offline names) of ``samples`` uint8 (N, H, W, 3), N >= 2."""
        samples = fid.check_images(samples)
        if samples.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"samples are {samples.shape[2]}x{samples.shape[1]} px, the reference "
                f"{self.reference.key} is {self.image_size} px: score at the model's image size"
            )
        feats = fid.extract_features(samples, self.extractor, self.batch_size)
        ref = self.reference
        kid, kid_std = fid.kernel_distance(feats, ref.feats, self.kid_subsets, self.kid_subset_size)
        return {self.metric: fid.frechet_distance_features(feats, ref.feats), self.kid: kid, f"{self.kid}_std": kid_std}

    def tags(self) -> dict[str, str]:
        """What scored: extractor, Inception source and sha256 (when Inception), reference key."""
        tags = {"fid_extractor": self.extractor.name, "fid_reference": self.reference.key}
        source = getattr(self.extractor, "source", None)
        if source is not None:
            tags.update(inception_source=source.name, inception_sha256=source.sha256)
        return tags


def sample_paths(samples_dir: str | Path) -> list[Path]:
    """The numbered sample PNGs (00001.png, ...) of ``samples_dir``, in order."""
    paths = sorted(p for p in Path(samples_dir).glob("*.png") if p.stem.isdigit())
    if len(paths) < 2:
        raise ValueError(
            f"{samples_dir}: found {len(paths)} sample image(s); a score needs at least 2 "
            f"(raise sample.num_images and rerun the sample stage)"
        )
    return paths


def score_samples(
    cfg: FidConfig, samples_dir: str | Path, faces_parquet: str | Path, cache_dir: str | Path, root: str | Path = "."
) -> dict[str, Any]:
    """metrics/fid.json: ``{<fid>, <kid>, <kid>_std, num_samples, num_reference, image_size, ...tags}``.

    ``<fid>`` is ``fid`` or ``fd_offline`` (facegen.fid.features.metric_name); ``root`` is the
    repository root that faces.parquet paths are relative to. The test faces are compared at
    the samples' size (the model's image size).
    """
    from facegen.common.device import resolve_device
    from facegen.common.images import load_images

    samples = load_images(sample_paths(samples_dir))
    scorer = Scorer.for_split(
        faces_parquet,
        root,
        samples.shape[1],
        cfg.extractor,
        resolve_device(cfg.device),
        cache_dir,
        cfg.batch_size,
        cfg.kid_subsets,
        cfg.kid_subset_size,
    )
    return {
        **scorer(samples),
        "num_samples": len(samples),
        "num_reference": len(scorer.reference.feats),
        "image_size": scorer.image_size,
        **scorer.tags(),
    }


def model_run(model_dir: str | Path) -> dict[str, Any] | None:
    """``best.json`` of a models/best folder (epoch, metric, value, run_id), None when absent."""
    from facegen.diffusion.model import BEST_FILE

    path = Path(model_dir) / BEST_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def log_to_run(metrics: dict[str, Any], run_id: str, uri: str) -> bool:
    """Log the stage's scores to the MLflow run that trained the scored model.

    Numbers go in as ``sample_<name>`` (``sample_fid``, ``sample_kid``, ...: the sample stage's
    images, beside the per-epoch ``fid``), strings as tags. False (and a note) when the run is
    not in the store at ``uri``.
    """
    import mlflow
    from mlflow.entities import Metric, RunTag
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient(tracking_uri=uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        print(f"fid: MLflow run {run_id} of models/best is not in {uri}; the score is in metrics/fid.json only")
        return False
    import time

    now = int(time.time() * 1000)
    numbers = [Metric(f"sample_{k}", float(v), now, 0) for k, v in metrics.items() if isinstance(v, (int, float))]
    tags = [RunTag(k, v) for k, v in metrics.items() if isinstance(v, str) and k != "run_id"]
    client.log_batch(run_id, metrics=numbers, tags=tags)
    return True


def info_path(path: str | Path) -> Path:
    """``metrics/fid_info.json`` beside ``metrics/fid.json``: the score's text (no DVC metric)."""
    return Path(path).with_name(f"{Path(path).stem}_info.json")


def write_metrics(metrics: dict[str, Any], path: str | Path) -> None:
    """Write the numbers, the score first, as the metrics JSON (a DVC metric, tracked in git: they
    lead ``dvc exp show``) and the text (extractor, reference, Inception source, run id) to
    :func:`info_path`, which is no DVC metric (text columns would crowd ``dvc exp show``)."""
    from facegen.common.atomic import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    write_json(path, numbers, sort_keys=False)
    write_json(info_path(path), {k: v for k, v in metrics.items() if k not in numbers})
