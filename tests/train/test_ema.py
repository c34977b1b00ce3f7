"""facegen.train.ema: the power-function EMA averages every step with weight ~t**gamma."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from facegen.train.config import TrainConfig
from facegen.train.ema import MAX_SIGMA_REL, make_ema, sigma_rel_to_gamma


def test_gamma_of_sigma_rel_matches_edm2():
    # EDM2 (Karras et al. 2024), section 3: sigma_rel 0.10 <-> gamma 6.94, 0.05 <-> 16.97
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.005)
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.005)
    for s in (0.02, 0.1, 0.25):
        g = sigma_rel_to_gamma(s)
        assert (g + 1) / ((g + 2) ** 2 * (g + 3)) == pytest.approx(s**2)


@pytest.mark.parametrize("bad", [-0.1, MAX_SIGMA_REL, 0.5])
def test_config_rejects_sigma_rel_outside_the_power_ema_range(bad):
    with pytest.raises(ValueError, match=r"train\.ema_sigma_rel"):
        TrainConfig(ema_sigma_rel=bad)


def test_power_ema_weighs_step_t_by_the_integral_of_tau_gamma_over_it():
    p = torch.nn.Parameter(torch.zeros(1))
    ema = make_ema([p], dataclasses.replace(TrainConfig(), ema_sigma_rel=0.1))
    gamma = sigma_rel_to_gamma(0.1)
    values = [3.0, -1.0, 4.0, 1.5, 9.0, 2.0, 6.0]
    for v in values:
        p.data.fill_(v)
        ema.step([p])
    # beta(t) = ((t-1)/t)**(gamma+1) makes step t's weight t**(gamma+1) - (t-1)**(gamma+1), ~t**gamma
    weights = [t ** (gamma + 1) - (t - 1) ** (gamma + 1) for t in range(1, len(values) + 1)]
    expected = sum(w * v for w, v in zip(weights, values, strict=True)) / sum(weights)
    assert ema.shadow_params[0].item() == pytest.approx(expected, rel=1e-5)


def test_power_ema_skips_the_first_ema_start_step_updates():
    p = torch.nn.Parameter(torch.zeros(1))
    ema = make_ema([p], dataclasses.replace(TrainConfig(), ema_sigma_rel=0.2, ema_start_step=2))
    for v in (100.0, 50.0, 7.0):  # the first two are before the start: the third is copied
        p.data.fill_(v)
        ema.step([p])
    assert ema.shadow_params[0].item() == 7.0


def test_power_ema_resumes_from_its_state_dict():
    cfg = dataclasses.replace(TrainConfig(), ema_sigma_rel=0.15)
    p = torch.nn.Parameter(torch.zeros(1))
    straight, first = make_ema([p], cfg), make_ema([p], cfg)
    for v in (1.0, 2.0, 3.0):
        p.data.fill_(v)
        straight.step([p])
        first.step([p])
    resumed = make_ema([p], cfg)
    resumed.load_state_dict(first.state_dict())
    for v in (10.0, -4.0):
        p.data.fill_(v)
        straight.step([p])
        resumed.step([p])
    assert resumed.shadow_params[0].item() == straight.shadow_params[0].item()


def test_default_is_diffusers_exponential_ema():
    from diffusers.training_utils import EMAModel

    cfg = TrainConfig()
    ema = make_ema([torch.nn.Parameter(torch.zeros(1))], cfg)
    assert type(ema) is EMAModel and ema.decay == cfg.ema_decay and ema.power == cfg.ema_power
