"""Controllability: does a conditional model's output follow the requested attribute value?

For each attribute the model is conditioned on that can be measured on an image
(facegen.faces.appearance: brightness, top_brightness, background_brightness, colourfulness),
request ``control.num_values`` values evenly spaced over mean +/- ``control.span`` x std of
the training faces (clipped to their min..max), draw ``control.num_seeds`` images per value
(the same seeds for every value, only that attribute requested, the others dropped), measure
the attribute on each sample, and report:

- ``spearman``: Spearman rank correlation between requested and measured over all samples
  (1: a higher request always gives a higher measurement);
- ``spearman_of_means``: the same over the per-value mean measurements (``num_values`` points);
- ``mae``: mean |measured - requested| in the attribute's units;
- ``slope``: least-squares slope of measured on requested (1: the full requested change arrives).

Yaw is measured by detecting the samples again (facegen.faces.pose, the pipeline's
``faces.*`` detector); a sample where no face is found is left out of the scores and counted
(``measured_fraction``). The sweep grid puts requested values across (low to high) and seeds
down. Attributes nothing here can measure on an image (pitch, gender, ...) are listed as
``not_measured``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facegen.common.atomic import write_json
from facegen.common.tables import Schema, write_parquet
from facegen.faces.appearance import MEASURES, measure_batch

if TYPE_CHECKING:  # pragma: no cover
    from facegen.diffusion.sampling import SampleSpec
    from facegen.faces.detect import FaceDetector

# measured by detecting the samples again (facegen.faces.pose): need a detector
POSE_MEASURES = ("yaw",)

# sweep.parquet: one row per (requested value, seed) of each swept attribute
SWEEP_SCHEMA: Schema = {"attribute": "string", "requested": "float64", "seed": "int64", "measured": "float64"}


@dataclass(frozen=True)
class ControlConfig:
    """params.yaml ``control``: the shape of the controllability sweep."""

    num_values: int = 5
    num_seeds: int = 8
    span: float = 1.5  # requested values cover mean +/- span x std of the training faces
    seed: int = 0  # seed of the first row; row r uses seed + r for every value

    def __post_init__(self) -> None:
        if self.num_values < 2 or self.num_seeds < 1:
            raise ValueError(
                f"control.num_values = {self.num_values} (>= 2) and control.num_seeds = {self.num_seeds} (>= 1)"
            )
        if self.span <= 0:
            raise ValueError(f"control.span = {self.span}: must be > 0")


def sweep_values(unet_config: Any, name: str, num_values: int, span: float) -> np.ndarray:
    """``num_values`` requests of ``name``: mean +/- span x std, clipped to the training min..max."""
    cfg = dict(unet_config)
    i = list(cfg["condition_names"]).index(name)
    mean, std = float(cfg["condition_mean"][i]), float(cfg["condition_std"][i])
    lo = max(mean - span * std, float(cfg["condition_min"][i]))
    hi = min(mean + span * std, float(cfg["condition_max"][i]))
    return np.linspace(lo, hi, num_values)


def scores(requested: np.ndarray, measured: np.ndarray) -> dict[str, float | None]:
    """Controllability of (V, S) measurements for V requested values (see module docstring);
    NaN measurements (no face found) are left out, ``measured_fraction`` says how many were kept."""
    from scipy.stats import spearmanr

    requested = np.asarray(requested, np.float64)
    measured = np.asarray(measured, np.float64)
    flat_req = np.repeat(requested, measured.shape[1])
    flat = measured.ravel()
    ok = np.isfinite(flat)
    fraction = float(ok.mean()) if flat.size else 0.0
    names = ("spearman", "spearman_of_means", "mae", "slope")
    if ok.sum() < 2:
        return {**dict.fromkeys(names), "measured_fraction": fraction}
    with warnings.catch_warnings():  # a constant input, or a value with no face, is reported as None below
        warnings.simplefilter("ignore")
        means = _row_means(measured)
        seen = np.isfinite(means)
        rho = spearmanr(flat_req[ok], flat[ok])[0]
        rho_means = spearmanr(requested[seen], means[seen])[0] if seen.sum() >= 2 else np.nan
        slope = np.polyfit(flat_req[ok], flat[ok], 1)[0] if np.ptp(flat_req[ok]) > 0 else np.nan
    mae = np.abs(flat[ok] - flat_req[ok]).mean()
    out = {"spearman": rho, "spearman_of_means": rho_means, "mae": mae, "slope": slope}
    # a constant measurement has no rank correlation: null, not a made-up number
    return {**{k: float(v) if np.isfinite(v) else None for k, v in out.items()}, "measured_fraction": fraction}


def measure(images: np.ndarray, name: str, detector: FaceDetector | None = None) -> np.ndarray:
    """Attribute ``name`` of every image (N, H, W, 3): float64 (N,), NaN where unmeasurable."""
    if name in POSE_MEASURES:
        if detector is None:
            raise ValueError(f"measuring {name!r} on images needs a face detector (params.yaml faces.*)")
        from facegen.faces.pose import measure_yaw

        return measure_yaw(images, detector)
    return measure_batch(images, name)


def sweep(
    unet: Any,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    name: str,
    *,
    values: np.ndarray,  # the requested values of ``name`` (columns)
    seeds: list[int],  # one row per seed, the same seeds for every value
    progress: bool = False,  # a tqdm bar of images
    detector: FaceDetector | None = None,  # measures pose attributes (yaw); None for appearance ones
) -> tuple[np.ndarray, np.ndarray]:
    """Images (S, V, H, W, 3) uint8 (row = seed, column = value) and measured ``name`` (V, S)."""
    from facegen.diffusion.sampling import generate

    conditions = [{name: float(v)} for s in seeds for v in values]
    flat_seeds = [s for s in seeds for _ in values]
    images = generate(unet, scheduler_config, spec, flat_seeds, conditions=conditions, progress=progress)
    measured = measure(images, name, detector).reshape(len(seeds), len(values)).T
    return images.reshape(len(seeds), len(values), *images.shape[1:]), measured


def run_control(
    model_dir: str | Path,
    sample_cfg: Any,
    cfg: ControlConfig,
    *,
    out_dir: str | Path,
    metrics_path: str | Path,
    tracking_uri: str | None = None,
    detector: Callable[[], FaceDetector] | None = None,
) -> dict[str, Any]:
    """The control stage: sweep every measurable conditioned attribute of ``models/best``.

    Writes ``out_dir/<attribute>.png`` (the sweep grid), ``out_dir/sweep.parquet`` (one row
    per sample: attribute, requested, seed, measured) and ``metrics_path`` (scores per
    attribute; an unconditional model gives ``{"conditioned": []}``); logs the scores to the
    MLflow run that trained the model when ``tracking_uri`` is given. Sampler, steps,
    guidance, batch size and device are ``sample_cfg``'s (a SampleConfig). ``detector`` builds
    the face detector that measures yaw; it is called only when the model is conditioned on it."""
    from facegen.common.device import resolve_device
    from facegen.diffusion.conditional import names
    from facegen.diffusion.sampling import load_model

    out_dir, metrics_path = Path(out_dir), Path(metrics_path)
    device = resolve_device(sample_cfg.device)
    unet, sched_config = load_model(model_dir, device)
    conditioned = names(unet.config)
    can_measure = set(MEASURES) | (set(POSE_MEASURES) if detector is not None else set())
    measurable = [n for n in conditioned if n in can_measure]
    found = detector() if detector is not None and set(measurable) & set(POSE_MEASURES) else None
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("*.png"):
        stale.unlink()
    seeds = [cfg.seed + r for r in range(cfg.num_seeds)]
    result: dict[str, Any] = {
        "conditioned": conditioned,
        "not_measured": [n for n in conditioned if n not in can_measure],
        "guidance": sample_cfg.guidance,
        "attributes": {},
    }
    rows: list[dict[str, Any]] = []
    for name in measurable:
        values = sweep_values(unet.config, name, cfg.num_values, cfg.span)
        images, measured = sweep(
            unet, sched_config, sample_cfg.spec(device), name, values=values, seeds=seeds, detector=found
        )
        result["attributes"][name] = _attribute_result(images, values, measured, out_dir / f"{name}.png")
        rows += _sweep_rows(name, values, seeds, measured)
    write_parquet(rows, SWEEP_SCHEMA, out_dir / "sweep.parquet")
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(metrics_path, result)
    if tracking_uri is not None and result["attributes"]:
        _log_to_training_run(Path(model_dir), tracking_uri, result, out_dir)
    return result


def _attribute_result(images: np.ndarray, values: np.ndarray, measured: np.ndarray, grid_path: Path) -> dict[str, Any]:
    """Save one attribute's sweep grid (seeds down, values across) and return its scores."""
    from PIL import Image

    from facegen.common.images import make_grid

    Image.fromarray(make_grid(images.reshape(-1, *images.shape[2:]), nrow=len(values))).save(grid_path)
    return {
        **scores(values, measured),
        "requested": values.round(3).tolist(),
        "measured_mean": [None if not np.isfinite(m) else round(float(m), 3) for m in _row_means(measured)],
    }


