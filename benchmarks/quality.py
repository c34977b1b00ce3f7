"""Quality benchmark: real FID/KID of a training recipe under a fixed CPU budget at 32 px.

Untimed preparation (cached under cache/bench_quality/): every shared photo
(``$FACEGEN_SHARED/faces/{wild,portraits}``) is posted once on the local demo board
(facegen.demo.board), and the real stages run over it as `dvc repro` would run them:
stages/crawl.py -> stages/download.py -> stages/align.py, with params.yaml's defaults and the
demo's board overrides. The train and test splits are what align wrote.

Timed: the real trainer (facegen.train.loop.train, Accelerate, EMA, MLflow in
cache/bench_quality/mlflow.db) trains a recipe (``--recipe``: facegen.train.recipes) at 32 px
for ``--minutes`` of budget. The budget buys a number of epochs, fixed before training from
the recipe's measured CPU seconds per step (so the cosine LR schedule spans the budget and the
run is deterministic); the budget clock is this process's CPU time divided by its torch threads
(``--threads``), so "20 minutes" is 20 minutes of 2 busy cores whatever the other load; the
minutes, steps and images seen actually used are recorded. The trainer scores its EMA weights
``--evals`` times (``train.fid_every``): ``--samples`` DDIM samples (``train.eval_steps``)
against the test faces at 32 px with clean-fid's Inception network, FID and KID
(facegen.fid.score.Scorer, the fid stage's path). The floor is the FID of the train faces
against the test faces: what a model that reproduced the training set would score.

Outputs (benchmarks/results/): quality.json (one entry per recipe, merged across runs),
quality_fid.png (FID vs budget minutes of every recipe in the JSON; ``<stem>_fid.png`` beside
another ``--results``), quality_<recipe>_grid.png (64 samples of the last evaluation).
Run: ``.venv/bin/python benchmarks/quality.py --recipe baseline``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACEGEN_SHARED", REPO.parent / "shared"))
WORK = REPO / "cache" / "bench_quality"
RESULTS = REPO / "benchmarks" / "results"
IMAGE_SIZE = 32
IMAGES_PER_POST = 3
# the benchmark's own train keys: 32 px on CPU, evaluation with real Inception, no resume
BENCH: dict[str, Any] = {
    "image_size": IMAGE_SIZE,
    "data_device": "cpu",
    "compile": False,
    "fid_extractor": "inception",
    "fid_batch_size": 100,
    "eval_steps": 25,
    "grid_size": 64,
    "log_checkpoints": False,
    "keep_checkpoints": 1,
    "resume": "never",
    "experiment": "facegen-quality",
}


# ---------------------------------------------------------------- data: the real stages


def board_posts(images_dir: Path, base: Any) -> int:
    """The most posts whose image links stay within one pass over the photos: each photo is
    posted once, so posts that share a photo (and the split's post groups) stay small."""
    import dataclasses

    from facegen.demo.content import build_board

    n = sum(1 for _ in images_dir.iterdir())
    posts = int(n / (IMAGES_PER_POST + 0.34) * 0.85)  # about 1 in 3 posts has a push image, ~90% live
    while True:
        board = build_board(dataclasses.replace(base, posts=posts + 1))
        if max(s.first_image + IMAGES_PER_POST + s.push_image for s in board.live_posts()) > n:
            return posts
        posts += 1


def prepare_data(work: Path = WORK) -> Path:
    """Serve all shared photos on the local board and run crawl -> download -> align in
    ``work``; return ``work/data/faces.parquet`` (reused when already there)."""
    import dataclasses

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
    spec = BoardSpec(
        images_dir=str(images), posts=1, images_per_post=IMAGES_PER_POST, posts_per_day=10, seed=0, extras=True
    )
    spec = dataclasses.replace(spec, posts=board_posts(images, spec))
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    with serve(spec, "127.0.0.1", 0) as server:
        first, last = server.board.dates
        params["crawl"].update(
            base_url=server.url, board=spec.board, start_date=first, end_date=last, delay_s=0, retries=1
        )
        # the board is also the image host, on loopback: let it past the downloader's SSRF guard
        params["download"].update(host_delay_s=0, retries=1, allow_private_hosts=[server.url.split("://", 1)[1]])
        params["faces"]["model"] = str((SHARED / DETECTOR).resolve())
        (work / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        print(f"board at {server.url}: {len(server.board.live_posts())} posts, {len(photos)} photos", flush=True)
        for stage in ("crawl", "download", "align"):
            start = time.time()
            subprocess.run([sys.executable, str(REPO / "stages" / f"{stage}.py")], cwd=work, env=env, check=True)
            print(f"{stage}: {time.time() - start:.0f} s", flush=True)
    return table


# ---------------------------------------------------------------- recipes under a budget


def bench_config(recipe_name: str, samples: int, overrides: dict[str, Any] | None = None) -> Any:
    """params.yaml's ``train`` section + the benchmark's keys + the recipe (+ ``overrides``)."""
    from facegen.common.config import from_dict, load_params
    from facegen.train.config import TrainConfig
    from facegen.train.recipes import recipe

    keys = {**load_params(REPO / "params.yaml")["train"], **BENCH, **recipe(recipe_name), **(overrides or {})}
    return from_dict(TrainConfig, {**keys, "fid_num_samples": samples}, "train")


def budget_seconds(threads: int) -> float:
    """The budget clock: CPU seconds of this process (all threads) / ``threads``."""
    return time.process_time() / threads


def seconds_per_step(cfg: Any, threads: int, windows: int = 3, steps: int = 4) -> float:
    """Budget seconds of one optimizer step of ``cfg`` (forward, backward, AdamW, EMA) at 32 px,
    timed on random data after 3 warm-up steps: the fastest of ``windows`` windows of ``steps``
    steps, so a burst of other load does not shrink the number of steps the budget buys."""
    import torch
    from diffusers.training_utils import EMAModel

    from facegen.diffusion.model import build_unet
    from facegen.diffusion.noise import diffusion_loss, make_noise_scheduler, noisy_batch, training_target

    unet = build_unet(cfg.model, cfg.image_size, cfg.channels or None)
    sched = make_noise_scheduler(cfg.schedule, cfg.num_train_timesteps, cfg.prediction)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr)
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1

    def step() -> None:
        xt, noise, t = noisy_batch(sched, x0, gen)
        diffusion_loss(unet(xt, t).sample, training_target(sched, x0, noise, t), "mse", 0.25).backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    for _ in range(3):
        step()
    times = []
    for _ in range(windows):
        start = budget_seconds(threads)
        for _ in range(steps):
            step()
        times.append((budget_seconds(threads) - start) / steps)
    return min(times)


def run_recipe(
    name: str, recipe_name: str, cfg: Any, minutes: float, evals: int, threads: int, out: Path
) -> dict[str, Any]:
    """Train ``cfg`` with the real trainer for about ``minutes`` of budget in ``out``; return
    the recipe's result (every evaluation with the budget minutes used up to it)."""
    import dataclasses

    from facegen.diffusion.model import build_unet, count_parameters
    from facegen.train.config import TrainPaths
    from facegen.train.data import epoch_batches, face_paths
    from facegen.train.loop import train

    faces = WORK / "data" / "faces.parquet"
    steps_per_epoch = len(epoch_batches(len(face_paths(faces, "train", WORK)), cfg.batch_size, 0, cfg.seed))
    per_step = seconds_per_step(cfg, threads)
    per_eval = max(1, round(minutes * 60 / (per_step * steps_per_epoch * evals)))
    cfg = dataclasses.replace(cfg, epochs=per_eval * evals, fid_every=per_eval, checkpoint_every=per_eval * evals)
    print(
        f"{name}: {per_step:.3f} budget s/step, {steps_per_epoch} steps/epoch -> {cfg.epochs} epochs "
        f"({cfg.epochs * steps_per_epoch} steps), evaluated every {per_eval}",
        flush=True,
    )
    if out.exists():
        shutil.rmtree(out)
    paths = TrainPaths(
        faces=faces,
        root=WORK,
        models=out / "models",
        metrics=out / "metrics",
        fid_cache=WORK / "cache" / "fid",
        checkpoints=out / "checkpoints",
    )
    clock: dict[int, float] = {}  # epoch -> budget seconds of training up to its last step
    tick = {"prev": 0.0, "dt": per_step, "total": 0.0}

    def on_step(epoch: int, step: int, loss: float) -> None:
        now = budget_seconds(threads)
        # an epoch's first step follows the epoch boundary (evaluation, checkpoint, logging):
        # count it as long as the step before it
        if (step - 1) % steps_per_epoch:
            tick["dt"] = now - tick["prev"]
        tick["total"] += tick["dt"]
        tick["prev"] = now
        clock[epoch] = tick["total"]

    wall = time.time()
    summary = train(cfg, paths, on_step)
    with (out / "metrics" / "train_epochs.csv").open(encoding="utf-8") as fh:
        history = list(csv.DictReader(fh))
    rows = [
        {
            "epoch": int(r["epoch"]),
            "steps": int(r["step"]),
            "images_seen": int(r["step"]) * cfg.batch_size,
            "minutes": round(clock[int(r["epoch"])] / 60, 3),
            "loss": round(float(r["loss"]), 5),
            "fid": round(float(r["fid"]), 2),
            "kid": round(float(r["kid"]), 5),
        }
        for r in history
        if r.get("fid")
    ]
    grids = sorted((out / "metrics" / "grids").glob("epoch_*.png"))
    return {
        "recipe": {k: v for k, v in dataclasses.asdict(cfg).items() if k in _recipe_keys(recipe_name)},
        "num_parameters": count_parameters(build_unet(cfg.model, cfg.image_size, cfg.channels or None)),
        "evals": rows,
        "fid": rows[-1]["fid"],
        "kid": rows[-1]["kid"],
        "best_fid": min(r["fid"] for r in rows),
        "steps": summary["steps"],
        "images_seen": summary["steps"] * cfg.batch_size,
        "epochs": cfg.epochs,
        "budget_s_per_step": round(per_step, 4),
        "wall_minutes": round((time.time() - wall) / 60, 2),
        "eval": {"sampler": "ddim", "steps": cfg.eval_steps, "samples": cfg.fid_num_samples},
        "grid": str(grids[-1]) if grids else None,
    }


def _recipe_keys(name: str) -> set[str]:
    from facegen.train.recipes import recipe

    return set(recipe(name))


def floor(cfg: Any) -> dict[str, float]:
    """FID/KID of the train faces against the test faces (the split's floor), at 32 px; cached
    in cache/bench_quality/floor.json per faces.parquet content."""
    import hashlib

    import torch

    from facegen.fid.score import Scorer
    from facegen.train.data import load_split

    faces = WORK / "data" / "faces.parquet"
    digest = hashlib.sha256(faces.read_bytes()).hexdigest()
    cached = WORK / "floor.json"
    if cached.is_file() and json.loads(cached.read_text(encoding="utf-8")).get("faces_sha256") == digest:
        return {k: v for k, v in json.loads(cached.read_text(encoding="utf-8")).items() if k != "faces_sha256"}
    scorer = Scorer.for_split(
        faces, WORK, IMAGE_SIZE, cfg.fid_extractor, torch.device("cpu"), WORK / "cache" / "fid", cfg.fid_batch_size
    )
    scores = scorer(load_split(faces, "train", WORK, IMAGE_SIZE))
    result = {"fid": round(scores["fid"], 2), "kid": round(scores["kid"], 5)}
    cached.write_text(json.dumps({**result, "faces_sha256": digest}), encoding="utf-8")
    return result


def rescore(key: str, cfg: Any, results: Path) -> None:
    """Score ``runs/<key>/models/best`` (the best evaluated epoch) on ``cfg.fid_num_samples``
    DDIM samples, as the trainer's evaluator does, and record it under ``recipes[key].rescored``."""
    import torch

    from facegen.diffusion.sampling import SampleSpec, generate, load_model
    from facegen.fid.score import Scorer

    best = WORK / "runs" / key / "models" / "best"
    unet, sched = load_model(best)
    spec = SampleSpec(sampler="ddim", steps=cfg.eval_steps, batch_size=100)
    images = generate(unet, sched, spec, range(cfg.fid_num_samples), progress=False)
    faces = WORK / "data" / "faces.parquet"
    scorer = Scorer.for_split(
        faces, WORK, IMAGE_SIZE, cfg.fid_extractor, torch.device("cpu"), WORK / "cache" / "fid", cfg.fid_batch_size
    )
    scores = scorer(images)
    out = json.loads(results.read_text(encoding="utf-8"))
    epoch = json.loads((best / "best.json").read_text(encoding="utf-8")).get("epoch")
    out["recipes"][key]["rescored"] = {
        "epoch": epoch,
        "samples": cfg.fid_num_samples,
        "fid": round(scores["fid"], 2),
        "kid": round(scores["kid"], 5),
    }
    results.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"{key}: epoch {epoch}, {cfg.fid_num_samples} samples: FID {scores['fid']:.2f} KID {scores['kid']:.5f}")


