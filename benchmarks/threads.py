"""Training throughput under OpenMP's wait policies, on a quiet CPU and beside busy processes.

torch's CPU kernels run on an OpenMP pool (libgomp in the PyPI wheels). By default a pool thread
that waits at the end of a parallel region spins for a while before it sleeps; when another
process holds the other core, the spinning thread burns the time slice its sibling needs, and
every small kernel waits for a descheduled thread. ``OMP_WAIT_POLICY=PASSIVE`` makes waiting
threads sleep at once, ``GOMP_SPINCOUNT=10000`` spins briefly first, ``OMP_NUM_THREADS=1`` has no
pool to wait for. This script measures optimizer steps of the demo's UNet (faces32, 32 px,
batch 16, AdamW) for a fixed number of steps per case (the budget is steps, times are reported
beside them), for each setting with 0 and with ``--busy`` (2) competing busy-loop processes, each
case in a fresh interpreter (the policy is read when libgomp starts). Writes
benchmarks/results/threads.json.

    python benchmarks/threads.py [--steps 40] [--busy 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "threads.json"
POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin-10k": {"GOMP_SPINCOUNT": "10000"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
}
KNOBS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHILD = """
import json, sys, time, torch
from facegen.diffusion.model import build_unet
torch.manual_seed(0)
unet = build_unet("faces32", 32)
opt = torch.optim.AdamW(unet.parameters(), 1e-3)
x, t = torch.randn(16, 3, 32, 32), torch.randint(0, 1000, (16,))
def step():
    unet(x, t).sample.square().mean().backward(); opt.step(); opt.zero_grad()
step()  # warm-up, not counted
steps = int(sys.argv[1]); t0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps):
    step()
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"threads": torch.get_num_threads(), "steps": steps, "wall_s": round(wall, 2),
                  "cpu_s": round(cpu, 2), "images_per_s": round(steps * 16 / wall, 1)}))
"""


def busy_loop() -> subprocess.Popen[bytes]:
    """A process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(policy: dict[str, str], steps: int) -> dict[str, Any]:
    """One case in a fresh interpreter: the OpenMP knobs unset except ``policy``'s."""
    env = {k: v for k, v in os.environ.items() if k not in KNOBS} | policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(steps)], env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per case (the budget)")
    parser.add_argument("--busy", type=int, default=2, help="busy-loop processes in the loaded cases")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cases = []
    for busy in (0, args.busy):
        procs = [busy_loop() for _ in range(busy)]
        try:
            time.sleep(1 if busy else 0)
            for name, policy in POLICIES.items():
                row = {"policy": name, "busy_processes": busy, "load_average": os.getloadavg()[0]}
                row |= measure(policy, args.steps)
                print(json.dumps(row))
                cases.append(row)
        finally:
            for p in procs:
                p.kill()
                p.wait()
    result = {"cases": cases, "cpus": os.cpu_count(), "machine": "2-core development CPU, shared (no GPU)"}
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
