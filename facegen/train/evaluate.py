"""Per-epoch evaluation during training: EMA samples -> FID and KID against the test split.

Samples come from ``facegen.diffusion.sampling.generate`` with the DDIM sampler and ``train.eval_steps``
steps (deterministic, eta = 0; Song et al. 2021 eq. 12) so a per-epoch score stays cheap.
Every evaluation uses the same seeds, so epochs are compared on the same initial noise.
Scores come from ``facegen.fid.score.Scorer``, the fid stage's scoring path: the same test split
at ``train.image_size``, the same extractor (loaded once per run) and the same cached reference
features (computed once per split content, resolution and extractor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from facegen.fid.score import FidConfig, Scorer, scoring_config

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

    from facegen.train.config import TrainConfig, TrainPaths


class Evaluator:
    """Scores the EMA weights: ``run(ema) -> (scores, sample grid, eval UNet)``. Main process only."""

    def __init__(
        self,
        cfg: TrainConfig,
        paths: TrainPaths,
        *,
        noise_scheduler: Any,
        unet_config: Any,
        device: Any,
        fid_cfg: FidConfig | None = None,
    ) -> None:
        """Build the scorer once per run; ``noise_scheduler`` and ``unet_config`` rebuild the model
        to sample, ``fid_cfg`` (params.yaml ``fid``) gives pr_k and the memorization keys."""
        self.cfg, self.device, self.unet_config = cfg, device, unet_config
        self.noise_scheduler = noise_scheduler
        self.scorer = Scorer.from_config(
            scoring_config(cfg, fid_cfg),
            faces_parquet=paths.faces,
            root=paths.root,
            image_size=cfg.image_size,
            device=device,
            cache_dir=paths.fid_cache,
        )

    def samples(self, unet: Any) -> np.ndarray:
        """``fid_num_samples`` uint8 (N, H, W, 3) images from ``unet``, seeds seed..seed+N-1."""
        from facegen.diffusion.sampling import SampleSpec, generate

        seeds = range(self.cfg.seed, self.cfg.seed + self.cfg.fid_num_samples)
        spec = SampleSpec(
            sampler="ddim", steps=self.cfg.eval_steps, batch_size=self.cfg.fid_batch_size, device=str(self.device)
        )
        return generate(unet, dict(self.noise_scheduler.config), spec, seeds, progress=False)

    def run(self, ema: Any) -> tuple[dict[str, float], Image.Image, Any]:
        """Copy the EMA weights into a fresh UNet, sample, return ({fid, kid, kid_std, precision, ...,
        memorized_fraction, memorized_count}, grid, that UNet on CPU)."""
        from PIL import Image

        from facegen.common.images import make_grid
        from facegen.diffusion.model import unet_from_ema

        unet = unet_from_ema(ema, self.unet_config).to(self.device).eval()
        images = self.samples(unet)
        return self.scorer(images), Image.fromarray(make_grid(images[: self.cfg.grid_size])), unet.to("cpu")
