"""Named training recipes: sets of params.yaml ``train`` keys measured by benchmarks/quality.py.

A recipe is what a user would pass as ``-S train.<key>=<value>`` overrides; it leaves the
schedule length (``epochs``), evaluation cadence and logging to the caller. ``faces32`` is the
CPU recipe at 32 px that ``make demo`` trains (facegen.demo.run) and the benchmark measured
against ``baseline`` (docs/quality.md has the table of what was tried and its FID).
"""

from __future__ import annotations

from typing import Any

# v-prediction in both: with epsilon, a small model's small error in each image's mean colour is
# amplified ~156x at t~T (1/sqrt(alpha_bar_T)) and clipped into cyan/magenta/green faces.
# fp32 and contiguous tensors: on 2 CPU cores bf16 autocast and channels_last were slower.
_CPU = {"precision": "no", "channels_last": False, "prediction": "v_prediction"}

RECIPES: dict[str, dict[str, Any]] = {
    # the demo's earlier recipe at the width: 2-level tiny UNet (32, 64), linear schedule
    "baseline": {
        **_CPU,
        "model": "tiny",
        "channels": [32, 64],
        "batch_size": 32,
        "lr": 1e-3,
        "warmup_steps": 20,
        "schedule": "linear",
        "ema_decay": 0.998,
        "ema_warmup": False,
    },
    # 2.5M-parameter 3-level UNet without attention, cosine schedule, EMA with warmup; lr 3e-3 and
    # min-SNR-5 loss weighting: 10-minute 1-thread ranking runs 346 (lr 4e-4) -> 216 (1e-3) -> 153 (2e-3),
    # and with min-SNR-5 139 (1e-3) -> 121 (2e-3) -> 115 (3e-3). Batch 8 at lr 1.5e-3 won the 10-minute
    # ranking (106) but not the 20-minute benchmark (best 83.0 vs 82.2), so batch 16 stays (docs/quality.md)
    "faces32": {
        **_CPU,
        "model": "faces32",
        "channels": [],
        "batch_size": 16,
        "lr": 3e-3,
        "min_snr_gamma": 5.0,
        "warmup_steps": 50,
        "schedule": "cosine",
        "ema_decay": 0.9999,
        "ema_warmup": True,
    },
}


def recipe(name: str) -> dict[str, Any]:
    """The ``train`` keys of recipe ``name`` (a copy); a clear error names the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {sorted(RECIPES)}")
    return {k: list(v) if isinstance(v, list) else v for k, v in RECIPES[name].items()}
