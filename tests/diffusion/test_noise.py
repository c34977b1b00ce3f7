"""facegen.diffusion.noise: schedules, targets, min-SNR weights and losses against their equations."""

from __future__ import annotations

import pytest
import torch

from facegen.diffusion import noise as diffusion


def test_linear_schedule_matches_ho_et_al():
    s = diffusion.make_noise_scheduler("linear", 1000, "epsilon")
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    assert s.config.beta_schedule == "linear" and s.config.prediction_type == "epsilon"


def test_cosine_schedule_is_diffusers_squaredcos():
    s = diffusion.make_noise_scheduler("cosine", 100, "v_prediction")
    assert s.config.beta_schedule == "squaredcos_cap_v2" and s.config.prediction_type == "v_prediction"
    assert len(s.betas) == 100 and s.alphas_cumprod[0] > 0.99


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"schedule": "sigmoid"}, "train.schedule = 'sigmoid'"),
        ({"prediction": "sample"}, "train.prediction = 'sample'"),
        ({"num_train_timesteps": 1}, "num_train_timesteps = 1"),
    ],
)
def test_bad_schedule_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        diffusion.make_noise_scheduler(**kwargs)


def _batch():
    g = torch.Generator().manual_seed(0)
    return (
        torch.rand(4, 3, 8, 8, generator=g) * 2 - 1,
        torch.randn(4, 3, 8, 8, generator=g),
        torch.tensor([0, 10, 500, 999]),
    )


def test_v_target_is_salimans_ho():
    s = diffusion.make_noise_scheduler("linear", 1000, "v_prediction")
    x0, eps, t = _batch()
    abar = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    expected = abar.sqrt() * eps - (1 - abar).sqrt() * x0
    torch.testing.assert_close(diffusion.training_target(s, x0, eps, t), expected)
    s_eps = diffusion.make_noise_scheduler("linear", 1000, "epsilon")
    assert diffusion.training_target(s_eps, x0, eps, t) is eps


def test_noisy_batch_follows_the_forward_process():
    s = diffusion.make_noise_scheduler("linear", 1000)
    x0 = _batch()[0]
    xt, eps, t = diffusion.noisy_batch(s, x0, torch.Generator().manual_seed(3))
    abar = s.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, abar.sqrt() * x0 + (1 - abar).sqrt() * eps)
    xt2, _, t2 = diffusion.noisy_batch(s, x0, torch.Generator().manual_seed(3))
    assert torch.equal(xt, xt2) and torch.equal(t, t2)  # same generator seed, same draw


def test_min_snr_weights():
    """Against hand-computed values: linear betas 1e-4..0.02 (1000 steps), abar_t = prod(1 - beta),
    SNR = abar / (1 - abar); min-SNR weight min(SNR, gamma) / SNR (eps) or / (SNR + 1) (v)."""
    import numpy as np

    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))  # float64, no facegen or diffusers code
    snr0 = 0.9999 / 1e-4  # t = 0: abar = 1 - beta_0 exactly
    snr999 = abar[999] / (1 - abar[999])  # ~4.0e-5
    assert snr999 == pytest.approx(4.04e-5, rel=0.01)  # the textbook schedule's end
    t = torch.tensor([0, 999])
    want = {"epsilon": [5.0 / snr0, 1.0], "v_prediction": [5.0 / (snr0 + 1), snr999 / (snr999 + 1)]}
    for prediction, expected in want.items():
        s = diffusion.make_noise_scheduler("linear", 1000, prediction)
        np.testing.assert_allclose(diffusion.snr(s, t).numpy(), [snr0, snr999], rtol=1e-3)
        np.testing.assert_allclose(diffusion.min_snr_weights(s, t, gamma=5.0).numpy(), expected, rtol=1e-3)


def test_losses_match_their_formulas():
    pred = torch.tensor([[[[1.0, -2.0]]], [[[0.0, 0.5]]]])
    target = torch.zeros_like(pred)
    assert diffusion.diffusion_loss(pred, target, "mse").item() == pytest.approx((1 + 4 + 0 + 0.25) / 4)
    # per sample: 0.25*|d| + 0.75*d^2 -> sample 0: (0.25+0.75 + 0.5+3)/2 = 2.25, sample 1: (0 + 0.125+0.1875)/2
    mix = diffusion.diffusion_loss(pred, target, "l1_l2", l1_weight=0.25)
    assert mix.item() == pytest.approx((2.25 + 0.15625) / 2)
    weighted = diffusion.diffusion_loss(pred, target, "mse", weights=torch.tensor([0.0, 2.0]))
    assert weighted.item() == pytest.approx((0 + 2 * 0.125) / 2)
    with pytest.raises(ValueError, match=r"train.loss = 'huber'"):
        diffusion.diffusion_loss(pred, target, "huber")
