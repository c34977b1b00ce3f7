"""The quality benchmark's budget: FLOPs counted once per step, the same whatever else runs."""

import os
import subprocess
import sys
import time

import pytest
import torch
from budget import Budget, reference_rate, train_flops

from facegen.diffusion.model import build_unet

RATE = 50e9  # FLOP/s: any fixed reference rate


def conv_net() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    return net, torch.rand(4, 3, 16, 16)


def test_a_step_counts_forward_and_backward_flops_exactly() -> None:
    net, x = conv_net()
    per_conv = 2 * 4 * 16 * 16 * 8 * 3 * 9  # 2 x batch x pixels x c_out x c_in x k^2, both convolutions
    forward = 2 * per_conv
    backward = per_conv + 2 * per_conv  # first conv: weight gradient only (x needs none); second: input + weight
    assert train_flops(lambda: net(x).square().mean(), net.parameters()) == forward + backward
    assert all(p.grad is None for p in net.parameters())


def test_attention_on_cpu_is_counted() -> None:
    q = torch.rand(2, 4, 64, 32, requires_grad=True)
    flops = train_flops(lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q).sum(), [q])
    forward = 2 * (2 * 2 * 4 * 64 * 64 * 32)  # q @ k^T and p @ v
    assert flops == forward + 2.5 * forward  # the backward FlopCounterMode counts for attention


def test_minutes_buy_whole_steps_at_the_reference_rate() -> None:
    assert Budget.from_minutes(2.0, 3_000_000_000, RATE).steps == int(2 * 60 * RATE // 3_000_000_000) == 2000
    assert Budget(1e12, 3_000_000_000).steps == 333
    with pytest.raises(ValueError, match="minutes"):
        Budget.from_minutes(0, 1, RATE)


def steps_bought(minutes: float) -> int:
    """The steps a budget of ``minutes`` buys for a small UNet step at 16 px, batch 4."""
    torch.manual_seed(0)
    unet = build_unet("tiny", 16, (32, 64))
    x, t = torch.rand(4, 3, 16, 16), torch.tensor([1, 10, 100, 900])
    return Budget.from_minutes(
        minutes, train_flops(lambda: unet(x, t).sample.square().mean(), unet.parameters()), RATE
    ).steps


def test_the_steps_a_budget_buys_do_not_move_with_the_load() -> None:
    quiet = steps_bought(0.5)
    burn = [sys.executable, "-c", "while True: pass"]
    burners = [subprocess.Popen(burn) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        time.sleep(0.5)
        busy = steps_bought(0.5)
        assert all(b.poll() is None for b in burners)  # the load was there while the budget was bought
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert quiet > 0
    assert busy == quiet


def test_a_recipe_without_a_reference_rate_names_the_command(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--recipe faces32 --measure-rate"):
        reference_rate("faces32", tmp_path / "rates.json")
