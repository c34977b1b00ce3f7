"""Benchmark real FID/KID scoring: Inception features per second and seconds per evaluation.

Measures, on the device given (``cpu`` by default, with the machine's torch threads):
- loading the network (size + sha256 check, TorchScript load, parameter check) once;
- features per second of clean-fid's pipeline (the "clean" resize to 299 px + Inception-V3) at
  a few batch sizes, on real portraits from ../shared/faces (or random images without it);
- the non-feature parts of one evaluation at the demo's and the real-world config's counts:
  FID (exact, from the features) and KID (``fid.kid_subsets`` subsets), on synthetic features;
- seconds per evaluation: measured end to end at the demo's counts (24 samples vs 25 test faces,
  reference cached), and for the real-world config (1000 samples vs a 300-face test split) the
  sum of 1000 / features-per-second and the measured FID + KID time (a 1000-image CPU run
  would take the machine for half an hour).

Writes benchmarks/results/fid_<device>.json. Run: ``python benchmarks/fid.py [--device cuda]``.
The system load average is recorded: on a shared 2-core machine it decides the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from facegen.fid import features as fid
from facegen.fid.score import Scorer, ScoringOptions

REPO = Path(__file__).resolve().parents[1]
DEMO = {"samples": 24, "reference": 25, "image_size": 32}  # facegen.demo.run: INCEPTION_SAMPLES vs its test split
REAL = {"samples": 1000, "reference": 300, "image_size": 64}


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def _images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` real portraits at ``size`` px from ../shared/faces/portraits (cycled), else random images."""
    from PIL import Image

    shared = Path(os.environ.get("FACEGEN_SHARED") or REPO.parent / "shared") / "faces" / "portraits"
    files = sorted(shared.glob("*.jpg"))
    if not files:
        return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        with Image.open(files[(seed + i) % len(files)]) as im:
            out.append(np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC)))
    return np.stack(out)


def _score_parts(n: int, m: int, subsets: int, subset_size: int) -> dict[str, float]:
    """Seconds of FID and KID on synthetic non-negative features (n samples, m reference)."""
    rng = np.random.default_rng(0)
    a, b = rng.gamma(1.0, 0.3, (n, 2048)), rng.gamma(1.0, 0.3, (m, 2048))
    start = time.perf_counter()
    fid.frechet_distance_features(a, b)
    fd_s = time.perf_counter() - start
    start = time.perf_counter()
    fid.kernel_distance(a, b, num_subsets=subsets, max_subset_size=subset_size)
    return {"fid_s": round(fd_s, 2), "kid_s": round(time.perf_counter() - start, 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="8,32", help="feature batch sizes to time")
    parser.add_argument("--images", type=int, default=32, help="images per features/s timing")
    parser.add_argument("--sizes", default="32,64", help="input image sizes (px) to time")
    parser.add_argument("--kid-subsets", type=int, default=100)
    parser.add_argument("--kid-subset-size", type=int, default=1000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import torch

    start = time.perf_counter()
    ext = fid.get_extractor("inception", args.device)
    load_s = time.perf_counter() - start
    result: dict = {
        "device": _device_name(args.device),
        "torch": torch.__version__,
        "load_average_1m_at_start": os.getloadavg()[0],
        "inception_source": ext.source.name,
        "inception_sha256": ext.source.sha256,
        "load_s": round(load_s, 2),
        "features_per_s": {},
    }
    fid.extract_features(_images(2, 32), ext, 2)  # first call: TorchScript's profiling runs
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        for size in (int(x) for x in args.sizes.split(",")):
            images = _images(args.images, size, seed=bs)
            start = time.perf_counter()
            fid.extract_features(images, ext, bs)
            rate = len(images) / (time.perf_counter() - start)
            result["features_per_s"][f"batch{bs}_{size}px"] = round(rate, 2)
            print(f"batch {bs}, {size} px: {rate:.2f} features/s", flush=True)
    rate = max(result["features_per_s"].values())

    # the demo's evaluation, end to end, with the reference cached (as every epoch after the first)
    import tempfile

    test = _images(DEMO["reference"], DEMO["image_size"], seed=1000)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        ref = fid.reference_features(test, ext, cache, 32)
        ref_s = time.perf_counter() - start
    scorer = Scorer(
        ext, ref, ScoringOptions(batch_size=32, kid_subsets=args.kid_subsets, kid_subset_size=args.kid_subset_size)
    )
    samples = _images(DEMO["samples"], DEMO["image_size"], seed=2000)
    start = time.perf_counter()
    scores = scorer(samples)
    demo_s = time.perf_counter() - start
    result["demo"] = {
        **DEMO,
        "reference_once_s": round(ref_s, 2),
        "evaluation_s": round(demo_s, 2),
        **_score_parts(DEMO["samples"], DEMO["reference"], args.kid_subsets, args.kid_subset_size),
        "fid_real_vs_real": round(scores["fid"], 2),
        "kid_real_vs_real": round(scores["kid"], 4),
    }
    parts = _score_parts(REAL["samples"], REAL["reference"], args.kid_subsets, args.kid_subset_size)
    result["real_world"] = {
        **REAL,
        **parts,
        "features_s_estimated": round(REAL["samples"] / rate, 1),
        "evaluation_s_estimated": round(REAL["samples"] / rate + parts["fid_s"] + parts["kid_s"], 1),
        "reference_once_s_estimated": round(REAL["reference"] / rate, 1),
    }
    result["load_average_1m_at_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    out = Path(args.out or REPO / "benchmarks" / "results" / f"fid_{args.device.split(':')[0]}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
