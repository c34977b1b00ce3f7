"""facegen.studio.editing.repaint: RePaint (Lugmayr et al. 2022, alg. 1) byte for byte."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facegen.diffusion.model import build_unet
from facegen.diffusion.noise import make_noise_scheduler
from facegen.diffusion.sampling import SampleSpec, generate, make_scheduler
from facegen.studio import editing


@pytest.fixture(scope="module")
def tiny() -> tuple[object, dict, torch.Tensor]:
    torch.manual_seed(0)
    unet = build_unet("tiny", 8, channels=(8, 16)).eval()
    face = np.random.default_rng(0).integers(30, 220, (1, 8, 8, 3)).astype(np.uint8)
    return unet, dict(make_noise_scheduler().config), editing.to_tensor(face)


def test_repainting_everything_once_per_step_is_generation_of_the_seed(tiny):
    unet, config, x0 = tiny
    spec = SampleSpec(sampler="ddim", steps=5, batch_size=1)
    got = editing.repaint(unet, config, spec, x0, mask=torch.ones(1, 1, 8, 8), seed=7, resample=1)
    np.testing.assert_array_equal(got, generate(unet, config, spec, [7], progress=False))


def test_repaint_is_algorithm_1_known_region_noised_each_pass_and_a_jump_back_between_passes(tiny):
    unet, config, x0 = tiny
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1.0
    spec = SampleSpec(sampler="ddim", steps=4, timestep_spacing="linspace")
    got = editing.repaint(unet, config, spec, x0, mask=mask, seed=3, resample=2)

    sched = make_scheduler(config, "ddim", 4, "linspace")
    abar = sched.alphas_cumprod.to(torch.float64)
    gen = torch.Generator().manual_seed(3)
    ts = [int(t) for t in sched.timesteps]
    x = torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        for i, t in enumerate(ts):
            for r in range(2):
                a = float(abar[t])
                x_in = mask * x + (1.0 - mask) * (a**0.5 * x0 + (1.0 - a) ** 0.5 * torch.randn(x0.shape, generator=gen))
                out = unet(x_in, t).sample
                x = sched.step(out, t, x_in, generator=gen, use_clipped_model_output=True).prev_sample
                if r == 0 and i + 1 < len(ts):
                    ratio = float(abar[t] / abar[ts[i + 1]])
                    x = ratio**0.5 * x + (1.0 - ratio) ** 0.5 * torch.randn(x0.shape, generator=gen)
    x = mask * x + (1.0 - mask) * x0
    want = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got, want)
    keep = mask[0, 0].numpy() == 0
    face = ((x0 + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(got[0][keep], face[0][keep])


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (SampleSpec(sampler="dpm++"), "repaint needs 'ddim' or 'ddpm'"),
        (SampleSpec(sampler="ddim", guidance=2.0), "unconditional model in full precision"),
        (SampleSpec(sampler="ddim", precision="bf16"), "unconditional model in full precision"),
    ],
)
def test_repaint_refuses_what_it_cannot_do(tiny, spec, match):
    unet, config, x0 = tiny
    with pytest.raises(ValueError, match=match):
        editing.repaint(unet, config, spec, x0, mask=torch.ones(1, 1, 8, 8), seed=0)
