"""The two recipes a user would run instead of facegen's, as benchmark recipes.

- ``peer-ddpm-pytorch``: lucidrains' denoising-diffusion-pytorch (PyPI), its ``Unet`` and
  ``GaussianDiffusion`` with the settings of its README's ``Trainer`` example (dim 64, mults
  (1, 2, 4, 8), flash attention, 1000 timesteps, 250 DDIM ``sampling_timesteps``; the library's
  defaults pred_v and the sigmoid schedule; batch 32 x 2 accumulated, Adam lr 8e-5 betas
  (0.9, 0.99), no LR schedule, gradient clipping at 1, ema-pytorch EMA 0.995 every 10 steps),
  trained by a loop that calls the library's own loss (``GaussianDiffusion.forward``) and
  sampled by its own ``sample`` (DDIM, eta 0) from the EMA model. fp32 (the README's ``amp``
  is a GPU setting).
- ``peer-diffusers-example``: the recipe of diffusers'
  ``examples/unconditional_image_generation/train_unconditional.py`` at its defaults: its
  ``UNet2DModel`` block layout (6 levels (128, 128, 256, 256, 512, 512), 2 layers per block,
  attention at the 5th level), ``DDPMScheduler`` linear 1000, epsilon, MSE, AdamW lr 1e-4
  betas (0.95, 0.999) weight decay 1e-6, 500 warmup steps and cosine decay over the run,
  gradient clipping at 1, batch 16, random flips, ``EMAModel`` (max 0.9999, warmup with
  inv_gamma 1, power 3/4; the README's command passes ``--use_ema``); sampled as the example
  samples: ``DDPMPipeline`` from the EMA weights with ``ddpm_num_inference_steps`` (1000).

``width="matched"`` scales a peer to within 20% of ``faces32``'s 2.47M parameters (ddpm-pytorch
dim 16: 2.44M; diffusers channels (20, 20, 40, 40, 80, 80) with 5 norm groups, the example's 4
channels per group at the first level: 2.79M), so that the recipe and the size are told apart.
Both need the ``bench`` extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

PEERS = ("peer-ddpm-pytorch", "peer-diffusers-example")
WIDTHS = ("documented", "matched")
SAMPLERS = ("ddpm", "ddim")  # the diffusers example's own DDPMPipeline, or DDIMPipeline


@dataclass
class Peer:
    """One peer recipe: its trained module, one optimizer step and its sampler."""

    name: str
    module: torch.nn.Module
    batch_size: int
    loss: Callable[[torch.Tensor], torch.Tensor]  # images in [-1, 1] -> the library's loss
    step: Callable[[torch.Tensor], float]  # one optimizer step on a batch; returns the loss
    sample: Callable[[int, int], np.ndarray]  # (n, seed) -> uint8 (n, H, W, 3) from the EMA weights
    sample_online: Callable[[int, int], np.ndarray]  # the same from the trained (online) weights
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def _to_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (NCHW tensor or NHWC array) -> uint8 NHWC."""
    if isinstance(images, torch.Tensor):
        images = images.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
    return np.asarray((np.clip(images, 0, 1) * 255).round(), np.uint8)


def _optimizer_step(module: torch.nn.Module, opt: torch.optim.Optimizer, clip: float) -> None:
    torch.nn.utils.clip_grad_norm_(module.parameters(), clip)
    opt.step()
    opt.zero_grad(set_to_none=True)


