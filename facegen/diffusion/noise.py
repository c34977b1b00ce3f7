"""The forward (noising) process and the training loss.

The noise schedule is diffusers' ``DDPMScheduler``: ``linear`` betas (Ho et al. 2020: 1e-4 to
0.02 over 1000 steps) or ``cosine`` (Nichol & Dhariwal 2021, diffusers' ``squaredcos_cap_v2``).
Forward process (Ho et al. eq. 4):  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps.

The network predicts either eps (``epsilon``) or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
(``v_prediction``, Salimans & Ho 2022, sec. 4). Loss per sample is MSE, or the earlier
project's L1+L2 mix ``l1_weight * |d| + (1 - l1_weight) * d^2``, averaged over (C, H, W),
optionally weighted by min-SNR-gamma (Hang et al. 2023, eq. 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import DDPMScheduler

Schedule = Literal["linear", "cosine"]
Prediction = Literal["epsilon", "v_prediction"]
LossKind = Literal["mse", "l1_l2"]

_BETA_SCHEDULES = {"linear": "linear", "cosine": "squaredcos_cap_v2"}


def make_noise_scheduler(
    schedule: str = "linear",
    num_train_timesteps: int = 1000,
    prediction: str = "epsilon",
    *,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> DDPMScheduler:
    """The training noise schedule (saved with the model as ``scheduler/``)."""
    from diffusers import DDPMScheduler

    if schedule not in _BETA_SCHEDULES:
        raise ValueError(f"train.schedule = {schedule!r}: choose one of {sorted(_BETA_SCHEDULES)}")
    if prediction not in ("epsilon", "v_prediction"):
        raise ValueError(f"train.prediction = {prediction!r}: choose 'epsilon' or 'v_prediction'")
    if num_train_timesteps < 2:
        raise ValueError(f"train.num_train_timesteps = {num_train_timesteps}: need at least 2")
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=_BETA_SCHEDULES[schedule],
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type=prediction,
        clip_sample=True,
    )


def snr(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio abar_t / (1 - abar_t) per timestep, shape (B,)."""
    abar = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    return abar / (1.0 - abar)


def min_snr_weights(scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (B,) (Hang et al. 2023, eq. 8, expressed per target).

    The eps-loss is the x_0-loss divided by SNR, so the weight min(SNR, gamma) on the x_0-loss
    becomes min(SNR, gamma) / SNR for eps and min(SNR, gamma) / (SNR + 1) for v.
    """
    s = snr(scheduler, timesteps)
    clipped = s.clamp(max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (s + 1.0)
    return clipped / s


def training_target(
    scheduler: DDPMScheduler, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """What the network should output for x_t: eps, or v (Salimans & Ho 2022) for v_prediction."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(x0, noise, timesteps)
    return noise


def diffusion_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    kind: str = "mse",
    *,
    l1_weight: float = 0.25,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scalar loss of ``pred`` vs ``target`` (B, C, H, W), in float32.

    ``mse``: mean d^2. ``l1_l2``: mean (l1_weight |d| + (1 - l1_weight) d^2), the earlier
    project's 0.25/0.75 mix. ``weights`` (B,) scales each sample (min-SNR) before the batch mean.
    """
    diff = pred.float() - target.float()
    if kind == "mse":
        per_pixel = diff.square()
    elif kind == "l1_l2":
        per_pixel = l1_weight * diff.abs() + (1.0 - l1_weight) * diff.square()
    else:
        raise ValueError(f"train.loss = {kind!r}: choose 'mse' or 'l1_l2'")
    per_sample = per_pixel.mean(dim=tuple(range(1, per_pixel.ndim)))
    if weights is not None:
        per_sample = per_sample * weights
    return per_sample.mean()


def noisy_batch(
    scheduler: DDPMScheduler, x0: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw t ~ U{0..T-1} and eps ~ N(0, I); return (x_t, eps, t) for x0 (B, 3, H, W) in [-1, 1]."""
    import torch

    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator, device=x0.device)
    return scheduler.add_noise(x0, noise, t), noise, t
