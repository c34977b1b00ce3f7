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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facegen.common.config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, Range, validate
from facegen.fid import features as fid
from facegen.fid.manifold import prdc

if TYPE_CHECKING:  # pragma: no cover
    from facegen.fid.memorization import Detector, Nearest
    from facegen.train.config import TrainConfig

# the per-evaluation scores beside FID and KID (MLflow per epoch, train_epochs.csv, metrics/fid.json)
NOVELTY_SCORES = ("precision", "recall", "density", "coverage", "memorized_fraction", "memorized_count")


@dataclass(frozen=True)
class ScoringOptions:
    """How a :class:`Scorer` computes FID and KID: features per batch and the KID subsets
    (count and size; clean-fid's defaults). They travel together from FidConfig or TrainConfig."""

    batch_size: int = 64
    kid_subsets: int = 100
    kid_subset_size: int = 1000


@dataclass(frozen=True)
class FidConfig:
    """params.yaml ``fid``: extractor, batch size, device and KID subsets of the fid stage; the
    precision/recall k and the memorization settings, which the trainer's evaluation reads too."""

    extractor: str = "inception"
    batch_size: int = 64
    device: str = "auto"
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3  # k of the k-NN manifolds (precision, recall, density, coverage)
    memorization_quantile: float = 0.01  # thresholds: this quantile of the test faces' nearest-train distances
    pixel_shift: int = 2  # the pixel distance is the minimum over shifts of up to this many px (and a flip)
    max_memorized_fraction: float = 0.05  # `facegen best` refuses an epoch with more flagged samples

    @property
    def scoring(self) -> ScoringOptions:
        """The FID/KID options of this section (batch size and KID subsets)."""
        return ScoringOptions(self.batch_size, self.kid_subsets, self.kid_subset_size)

    def __post_init__(self) -> None:
        if self.extractor not in fid.EXTRACTORS:
            raise ValueError(f"fid.extractor={self.extractor!r} is not one of {list(fid.EXTRACTORS)}")
        validate(
            self,
            "fid",
            {
                "batch_size": AT_LEAST_ONE,
                "kid_subsets": AT_LEAST_ONE,
                "kid_subset_size": Range(2),
                "pr_k": AT_LEAST_ONE,
                "memorization_quantile": FRACTION,
                "pixel_shift": NON_NEGATIVE,
                "max_memorized_fraction": FRACTION,
            },
        )


def scoring_config(train: TrainConfig, fid_cfg: FidConfig | None = None) -> FidConfig:
    """The trainer's per-epoch scoring settings: ``train``'s extractor, batch and KID keys, the
    ``fid`` section's precision/recall and memorization keys (one scoring path, one default each)."""
    return replace(
        fid_cfg or FidConfig(),
        extractor=train.fid_extractor,
        batch_size=train.fid_batch_size,
        kid_subsets=train.kid_subsets,
        kid_subset_size=train.kid_subset_size,
    )


