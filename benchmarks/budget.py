"""A training budget that no other load changes: FLOPs, not seconds.

One optimizer step of a recipe costs a fixed number of floating-point operations (its forward
and backward at its batch size, counted once by ``torch.utils.flop_counter.FlopCounterMode``),
so a budget of FLOPs buys the same number of steps on a quiet or a loaded machine. The unit a
user types stays minutes: ``minutes * 60 * reference_rate`` FLOPs, where the reference rate is
the FLOP/s of that recipe measured once on a quiet machine and recorded (with the machine and
its load at the time) in ``benchmarks/results/quality_rates.json``.

Timing a step on the machine the budget runs on (the benchmark's earlier budget) is not
load-proof: with other work on the cores, idle OpenMP threads spin while they wait, their
spinning counts as CPU time, and the same budget bought half the steps.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

RATES = Path(__file__).resolve().parent / "results" / "quality_rates.json"


def _cpu_attention(q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(q, k, v))


def _cpu_attention_backward(g: Any, q: Any, k: Any, v: Any, *_: Any, out_shape: Any = None, **__: Any) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return int(sdpa_backward_flop_count(g, q, k, v))


def train_flops(loss: Callable[[], torch.Tensor], params: Iterable[torch.nn.Parameter]) -> int:
    """FLOPs of one forward and backward of ``loss()`` (matmuls, convolutions and attention, as
    FlopCounterMode counts them; its CPU flash-attention kernels, which it leaves at 0, counted
    as the other attention kernels are); the gradients it leaves are cleared."""
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    cpu_attention = {
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward,
    }
    with FlopCounterMode(display=False, custom_mapping=cpu_attention) as counter:
        loss().backward()
    for p in params:
        p.grad = None
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Budget:
    """``flops`` of training, spent in whole steps of ``flops_per_step``."""

    flops: float
    flops_per_step: int

    @classmethod
    def from_minutes(cls, minutes: float, flops_per_step: int, flops_per_s: float) -> Budget:
        """``minutes`` of the recipe's reference rate (FLOP/s on the quiet reference machine)."""
        if minutes <= 0 or flops_per_s <= 0 or flops_per_step <= 0:
            raise ValueError(f"budget: minutes {minutes}, rate {flops_per_s}, step {flops_per_step} must be > 0")
        return cls(minutes * 60 * flops_per_s, flops_per_step)

    @property
    def steps(self) -> int:
        """The whole optimizer steps the budget buys."""
        return int(self.flops // self.flops_per_step)


def load_average() -> str:
    """The 1/5/15-minute load averages, as `uptime` prints them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    """The CPU and torch build the rate was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def measure_rate(
    step: Callable[[], None], flops_per_step: int, *, warmup: int = 2, windows: int = 3, steps: int = 3
) -> dict[str, Any]:
    """FLOP/s of ``step`` (one full optimizer step) by the wall clock: the fastest of
    ``windows`` windows of ``steps`` steps after ``warmup``; with the load at the time."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) / steps)
    return {
        "flops_per_step": flops_per_step,
        "s_per_step": round(min(times), 4),
        "flops_per_s": round(flops_per_step / min(times)),
        "load_average": load_average(),
        "machine": machine(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def reference_rate(name: str, path: Path = RATES) -> dict[str, Any]:
    """The recorded reference rate of recipe ``name``; a clear error says how to measure it."""
    rates = json.loads(path.read_text(encoding="utf-8")).get("recipes", {}) if path.is_file() else {}
    if name not in rates:
        raise SystemExit(
            f"quality: error: no reference rate for {name!r} in {path}: run benchmarks/quality.py "
            f"--recipe {name.split('@')[0]} --measure-rate on a quiet machine"
        )
    return dict(rates[name])


def record_rate(name: str, rate: dict[str, Any], path: Path = RATES) -> None:
    """Store ``rate`` as recipe ``name``'s reference rate in ``path`` (merged)."""
    out = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    out.setdefault("recipes", {})[name] = rate
    out["about"] = (
        "FLOP/s of one optimizer step of each recipe (FLOPs by FlopCounterMode over forward and backward), "
        "wall clock; --minutes buys minutes * 60 * flops_per_s FLOPs of training"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
