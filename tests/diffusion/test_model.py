"""facegen.diffusion.model: presets build, shapes hold, models/best/ round-trips."""

from __future__ import annotations

import json

import pytest
import torch

from facegen.diffusion import model


@pytest.mark.parametrize("preset", ["tiny", "faces32", "base", "ddpm64"])
def test_presets_configure_a_unet(preset):
    cfg = model.unet_config(preset, 64)
    assert cfg["sample_size"] == 64 and len(cfg["down_block_types"]) == len(cfg["block_out_channels"])


def test_ddpm64_matches_the_earlier_project():
    cfg = model.unet_config("ddpm64", 64)
    assert cfg["block_out_channels"] == (128, 256, 384, 512)
    # levels run at 64, 32, 16, 8 px: self-attention at 32/16/8
    assert cfg["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D")


def test_faces32_is_the_2_5m_parameter_cpu_recipe_without_attention():
    unet = model.build_unet("faces32", 32)
    assert unet.config.block_out_channels == (32, 64, 128)
    assert model.count_parameters(unet) == 2_470_883
    assert not any("Attn" in t for t in unet.config.down_block_types + unet.config.up_block_types)
    assert unet.config.add_attention is False


def test_tiny_unet_maps_noise_to_same_shape():
    unet = model.build_unet("tiny", 32, channels=(8, 16))
    x = torch.randn(2, 3, 32, 32)
    out = unet(x, torch.tensor([1, 500])).sample
    assert out.shape == (2, 3, 32, 32)
    assert model.count_parameters(unet) < 200_000


def test_bad_preset_and_channels_are_clear_errors():
    with pytest.raises(ValueError, match="'huge'"):
        model.unet_config("huge", 64)
    with pytest.raises(ValueError, match=r"train.channels = \[8\]"):
        model.unet_config("tiny", 64, channels=(8,))
    with pytest.raises(ValueError, match="multiple of 8"):
        model.unet_config("tiny", 64, channels=(12, 16))
    with pytest.raises(ValueError, match="image_size = 30"):
        model.unet_config("base", 30)


def test_model_dir_round_trip(tmp_path):
    from diffusers import DDPMScheduler

    unet = model.build_unet("tiny", 32, channels=(8, 16))
    sched = DDPMScheduler(num_train_timesteps=100, beta_schedule="squaredcos_cap_v2")
    model.save_model_dir(tmp_path / "best", unet, sched, {"lr": 0.001}, best={"epoch": 3})
    assert json.loads((tmp_path / "best" / "best.json").read_text()) == {"epoch": 3}
    unet2, sched2, cfg = model.load_model_dir(tmp_path / "best")
    assert cfg == {"lr": 0.001}
    assert sched2.config.num_train_timesteps == 100 and sched2.config.beta_schedule == "squaredcos_cap_v2"
    for a, b in zip(unet.parameters(), unet2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="dvc repro train"):
        model.load_model_dir(tmp_path / "nothing")


def test_unet_from_ema_holds_the_shadow_weights_not_the_live_ones():
    from diffusers.training_utils import EMAModel

    unet = model.build_unet("tiny", 32, channels=(8, 16))
    ema = EMAModel(unet.parameters(), decay=0.5)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(1.0)
    ema.step(unet.parameters())  # first step: decay 0 -> shadow = live; then diverge the live weights
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(1.0)
    copy = model.unet_from_ema(ema, unet.config)
    for live, shadow, got in zip(unet.parameters(), ema.shadow_params, copy.parameters()):
        torch.testing.assert_close(got, shadow, rtol=0, atol=0)
        assert not torch.equal(got, live)
