"""The attribute-conditioned UNet: a diffusers ``UNet2DModel`` that takes an attribute vector.

``ConditionedUNet2DModel`` is a ``UNet2DModel`` built with ``class_embed_type="identity"``
plus a small learned embedding (Linear(2K, D) - SiLU - Linear(D, D), D = the UNet's time
embedding width) whose output is the UNet's ``class_labels``: it is added to the timestep
embedding of every resnet block (Ho & Salimans 2022 condition the same way). The input is
the encoded condition of :func:`encode`, ``(B, 2K)``: the K normalised attribute values
(0 where dropped) followed by K presence flags (1 = given, 0 = dropped), so "no value" is
distinct from "the mean value". An all-zero input is the unconditional (fully dropped)
model of classifier-free guidance. The last layer starts at zero, so a fresh model ignores
its condition until training teaches it.

The attribute names, their normalisation statistics (train-split mean and std) and the
allowed request range (training min/max widened by ``margin`` x (max - min)) are part of
the model's diffusers config (``unet/config.json``): they are saved and loaded with the
weights and cannot drift from them. torch and diffusers are imported lazily by
:func:`model_class` (no heavy work at import of this module).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

CLASS_NAME = "ConditionedUNet2DModel"


def model_class() -> Any:
    """The ``ConditionedUNet2DModel`` class (:mod:`facegen.diffusion.unet_facegen`, imported on
    first use: it subclasses diffusers, and the same file ships inside each saved model)."""
    from facegen.diffusion.unet_facegen import ConditionedUNet2DModel

    return ConditionedUNet2DModel


def is_conditional(config: Mapping[str, Any] | Any) -> bool:
    """Whether a UNet config (dict or diffusers FrozenDict) is a conditioned model's."""
    return "condition_names" in dict(config)


def unet_class(config: Mapping[str, Any] | Any) -> Any:
    """The model class that loads ``config``: ``ConditionedUNet2DModel`` or ``UNet2DModel``."""
    if is_conditional(config):
        return model_class()
    from diffusers import UNet2DModel

    return UNet2DModel


def build(unet_kwargs: dict[str, Any], stats: Mapping[str, Any]) -> Any:
    """A fresh conditioned UNet from ``UNet2DModel`` kwargs and ``stats`` (see
    :func:`facegen.train.condition.fit_stats`: names, mean, std, min, max, margin)."""
    return model_class()(
        condition_names=list(stats["names"]),
        condition_mean=list(stats["mean"]),
        condition_std=list(stats["std"]),
        condition_min=list(stats["min"]),
        condition_max=list(stats["max"]),
        condition_margin=float(stats["margin"]),
        **unet_kwargs,
    )


def names(config: Mapping[str, Any] | Any) -> list[str]:
    """The attribute names a model is conditioned on ([] for an unconditional model)."""
    return list(dict(config).get("condition_names") or [])


def allowed_range(config: Mapping[str, Any] | Any, name: str) -> tuple[float, float]:
    """Requests of ``name`` must lie in [min - m (max - min), max + m (max - min)], m = margin."""
    cfg = dict(config)
    i = names(cfg).index(name)
    lo, hi, m = float(cfg["condition_min"][i]), float(cfg["condition_max"][i]), float(cfg["condition_margin"])
    return lo - m * (hi - lo), hi + m * (hi - lo)


def check_request(config: Mapping[str, Any] | Any, request: Mapping[str, float] | None) -> dict[str, float]:
    """Validate ``{name: value in its own units}`` against a model; returns it as floats.

    Errors: a condition on an unconditional model, an unknown name, a non-finite value or one
    far outside the training range (:func:`allowed_range`)."""
    request = dict(request or {})
    known = names(config)
    if request and not known:
        raise ValueError(
            f"sample.condition = {request}: this model is unconditional (trained with "
            "train.condition: []); remove the condition or train with train.condition: [NAME, ...]"
        )
    out = {}
    for name, value in request.items():
        if name not in known:
            raise ValueError(f"sample.condition: unknown attribute {name!r}; this model is conditioned on {known}")
        value = float(value)
        lo, hi = allowed_range(config, name)
        if not math.isfinite(value) or not lo <= value <= hi:
            raise ValueError(
                f"sample.condition.{name} = {value} is far outside the training range: choose a value "
                f"in [{lo:.4g}, {hi:.4g}] (train min/max widened by train.condition_margin)"
            )
        out[name] = value
    return out


def encode(config: Mapping[str, Any] | Any, requests: Sequence[Mapping[str, float] | None]) -> np.ndarray:
    """Encode one request per image into the model input: float32 (N, 2K) (see module doc).

    Names absent from a request (or None / NaN values) are dropped: value 0, flag 0."""
    cfg = dict(config)
    known = names(cfg)
    mean, std = np.asarray(cfg["condition_mean"], np.float64), np.asarray(cfg["condition_std"], np.float64)
    values = np.full((len(requests), len(known)), np.nan)
    for row, request in enumerate(requests):
        for name, value in check_request(
            cfg, {k: v for k, v in (request or {}).items() if v is not None and not np.isnan(v)}
        ).items():
            values[row, known.index(name)] = value
    return encode_normalised((values - mean) / std)


def encode_normalised(z: np.ndarray) -> np.ndarray:
    """(N, K) normalised values, NaN = dropped -> float32 (N, 2K) ``[z * flag, flag]``."""
    flag = ~np.isnan(z)
    return np.concatenate([np.where(flag, z, 0.0), flag], axis=1).astype(np.float32)
