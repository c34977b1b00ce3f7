"""``ConditionedUNet2DModel``: a diffusers ``UNet2DModel`` plus a learned attribute embedding.

This file is self-contained (torch and diffusers only): :func:`facegen.diffusion.model.save_model_dir`
copies it into every conditional model's ``unet/`` folder, where diffusers loads it as a custom
component (``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``), so a user
without facegen samples the same model. facegen itself imports it through
:func:`facegen.diffusion.conditional.model_class`. See :mod:`facegen.diffusion.conditional` for
the condition encoding: ``(B, 2K)`` = K normalised values (0 where dropped) then K presence flags;
all zeros is the fully dropped (unconditional) model of classifier-free guidance.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import UNet2DModel
from diffusers.configuration_utils import register_to_config


class ConditionedUNet2DModel(UNet2DModel):
    """``UNet2DModel`` + learned attribute embedding; ``forward(x, t, condition=None)``.

    The embedding (Linear(2K, D) - SiLU - Linear(D, D), D = the time embedding width) feeds the
    UNet's ``class_labels`` (``class_embed_type="identity"``): added to the timestep embedding of
    every resnet block (Ho & Salimans 2022). Its last layer starts at zero."""

    @register_to_config
    def __init__(
        self,
        *,
        condition_names: Sequence[str] = ("value",),
        condition_mean: Sequence[float] = (0.0,),
        condition_std: Sequence[float] = (1.0,),
        condition_min: Sequence[float] = (0.0,),
        condition_max: Sequence[float] = (1.0,),
        condition_margin: float = 0.25,
        **kwargs: Any,
    ) -> None:
        kwargs["class_embed_type"] = "identity"
        super().__init__(**kwargs)
        k = len(condition_names)
        if not (k == len(condition_mean) == len(condition_std) == len(condition_min) == len(condition_max)) or not k:
            raise ValueError(f"condition statistics do not match the {k} names {list(condition_names)}")
        dim = self.time_embedding.linear_2.out_features
        self.condition_embedding = torch.nn.Sequential(
            torch.nn.Linear(2 * k, dim), torch.nn.SiLU(), torch.nn.Linear(dim, dim)
        )
        last = self.condition_embedding[2]
        assert isinstance(last, torch.nn.Linear)
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)

    @staticmethod
    def _get_init_keys(input_class: Any) -> set[str]:
        # diffusers reads a config's keys from the __init__ signature; this one forwards
        # **kwargs to UNet2DModel, so its keys are both signatures' (private diffusers hook)
        keys = set(inspect.signature(input_class.__init__).parameters)
        if issubclass(input_class, ConditionedUNet2DModel):
            keys |= set(inspect.signature(UNet2DModel.__init__).parameters)
        return keys

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Any,
        class_labels: torch.Tensor | None = None,
        return_dict: bool = True,
        *,
        condition: torch.Tensor | None = None,
    ) -> Any:
        """``condition`` (B, 2K) encoded; None = fully dropped (unconditional). The positional
        order is ``UNet2DModel.forward``'s, so diffusers' own calls keep working."""
        if class_labels is not None:
            raise ValueError("ConditionedUNet2DModel takes `condition`, not `class_labels`")
        k = len(self.config.condition_names)
        if condition is None:
            condition = torch.zeros(sample.shape[0], 2 * k, device=sample.device, dtype=sample.dtype)
        if condition.shape != (sample.shape[0], 2 * k):
            raise ValueError(f"condition has shape {tuple(condition.shape)}, expected ({sample.shape[0]}, {2 * k})")
        labels = self.condition_embedding(condition.to(device=sample.device, dtype=self.dtype))
        return super().forward(sample, timestep, class_labels=labels, return_dict=return_dict)
