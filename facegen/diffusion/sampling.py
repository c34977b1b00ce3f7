"""Sampling from a trained diffusion UNet: ancestral DDPM and the fast DDIM / DPM-Solver++.

The model is a diffusers ``UNet2DModel``; the noise schedule is the ``DDPMScheduler``
config it was trained with. Each sampler is a diffusers scheduler built ``from_config`` of
that saved config, so betas, prediction type (epsilon / v) and clipping always match
training:

- ``ddpm``: ancestral sampling, Ho et al. 2020 eq. 11 (all ``num_train_timesteps`` steps
  by default, as the earlier projects sampled);
- ``ddim``: Song et al. 2021 eq. 12 with eta = 0 (deterministic), ``steps`` steps;
- ``dpm++``: DPM-Solver++(2M), Lu et al. 2022 alg. 2, ``steps`` steps.

Seeds are per image: image ``i`` of a run uses seed ``seed + i`` for its initial noise and
for every noise draw of the ancestral sampler (one CPU ``torch.Generator`` per image), so
the same seed gives the same image on any device and asking for more images never changes
the first ones. Batches are fixed chunks of the seed list and the last chunk is padded to a
full batch (the padding images are discarded), so every image is computed in a batch of
the same size whatever ``num_images`` is. (Batch size itself may change the last bit of a
CPU convolution, so ``batch_size`` is part of what fixes an image.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch
    from diffusers import UNet2DModel

Sampler = Literal["ddpm", "ddim", "dpm++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm++")


def make_scheduler(scheduler_config: dict[str, Any], sampler: str, steps: int | None,
                   timestep_spacing: str = "trailing") -> Any:
    """A diffusers scheduler for ``sampler`` built from the training DDPMScheduler config,
    with its timesteps set (``steps`` None = all ``num_train_timesteps``)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = dict(scheduler_config)
    train_steps = int(config.get("num_train_timesteps", 1000))
    n = train_steps if steps is None else int(steps)
    if not 1 <= n <= train_steps:
        raise ValueError(f"sample.steps={steps} must be between 1 and num_train_timesteps={train_steps}")
    if sampler == "ddpm":
        scheduler = DDPMScheduler.from_config(config)
    elif sampler == "ddim":
        scheduler = DDIMScheduler.from_config(config, timestep_spacing=timestep_spacing)
    elif sampler == "dpm++":
        # pixel-space model trained with clipped x0: DPM-Solver++ needs the same clipping
        # (its "thresholding", Lu et al. 2022 sec. 5) or x0 predictions at t ~ T explode
        clip = bool(config.get("clip_sample", True))
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=timestep_spacing,
            thresholding=clip, sample_max_value=float(config.get("clip_sample_range", 1.0)))
    else:
        raise ValueError(f"sample.sampler={sampler!r} is not one of {list(SAMPLERS)}")
    scheduler.set_timesteps(n)
    return scheduler


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _draw_noise(unet: UNet2DModel, gens: list[torch.Generator], device: str) -> torch.Tensor:
    """Initial noise (B, C, H, W), one CPU generator per image (the device never changes the draw)."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (len(gens), unet.config.in_channels, h, w)
    dtype = next(unet.parameters()).dtype
    return randn_tensor(shape, generator=gens if len(gens) > 1 else gens[0], device=torch.device(device), dtype=dtype)


def initial_noise(unet: UNet2DModel, seeds: Sequence[int], device: str = "cpu") -> torch.Tensor:
    """The initial noise x_T (B, C, H, W) that :func:`generate` starts image ``seeds[i]`` from."""
    return _draw_noise(unet, _generators(seeds), device)


def _denoise(unet: UNet2DModel, scheduler: Any, seeds: Sequence[int], device: str) -> torch.Tensor:
    """Run one batch of the reverse process; returns x0 of shape (B, C, H, W) in [-1, 1]."""
    gens = _generators(seeds)
    return _reverse(unet, scheduler, _draw_noise(unet, gens, device), gens)


def _reverse(unet: UNet2DModel, scheduler: Any, noise: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """The reverse process from unit-variance ``noise`` (B, C, H, W); ``gens`` draw the ancestral noise."""
    x = noise * scheduler.init_noise_sigma
    step_kwargs: dict[str, Any] = {"generator": gens if len(gens) > 1 else gens[0]}
    if type(scheduler).__name__ == "DDIMScheduler":
        # eps re-derived from the clipped x0, so the step stays consistent with the clipping
        step_kwargs["use_clipped_model_output"] = True
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        out = unet(model_in, t).sample
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x.clamp(-1.0, 1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8 in [0, 255]."""
    import torch

    x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to("cpu", dtype=torch.uint8).permute(0, 2, 3, 1).numpy()


