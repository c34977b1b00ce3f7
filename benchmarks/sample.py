"""Benchmark the samplers: seconds for N images and their offline FD, 1000-step DDPM vs the fast ones.

Samplers: ancestral DDPM with all 1000 training steps (as the earlier projects sampled), and
DDIM (eta 0) and DPM-Solver++(2M) at 10, 25 and 50 steps, all over the same model and the same
per-image seeds. Each sampler's images are scored with the offline extractor (`fd_offline`,
facegen.fid.features) against one reference set; two anchors bracket the scale: uniform noise images
(bad) and a fresh draw of the reference distribution (as good as it gets with N images).

Model and reference:
- default: a tiny-preset UNet fitted on the spot to a toy distribution (facegen.demo.toydata), the
  reference a fresh draw of it. Self-contained, any machine.
- ``--model-dir models/best --faces data/faces.parquet``: your trained model, scored against the
  test split.

On a CPU the tiny model, 16 px and N=100 keep it to minutes; use ``--device cuda --num-images
1000`` on a GPU (its model is recorded). Writes benchmarks/results/sample_<device>.json.
Run: ``.venv/bin/python benchmarks/sample.py [--device cuda] [--num-images 1000]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from facegen.common import device as device_mod
from facegen.demo.toydata import fit_toy_unet, gradient_discs
from facegen.diffusion import sampling
from facegen.fid.features import frechet_distance, get_extractor, image_stats

REPO = Path(__file__).resolve().parents[1]
RUNS = [("ddpm", None)] + [(s, n) for s in ("ddim", "dpm++") for n in (10, 25, 50)]


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    return f"{cpu} CPU, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--image-size", type=int, default=16, help="toy model only")
    parser.add_argument("--channels", default="8,16", help="toy model only: tiny preset widths")
    parser.add_argument("--train-steps", type=int, default=400, help="toy model only")
    parser.add_argument("--model-dir", default=None, help="a trained models/best/ instead of the toy model")
    parser.add_argument(
        "--faces", default="data/faces.parquet", help="with --model-dir: the test split is the reference"
    )
    parser.add_argument("--repeats", type=int, default=3, help="fast samplers: best of this many timings")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    device = device_mod.resolve_device(args.device)

    load_start = [round(x, 2) for x in os.getloadavg()]  # a shared machine skews seconds: recorded
    t0 = time.perf_counter()
    if args.model_dir:
        from facegen.train.data import load_split

        unet, sched_config = sampling.load_model(args.model_dir, device)
        reference = load_split(args.faces, "test", ".", unet.config.sample_size)
        real = reference[: args.num_images]
        model = {"kind": "trained", "model_dir": args.model_dir, "reference": f"{args.faces} test split"}
    else:
        channels = tuple(int(c) for c in args.channels.split(","))
        unet, noise_sched = fit_toy_unet(
            gradient_discs(4096, args.image_size, seed=0), args.train_steps, channels=channels, device=device
        )
        sched_config = dict(noise_sched.config)
        reference = gradient_discs(1000, args.image_size, seed=1)
        real = gradient_discs(args.num_images, args.image_size, seed=2)
        model = {
            "kind": "toy",
            "data": "facegen.demo.toydata.gradient_discs",
            "preset": "tiny",
            "channels": list(channels),
            "image_size": args.image_size,
            "train_steps": args.train_steps,
        }
    model["fit_seconds"] = round(time.perf_counter() - t0, 2)

    extractor = get_extractor("offline", device)
    mu_ref, sigma_ref = image_stats(reference, extractor)

    def fd(images: np.ndarray) -> float:
        return round(frechet_distance(*image_stats(images, extractor), mu_ref, sigma_ref), 4)

    size = unet.config.sample_size
    noise = np.random.default_rng(0).integers(0, 256, (args.num_images, size, size, 3), dtype=np.uint8)
    seeds = range(args.num_images)
    rows = []
    for sampler, steps in RUNS:
        # best of --repeats for the fast samplers (a shared machine's load only ever adds time);
        # the 1000-step sampler once
        times = []
        for _ in range(1 if steps is None else args.repeats):
            if device.startswith("cuda"):
                import torch

                torch.cuda.synchronize()
            start = time.perf_counter()
            spec = sampling.SampleSpec(sampler=sampler, steps=steps, batch_size=args.batch_size, device=device)
            images = sampling.generate(unet, sched_config, spec, seeds, progress=False)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        seconds = min(times)
        rows.append(
            {
                "sampler": sampler,
                "steps": steps or int(sched_config["num_train_timesteps"]),
                "seconds": round(seconds, 2),
                "images_per_s": round(args.num_images / seconds, 2),
                "fd_offline": fd(images),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    ddpm_s = rows[0]["seconds"]
    for row in rows:
        row["speedup_vs_ddpm1000"] = round(ddpm_s / row["seconds"], 1)
    result = {
        "benchmark": "sample",
        "device": _device_name(device),
        "load_average_1_5_15min": {"start": load_start, "end": [round(x, 2) for x in os.getloadavg()]},
        "num_images": args.num_images,
        "batch_size": args.batch_size,
        "timing": f"fast samplers: best of {args.repeats}; ddpm 1000 steps: one run",
        "note": (
            "CPU run: N scaled down from 1,000 and a 16 px tiny-preset toy model; seconds are for N images"
            if device == "cpu"
            else "seconds are for N images"
        ),
        "model": model,
        "metric": "fd_offline (offline random-conv extractor; not FID)",
        "anchors": {"uniform_noise": fd(noise), "fresh_draw_of_reference": fd(real)},
        "runs": rows,
    }
    out = Path(
        args.out or REPO / "benchmarks" / "results" / f"sample_{'cuda' if device.startswith('cuda') else 'cpu'}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