def ddpm_pytorch(
    width: str, *, image_size: int, lr_scale: float = 1.0, batch_size: int = 32, sample_steps: int = 250
) -> Peer:
    """``peer-ddpm-pytorch`` (module docstring); ``batch_size`` per accumulation step (x 2)."""
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    from ema_pytorch import EMA

    dim = {"documented": 64, "matched": 16}[width]
    unet = Unet(dim=dim, dim_mults=(1, 2, 4, 8), flash_attn=True)
    diffusion = GaussianDiffusion(unet, image_size=image_size, timesteps=1000, sampling_timesteps=sample_steps)
    lr, accumulate = 8e-5 * lr_scale, 2
    opt = torch.optim.Adam(diffusion.parameters(), lr=lr, betas=(0.9, 0.99))
    ema = EMA(diffusion, beta=0.995, update_every=10)

    def loss(x: torch.Tensor) -> torch.Tensor:
        # the Trainer's accumulation: each chunk's loss / 2, backward per chunk; images in [0, 1]
        return sum((diffusion((c + 1) / 2) / accumulate for c in x.chunk(accumulate)), torch.zeros(()))

    def step(x: torch.Tensor) -> float:
        total = 0.0
        for chunk in x.chunk(accumulate):
            part = diffusion((chunk + 1) / 2) / accumulate
            part.backward()
            total += float(part.detach())
        _optimizer_step(diffusion, opt, 1.0)
        ema.update()
        return total

    def draw(model: Any, n: int, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        model.eval()
        try:
            return _to_uint8(model.sample(batch_size=n))
        finally:
            model.train()

    def sample(n: int, seed: int) -> np.ndarray:
        return draw(ema.ema_model, n, seed)

    def sample_online(n: int, seed: int) -> np.ndarray:
        return draw(diffusion, n, seed)

    settings = {
        "library": "denoising-diffusion-pytorch",
        "unet": {"dim": dim, "dim_mults": [1, 2, 4, 8], "flash_attn": True},
        "objective": diffusion.objective,
        "beta_schedule": "sigmoid",
        "timesteps": 1000,
        "sampling_timesteps": sample_steps,
        "sampler": f"GaussianDiffusion.sample: DDIM {sample_steps} steps, eta 0 (EMA model)",
        "batch": f"{batch_size} x {accumulate} accumulated",
        "optimizer": f"Adam lr {lr:g} betas (0.9, 0.99), constant",
        "ema": "ema-pytorch beta 0.995 every 10 steps",
        "grad_clip": 1.0,
    }
    return Peer("peer-ddpm-pytorch", diffusion, batch_size * accumulate, loss, step, sample, sample_online, settings)


def diffusers_unet(width: str, image_size: int) -> Any:
    """The example's UNet2DModel at ``image_size`` (documented or matched width)."""
    from diffusers import UNet2DModel

    base, groups = {"documented": (128, 32), "matched": (20, 5)}[width]
    return UNet2DModel(
        sample_size=image_size,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=tuple(base * m for m in (1, 1, 2, 2, 4, 4)),
        norm_num_groups=groups,
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
    )


def diffusers_example(
    width: str,
    *,
    image_size: int,
    total_steps: int,
    lr_scale: float = 1.0,
    batch_size: int = 16,
    sample_steps: int = 1000,
    sampler: str = "ddpm",
) -> Peer:
    """``peer-diffusers-example`` (module docstring); the cosine decay spans ``total_steps``.
    ``sampler="ddim"`` draws with diffusers' ``DDIMPipeline`` (eta 0) on the same noise schedule
    instead of the example's ``DDPMPipeline``: its 1000 steps cost hours per evaluation on CPU."""
    import torch.nn.functional as F
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline, DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel

    unet = diffusers_unet(width, image_size)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon")
    lr = 1e-4 * lr_scale
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    lr_sched = get_scheduler("cosine", optimizer=opt, num_warmup_steps=500, num_training_steps=total_steps)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)

    def loss(x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape)
        t = torch.randint(0, sched.config.num_train_timesteps, (x.shape[0],)).long()
        return F.mse_loss(unet(sched.add_noise(x, noise, t), t).sample.float(), noise.float())

    def step(x: torch.Tensor) -> float:
        value = loss(x)
        value.backward()
        _optimizer_step(unet, opt, 1.0)
        lr_sched.step()
        ema.step(unet.parameters())
        return float(value.detach())

    if sampler not in SAMPLERS:
        raise ValueError(f"quality: error: --peer-sampler {sampler!r}: choose one of {SAMPLERS}")

    def sample_online(n: int, seed: int) -> np.ndarray:
        if sampler == "ddim":
            pipe: Any = DDIMPipeline(unet=unet, scheduler=DDIMScheduler.from_config(sched.config))
        else:
            pipe = DDPMPipeline(unet=unet, scheduler=sched)
        pipe.set_progress_bar_config(disable=True)
        gen = torch.Generator().manual_seed(seed)
        images = pipe(generator=gen, batch_size=n, num_inference_steps=sample_steps, output_type="np").images
        return _to_uint8(images)

    def sample(n: int, seed: int) -> np.ndarray:
        ema.store(unet.parameters())
        ema.copy_to(unet.parameters())
        try:
            return sample_online(n, seed)
        finally:
            ema.restore(unet.parameters())

    settings = {
        "library": "diffusers (examples/unconditional_image_generation/train_unconditional.py)",
        "unet": {
            "block_out_channels": list(unet.config.block_out_channels),
            "norm_num_groups": unet.config.norm_num_groups,
        },
        "scheduler": "DDPMScheduler linear 1000, epsilon",
        "batch": batch_size,
        "optimizer": f"AdamW lr {lr:g} betas (0.95, 0.999) wd 1e-6, 500 warmup + cosine over {total_steps} steps",
        "ema": "EMAModel max 0.9999, warmup inv_gamma 1 power 3/4",
        "grad_clip": 1.0,
        "sampler": f"{'DDIMPipeline' if sampler == 'ddim' else 'DDPMPipeline'} {sample_steps} steps (EMA weights)",
    }
    return Peer("peer-diffusers-example", unet, batch_size, loss, step, sample, sample_online, settings)


def build_peer(name: str, width: str, *, image_size: int, total_steps: int, **kw: Any) -> Peer:
    """Peer ``name`` at ``width``; ``kw``: lr_scale, batch_size, sample_steps (tests shrink them);
    the diffusers example also takes ``sampler`` (ddpm-pytorch's own sampler is DDIM already)."""
    if width not in WIDTHS:
        raise ValueError(f"quality: error: --peer-width {width!r}: choose one of {WIDTHS}")
    if name == "peer-ddpm-pytorch":
        return ddpm_pytorch(width, image_size=image_size, **kw)
    if name == "peer-diffusers-example":
        return diffusers_example(width, image_size=image_size, total_steps=total_steps, **kw)
    raise ValueError(f"quality: error: unknown peer {name!r}: choose one of {PEERS}")