class Scorer:
    """Scores uint8 sample sets (N, H, W, 3) against one reference set with one extractor."""

    def __init__(
        self,
        extractor: fid.FeatureExtractor,
        reference: fid.Reference,
        options: ScoringOptions | None = None,
        *,
        pr_k: int | None = None,
        detector: Detector | None = None,
    ) -> None:
        """``options``: batch size and KID subsets (defaults: :class:`ScoringOptions`); ``pr_k`` adds
        precision/recall/density/coverage, ``detector`` the memorization scores."""
        self.extractor, self.reference = extractor, reference
        self.options = options or ScoringOptions()
        self.batch_size = self.options.batch_size
        self.kid_subsets, self.kid_subset_size = self.options.kid_subsets, self.options.kid_subset_size
        self.metric, self.kid = fid.metric_name(extractor.name), fid.kid_name(extractor.name)
        self.pr_k, self.detector = pr_k, detector

    @classmethod
    def from_config(
        cls,
        cfg: FidConfig,
        *,
        faces_parquet: str | Path,
        root: str | Path,
        image_size: int,
        device: Any,
        cache_dir: str | Path,
    ) -> Scorer:
        """The full scorer of the fid stage and the trainer: FID, KID, precision/recall and memorization.

        The training faces' features are cached like the test split's (cache/fid, by content).
        """
        from facegen.fid.memorization import Detector, training_faces
        from facegen.train.data import load_split

        base = cls.for_split(
            faces_parquet,
            root,
            image_size,
            extractor=cfg.extractor,
            device=device,
            cache_dir=cache_dir,
            options=cfg.scoring,
        )
        train = training_faces(
            faces_parquet, root, image_size, extractor=base.extractor, cache_dir=cache_dir, batch_size=cfg.batch_size
        )
        test = load_split(faces_parquet, "test", root, image_size)
        if len(test) <= cfg.pr_k:
            raise ValueError(
                f"fid.pr_k = {cfg.pr_k}: precision/recall need more than k test faces, the test split has "
                f"{len(test)}: lower fid.pr_k or raise align.test_fraction"
            )
        detector = Detector.calibrate(
            train,
            test,
            base.reference.feats,
            quantile=cfg.memorization_quantile,
            pixel_shift=cfg.pixel_shift,
            device=device,
        )
        base.pr_k, base.detector = cfg.pr_k, detector
        return base

    @classmethod
    def for_split(
        cls,
        faces_parquet: str | Path,
        root: str | Path,
        image_size: int,
        *,
        extractor: str,
        device: Any,
        cache_dir: str | Path,
        options: ScoringOptions | None = None,
    ) -> Scorer:
        """The scorer against the test split of ``faces_parquet`` at ``image_size`` px (FID and KID only)."""
        from facegen.train.data import load_split

        test = load_split(faces_parquet, "test", root, image_size)
        if len(test) < 2:
            raise ValueError(
                f"{faces_parquet}: the test split has {len(test)} face(s); a score needs at least 2 "
                f"(raise align.test_fraction or crawl more posts)"
            )
        options = options or ScoringOptions()
        ext = fid.get_extractor(extractor, device)
        return cls(ext, fid.reference_features(test, ext, cache_dir, options.batch_size), options)

    @property
    def image_size(self) -> int:
        return int(self.reference.key.split("-")[-2].removesuffix("px"))

    def __call__(self, samples: np.ndarray) -> dict[str, float]:
        """``{fid, kid, kid_std}`` (or the offline names) of ``samples`` uint8 (N, H, W, 3), N >= 2,
        and :data:`NOVELTY_SCORES` when the scorer has ``pr_k`` and a detector."""
        return self.evaluate(samples)[0]

    def evaluate(self, samples: np.ndarray) -> tuple[dict[str, float], Nearest | None]:
        """(scores as :meth:`__call__`, each sample's nearest training faces or None without a detector)."""
        samples = fid.check_images(samples)
        if samples.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"samples are {samples.shape[2]}x{samples.shape[1]} px, the reference "
                f"{self.reference.key} is {self.image_size} px: score at the model's image size"
            )
        feats = fid.extract_features(samples, self.extractor, self.batch_size)
        ref = self.reference
        kid, kid_std = fid.kernel_distance(
            feats, ref.feats, num_subsets=self.kid_subsets, max_subset_size=self.kid_subset_size
        )
        scores = {
            self.metric: fid.frechet_distance_features(feats, ref.feats),
            self.kid: kid,
            f"{self.kid}_std": kid_std,
        }
        if self.pr_k is not None:
            scores.update(prdc(ref.feats, feats, self.pr_k))
        nearest = None
        if self.detector is not None:
            nearest = self.detector.nearest(samples, feats)
            scores.update(self.detector.summary(nearest))
        return scores, nearest

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
    cfg: FidConfig,
    samples_dir: str | Path,
    faces_parquet: str | Path,
    cache_dir: str | Path,
    *,
    root: str | Path = ".",
    memorization_out: str | Path | None = None,  # data/memorization.parquet: one row per sample
    pairs_out: str | Path | None = None,  # metrics/nearest_pairs.png
) -> dict[str, Any]:
    """metrics/fid.json: ``{<fid>, <kid>, <kid>_std, precision, recall, density, coverage,
    memorized_fraction, memorized_count, memorization_*, num_samples, num_reference, image_size, ...tags}``.

    ``<fid>`` is ``fid`` or ``fd_offline`` (facegen.fid.features.metric_name); ``root`` is the
    repository root that faces.parquet paths are relative to. The test faces are compared at
    the samples' size (the model's image size). Everything is computed before anything is written.
    """
    from facegen.common.atomic import atomic_path
    from facegen.common.device import resolve_device
    from facegen.common.images import load_images
    from facegen.fid.pairs import write_nearest_pairs

    paths = sample_paths(samples_dir)
    samples = load_images(paths)
    scorer = Scorer.from_config(
        cfg,
        faces_parquet=faces_parquet,
        root=root,
        image_size=samples.shape[1],
        device=resolve_device(cfg.device),
        cache_dir=cache_dir,
    )
    scores, nearest = scorer.evaluate(samples)
    assert scorer.detector is not None and nearest is not None
    names = [p.name for p in paths]
    if memorization_out is not None:
        Path(memorization_out).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(memorization_out) as tmp:
            scorer.detector.rows(nearest, names).to_parquet(tmp, index=False)
    if pairs_out is not None:
        write_nearest_pairs(pairs_out, samples, names, nearest=nearest, detector=scorer.detector)
    return {
        **scores,
        **scorer.detector.calibration(scorer.extractor.name),
        "pr_k": cfg.pr_k,
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


def epoch_score(uri: str, run_id: str, epoch: int, key: str = "memorized_fraction") -> float | None:
    """The ``key`` metric an MLflow run logged at step ``epoch`` (None when it was not logged)."""
    import mlflow

    history = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    values = [m.value for m in history if m.step == epoch]
    return values[-1] if values else None


def max_memorized_fraction(root: str | Path) -> float:
    """``fid.max_memorized_fraction`` of ``<root>/params.yaml`` (FidConfig's default when absent)."""
    from facegen.common.config import from_dict, load_params

    path = Path(root) / "params.yaml"
    section = (load_params(path).get("fid") or {}) if path.is_file() else {}
    return from_dict(FidConfig, section, "fid").max_memorized_fraction
