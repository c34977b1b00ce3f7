"""Explore and edit with a trained UNet: slerp of initial noise, SDEdit, RePaint-style inpainting.

- Interpolation: spherical interpolation (Shoemake 1985) of two seeds' initial noise, which
  keeps the norm a Gaussian sample of that dimension has (a straight line would pass through
  low-norm noise the model never saw), then the deterministic sampler from there.
- SDEdit is :func:`facegen.diffusion.edit.sdedit` (conditions, guidance, strength [0, 1]).
- RePaint (Lugmayr et al. 2022, alg. 1): at each reverse step the known region is the
  forward-noised original at that step and the masked region is the model's step; each step
  is resampled ``resample`` times by jumping back one step with fresh noise
  (x_t = sqrt(abar_t / abar_s) x_s + sqrt(1 - abar_t / abar_s) eps), so the two regions
  harmonise.

Uploaded photos go through the pipeline's own decode, detection and alignment
(:func:`prepare_upload`). Tensors are (B, 3, H, W) in [-1, 1]; images (H, W, 3) uint8.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from facegen.diffusion.sampling import initial_noise, make_scheduler, step_kwargs_for, to_uint8

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from diffusers import UNet2DModel

    from facegen.align.geometry import AlignConfig
    from facegen.diffusion.sampling import SampleSpec
    from facegen.faces.detect import FaceDetector

Check = Callable[[], None]  # raises to stop between steps (the job's cancel check)


class NoFaceFound(ValueError):
    """An uploaded photo in which the detector found no face."""


def png_b64(image: np.ndarray) -> str:
    """(H, W, 3) uint8 -> base64 PNG (fixed encoder settings: same pixels, same bytes)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=6)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def resize_face(image: np.ndarray, size: int) -> np.ndarray:
    """An aligned face at the model's ``size`` (PIL bicubic, as training resizes faces)."""
    from PIL import Image

    if image.shape[0] == size and image.shape[1] == size:
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def to_tensor(images: np.ndarray, device: str = "cpu") -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).to(device)