def iter_batches(unet: UNet2DModel, scheduler_config: dict[str, Any], sampler: str, steps: int | None,
                 seeds: Sequence[int], batch_size: int, device: str = "cpu",
                 timestep_spacing: str = "trailing", progress: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, images)`` per batch: images (b, H, W, 3) uint8 for ``seeds[offset:offset+b]``.

    The last batch is padded with further seeds to ``batch_size`` (results discarded) so an
    image's batch never depends on how many images were asked for.
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seeds = [int(s) for s in seeds]
    scheduler = make_scheduler(scheduler_config, sampler, steps, timestep_spacing)
    was_training = unet.training
    unet.eval()
    try:
        bar = tqdm(total=len(seeds), desc=f"sample {sampler} {len(scheduler.timesteps)} steps",
                   unit="img", disable=not progress)
        with torch.inference_mode(), bar:
            for offset in range(0, len(seeds), batch_size):
                chunk = seeds[offset:offset + batch_size]
                padded = chunk + [chunk[-1] + 1 + k for k in range(batch_size - len(chunk))]
                scheduler = make_scheduler(scheduler_config, sampler, steps, timestep_spacing)  # fresh solver state
                images = to_uint8(_denoise(unet, scheduler, padded, device))[: len(chunk)]
                bar.update(len(chunk))
                yield offset, images
    finally:
        unet.train(was_training)


def generate(unet: UNet2DModel, scheduler_config: dict[str, Any], sampler: str, steps: int | None,
             seeds: Sequence[int], batch_size: int = 64, device: str = "cpu",
             timestep_spacing: str = "trailing", progress: bool = True) -> np.ndarray:
    """Sample one image per seed: (N, H, W, 3) uint8. Stable API, also used for in-training FID.

    ``unet`` must already be on ``device``; ``scheduler_config`` is the training
    ``DDPMScheduler.config`` (a dict); ``steps`` None = the full training schedule.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("generate() needs at least one seed")
    parts = [images for _, images in iter_batches(unet, scheduler_config, sampler, steps, seeds, batch_size,
                                                   device, timestep_spacing, progress)]
    return np.concatenate(parts, axis=0)


def generate_from_noise(unet: UNet2DModel, scheduler_config: dict[str, Any], sampler: str, steps: int | None,
                        noise: torch.Tensor, seeds: Sequence[int], timestep_spacing: str = "trailing") -> np.ndarray:
    """Sample from given initial noise (B, C, H, W) (e.g. a slerp of two seeds' noise): (B, H, W, 3) uint8.

    ``seeds`` (one per row) seed the ancestral sampler's per-step noise (``ddpm``; the
    deterministic samplers draw nothing after the start). ``noise`` must be on the UNet's
    device; with ``initial_noise(unet, seeds)`` as ``noise`` and one batch this equals
    :func:`generate` of the same seeds and batch size.
    """
    import torch

    seeds = [int(s) for s in seeds]
    if noise.ndim != 4 or noise.shape[0] != len(seeds):
        raise ValueError(f"noise of shape {tuple(noise.shape)} needs one seed per row, got {len(seeds)} seeds")
    gens = _generators(seeds)
    for gen in gens:  # advance each generator past its initial draw, as in generate()
        torch.randn(noise.shape[1:], generator=gen)
    scheduler = make_scheduler(scheduler_config, sampler, steps, timestep_spacing)
    was_training = unet.training
    unet.eval()
    try:
        with torch.inference_mode():
            return to_uint8(_reverse(unet, scheduler, noise, gens))
    finally:
        unet.train(was_training)


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[UNet2DModel, dict[str, Any]]:
    """Load ``<model_dir>/unet`` (UNet2DModel, on ``device``) and the training DDPMScheduler config."""
    from facegen.diffusion.model import load_model_dir

    unet, scheduler, _ = load_model_dir(model_dir)
    return unet.to(device), dict(scheduler.config)
