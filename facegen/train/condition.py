"""Conditional training: the attribute vector of each training face, its statistics, dropout.

``train.condition`` lists faces.parquet columns (e.g. ``[brightness]``, ``[yaw, brightness]``;
docs/condition.md lists them with units). An empty list trains today's unconditional model:
nothing here runs and no random number is drawn, so the run is bit-identical.

- Values are read for the accepted faces of the train split in the order
  :func:`facegen.train.data.load_split` loads their images (face_id order).
- Normalisation: z = (value - mean) / std with the train split's mean and std; these, the
  training min/max and ``train.condition_margin`` go into the model's config
  (:mod:`facegen.diffusion.conditional`), so they are saved and loaded with the weights.
- A face missing an attribute (null in faces.parquet) is trained with that attribute dropped,
  never discarded.
- Classifier-free guidance (Ho & Salimans 2022): each training face has its whole condition
  dropped with probability ``train.condition_dropout``; with more than one attribute, each
  remaining attribute is also dropped alone with that probability, so any subset can be
  requested at sampling time.
- Augmentations must not change the attributes: a horizontal flip negates yaw/roll, colour
  jitter changes the photometric attributes; such combinations are configuration errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch

MIRROR_ODD = ("yaw", "roll")  # negated by a horizontal flip
PHOTOMETRIC = ("brightness", "top_brightness", "background_brightness", "colourfulness", "eye_brightness")
NOT_ATTRIBUTES = ("face_index", "face_area", "det_score", "crop_outside")  # numeric but not properties of the face


def check_config(
    condition: tuple[str, ...], *, dropout: float, margin: float, hflip: bool, color_jitter: float
) -> None:
    """Configuration errors of ``train.condition*`` that need no data."""
    if len(set(condition)) != len(condition):
        raise ValueError(f"train.condition = {list(condition)} names an attribute twice")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"train.condition_dropout = {dropout}: must be in [0, 1) (0.1 is the usual choice)")
    if margin < 0:
        raise ValueError(f"train.condition_margin = {margin}: must be >= 0")
    flipped = [n for n in condition if n in MIRROR_ODD]
    if hflip and flipped:
        raise ValueError(f"train.condition has {flipped}, which a horizontal flip negates: set train.hflip: false")
    jittered = [n for n in condition if n in PHOTOMETRIC]
    if color_jitter > 0 and jittered:
        raise ValueError(f"train.condition has {jittered}, which colour jitter changes: set train.color_jitter: 0")


def load_values(faces_parquet: str | Path, split: str, names: tuple[str, ...]) -> np.ndarray:
    """float64 (N, K) attribute values of the accepted faces of ``split`` (face_id order), NaN = missing."""
    import pandas as pd

    table = pd.read_parquet(faces_parquet)
    rows = table[(table["status"] == "ok") & (table["split"] == split)].sort_values("face_id")
    numeric = sorted(c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and c not in NOT_ATTRIBUTES)
    unknown = [n for n in names if n not in numeric]
    if unknown:
        raise ValueError(
            f"train.condition: {unknown} not numeric attribute columns of {faces_parquet}; choose from {numeric}"
        )
    values = rows[list(names)].astype("float64").to_numpy()
    empty = [n for n, col in zip(names, values.T, strict=False) if not np.isfinite(col).any()]
    if empty:
        raise ValueError(
            f"train.condition: {empty} are empty (null) for every {split} face of {faces_parquet} "
            "(docs/condition.md says when the face model gives them); drop them from train.condition"
        )
    return np.where(np.isfinite(values), values, np.nan)


def fit_stats(values: np.ndarray, names: tuple[str, ...], margin: float) -> dict[str, Any]:
    """Train-split statistics per attribute over the faces that have it: names, mean, std
    (1 when constant), min, max, count, and the margin of the allowed request range."""
    std = np.nanstd(values, axis=0)
    return {
        "names": list(names),
        "mean": np.nanmean(values, axis=0).tolist(),
        "std": np.where(std > 0, std, 1.0).tolist(),
        "min": np.nanmin(values, axis=0).tolist(),
        "max": np.nanmax(values, axis=0).tolist(),
        "count": np.isfinite(values).sum(axis=0).tolist(),
        "margin": float(margin),
    }


@dataclass
class ConditionData:
    """The normalised condition of every training face, on the training device."""

    z: torch.Tensor  # (N, K) float32, NaN = missing
    stats: dict[str, Any]
    dropout: float

    def batch(self, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """``forward`` kwargs for the faces ``idx``: ``{"condition": (B, 2K)}`` with dropout drawn
        from ``generator`` (the step's generator, so a resumed run drops the same ones)."""
        import torch

        z = self.z[idx.to(self.z.device)]
        b, k = z.shape
        dev = generator.device
        drop = (torch.rand(b, 1, generator=generator, device=dev) < self.dropout).expand(b, k)
        if k > 1:
            drop = drop | (torch.rand(b, k, generator=generator, device=dev) < self.dropout)
        flag = ~torch.isnan(z) & ~drop.to(z.device)
        return {"condition": torch.cat([torch.where(flag, z, torch.zeros_like(z)), flag.to(z.dtype)], dim=1)}


def prepare(cfg: Any, faces_parquet: str | Path, device: torch.device | str) -> ConditionData | None:
    """The training condition for ``cfg`` (a TrainConfig); None when ``train.condition`` is empty."""
    if not cfg.condition:
        return None
    import torch

    check_config(
        cfg.condition,
        dropout=cfg.condition_dropout,
        margin=cfg.condition_margin,
        hflip=cfg.hflip,
        color_jitter=cfg.color_jitter,
    )
    values = load_values(faces_parquet, "train", tuple(cfg.condition))
    stats = fit_stats(values, tuple(cfg.condition), cfg.condition_margin)
    z = (values - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    return ConditionData(torch.from_numpy(z.astype(np.float32)).to(device), stats, cfg.condition_dropout)


def build_unet(cfg: Any, cond: ConditionData | None) -> Any:
    """The UNet to train: today's ``UNet2DModel`` (``cond`` None) or the conditioned one."""
    from diffusers import UNet2DModel

    from facegen.diffusion.model import unet_config

    config = unet_config(
        cfg.model, cfg.image_size, cfg.channels or None, layers_per_block=cfg.layers_per_block, dropout=cfg.dropout
    )
    if cond is None:
        return UNet2DModel(**config)
    from facegen.diffusion.conditional import build

    return build(config, cond.stats)


def key_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Config entries that name a run: the condition keys only when conditioned, so an
    unconditional run keeps the run key (and resumes the checkpoints) it had before them."""
    if settings.get("condition"):
        return settings
    return {k: v for k, v in settings.items() if k not in ("condition", "condition_dropout", "condition_margin")}