def prepare_upload(
    data: bytes, detector: FaceDetector, align: AlignConfig, *, max_pixels: int, max_bytes: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """Decode, detect and align the largest face of an uploaded photo, as the pipeline does.

    Returns the aligned face (align.size, align.size, 3) uint8 and its detection record.
    Raises ``ImageRejected`` (not an image, too large, corrupt) or :class:`NoFaceFound`.
    """
    from facegen.align.geometry import align_face
    from facegen.common.images import decode_image

    decoded = decode_image(data, max_pixels=max_pixels, max_bytes=max_bytes)
    dets = detector.detect(np.ascontiguousarray(decoded.rgb[:, :, ::-1]))  # BGR, as download passes it
    if not dets:
        raise NoFaceFound(
            f"no face found in the {decoded.width}x{decoded.height} {decoded.format} upload "
            "(try a photo where the face is larger, or draw on the canvas)"
        )
    det = dets[0]
    aligned = align_face(decoded.rgb, np.asarray(det.kps), align)
    return aligned.image, det.to_record()


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors of one shape, per sample; t in [0, 1]."""
    import torch

    fa, fb = a.flatten(1).double(), b.flatten(1).double()
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1))
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    near = so.abs() < 1e-6  # (anti)parallel: fall back to a straight line
    wa = torch.where(near, 1.0 - t, torch.sin((1.0 - t) * omega) / torch.where(near, 1.0, so))
    wb = torch.where(near, float(t), torch.sin(t * omega) / torch.where(near, 1.0, so))
    out = wa[:, None] * fa + wb[:, None] * fb
    return out.reshape(a.shape).to(a.dtype)


def interpolation_noise(
    unet: UNet2DModel, seed_a: int, seed_b: int, frames: int, *, device: str = "cpu"
) -> torch.Tensor:
    """(frames, C, H, W): the slerp from seed_a's initial noise (frame 0) to seed_b's (last)."""
    import torch

    a, b = initial_noise(unet, [seed_a, seed_b], device).split(1)
    ts = np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)
    return torch.cat([slerp(a, b, float(t)) for t in ts])


def variation_noise(unet: UNet2DModel, seed: int, count: int, amount: float, *, device: str = "cpu") -> torch.Tensor:
    """(count, C, H, W): seed's noise moved ``amount`` (0..1) of the way towards seed+1+k's noise."""
    import torch

    base = initial_noise(unet, [seed], device)
    others = initial_noise(unet, [seed + 1 + k for k in range(count)], device)
    return torch.cat([slerp(base, others[k : k + 1], amount) for k in range(count)])


def repaint(
    unet: UNet2DModel,
    scheduler_config: dict[str, Any],
    spec: SampleSpec,
    x0: torch.Tensor,
    *,
    mask: torch.Tensor,  # (B, 1, H, W): 1 where to repaint
    seed: int,  # one CPU generator for every draw (start noise, known-region noise, jumps back)
    resample: int = 2,  # passes per step (1 = no jump back)
    check: Check = lambda: None,  # before every pass; raises to stop
) -> np.ndarray:
    """Repaint the masked region of x0 (B, 3, H, W); returns (B, H, W, 3) uint8 with the unmasked pixels kept.

    ``spec.sampler`` is ``ddim`` or ``ddpm`` (step-wise stateless schedulers: a step can be
    repeated after a jump back), placed over ``spec.steps`` steps with ``spec.timestep_spacing``.
    The UNet runs unconditional in full precision on x0's device, so a spec asking for guidance
    or bf16 is an error; its batch size and device are not used (all rows run as one batch).
    """
    import torch

    scheduler = _repaint_scheduler(scheduler_config, spec, resample)
    abar = scheduler.alphas_cumprod.to(torch.float64)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    mask = mask.to(x0.device, x0.dtype)

    def randn() -> torch.Tensor:
        return torch.randn(x0.shape, generator=gen).to(x0.device, x0.dtype)

    def noised(t: int) -> torch.Tensor:  # known region at step t (t < 0: the clean image)
        if t < 0:
            return x0
        a = float(abar[t])
        return a**0.5 * x0 + (1.0 - a) ** 0.5 * randn()

    kwargs = step_kwargs_for(scheduler, [gen])
    ts = [int(t) for t in scheduler.timesteps]
    x = randn()
    with torch.inference_mode():
        for i, t in enumerate(ts):
            prev = ts[i + 1] if i + 1 < len(ts) else -1
            for r in range(resample):
                check()
                x_in = mask * x + (1.0 - mask) * noised(t)
                out = unet(scheduler.scale_model_input(x_in, t), t).sample
                x = scheduler.step(out, t, x_in, **kwargs).prev_sample
                if r + 1 < resample and prev >= 0:  # jump back prev -> t with fresh noise
                    ratio = float(abar[t] / abar[prev])
                    x = ratio**0.5 * x + (1.0 - ratio) ** 0.5 * randn()
        x = mask * x + (1.0 - mask) * x0
    return to_uint8(x.clamp(-1.0, 1.0))


def _repaint_scheduler(scheduler_config: dict[str, Any], spec: SampleSpec, resample: int) -> Any:
    """The step-wise scheduler repaint runs, after refusing what it cannot do."""
    if spec.sampler not in ("ddim", "ddpm"):
        raise ValueError(
            f"sampler={spec.sampler!r}: repaint needs 'ddim' or 'ddpm' (a multistep solver cannot jump back)"
        )
    if spec.guidance != 1.0 or spec.precision != "no":
        raise ValueError(
            f"repaint runs the unconditional model in full precision, got guidance={spec.guidance}, "
            f"precision={spec.precision!r}"
        )
    if resample < 1:
        raise ValueError(f"resample={resample} must be >= 1")
    return make_scheduler(scheduler_config, spec.sampler, spec.steps, spec.timestep_spacing)
