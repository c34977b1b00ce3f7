"""The EMA of the weights: diffusers' ``EMAModel``, or the power-function EMA of Karras et al. 2024.

The exponential EMA (``train.ema_decay``, ``ema_warmup``, ``ema_power``) averages over a window
of recent steps set by those keys (with warmup it grows as ``step**ema_power``), not by the
run's length. The power-function EMA ("Analyzing and Improving
the Training Dynamics of Diffusion Models", EDM2, eq. 3) averages the whole run with step ``t``
weighted ``t**(gamma+1) - (t-1)**(gamma+1)`` (~``t**gamma``), so its width is a fixed fraction
``sigma_rel`` of the run's length: ``beta(t) = (1 - 1/t) ** (gamma + 1)``. ``train.ema_sigma_rel``
> 0 selects it (EDM2 tracks 0.05 and 0.10); its ``gamma`` solves
``sigma_rel**2 = (gamma+1) / ((gamma+2)**2 (gamma+3))``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

# sigma_rel of gamma = 0 (the plain running mean of every step): the widest power-function EMA
MAX_SIGMA_REL = (1 / 12) ** 0.5


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """The exponent ``gamma`` of the power-function EMA of relative width ``sigma_rel`` (in
    (0, MAX_SIGMA_REL), which TrainConfig checks for ``train.ema_sigma_rel``)."""
    import numpy as np

    s2 = sigma_rel**2
    # s2 (g+2)^2 (g+3) - (g+1) = 0, expanded
    roots = np.roots([s2, 7 * s2, 16 * s2 - 1, 12 * s2 - 1])
    return float(max(r.real for r in roots if abs(r.imag) < 1e-9 and r.real >= 0))


def make_ema(parameters: Iterable[Any], cfg: Any) -> Any:
    """The EMA that ``cfg`` (a TrainConfig) asks for, over ``parameters``."""
    from diffusers.training_utils import EMAModel

    if cfg.ema_sigma_rel > 0:
        return _power_ema_class()(parameters, cfg.ema_sigma_rel, cfg.ema_start_step)
    return EMAModel(
        parameters,
        decay=cfg.ema_decay,
        update_after_step=cfg.ema_start_step,
        use_ema_warmup=cfg.ema_warmup,
        power=cfg.ema_power,
    )


@functools.cache
def _power_ema_class() -> type:
    from diffusers.training_utils import EMAModel

    class _PowerEMA(EMAModel):
        """diffusers' ``EMAModel`` whose decay at update ``t`` is ``(1 - 1/t) ** (gamma + 1)``:
        the same ``step``, ``state_dict`` and ``copy_to`` (checkpoints and resume are unchanged)."""

        def __init__(self, parameters: Iterable[Any], sigma_rel: float, update_after_step: int = 0) -> None:
            super().__init__(parameters, update_after_step=update_after_step)
            self.gamma = sigma_rel_to_gamma(sigma_rel)

        def get_decay(self, optimization_step: int) -> float:
            t = max(0, optimization_step - self.update_after_step)  # 1 at the first averaged update
            return 0.0 if t <= 1 else float((1 - 1 / t) ** (self.gamma + 1))

    return _PowerEMA
