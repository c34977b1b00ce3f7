"""The two peer recipes of the quality benchmark train and sample (needs the bench extra)."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("denoising_diffusion_pytorch", reason="the bench extra is not installed: pip install -e '.[bench]'")
pytest.importorskip("ema_pytorch", reason="the bench extra is not installed: pip install -e '.[bench]'")

from budget import train_flops
from peers import PEERS, build_peer

from facegen.diffusion.model import build_unet, count_parameters


@pytest.mark.parametrize(
    ("name", "size", "kw"),
    [
        ("peer-ddpm-pytorch", 16, {}),
        ("peer-diffusers-example", 32, {}),
        ("peer-diffusers-example", 32, {"sampler": "ddim"}),
    ],
)
def test_a_peer_trains_two_steps_and_samples(name: str, size: int, kw: dict[str, str]) -> None:
    torch.manual_seed(0)
    peer = build_peer(name, "matched", image_size=size, total_steps=2, batch_size=2, sample_steps=3, **kw)
    before = [p.detach().clone() for p in peer.module.parameters()]
    x = torch.rand(peer.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert train_flops(lambda: peer.loss(x), peer.module.parameters()) > 0
    assert "steps" in peer.settings["sampler"]
    losses = [peer.step(x) for _ in range(2)]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, peer.module.parameters(), strict=True))
    images = peer.sample(2, 0)
    assert images.shape == (2, size, size, 3) and images.dtype == np.uint8
    assert np.array_equal(images, peer.sample(2, 0))  # a seed draws the same images
    assert not np.array_equal(images, peer.sample(2, 1))
    online = peer.sample_online(2, 0)  # the trained weights, not the EMA's
    assert online.shape == images.shape and np.array_equal(online, peer.sample_online(2, 0))
    if name == "peer-ddpm-pytorch":  # ema-pytorch starts averaging after step 100: still the initial weights
        assert not np.array_equal(online, images)


@pytest.mark.parametrize("name", PEERS)
def test_the_matched_width_is_within_20_percent_of_faces32(name: str) -> None:
    faces32 = count_parameters(build_unet("faces32", 32))
    peer = build_peer(name, "matched", image_size=32, total_steps=10)
    assert abs(peer.num_parameters / faces32 - 1) <= 0.2


def test_an_unknown_width_names_the_choices() -> None:
    with pytest.raises(ValueError, match="documented"):
        build_peer("peer-ddpm-pytorch", "wide", image_size=32, total_steps=10)


def test_the_evaluation_sampler_is_the_one_asked_for() -> None:
    kw = {"image_size": 32, "total_steps": 10, "sample_steps": 25}
    ddpm = build_peer("peer-diffusers-example", "matched", **kw)
    ddim = build_peer("peer-diffusers-example", "matched", **kw, sampler="ddim")
    assert ddpm.settings["sampler"] == "DDPMPipeline 25 steps (EMA weights)"
    assert ddim.settings["sampler"] == "DDIMPipeline 25 steps (EMA weights)"
    with pytest.raises(ValueError, match="'ddpm', 'ddim'"):
        build_peer("peer-diffusers-example", "matched", image_size=32, total_steps=10, sampler="euler")


def test_the_benchmark_evaluates_every_peer_with_ddim_at_the_recipes_steps() -> None:
    import quality

    for name, sampler in [
        ("peer-ddpm-pytorch", "GaussianDiffusion.sample: DDIM 25 steps, eta 0 (EMA model)"),
        ("peer-diffusers-example", "DDIMPipeline 25 steps (EMA weights)"),
    ]:
        args = quality.parse_args(["--recipe", name, "--peer-sampler", "ddim"])
        assert quality.peer_maker(args)(10).settings["sampler"] == sampler
    documented = quality.parse_args(["--recipe", "peer-diffusers-example"])
    assert quality.peer_maker(documented)(10).settings["sampler"] == "DDPMPipeline 1000 steps (EMA weights)"
