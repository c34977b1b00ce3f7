"""facegen.diffusion.edit: SDEdit keeps the face at strength 0, moves the attribute toward the request."""

from __future__ import annotations

import numpy as np
import pytest
from cond_toy import toy_images, toy_model

from facegen.diffusion.edit import SDEditSpec, sdedit, structure_distance
from facegen.diffusion.sampling import SampleSpec
from facegen.faces.appearance import brightness


def test_structure_distance_ignores_brightness_not_structure():
    rng = np.random.default_rng(0)
    face = rng.integers(40, 200, (16, 16, 3)).astype(np.uint8)
    assert structure_distance(face, face) == pytest.approx(0.0, abs=1e-12)
    brighter = np.clip(face.astype(int) + 40, 0, 255).astype(np.uint8)
    other = rng.integers(40, 200, (16, 16, 3)).astype(np.uint8)
    assert structure_distance(face, brighter) < 0.01 < 0.5 < structure_distance(face, other)


def test_sdedit_relights_a_dark_face_and_reports_the_trade():
    unet, config, _ = toy_model()
    dark = toy_images(40, seed=3)
    dark = dark[np.argmin([brightness(d) for d in dark])]
    spec = SampleSpec(sampler="ddim", steps=10, batch_size=1)
    same, report = sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 190.0}, strength=0.0))
    np.testing.assert_array_equal(same, dark)
    assert report["steps_run"] == 0 and report["structure_distance"] == pytest.approx(0.0, abs=1e-12)
    moved = {}
    for strength in (0.3, 0.8):
        edited, report = sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 190.0}, strength, seed=1))
        moved[strength] = report["attributes"]["brightness"]["moved"]
        assert report["attributes"]["brightness"]["before"] == pytest.approx(brightness(dark))
        assert report["attributes"]["brightness"]["after"] == pytest.approx(brightness(edited))
    assert moved[0.8] > moved[0.3] and moved[0.8] > 40
    with pytest.raises(ValueError, match=r"strength = 1.5"):
        SDEditSpec({"brightness": 190.0}, strength=1.5)
    with pytest.raises(ValueError, match="far outside the training range"):
        sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 900.0}, strength=0.5))
    with pytest.raises(ValueError, match="sdedit denoises with DDIM"):
        sdedit(unet, config, SampleSpec(sampler="dpm++"), dark, edit=SDEditSpec({"brightness": 190.0}, strength=0.5))


def test_partial_sdedit_is_the_noised_face_denoised_through_the_last_ddim_steps():
    """Byte for byte against diffusers' DDIM by hand: forward-noise to the first of the last
    round(strength x steps) steps with the seed's noise, then guided DDIM steps in order."""
    import torch
    from diffusers import DDIMScheduler

    from facegen.diffusion.conditional import build, encode
    from facegen.diffusion.model import unet_config
    from facegen.diffusion.noise import make_noise_scheduler
    from facegen.train.condition import fit_stats

    torch.manual_seed(0)
    unet = build(unet_config("tiny", 8, (8, 16)), fit_stats(np.linspace(40, 215, 50)[:, None], ("brightness",), 0.25))
    with torch.no_grad():  # a condition that matters (the embedding's last layer starts at zero)
        unet.condition_embedding[2].weight.normal_(0, 0.3)
    unet.eval()
    config = dict(make_noise_scheduler("linear", 1000, "v_prediction").config)
    face = np.random.default_rng(0).integers(30, 220, (8, 8, 3)).astype(np.uint8)
    spec = SampleSpec(sampler="ddim", steps=10, guidance=2.0)
    edited, report = sdedit(unet, config, spec, face, edit=SDEditSpec({"brightness": 150.0}, strength=0.4, seed=3))

    sched = DDIMScheduler.from_config(config, timestep_spacing="trailing")
    sched.set_timesteps(10)
    timesteps = sched.timesteps[-4:]
    gen = torch.Generator().manual_seed(3)
    x0 = torch.from_numpy(face).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    x = sched.add_noise(x0, torch.randn(x0.shape, generator=gen), timesteps[:1])
    cond = torch.from_numpy(encode(unet.config, [{"brightness": 150.0}]))
    with torch.no_grad():
        for t in timesteps:
            uncond = unet(x, t, condition=torch.zeros_like(cond)).sample
            out = uncond + 2.0 * (unet(x, t, condition=cond).sample - uncond)
            x = sched.step(out, t, x, generator=gen, use_clipped_model_output=True).prev_sample
    want = ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()[0]
    np.testing.assert_array_equal(edited, want)
    assert report["steps_run"] == 4 and report["guidance"] == 2.0 and not np.array_equal(edited, face)
