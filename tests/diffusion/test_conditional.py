"""facegen.diffusion.conditional + conditional sampling: the model, its saved statistics,
requests and their errors, following the request, guidance, the unchanged unconditional path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cond_toy import toy_model
from scipy.stats import spearmanr

from facegen.diffusion import conditional, sampling
from facegen.diffusion.model import build_unet, load_model_dir, save_model_dir, unet_config, unet_from_ema
from facegen.diffusion.noise import make_noise_scheduler
from facegen.faces.appearance import measure_batch

STATS = {
    "names": ["brightness", "yaw"],
    "mean": [120.0, 0.0],
    "std": [30.0, 10.0],
    "min": [50.0, -40.0],
    "max": [200.0, 40.0],
    "margin": 0.25,
}


def _model(seed: int = 0):
    torch.manual_seed(seed)
    unet = conditional.build(unet_config("tiny", 8, (8, 16)), STATS)
    with torch.no_grad():  # a trained-looking embedding (the fresh one is zero: it would ignore the condition)
        unet.condition_embedding[2].weight.normal_(0, 0.5)
    return unet.eval()


def test_conditioned_model_saves_and_loads_with_its_statistics(tmp_path):
    unet = _model()
    out = save_model_dir(tmp_path / "best", unet, make_noise_scheduler(), {"condition": ["brightness", "yaw"]})
    loaded, _, _ = load_model_dir(out)
    assert type(loaded).__name__ == "ConditionedUNet2DModel"
    assert loaded.config.condition_names == ["brightness", "yaw"] and loaded.config.condition_std == [30.0, 10.0]
    x, t = torch.randn(2, 3, 8, 8), torch.tensor([500, 20])
    cond = torch.from_numpy(conditional.encode(unet.config, [{"brightness": 150.0}, {"yaw": -20.0}]))
    with torch.no_grad():
        expected = unet(x, t, condition=cond).sample
        torch.testing.assert_close(loaded(x, t, condition=cond).sample, expected, rtol=0, atol=0)
        # the condition changes the output; None is the all-dropped condition
        assert not torch.equal(unet(x, t).sample, expected)
        torch.testing.assert_close(unet(x, t).sample, unet(x, t, condition=torch.zeros(2, 4)).sample, rtol=0, atol=0)


def test_ema_copy_keeps_the_condition_embedding():
    from diffusers.training_utils import EMAModel

    unet = _model()
    ema = EMAModel(unet.parameters(), decay=0.9)
    copy = unet_from_ema(ema, unet.config)
    assert type(copy).__name__ == "ConditionedUNet2DModel"
    torch.testing.assert_close(copy.condition_embedding[2].weight, unet.condition_embedding[2].weight, rtol=0, atol=0)


def test_encode_drops_what_is_not_requested():
    enc = conditional.encode(_model().config, [{"brightness": 150.0}, {}, {"yaw": float("nan"), "brightness": 90.0}])
    np.testing.assert_allclose(enc, [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 1.0, 0.0]])
    assert enc.dtype == np.float32


def test_request_errors_name_the_problem_and_the_way_out():
    unet = _model()
    with pytest.raises(ValueError, match=r"unknown attribute 'age'.*\['brightness', 'yaw'\]"):
        conditional.check_request(unet.config, {"age": 30})
    # training range 50..200 widened by 0.25 x 150 = 37.5: 12.5..237.5
    conditional.check_request(unet.config, {"brightness": 237.0})
    with pytest.raises(ValueError, match=r"brightness = 260.0 is far outside the training range.*\[12.5, 237.5\]"):
        conditional.check_request(unet.config, {"brightness": 260})
    with pytest.raises(ValueError, match="far outside"):
        conditional.check_request(unet.config, {"yaw": float("inf")})
    plain = build_unet("tiny", 8, (8, 16))
    with pytest.raises(ValueError, match=r"this model is unconditional .*train.condition"):
        conditional.check_request(plain.config, {"brightness": 120})
    with pytest.raises(ValueError, match="this model is unconditional"):
        sampling.generate(
            plain,
            dict(make_noise_scheduler().config),
            sampling.SampleSpec(sampler="ddim", steps=2, batch_size=1),
            [0],
            conditions={"brightness": 120.0},
            progress=False,
        )
    with pytest.raises(ValueError, match="got 1 conditions for 2 seeds"):
        sampling.generate(
            unet,
            dict(make_noise_scheduler().config),
            sampling.SampleSpec(sampler="ddim", steps=2, batch_size=2),
            [0, 1],
            conditions=[{"brightness": 120.0}],
            progress=False,
        )


def _reference_unconditional(unet, config, sampler, steps, seeds):
    """The sampler loop as it was before conditioning (one batch of all seeds)."""
    from diffusers.utils.torch_utils import randn_tensor

    sched = sampling.make_scheduler(config, sampler, steps)
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    x = randn_tensor((len(seeds), 3, 8, 8), generator=gens, device=torch.device("cpu")) * sched.init_noise_sigma
    kwargs = {"generator": gens, **({"use_clipped_model_output": True} if sampler == "ddim" else {})}
    with torch.inference_mode():
        for t in sched.timesteps:
            x = sched.step(unet(sched.scale_model_input(x, t), t).sample, t, x, **kwargs).prev_sample
    return sampling.to_uint8(x.clamp(-1, 1))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
def test_unconditional_path_is_bit_identical_to_the_plain_loop(sampler):
    torch.manual_seed(0)
    unet = build_unet("tiny", 8, (8, 16)).eval()
    config = dict(make_noise_scheduler().config)
    steps = 6
    got = sampling.generate(
        unet, config, sampling.SampleSpec(sampler=sampler, steps=steps, batch_size=3), [3, 4, 5], progress=False
    )
    np.testing.assert_array_equal(got, _reference_unconditional(unet, config, sampler, steps, [3, 4, 5]))
    # an empty request on an unconditional model is the same unconditional run
    np.testing.assert_array_equal(
        got,
        sampling.generate(
            unet,
            config,
            sampling.SampleSpec(sampler=sampler, steps=steps, batch_size=3, guidance=3.0),
            [3, 4, 5],
            conditions={},
            progress=False,
        ),
    )


def test_guidance_with_an_all_dropped_condition_is_unconditional_sampling():
    unet, config, _ = toy_model()
    plain = sampling.generate(
        unet, config, sampling.SampleSpec(sampler="ddim", steps=8, batch_size=6), range(6), progress=False
    )
    guided = sampling.generate(
        unet,
        config,
        sampling.SampleSpec(sampler="ddim", steps=8, batch_size=6, guidance=3.0),
        range(6),
        conditions={},
        progress=False,
    )
    np.testing.assert_array_equal(plain, guided)
    asked = sampling.generate(
        unet,
        config,
        sampling.SampleSpec(sampler="ddim", steps=8, batch_size=6, guidance=3.0),
        range(6),
        conditions={"brightness": 200.0},
        progress=False,
    )
    assert not np.array_equal(plain, asked)


def test_conditional_samples_follow_the_requested_brightness():
    unet, config, train_values = toy_model()
    values = np.linspace(np.percentile(train_values, 10), np.percentile(train_values, 90), 5)
    conds = [{"brightness": float(v)} for v in values for _ in range(4)]
    images = sampling.generate(
        unet,
        config,
        sampling.SampleSpec(sampler="ddim", steps=10, batch_size=20),
        range(20),
        conditions=conds,
        progress=False,
    )
    measured = measure_batch(images, "brightness").reshape(5, 4)
    assert spearmanr(np.repeat(values, 4), measured.ravel())[0] >= 0.9
    assert np.all(np.diff(measured.mean(axis=1)) > 0)
    # seeds and conditions travel together: a sub-request gives the same images
    again = sampling.generate(
        unet,
        config,
        sampling.SampleSpec(sampler="ddim", steps=10, batch_size=20),
        range(8, 12),
        conditions=conds[8:12],
        progress=False,
    )
    np.testing.assert_array_equal(again, images[8:12])
