"""Per-epoch evaluation during training: EMA samples -> Fréchet distance to the test split.

Samples come from ``facegen.diffusion.sampling.generate`` with the DDIM sampler and ``train.eval_steps``
steps (deterministic, eta = 0; Song et al. 2021 eq. 12) so a per-epoch score stays cheap.
Every evaluation uses the same seeds, so epochs are compared on the same initial noise.
Reference statistics of the test split come from ``fid.reference_stats`` (computed once per
split content and extractor, then read from the cache).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from facegen.fid import features as fid
from facegen.train.data import load_split

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from facegen.train.loop import TrainConfig, TrainPaths


class Evaluator:
    """Scores the EMA weights: ``run(ema) -> (distance, sample grid, eval UNet)``. Main process only."""

    def __init__(self, cfg: "TrainConfig", noise_scheduler: Any, unet_config: Any, paths: "TrainPaths",
                 device: Any) -> None:
        test = load_split(paths.faces, "test", paths.root, cfg.image_size)
        self.cfg, self.device, self.unet_config = cfg, device, unet_config
        self.noise_scheduler = noise_scheduler
        self.extractor = fid.get_extractor(cfg.fid_extractor, device)
        self.reference = fid.reference_stats(test, self.extractor, paths.fid_cache, cfg.fid_batch_size)

    def samples(self, unet: Any) -> np.ndarray:
        """``fid_num_samples`` uint8 (N, H, W, 3) images from ``unet``, seeds seed..seed+N-1."""
        from facegen.diffusion.sampling import generate

        seeds = range(self.cfg.seed, self.cfg.seed + self.cfg.fid_num_samples)
        return generate(unet, dict(self.noise_scheduler.config), "ddim", self.cfg.eval_steps, seeds,
                        self.cfg.fid_batch_size, str(self.device), progress=False)

    def run(self, ema: Any) -> tuple[float, "Image.Image", Any]:
        """Copy the EMA weights into a fresh UNet, sample, return (FD, grid, that UNet on CPU)."""
        from PIL import Image

        from facegen.diffusion.model import unet_from_ema
        from facegen.common.images import make_grid

        unet = unet_from_ema(ema, self.unet_config).to(self.device).eval()
        images = self.samples(unet)
        mu, sigma = fid.image_stats(images, self.extractor, self.cfg.fid_batch_size)
        value = fid.frechet_distance(mu, sigma, *self.reference)
        return value, Image.fromarray(make_grid(images[: self.cfg.grid_size])), unet.to("cpu")
