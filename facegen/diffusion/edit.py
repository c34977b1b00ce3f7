"""Edit a given face with another condition: SDEdit (Meng et al. 2022) on a conditional model.

The aligned face x0 is noised to the sampler step nearest ``strength`` x T with the forward
process, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al. 2020, eq. 4), then denoised
with DDIM (eta 0, Song et al. 2021 eq. 12) under the new condition (classifier-free guided as
in facegen.diffusion.sampling). strength 0 returns the face unchanged; 1 is the sample
stage's own image of that seed (DDIM, the same steps, spacing and batch size): generation from
the seed's initial noise, the face forgotten. Larger strengths move the attribute further and keep less face.

The report says how much of the face is kept against how far the attribute moved:

- ``structure_distance``: 1 - the structure term of SSIM (Wang et al. 2004, eq. 8:
  s = (sd_xy + C3) / (sd_x sd_y + C3), C3 = (0.03 x 255)^2 / 2) on BT.601 luma, Gaussian
  window sigma 1.5 px, averaged over the image. It ignores local brightness and contrast, so
  a relight that keeps the face's features scores ~0 while a changed face scores up to 1..2.
  (LPIPS needs downloaded network weights, which this offline project cannot assume.)
- ``pixel_rmse``: root mean square pixel difference, 0..1 of the 0..255 range.
- per requested attribute measurable on an image (facegen.faces.appearance): ``before``,
  ``after``, ``requested``, ``moved`` = after - before and ``fraction`` = moved / (requested -
  before) (1: the full requested change; None when nothing was asked to change).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from facegen.diffusion.sampling import (
    SampleSpec,
    StepCallback,
    encode_conditions,
    generate,
    generators,
    make_scheduler,
    run_steps,
    to_uint8,
)
from facegen.faces.appearance import MEASURES, luma

SSIM_SIGMA = 1.5
SSIM_C3 = (0.03 * 255) ** 2 / 2


def structure_distance(a: np.ndarray, b: np.ndarray) -> float:
    """1 - mean SSIM structure term of two (H, W, 3) uint8 images' luma (module docstring)."""
    from scipy.ndimage import gaussian_filter

    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    x, y = luma(a), luma(b)

    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, SSIM_SIGMA, mode="reflect")

    mx, my = blur(x), blur(y)
    vx, vy = np.maximum(blur(x * x) - mx**2, 0), np.maximum(blur(y * y) - my**2, 0)
    cov = blur(x * y) - mx * my
    s = (cov + SSIM_C3) / (np.sqrt(vx * vy) + SSIM_C3)
    return float(1.0 - s.mean())


def edit_report(original: np.ndarray, edited: np.ndarray, condition: Mapping[str, float]) -> dict[str, Any]:
    """How much of ``original`` the ``edited`` face keeps, and how far each requested attribute moved."""
    diff = (original.astype(np.float64) - edited.astype(np.float64)) / 255.0
    report: dict[str, Any] = {
        "structure_distance": structure_distance(original, edited),
        "pixel_rmse": float(np.sqrt((diff**2).mean())),
        "attributes": {},
    }
    for name, requested in condition.items():
        if name not in MEASURES:
            continue
        before, after = MEASURES[name](original), MEASURES[name](edited)
        wanted = float(requested) - before
        report["attributes"][name] = {
            "before": before,
            "after": after,
            "requested": float(requested),
            "moved": after - before,
            "fraction": (after - before) / wanted if wanted != 0 else None,
        }
    return report


@dataclass(frozen=True)
class SDEditSpec:
    """What an SDEdit asks for besides how images are drawn (a SampleSpec): the target
    condition, how much of the face to redraw and the seed of the noise it adds."""

    condition: Mapping[str, float] | None  # {attribute: value in its own units}; None/empty = the null condition
    strength: float  # 0 keeps the face, 1 redraws it (the seed's generated image); about strength x steps run
    seed: int = 0  # the forward-process noise (and, at strength 1, the generation's seed)

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength = {self.strength}: must be in [0, 1] (0 keeps the face, 1 redraws it)")


