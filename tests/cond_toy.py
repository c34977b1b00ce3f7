"""A tiny brightness-conditioned model for the condition tests, trained once per session.

The toy set: 8 px images of a random level U(40, 215) plus a faint vertical colour ramp; its
``brightness`` (facegen.faces.appearance) is what the model is conditioned on. A tiny
v-prediction UNet (channels (8, 16)) learns to follow it in a few hundred CPU steps; the
condition batches come from facegen.train.condition.ConditionData, as in training.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

SIZE = 8
STEPS = 250


def toy_images(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a random gray level plus a +/-25 vertical colour ramp."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(40, 215, n)
    ramp = 25 * np.linspace(-1, 1, size)[None, :, None, None] * rng.uniform(-1, 1, (n, 1, 1, 3))
    x = np.broadcast_to(level[:, None, None, None] + ramp, (n, size, size, 3))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


@lru_cache(maxsize=1)
def toy_model() -> tuple[object, dict, np.ndarray]:
    """(conditioned unet in eval mode, its scheduler config, the training brightness values)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two fighting on a shared machine
    try:
        return _fit()
    finally:
        torch.set_num_threads(threads)


def _fit() -> tuple[object, dict, np.ndarray]:
    import torch

    from facegen.diffusion.conditional import build
    from facegen.diffusion.model import unet_config
    from facegen.diffusion.noise import make_noise_scheduler
    from facegen.faces.appearance import measure_batch
    from facegen.train.condition import ConditionData, fit_stats

    images = toy_images(128)
    values = measure_batch(images, "brightness")[:, None]
    stats = fit_stats(values, ("brightness",), 0.25)
    z = torch.from_numpy(((values - stats["mean"][0]) / stats["std"][0]).astype(np.float32))
    cond = ConditionData(z, stats, 0.1)
    torch.manual_seed(0)
    unet = build(unet_config("tiny", SIZE, (8, 16)), stats)
    sched = make_noise_scheduler("linear", 1000, "v_prediction")
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    opt = torch.optim.AdamW(unet.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(STEPS):
        idx = torch.randint(0, len(data), (16,), generator=gen)
        x0, noise = data[idx], torch.randn((16, 3, SIZE, SIZE), generator=gen)
        t = torch.randint(0, 1000, (16,), generator=gen)
        out = unet(sched.add_noise(x0, noise, t), t, **cond.batch(idx, gen)).sample
        loss = torch.nn.functional.mse_loss(out, sched.get_velocity(x0, noise, t))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return unet.eval(), dict(sched.config), values[:, 0]
