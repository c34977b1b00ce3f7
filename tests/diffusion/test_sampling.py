"""facegen.diffusion.sampling: the spec, step callbacks and the entry point that takes initial noise."""

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
    got = sampling.generate_from_noise(unet, cfg, sampling.SampleSpec(sampler=sampler, steps=steps), noise, seeds=seeds)
    want = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler=sampler, steps=steps, batch_size=3), seeds, progress=False
    )
    np.testing.assert_array_equal(got, want)
    # other noise, other images
    other = sampling.generate_from_noise(
        unet, cfg, sampling.SampleSpec(sampler=sampler, steps=steps), noise.flip(0), seeds=seeds
    )
    assert not np.array_equal(other[0], want[0])


def test_noise_and_seeds_must_match(tiny):
    unet, cfg = tiny
    with pytest.raises(ValueError, match=r"noise of shape \(2, 3, 16, 16\) needs one seed per row, got 3"):
        sampling.generate_from_noise(
            unet,
            cfg,
            sampling.SampleSpec(sampler="ddim", steps=2),
            sampling.initial_noise(unet, [1, 2]),
            seeds=[1, 2, 3],
        )


def test_bf16_sampling_is_deterministic_close_to_fp32_and_shared_by_both_entry_points(tiny):
    unet, cfg = tiny
    seeds = [1, 2, 3]
    fp32 = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler="dpm++", steps=4, batch_size=3), seeds, progress=False
    )
    bf16 = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler="dpm++", steps=4, batch_size=3, precision="bf16"), seeds, progress=False
    )
    again = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler="dpm++", steps=4, batch_size=3, precision="bf16"), seeds, progress=False
    )
    np.testing.assert_array_equal(bf16, again)
    assert not np.array_equal(bf16, fp32)  # autocast really ran
    assert np.abs(bf16.astype(int) - fp32.astype(int)).mean() < 6  # ... and stays close to fp32
    noise = sampling.initial_noise(unet, seeds)
    np.testing.assert_array_equal(
        sampling.generate_from_noise(
            unet, cfg, sampling.SampleSpec(sampler="dpm++", steps=4, precision="bf16"), noise, seeds=seeds
        ),
        bf16,
    )
    with pytest.raises(ValueError, match=r"precision='fp8' is not one of \['no', 'bf16'\]"):
        sampling.generate(
            unet, cfg, sampling.SampleSpec(sampler="ddim", steps=2, precision="fp8"), seeds, progress=False
        )  # type: ignore[arg-type]


class _Stop(Exception):
    pass


def test_on_step_counts_every_step_of_every_batch_and_can_stop_between_steps(tiny):
    unet, cfg = tiny
    calls: list[tuple[int, int]] = []
    spec = sampling.SampleSpec(sampler="ddim", steps=3, batch_size=2)
    sampling.generate(unet, cfg, spec, [1, 2, 3], progress=False, on_step=lambda d, t: calls.append((d, t)))
    assert calls == [(d, 6) for d in range(1, 7)]  # 2 batches x 3 steps

    def stop_at_two(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            raise _Stop

    calls.clear()
    with pytest.raises(_Stop):
        sampling.generate(unet, cfg, spec, [1, 2, 3], progress=False, on_step=stop_at_two)
    assert calls == [(1, 6), (2, 6)]  # stopped inside the first batch, not after it
    calls.clear()
    noise = sampling.initial_noise(unet, [4, 5])
    sampling.generate_from_noise(unet, cfg, spec, noise, seeds=[4, 5], on_step=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"guidance": float("nan")}, r"sample.guidance must be a finite number in \[0, 100\] .* got nan"),
        ({"guidance": float("inf")}, r"sample.guidance must be a finite number in \[0, 100\] .* got inf"),
        ({"guidance": -1.0}, r"sample.guidance must be a finite number in"),
        ({"guidance": 1e308}, r"sample.guidance must be a finite number in .* got 1e\+308"),
        ({"batch_size": 0}, r"sample.batch_size must be an integer >= 1, got 0"),
        ({"steps": 0}, r"sample.steps must be an integer >= 1 or null"),
        ({"sampler": "euler"}, r"sample.sampler='euler' is not one of"),
        ({"timestep_spacing": "odd"}, r"sample.timestep_spacing='odd' is not one of"),
    ],
)
def test_sample_spec_names_the_bad_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sampling.SampleSpec(**kwargs)


def test_a_request_computes_exactly_its_images_no_padding(tiny):
    unet, cfg = tiny
    seen = []
    hook = unet.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    try:
        one = sampling.generate(unet, cfg, sampling.SampleSpec(steps=3, batch_size=64), [7], progress=False)
        assert one.shape == (1, 16, 16, 3) and seen == [1, 1, 1]
        seen.clear()
        five = sampling.generate(unet, cfg, sampling.SampleSpec(steps=2, batch_size=2), range(5), progress=False)
        assert five.shape == (5, 16, 16, 3) and seen == [2, 2, 2, 2, 1, 1]
    finally:
        hook.remove()
