"""``FacegenPipeline``: the diffusers pipeline of every facegen model, conditional or not.

Self-contained (torch, numpy, diffusers): :func:`facegen.diffusion.pipeline.write_pipeline_files`
copies this file into the model folder as ``pipeline_facegen.py`` and names it in
``model_index.json`` (``"_class_name": ["pipeline_facegen", "FacegenPipeline"]``), the way
diffusers loads a custom pipeline shipped with its weights::

    pipe = DiffusionPipeline.from_pretrained("models/best", trust_remote_code=True)
    pipe(batch_size=4, num_inference_steps=25).images                    # unconditional
    pipe(batch_size=4, condition={"brightness": 160}, guidance_scale=2).images

For the sample stage's image ``i`` (seed ``sample.seed + i``) pass one CPU generator per image,
``generator=[torch.Generator().manual_seed(s) for s in seeds]``, and the stage's batch size as
``batch_size``: the same seeds, steps and guidance give the same bytes. No condition is the null
condition of training's condition dropout (every attribute dropped); a condition names any subset
of the model's attributes in their own units. ``guidance_scale`` w is classifier-free guidance
(Ho & Salimans 2022, eq. 6): ``out_uncond + w (out_cond - out_uncond)``; w = 1 is the plain
conditional model (one pass).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image


def encode_condition(config: Any, condition: Mapping[str, float] | None, n: int) -> torch.Tensor | None:
    """``{name: value}`` -> float32 (n, 2K) ``[z * flag, flag]``, z = (value - mean) / std; None
    when no condition is given. Values must be finite and in the trained range widened by
    ``condition_margin`` x (max - min)."""
    if not condition:
        return None
    known = list(config.get("condition_names") or [])
    if not known:
        raise ValueError(f"condition={dict(condition)}: this model is unconditional; call it without one")
    values = np.full(len(known), np.nan)
    for name, value in condition.items():
        if name not in known:
            raise ValueError(f"condition: unknown attribute {name!r}; this model is conditioned on {known}")
        i, value = known.index(name), float(value)
        lo, hi, m = (
            float(config["condition_min"][i]),
            float(config["condition_max"][i]),
            float(config["condition_margin"]),
        )
        lo, hi = lo - m * (hi - lo), hi + m * (hi - lo)
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"condition[{name!r}] = {value}: choose a value in [{lo:.4g}, {hi:.4g}]")
        values[i] = value
    z = (values - np.asarray(config["condition_mean"], np.float64)) / np.asarray(config["condition_std"], np.float64)
    flag = ~np.isnan(z)
    row = np.concatenate([np.where(flag, z, 0.0), flag]).astype(np.float32)
    return torch.from_numpy(np.repeat(row[None], n, axis=0))


class FacegenPipeline(DiffusionPipeline):
    """A facegen UNet (``UNet2DModel`` or ``ConditionedUNet2DModel``) and its sampling scheduler."""

    def __init__(self, unet: Any, scheduler: Any) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    def _model_output(self, x: torch.Tensor, t: Any, cond: torch.Tensor | None, guidance: float) -> torch.Tensor:
        if cond is None:
            return self.unet(x, t).sample
        if guidance == 1.0:
            return self.unet(x, t, condition=cond).sample
        out = self.unet(x, t, condition=torch.zeros_like(cond)).sample
        if guidance != 0.0:
            out = out + guidance * (self.unet(x, t, condition=cond).sample - out)
        return out

    @torch.no_grad()
    def __call__(
        self,
        *,
        batch_size: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_inference_steps: int = 25,
        condition: Mapping[str, float] | None = None,
        guidance_scale: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> Any:
        """Sample ``batch_size`` images: PIL images, or ``output_type="np"`` (B, H, W, 3) in [0, 1]."""
        if not (isinstance(guidance_scale, (int, float)) and math.isfinite(guidance_scale) and guidance_scale >= 0):
            raise ValueError(f"guidance_scale must be a finite number >= 0, got {guidance_scale!r}")
        device = self._execution_device
        size = self.unet.config.sample_size
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        shape = (batch_size, self.unet.config.in_channels, h, w)
        x = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        cond = encode_condition(self.unet.config, condition, batch_size)
        cond = None if cond is None else cond.to(device)
        self.scheduler.set_timesteps(num_inference_steps)
        x = x * self.scheduler.init_noise_sigma
        extra = {"use_clipped_model_output": True} if type(self.scheduler).__name__ == "DDIMScheduler" else {}
        for t in self.progress_bar(self.scheduler.timesteps):
            out = self._model_output(self.scheduler.scale_model_input(x, t), t, cond, float(guidance_scale))
            x = self.scheduler.step(out.to(x.dtype), t, x, generator=generator, **extra).prev_sample
        pixels = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to("cpu", dtype=torch.uint8)
        images: Any = pixels.permute(0, 2, 3, 1).numpy()
        if output_type == "pil":
            images = [Image.fromarray(image) for image in images]
        else:
            images = images.astype(np.float32) / 255.0
        return ImagePipelineOutput(images=images) if return_dict else (images,)
