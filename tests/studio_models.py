"""A tiny UNet conditioned on brightness, with a trained-looking condition embedding (studio tests)."""

from __future__ import annotations

import torch

from facegen.diffusion import conditional
from facegen.diffusion.model import unet_config

STATS = {"names": ["brightness"], "mean": [120.0], "std": [30.0], "min": [40.0], "max": [200.0], "margin": 0.0}
TRAIN_CONFIG = {"model": "tiny", "condition": ["brightness"]}


def cond_unet(seed: int):
    """A 16 px conditional UNet of weights ``seed``; its embedding is non-zero (a fresh one ignores the condition)."""
    torch.manual_seed(seed)
    unet = conditional.build(unet_config("tiny", 16, (8, 16)), STATS).eval()
    with torch.no_grad():
        unet.condition_embedding[2].weight.normal_(0, 0.5)
    return unet