# ---------------------------------------------------------------- outputs


def plot(results: dict[str, Any], floor_fid: float, path: Path) -> None:
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
            label=f"{name} ({res['budget_minutes']:g} min, {res['steps']} steps)",
        )
    ax.axhline(floor_fid, color="gray", ls="--", label=f"floor: train vs test ({floor_fid:.0f})")
    ax.axhline(1.5 * floor_fid, color="gray", ls=":", label=f"1.5x floor ({1.5 * floor_fid:.0f})")
    ax.set_xlabel("training budget used (CPU minutes per thread)")
    ax.set_ylabel("FID vs test faces (32 px)")
    ax.set_xlim(0, max(max(r["budget_minutes"], *(e["minutes"] for e in r["evals"])) for r in results.values()) * 1.05)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from facegen.train.recipes import RECIPES

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--recipe", default="baseline", choices=sorted(RECIPES))
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (CPU minutes per thread)")
    ap.add_argument("--evals", type=int, default=4, help="evaluations, at equal fractions of the budget")
    ap.add_argument("--samples", type=int, default=300, help="samples per evaluation")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--tag", default="", help="suffix of the JSON key (e.g. a short ranking run)")
    ap.add_argument("-S", dest="sets", action="append", default=[], help="extra train key=value (YAML value)")
    ap.add_argument("--results", type=Path, default=RESULTS / "quality.json")
    ap.add_argument(
        "--rescore",
        action="store_true",
        help="no training: score the recipe's saved models/best on --samples samples (e.g. as many as the floor's "
        "train faces) and add it to its JSON entry as `rescored`",
    )
    args = ap.parse_args(argv)
    import torch
    import yaml
    from PIL import Image

    torch.set_num_threads(args.threads)
    prepare_data()
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.sets)}
    cfg = bench_config(args.recipe, args.samples, extra)
    key = args.recipe + args.tag
    split_floor = floor(cfg)
    if args.rescore:
        rescore(key, cfg, args.results)
        return
    res = run_recipe(key, args.recipe, cfg, args.minutes, args.evals, args.threads, WORK / "runs" / key)
    res.update(budget_minutes=args.minutes, threads=args.threads, overrides=extra)
    out = json.loads(args.results.read_text(encoding="utf-8")) if args.results.is_file() else {}
    out.setdefault("recipes", {})[key] = res
    from facegen.train.data import face_paths

    faces = WORK / "data" / "faces.parquet"
    out.update(
        image_size=IMAGE_SIZE,
        num_train=len(face_paths(faces, "train", WORK)),
        num_test=len(face_paths(faces, "test", WORK)),
        floor=split_floor,
        machine=f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, no GPU",
        budget_clock="process CPU seconds / torch threads; evaluation time excluded",
        trainer="facegen.train.loop.train (epochs fixed from the measured s/step of the recipe)",
        extractor="clean-fid Inception-V3 (facegen.fid.score.Scorer: FID, KID)",
    )
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if res["grid"]:
        grid = Image.open(res["grid"])
        grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(
            args.results.with_name(f"{args.results.stem}_{key}_grid.png")
        )
    plot(out["recipes"], split_floor["fid"], args.results.with_name(f"{args.results.stem}_fid.png"))
    print(f"{key}: FID {res['fid']} KID {res['kid']} after {res['steps']} steps; floor FID {split_floor['fid']}")


if __name__ == "__main__" and sys.argv[1:2] == ["--prepare"]:
    prepare_data()
elif __name__ == "__main__":
    main()