def sdedit(
    unet: Any,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    image: np.ndarray,
    *,
    edit: SDEditSpec,
    on_step: StepCallback | None = None,  # after every denoising step; may raise to cancel
) -> tuple[np.ndarray, dict[str, Any]]:
    """Edit one aligned face (H, W, 3) uint8 toward ``edit.condition``; returns (edited uint8 face, report).

    ``spec`` is how the sample stage draws (sampler ``ddim``, its steps, spacing, guidance, batch
    size, precision, device), so strength 1 is that stage's image of ``edit.seed`` byte for byte.
    The face is resized (PIL bicubic) to the model's size when it differs. ``condition`` is
    checked against the model as sampling checks it (unknown names, values far outside the
    training range, a condition on an unconditional model are errors)."""
    if spec.sampler != "ddim":
        raise ValueError(f"sdedit denoises with DDIM (strength 1 = generation's image), got sampler={spec.sampler!r}")
    image = _model_sized(unet, image)
    condition = dict(edit.condition or {})
    encoded = encode_conditions(unet, condition, 1)
    scheduler = make_scheduler(scheduler_config, "ddim", spec.steps, spec.timestep_spacing)
    start = int(round(edit.strength * len(scheduler.timesteps)))
    edited = image
    if start == len(scheduler.timesteps):  # the whole schedule: generation of the seed, byte for byte
        batches = generate(
            unet, scheduler_config, spec, [edit.seed], conditions=condition or None, progress=False, on_step=on_step
        )
        edited = batches[0]
    elif start > 0:
        edited = _redraw_last_steps(
            unet, scheduler, spec, image, start=start, seed=edit.seed, encoded=encoded, on_step=on_step
        )
    return edited, {
        **edit_report(image, edited, condition),
        "strength": edit.strength,
        "steps_run": int(start),
        "seed": edit.seed,
        "guidance": spec.guidance,
    }


def _model_sized(unet: Any, image: np.ndarray) -> np.ndarray:
    """``image`` checked to be (H, W, 3) uint8 and resized (PIL bicubic) to the model's size."""
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 face, got {image.shape} {image.dtype}")
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if image.shape[:2] != (h, w):
        image = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BICUBIC))
    return image


def _redraw_last_steps(
    unet: Any,
    scheduler: Any,
    spec: SampleSpec,
    image: np.ndarray,
    *,
    start: int,  # how many of the scheduler's last steps to run (1 .. all but one)
    seed: int,
    encoded: np.ndarray | None,  # the encoded (1, 2K) condition; None = unconditional model
    on_step: StepCallback | None,
) -> np.ndarray:
    """Noise ``image`` with the forward process to the first of the last ``start`` DDIM steps,
    then denoise it through them: the edited (H, W, 3) uint8 face."""
    import torch

    dev = torch.device(spec.device)
    dtype = next(unet.parameters()).dtype
    timesteps = scheduler.timesteps[len(scheduler.timesteps) - start :]
    x0 = torch.from_numpy(image).permute(2, 0, 1)[None].to(dev, torch.float32).div(127.5).sub(1.0).to(dtype)
    gens = generators([seed])
    noise = torch.randn(x0.shape, generator=gens[0], dtype=torch.float32).to(dev, dtype)
    x = scheduler.add_noise(x0, noise, timesteps[:1])
    cond = None if encoded is None else torch.as_tensor(encoded, device=dev)
    done = iter(range(1, start + 1))
    was_training = unet.training
    unet.eval()
    try:
        with torch.inference_mode():
            x0_edited = run_steps(
                unet,
                scheduler,
                x,
                timesteps,
                spec=spec,
                gens=gens,
                cond=cond,
                on_step=None if on_step is None else lambda: on_step(next(done), start),
            )
            return to_uint8(x0_edited)[0]
    finally:
        unet.train(was_training)
