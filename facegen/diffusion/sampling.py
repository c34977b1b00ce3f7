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
the first ones. Batches are fixed chunks of the seed list; the last chunk holds the rest (no
padding: a request for n images computes n). Batch size may change the last bit of a CPU
convolution, so ``batch_size`` and the image's place in a full or a last, shorter batch are
part of what fixes an image bit for bit.

Conditional models (:mod:`facegen.diffusion.conditional`) take ``conditions``: one
``{attribute: value in its own units}`` for all images or one per seed (any subset of the
model's attributes; the rest are dropped), and ``guidance``, the classifier-free guidance
scale w (Ho & Salimans 2022, eq. 6): ``out = out_uncond + w (out_cond - out_uncond)``, the
unconditional output being the fully dropped condition. w = 1 is the plain conditional
model (one forward pass), w = 0 the unconditional one; otherwise two passes of the same
batch (not one doubled batch, so an all-dropped request gives exactly the unguided result).
Without ``conditions`` the loop is exactly the unconditional one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch
    from diffusers import UNet2DModel

Sampler = Literal["ddpm", "ddim", "dpm++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm++")
Precision = Literal["no", "bf16"]  # the UNet's arithmetic while sampling (run_steps)
PRECISIONS: tuple[str, ...] = ("no", "bf16")
SPACINGS: tuple[str, ...] = ("trailing", "linspace", "leading")
# classifier-free guidance beyond this scales the conditional difference so far that every pixel
# clips to 0 or 255 (one-valued images that FID would still score); useful scales are 1-10
GUIDANCE_LIMIT = 100.0
StepCallback = Callable[[int, int], None]
"""``on_step(done, total)``: called after every denoising step of a request (``done`` counts the
steps of all its batches, ``total`` is their sum). It may raise (e.g. a cancelled job) to stop the
sampling at once, between two steps."""


@dataclass(frozen=True)
class SampleSpec:
    """How images are drawn, apart from the model, the seeds and the condition.

    Everything here but ``device`` is part of what fixes an image bit for bit besides its seed.
    Built once (e.g. from params.yaml ``sample``) and passed whole, so no caller threads eight
    positional values through."""

    sampler: str = "dpm++"  # ddpm (ancestral) | ddim (eta 0) | dpm++ (DPM-Solver++ 2M)
    steps: int | None = 25  # denoising steps; None = the full training schedule
    timestep_spacing: str = "trailing"  # fast samplers' step placement: trailing | linspace | leading
    batch_size: int = 64  # images per forward pass; the last batch holds the rest (no padding)
    precision: Precision = "no"  # no | bf16 (the UNet under bfloat16 autocast)
    guidance: float = 1.0  # classifier-free guidance scale w (conditional models; module doc)
    device: str = "cpu"  # where the UNet runs (it must already be there)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sample.sampler={self.sampler!r} is not one of {list(SAMPLERS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"sample.precision={self.precision!r} is not one of {list(PRECISIONS)}")
        if self.timestep_spacing not in SPACINGS:
            raise ValueError(f"sample.timestep_spacing={self.timestep_spacing!r} is not one of {list(SPACINGS)}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"sample.batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.steps is not None and (
            isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1
        ):
            raise ValueError(f"sample.steps must be an integer >= 1 or null (the full schedule), got {self.steps!r}")
        if isinstance(self.guidance, bool) or not isinstance(self.guidance, (int, float)):
            raise ValueError(f"sample.guidance must be a number, got {self.guidance!r}")
        if not (math.isfinite(self.guidance) and 0 <= self.guidance <= GUIDANCE_LIMIT):
            raise ValueError(
                f"sample.guidance must be a finite number in [0, {GUIDANCE_LIMIT:g}] (1 = no guidance), "
                f"got {self.guidance}"
            )


def make_scheduler(
    scheduler_config: dict[str, Any], sampler: str, steps: int | None, timestep_spacing: str = "trailing"
) -> Any:
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
            config,
            algorithm_type="dpmsolver++",
            solver_order=2,
            timestep_spacing=timestep_spacing,
            thresholding=clip,
            sample_max_value=float(config.get("clip_sample_range", 1.0)),
        )
    else:
        raise ValueError(f"sample.sampler={sampler!r} is not one of {list(SAMPLERS)}")
    scheduler.set_timesteps(n)
    return scheduler


def generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per image, seeded with its seed (the device never changes a draw)."""
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


Conditions = Mapping[str, float] | Sequence[Mapping[str, float] | None] | None


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
    return _draw_noise(unet, generators(seeds), device)


def step_kwargs_for(scheduler: Any, gens: list[torch.Generator]) -> dict[str, Any]:
    """``scheduler.step`` keyword arguments: the per-image generators (ancestral noise) and, for
    DDIM, eps re-derived from the clipped x0 so the step stays consistent with the clipping."""
    kwargs: dict[str, Any] = {"generator": gens if len(gens) > 1 else gens[0]}
    if type(scheduler).__name__ == "DDIMScheduler":
        kwargs["use_clipped_model_output"] = True
    return kwargs


def guided_output(
    unet: UNet2DModel, x: torch.Tensor, t: Any, cond: torch.Tensor | None, *, guidance: float = 1.0
) -> torch.Tensor:
    """The model output at ``(x, t)``: unconditional (``cond`` None), conditional, or guided (module doc)."""
    import torch

    if cond is None:
        return unet(x, t).sample
    if guidance == 1.0:
        return unet(x, t, condition=cond).sample
    out = unet(x, t, condition=torch.zeros_like(cond)).sample
    if guidance != 0.0:
        out = out + guidance * (unet(x, t, condition=cond).sample - out)
    return out


def run_steps(
    unet: UNet2DModel,
    scheduler: Any,
    x: torch.Tensor,
    timesteps: Any,
    *,
    spec: SampleSpec,  # its guidance and precision; the scheduler was built from its sampler and steps
    gens: list[torch.Generator],  # one CPU generator per row: the ancestral sampler's noise
    cond: torch.Tensor | None = None,  # encoded (B, 2K) condition; None = unconditional
    on_step: Callable[[], None] | None = None,  # called after each step; may raise to stop
) -> torch.Tensor:
    """Denoise ``x`` through ``timesteps``; returns x0 (B, C, H, W) clamped to [-1, 1].

    ``spec.precision`` ``bf16`` runs the UNet under bfloat16 autocast (its output back in ``x``'s
    dtype; the solver's arithmetic stays fp32): ~1.9x faster on AVX-512 CPUs (docs/sample.md)."""
    import torch

    step_kwargs = step_kwargs_for(scheduler, gens)
    for t in timesteps:
        model_in = scheduler.scale_model_input(x, t)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16"):
            out = guided_output(unet, model_in, t, cond, guidance=spec.guidance)
        x = scheduler.step(out.to(x.dtype), t, x, **step_kwargs).prev_sample
        if on_step is not None:  # between two steps: a cancelled request stops here, not after its batch
            on_step()
    return x.clamp(-1.0, 1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8 in [0, 255]."""
    import torch

    x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to("cpu", dtype=torch.uint8).permute(0, 2, 3, 1).numpy()


def encode_conditions(unet: UNet2DModel, conditions: Conditions, n: int) -> np.ndarray | None:
    """Validate and encode ``conditions`` for ``n`` images: (n, 2K) float32, or None when the
    model is unconditional and nothing is requested (or the request is None)."""
    from facegen.diffusion.conditional import check_request, encode, is_conditional

    if conditions is None:
        return None
    requests = [conditions] * n if isinstance(conditions, Mapping) else list(conditions)
    if len(requests) != n:
        raise ValueError(f"got {len(requests)} conditions for {n} seeds: give one per seed or one mapping for all")
    if not is_conditional(unet.config):
        for request in requests:
            check_request(unet.config, request)  # raises for any requested value
        return None
    return encode(unet.config, requests)


class _StepCounter:
    """Turns run_steps' per-step calls into ``on_step(done, total)`` over a whole request."""

    def __init__(self, on_step: StepCallback | None, total: int) -> None:
        self.on_step, self.total, self.done = on_step, total, 0

    def __call__(self) -> None:
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total)


def iter_batches(
    unet: UNet2DModel,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    seeds: Sequence[int],
    *,
    conditions: Conditions = None,  # one {attribute: value} for all, or one per seed (module doc)
    progress: bool = True,  # a tqdm bar of images
    on_step: StepCallback | None = None,  # after every denoising step; may raise to cancel
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, images)`` per batch: images (b, H, W, 3) uint8 for ``seeds[offset:offset+b]``.

    Batches are consecutive chunks of ``spec.batch_size`` seeds; the last holds the rest, so a
    request for n images computes exactly n (no padding). ``on_step`` runs between denoising steps.
    """
    import torch
    from tqdm.auto import tqdm

    from facegen.common.progress import bar_disable

    seeds = [int(s) for s in seeds]
    encoded = encode_conditions(unet, conditions, len(seeds))
    scheduler = make_scheduler(scheduler_config, spec.sampler, spec.steps, spec.timestep_spacing)
    n_batches = -(-len(seeds) // spec.batch_size)
    counter = _StepCounter(on_step, n_batches * len(scheduler.timesteps))
    was_training = unet.training
    unet.eval()
    try:
        bar = tqdm(
            total=len(seeds),
            desc=f"sample {spec.sampler} {len(scheduler.timesteps)} steps",
            unit="img",
            disable=bar_disable(progress),  # off the terminal too: no \r bars in stage logs
        )
        with torch.inference_mode(), bar:
            for offset in range(0, len(seeds), spec.batch_size):
                chunk = seeds[offset : offset + spec.batch_size]  # the last one may be short: n images cost n
                # a fresh solver per batch: multistep solvers keep state between steps
                scheduler = make_scheduler(scheduler_config, spec.sampler, spec.steps, spec.timestep_spacing)
                cond = None if encoded is None else encoded[offset : offset + len(chunk)]
                gens = generators(chunk)
                x = _draw_noise(unet, gens, spec.device) * scheduler.init_noise_sigma
                x0 = run_steps(
                    unet,
                    scheduler,
                    x,
                    scheduler.timesteps,
                    spec=spec,
                    gens=gens,
                    cond=None if cond is None else torch.as_tensor(cond, device=torch.device(spec.device)),
                    on_step=counter,
                )
                bar.update(len(chunk))
                yield offset, to_uint8(x0)
    finally:
        unet.train(was_training)


def generate(
    unet: UNet2DModel,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    seeds: Sequence[int],
    *,
    conditions: Conditions = None,  # one {attribute: value} for all, or one per seed (module doc)
    progress: bool = True,  # a tqdm bar of images
    on_step: StepCallback | None = None,  # after every denoising step; may raise to cancel
) -> np.ndarray:
    """Sample one image per seed: (N, H, W, 3) uint8. Stable API, also used for in-training FID.

    ``unet`` must already be on ``spec.device``; ``scheduler_config`` is the training
    ``DDPMScheduler.config`` (a dict).
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("generate() needs at least one seed")
    batches = iter_batches(
        unet, scheduler_config, spec, seeds, conditions=conditions, progress=progress, on_step=on_step
    )
    return np.concatenate([images for _, images in batches], axis=0)


def generate_from_noise(
    unet: UNet2DModel,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    noise: torch.Tensor,
    *,
    seeds: Sequence[int],  # one per row of ``noise``: the ancestral sampler's per-step noise
    conditions: Conditions = None,  # one {attribute: value} for all, or one per row
    on_step: StepCallback | None = None,  # after every denoising step; may raise to cancel
) -> np.ndarray:
    """Sample from given initial noise (B, C, H, W) (e.g. a slerp of two seeds' noise): (B, H, W, 3) uint8.

    ``seeds`` (one per row) seed the ancestral sampler's per-step noise (``ddpm``; the
    deterministic samplers draw nothing after the start). ``noise`` must be on the UNet's
    device; with ``initial_noise(unet, seeds)`` as ``noise`` and ``spec.batch_size`` equal to
    the number of rows this equals :func:`generate` of the same seeds. ``spec.batch_size`` is
    otherwise unused: all rows run as one batch.
    """
    import torch

    seeds = [int(s) for s in seeds]
    if noise.ndim != 4 or noise.shape[0] != len(seeds):
        raise ValueError(f"noise of shape {tuple(noise.shape)} needs one seed per row, got {len(seeds)} seeds")
    encoded = encode_conditions(unet, conditions, len(seeds))
    gens = generators(seeds)
    for gen in gens:  # advance each generator past its initial draw, as in generate()
        torch.randn(noise.shape[1:], generator=gen)
    scheduler = make_scheduler(scheduler_config, spec.sampler, spec.steps, spec.timestep_spacing)
    counter = _StepCounter(on_step, len(scheduler.timesteps))
    was_training = unet.training
    unet.eval()
    try:
        with torch.inference_mode():
            x = noise * scheduler.init_noise_sigma
            x0 = run_steps(
                unet,
                scheduler,
                x,
                scheduler.timesteps,
                spec=spec,
                gens=gens,
                cond=None if encoded is None else torch.as_tensor(encoded, device=noise.device),
                on_step=counter,
            )
            return to_uint8(x0)
    finally:
        unet.train(was_training)


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[UNet2DModel, dict[str, Any]]:
    """Load ``<model_dir>/unet`` (UNet2DModel, on ``device``) and the training DDPMScheduler config,
    through the checked :func:`facegen.diffusion.model.load_model_dir` (errors name the file)."""
    from facegen.diffusion.model import load_model_dir

    unet, scheduler, _ = load_model_dir(model_dir, device)
    return unet.to(device), dict(scheduler.config)
