"""facegen.diffusion.sampling.generate_from_noise: the entry point that takes initial noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.diffusion import sampling
from facegen.diffusion.model import build_unet
from facegen.diffusion.noise import make_noise_scheduler


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_unet("tiny", 16, channels=(8, 16)), dict(make_noise_scheduler().config)


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", 6), ("ddim", 4), ("dpm++", 4)])
def test_generate_from_the_seeds_noise_equals_generate(tiny, sampler, steps):
    unet, cfg = tiny
    seeds = [5, 9, 2]
    noise = sampling.initial_noise(unet, seeds)
    assert noise.shape == (3, 3, 16, 16)
    got = sampling.generate_from_noise(unet, cfg, sampler, steps, noise, seeds)
    want = sampling.generate(unet, cfg, sampler, steps, seeds, batch_size=3, progress=False)
    np.testing.assert_array_equal(got, want)
    # other noise, other images
    other = sampling.generate_from_noise(unet, cfg, sampler, steps, noise.flip(0), seeds)
    assert not np.array_equal(other[0], want[0])


def test_noise_and_seeds_must_match(tiny):
    unet, cfg = tiny
    with pytest.raises(ValueError, match=r"noise of shape \(2, 3, 16, 16\) needs one seed per row, got 3"):
        sampling.generate_from_noise(unet, cfg, "ddim", 2, sampling.initial_noise(unet, [1, 2]), [1, 2, 3])


def test_bf16_sampling_is_deterministic_close_to_fp32_and_shared_by_both_entry_points(tiny):
    unet, cfg = tiny
    seeds = [1, 2, 3]
    fp32 = sampling.generate(unet, cfg, "dpm++", 4, seeds, batch_size=3, progress=False)
    bf16 = sampling.generate(unet, cfg, "dpm++", 4, seeds, batch_size=3, progress=False, precision="bf16")
    again = sampling.generate(unet, cfg, "dpm++", 4, seeds, batch_size=3, progress=False, precision="bf16")
    np.testing.assert_array_equal(bf16, again)
    assert not np.array_equal(bf16, fp32)  # autocast really ran
    assert np.abs(bf16.astype(int) - fp32.astype(int)).mean() < 6  # ... and stays close to fp32
    noise = sampling.initial_noise(unet, seeds)
    np.testing.assert_array_equal(
        sampling.generate_from_noise(unet, cfg, "dpm++", 4, noise, seeds, precision="bf16"), bf16
    )
    with pytest.raises(ValueError, match=r"precision='fp8' is not one of \['no', 'bf16'\]"):
        sampling.generate(unet, cfg, "ddim", 2, seeds, progress=False, precision="fp8")  # type: ignore[arg-type]