def _sweep_rows(name: str, values: np.ndarray, seeds: list[int], measured: np.ndarray) -> list[dict[str, Any]]:
    """sweep.parquet's rows of one attribute: one per (requested value, seed)."""
    return [
        {"attribute": name, "requested": float(v), "seed": s, "measured": float(measured[i, j])}
        for i, v in enumerate(values)
        for j, s in enumerate(seeds)
    ]


def _row_means(measured: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # a requested value where no sample was measurable: NaN
        warnings.simplefilter("ignore")
        return np.nanmean(measured, axis=1)


def _log_to_training_run(model_dir: Path, uri: str, result: dict[str, Any], out_dir: Path) -> None:
    """Add ``control_<attribute>_<score>`` metrics and the grids to the run that trained the model."""
    from facegen.diffusion.model import BEST_FILE, TRAIN_CONFIG_FILE
    from facegen.train.tracking import Tracker

    best = json.loads((model_dir / BEST_FILE).read_text(encoding="utf-8"))
    train_cfg = json.loads((model_dir / TRAIN_CONFIG_FILE).read_text(encoding="utf-8"))
    tracker = Tracker(uri, train_cfg.get("experiment", "facegen"), "control", run_id=best.get("run_id"))
    metrics = {
        f"control_{name}_{key}": value
        for name, s in result["attributes"].items()
        for key, value in s.items()
        if isinstance(value, float)
    }
    tracker.log_metrics(metrics, int(best.get("epoch") or 0))
    tracker.log_artifacts(out_dir, "control")
    tracker.end("FINISHED")
