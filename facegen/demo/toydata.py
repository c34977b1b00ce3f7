"""A known toy image distribution and a quick fit to it, for checking samplers on a CPU.

Samplers are compared by how close their images land to the training distribution. Real faces
need hours of training before a UNet is good enough for that comparison to mean anything; this
distribution (a vertical two-colour gradient with a bright centred disc of random radius) is
learnt by a tiny UNet in a few hundred steps. Used by tests/test_sample.py and
benchmarks/sample.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import DDPMScheduler, UNet2DModel


def gradient_discs(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """``n`` images (n, size, size, 3) uint8: a random vertical two-colour gradient with a
    bright (0.9 -> 242) centred disc of radius U(2, 5) px (scaled with ``size`` / 16)."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.uniform(-1, 1, (2, n, 1, 1, 3))
    x = top + (bottom - top) * np.linspace(0, 1, size).reshape(1, size, 1, 1)
    x = np.broadcast_to(x, (n, size, size, 3))
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    radius = rng.uniform(2, 5, n) * size / 16
    disc = (yy**2 + xx**2)[None] < radius[:, None, None] ** 2
    x = np.where(disc[..., None], 0.9, x)
    return np.round((x + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def fit_toy_unet(
    images: np.ndarray,
    steps: int,
    *,
    channels: tuple[int, ...] = (8, 16),
    batch_size: int = 32,
    lr: float = 3e-3,
    seed: int = 0,
    device: str = "cpu",
) -> tuple[UNet2DModel, DDPMScheduler]:
    """Train a ``tiny`` preset UNet with the epsilon MSE loss (Ho et al. 2020, eq. 14) on
    uint8 ``images`` (N, H, W, 3) for ``steps`` AdamW steps; returns (unet in eval mode, the
    linear 1000-step DDPMScheduler it was trained with)."""
    import torch

    from facegen.diffusion.model import build_unet
    from facegen.diffusion.noise import make_noise_scheduler

    torch.manual_seed(seed)
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).to(device)
    unet = build_unet("tiny", images.shape[1], channels=channels).to(device)
    scheduler = make_noise_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr)
    gen = torch.Generator(device).manual_seed(seed)
    for _ in range(steps):
        x0 = data[torch.randint(0, len(data), (batch_size,), generator=gen, device=device)]
        noise = torch.randn(x0.shape, generator=gen, device=device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch_size,), generator=gen, device=device)
        loss = torch.nn.functional.mse_loss(unet(scheduler.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return unet.eval(), scheduler
