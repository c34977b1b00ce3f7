"""Benchmark training throughput (images/s): the earlier projects' loop vs facegen's trainer.

1. ``baseline``: a plain fp32 PyTorch loop as the earlier projects wrote it: a Dataset that
   decodes PNGs with PIL every step (torchvision ToTensor + RandomHorizontalFlip), a DataLoader
   with ``--workers`` workers, AdamW (not fused), the same UNet and DDPM loss.
2. ``trainer/<variant>``: ``facegen.train.loop.train`` itself (Accelerate, in-memory uint8 data with
   on-device augmentation, EMA, checkpoint at the end, no FD) with precision no/bf16,
   channels_last and torch.compile variants; the images/s of its last epoch (after warm-up and
   compilation) from metrics/train_epochs.csv.

Both train on the same synthetic 64 px PNG faces. Defaults: CPU, ``tiny`` preset. On a GPU:
``.venv/bin/python benchmarks/train.py --device cuda --preset ddpm64 --batch-size 16``.
Writes benchmarks/results/train_<device>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_faces import random_faces, write_faceset  # noqa: E402

from facegen.diffusion.noise import diffusion_loss, make_noise_scheduler, noisy_batch, training_target  # noqa: E402
from facegen.diffusion.model import build_unet, count_parameters  # noqa: E402
from facegen.common.config import to_dict  # noqa: E402
from facegen.train.loop import TrainConfig  # noqa: E402


def baseline(table: Path, root: Path, cfg: TrainConfig, device: str, steps: int, workers: int) -> dict:
    """The earlier projects' loop: PNG decode per step in a DataLoader, fp32, plain AdamW."""
    import pandas as pd
    import torch
    from PIL import Image
    from torchvision import transforms

    rows = pd.read_parquet(table)
    paths = [root / p for p in rows[(rows.status == "ok") & (rows.split == "train")].path]
    tf = transforms.Compose([transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize([0.5] * 3, [0.5] * 3)])

    class PngFaces(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(paths)

        def __getitem__(self, i: int) -> torch.Tensor:
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB"))

    torch.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(PngFaces(), batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, persistent_workers=workers > 0)
    unet = build_unet(cfg.model, cfg.image_size, cfg.channels or None).to(device)
    sched = make_noise_scheduler()
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    gen = torch.Generator(device).manual_seed(0)
    done, warmup, start = 0, 3, 0.0
    while done < steps + warmup:
        for x0 in loader:
            if done == warmup:
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            x0 = x0.to(device)
            xt, noise, t = noisy_batch(sched, x0, gen)
            loss = diffusion_loss(unet(xt, t).sample, training_target(sched, x0, noise, t))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps + warmup:
                break
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"images_per_s": round(steps * cfg.batch_size / seconds, 2), "steps": steps, "seconds": round(seconds, 2)}


def trainer(root: Path, cfg: TrainConfig, name: str) -> dict:
    """facegen's trainer through its stage script, in a fresh process; the last epoch's images/s."""
    out = root / "runs" / name
    out.mkdir(parents=True)
    (out / "params.yaml").write_text(yaml.safe_dump({"train": to_dict(cfg)}), encoding="utf-8")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    start = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "stages" / "train.py"), "--params", str(out / "params.yaml"),
                    "--models", str(out / "models"), "--metrics", str(out / "metrics"),
                    "--fid-cache", str(out / "cache")], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    with (out / "metrics" / "train_epochs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {"images_per_s": float(rows[-1]["images_per_s"]), "first_epoch_images_per_s": float(rows[0]["images_per_s"]),
            "epochs": len(rows), "wall_s": round(time.perf_counter() - start, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--images", type=int, default=512, help="synthetic training faces")
    parser.add_argument("--epochs", type=int, default=2, help="trainer epochs (the last one is timed)")
    parser.add_argument("--workers", type=int, default=2, help="baseline DataLoader workers")
    parser.add_argument("--variants", default="fp32,bf16,channels_last,compile")
    args = parser.parse_args()

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    if args.device == "cpu":
        os.environ["ACCELERATE_USE_CPU"] = "true"
    cfg = TrainConfig(model=args.preset, image_size=args.image_size, batch_size=args.batch_size, epochs=args.epochs,
                      fid_every=0, checkpoint_every=args.epochs, log_checkpoints=False, warmup_steps=10,
                      experiment="benchmark", resume="never", fid_extractor="offline", precision="no",
                      channels_last=False)
    variants = {
        "fp32": {},
        "bf16": {"precision": "bf16"},
        "channels_last": {"channels_last": True},
        "bf16_channels_last": {"precision": "bf16", "channels_last": True},
        "compile": {"compile": True},
    }
    chosen = [v for v in args.variants.split(",") if v]
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {sorted(variants)}")
    steps_per_epoch = args.images // args.batch_size
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_test = 16
        table = write_faceset(root, random_faces(args.images, args.image_size, 0), random_faces(n_test, args.image_size, 1))
        results: dict = {"baseline_png_dataloader_fp32": baseline(table, root, cfg, args.device, steps_per_epoch,
                                                                  args.workers)}
        print("baseline", results["baseline_png_dataloader_fp32"], flush=True)
        for name in chosen:
            results[f"trainer_{name}"] = trainer(root, replace(cfg, **variants[name]), name)
            print(name, results[f"trainer_{name}"], flush=True)
    base = results["baseline_png_dataloader_fp32"]["images_per_s"]
    record = {
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "preset": args.preset,
        "parameters": count_parameters(build_unet(args.preset, args.image_size)),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "train_images": args.images,
        "results": results,
        "speedup_vs_baseline": {k: round(v["images_per_s"] / base, 2) for k, v in results.items()},
        "note": "trainer numbers include EMA updates and Accelerate overhead; the baseline has neither",
    }
    out = REPO / "benchmarks" / "results" / f"train_{args.device}.json"
    out.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
