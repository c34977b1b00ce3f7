"""Compare facegen.fid.manifold.prdc with the authors' reference package `prdc` (clovaai), once.

`prdc` is not a facegen dependency; to run this: `pip install --no-deps prdc` (it needs
scikit-learn, already present). Writes benchmarks/results/prdc_check.json: the largest absolute
difference of each score over random Gaussian feature sets (several sizes, dimensions and k),
and the two implementations' times on 1000 x 2048 vs 300 x 2048 (the real-world evaluation).

    python benchmarks/prdc_check.py
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np

from facegen.fid.manifold import SCORES, prdc

OUT = Path(__file__).parent / "results" / "prdc_check.json"


def main() -> None:
    from prdc import compute_prdc

    rng = np.random.default_rng(0)
    worst = dict.fromkeys(SCORES, 0.0)
    cases = 0
    for n_real, n_fake, dim, k in [(25, 24, 2048, 3), (50, 80, 64, 5), (300, 200, 2048, 3), (40, 40, 2, 1)]:
        for shift in (0.0, 0.3, 1.0):
            real = rng.normal(size=(n_real, dim))
            fake = rng.normal(size=(n_fake, dim)) * (1 + shift) + shift
            ours = prdc(real, fake, k)
            with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
                ref = compute_prdc(real, fake, k)
            for key in SCORES:
                worst[key] = max(worst[key], abs(ours[key] - float(ref[key])))
            cases += 1
    real, fake = rng.normal(size=(300, 2048)), rng.normal(size=(1000, 2048))
    t0 = time.perf_counter()
    prdc(real, fake, 3)
    t1 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        compute_prdc(real, fake, 3)
    t2 = time.perf_counter()
    result = {
        "cases": cases,
        "max_abs_difference": worst,
        "seconds_1000_fake_300_real_2048d": {"facegen": round(t1 - t0, 3), "prdc": round(t2 - t1, 3)},
        "machine": "2-core development CPU, shared (no GPU)",
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
