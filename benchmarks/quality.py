"""Quality benchmark: real FID/KID of a training recipe under a fixed FLOP budget at 32 px (or 64).

Untimed preparation (cached under cache/bench_quality/): every shared photo
(``$FACEGEN_SHARED/faces/{wild,portraits}``) is posted once on the local demo board
(facegen.demo.board), and the real stages run over it as `dvc repro` would run them:
stages/crawl.py -> stages/download.py -> stages/align.py, with params.yaml's defaults and the
demo's board overrides. The train and test splits are what align wrote.

Training: a recipe (``--recipe``: facegen.train.recipes) by the real trainer
(facegen.train.loop.train, Accelerate, EMA, MLflow in cache/bench_quality/mlflow.db), or a peer
(``peer-ddpm-pytorch``, ``peer-diffusers-example``: benchmarks/peers.py, the ``bench`` extra)
by its own library, at 32 px (``--size 64``: 64 px, names ending in ``-64``), for the steps a
FLOP budget buys (benchmarks/budget.py: FLOPs per step counted once by FlopCounterMode;
``--minutes`` at the recipe's reference FLOP/s from quality_rates.json, or ``--flops``), so the
step count is the same whatever else runs. Every
evaluation records flops, steps, images_seen, cpu_minutes and wall_minutes. Evaluation:
``--samples`` samples (recipes: DDIM ``train.eval_steps``; peers: their own samplers) against
the test faces at the same size with clean-fid's Inception network, FID and KID
(facegen.fid.score.Scorer, the fid stage's path). The floor is the FID of the train faces
against the test faces: what a model that reproduced the training set would score.

Outputs (benchmarks/results/): quality.json (one entry per recipe, merged across runs),
quality_fid.png (FID vs training FLOPs of every 32 px entry that records them; quality_fid_64.png
for 64 px; ``<stem>_fid.png`` beside another ``--results``), quality_<recipe>_grid.png (64 samples
of the last evaluation).
Run: ``.venv/bin/python benchmarks/quality.py --recipe baseline``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from budget import RATES, Budget, load_average, machine, measure_rate, record_rate, reference_rate, train_flops  # noqa: E402
from peers import PEERS  # noqa: E402

SHARED = Path(os.environ.get("FACEGEN_SHARED", REPO.parent / "shared"))
WORK = REPO / "cache" / "bench_quality"
RESULTS = REPO / "benchmarks" / "results"
IMAGE_SIZE = 32  # the default; --size 64 runs the same comparison at 64 px, under names ending in -64
SIZES = (32, 64)
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


def bench_config(
    recipe_name: str, samples: int, overrides: dict[str, Any] | None = None, size: int = IMAGE_SIZE
) -> Any:
    """params.yaml's ``train`` section + the benchmark's keys at ``size`` px + the recipe (+ ``overrides``)."""
    from facegen.common.config import from_dict, load_params
    from facegen.train.config import TrainConfig
    from facegen.train.recipes import recipe

    bench = {**BENCH, "image_size": size}
    keys = {**load_params(REPO / "params.yaml")["train"], **bench, **recipe(recipe_name), **(overrides or {})}
    return from_dict(TrainConfig, {**keys, "fid_num_samples": samples}, "train")


def recipe_step(cfg: Any) -> tuple[Callable[[], Any], list[Any], Callable[[], None]]:
    """One optimizer step of ``cfg`` on random data at its batch size and image size, as the
    trainer runs it (forward, min-SNR-weighted loss, backward, clipping, AdamW, EMA): returns
    (the loss closure, the parameters, the whole step) for counting its FLOPs and timing it."""
    import torch
    from diffusers.training_utils import EMAModel

    from facegen.diffusion.noise import diffusion_loss, make_noise_scheduler, noisy_batch, training_target
    from facegen.train.condition import build_unet

    unet = build_unet(cfg, None)
    sched = make_noise_scheduler(cfg.schedule, cfg.num_train_timesteps, cfg.prediction)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, betas=(cfg.adam_betas[0], cfg.adam_betas[1]))
    ema = EMAModel(unet.parameters(), decay=cfg.ema_decay)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(cfg.batch_size, 3, cfg.image_size, cfg.image_size, generator=gen) * 2 - 1

    def loss() -> Any:
        xt, noise, t = noisy_batch(sched, x0, gen)
        return diffusion_loss(unet(xt, t).sample, training_target(sched, x0, noise, t), "mse", l1_weight=0.25)

    def step() -> None:
        loss().backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema.step(unet.parameters())

    return loss, list(unet.parameters()), step


class TrainClock:
    """CPU and wall seconds of training steps only: a step that follows an evaluation (the
    first of an epoch, or the first after a peer's evaluation) counts as long as the one before."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        self._last: tuple[float, float] | None = None
        self._dt = (0.0, 0.0)

    def tick(self, after_pause: bool = False) -> None:
        """Call after every optimizer step (``after_pause``: an evaluation ran since the last)."""
        now = (time.process_time(), time.perf_counter())
        if self._last is not None and not after_pause:
            self._dt = (now[0] - self._last[0], now[1] - self._last[1])
        self.cpu += self._dt[0]
        self.wall += self._dt[1]
        self._last = now

    def start(self) -> None:
        self._last = (time.process_time(), time.perf_counter())

    def row(self) -> dict[str, float]:
        return {"cpu_minutes": round(self.cpu / 60, 3), "wall_minutes": round(self.wall / 60, 3)}


def budget_row(steps: int, batch: int, budget: Any, rate: float) -> dict[str, Any]:
    """What an evaluation at ``steps`` has spent: steps, images, FLOPs, reference minutes."""
    flops = steps * budget.flops_per_step
    return {"steps": steps, "images_seen": steps * batch, "flops": flops, "minutes": round(flops / rate / 60, 3)}


def run_recipe(
    name: str, recipe_name: str, cfg: Any, *, budget: Any, rate: float, evals: int, out: Path
) -> dict[str, Any]:
    """Train ``cfg`` with the real trainer for the steps ``budget`` buys (whole epochs, so
    rounded to ``evals`` equal parts) in ``out``; return every evaluation with what it spent."""
    import dataclasses

    from facegen.diffusion.model import count_parameters
    from facegen.train.condition import build_unet
    from facegen.train.config import TrainPaths
    from facegen.train.data import epoch_batches, face_paths
    from facegen.train.loop import train

    faces = WORK / "data" / "faces.parquet"
    steps_per_epoch = len(epoch_batches(len(face_paths(faces, "train", WORK)), cfg.batch_size, epoch=0, seed=cfg.seed))
    per_eval = max(1, round(budget.steps / (steps_per_epoch * evals)))
    cfg = dataclasses.replace(cfg, epochs=per_eval * evals, fid_every=per_eval, checkpoint_every=per_eval * evals)
    print(
        f"{name}: {budget.flops_per_step / 1e9:.2f} GFLOP/step, budget {budget.steps} steps -> {cfg.epochs} epochs "
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
    clock, at_epoch = TrainClock(), {}

    def on_step(epoch: int, step: int, loss: float) -> None:
        clock.tick(after_pause=(step - 1) % steps_per_epoch == 0)
        at_epoch[epoch] = clock.row()

    clock.start()
    train(cfg, paths, on_step)
    with (out / "metrics" / "train_epochs.csv").open(encoding="utf-8") as fh:
        history = [r for r in csv.DictReader(fh) if r.get("fid")]
    rows = [
        {
            "epoch": int(r["epoch"]),
            **budget_row(int(r["step"]), cfg.batch_size, budget, rate),
            **at_epoch[int(r["epoch"])],
            "loss": round(float(r["loss"]), 5),
            "fid": round(float(r["fid"]), 2),
            "kid": round(float(r["kid"]), 5),
            **novelty(r),
        }
        for r in history
    ]
    grids = sorted((out / "metrics" / "grids").glob("epoch_*.png"))
    return {
        "recipe": {k: v for k, v in dataclasses.asdict(cfg).items() if k in _recipe_keys(recipe_name)},
        "num_parameters": count_parameters(build_unet(cfg, None)),
        **summarize(rows, cfg.batch_size, budget),
        "epochs": cfg.epochs,
        "eval": {"sampler": "ddim", "steps": cfg.eval_steps, "samples": cfg.fid_num_samples},
        "grid": str(grids[-1]) if grids else None,
    }


def summarize(rows: list[dict[str, Any]], batch: int, budget: Any) -> dict[str, Any]:
    """The result fields every recipe and peer shares."""
    last = rows[-1]
    return {
        "evals": rows,
        "fid": last["fid"],
        "kid": last["kid"],
        "best_fid": min(r["fid"] for r in rows),
        "steps": last["steps"],
        "images_seen": last["steps"] * batch,
        "flops": last["flops"],
        "flops_per_step": budget.flops_per_step,
        "budget_flops": budget.flops,
        "cpu_minutes": last["cpu_minutes"],
        "wall_minutes": last["wall_minutes"],
    }


def run_peer(
    key: str, make: Callable[[int], Any], *, budget: Any, rate: float, evals: int, samples: int, size: int
) -> dict[str, Any]:
    """Train peer ``make(total_steps)`` for the steps ``budget`` buys on the train faces
    (random flips, batches of a seeded permutation per epoch), scoring its EMA sampler
    ``evals`` times at equal fractions with the same Scorer and seeds as the recipes."""
    import torch

    from facegen.train.data import augment, epoch_batches, load_split

    faces = WORK / "data" / "faces.parquet"
    torch.manual_seed(0)
    peer = make(budget.steps)
    train_faces = torch.from_numpy(load_split(faces, "train", WORK, size)).permute(0, 3, 1, 2).contiguous()
    scorer = eval_scorer(size)
    marks = {round(budget.steps * (i + 1) / evals) for i in range(evals)}
    gen, clock, rows, step, epoch = torch.Generator().manual_seed(0), TrainClock(), [], 0, 0
    print(
        f"{key}: {peer.num_parameters} params, {budget.flops_per_step / 1e9:.2f} GFLOP/step, {budget.steps} steps",
        flush=True,
    )
    clock.start()
    paused = False
    while step < budget.steps:
        for idx in epoch_batches(len(train_faces), peer.batch_size, epoch=epoch, seed=0):
            loss = peer.step(augment(train_faces[idx], gen, hflip=True))
            step += 1
            clock.tick(after_pause=paused)
            paused = False
            if step in marks:
                images = draw(peer.sample, samples)
                scores = scorer(images)
                rows.append(
                    {
                        "epoch": epoch + 1,
                        **budget_row(step, peer.batch_size, budget, rate),
                        **clock.row(),
                        "loss": round(loss, 5),
                        "fid": round(scores["fid"], 2),
                        "kid": round(scores["kid"], 5),
                        **novelty(scores),
                    }
                )
                print(f"{key}: step {step}: FID {scores['fid']:.2f} KID {scores['kid']:.5f}", flush=True)
                if step >= budget.steps:  # the last: also the trained weights, to tell the EMA from the training
                    online = scorer(draw(peer.sample_online, samples))
                    rows[-1]["online"] = {"fid": round(online["fid"], 2), "kid": round(online["kid"], 5)}
                    print(f"{key}: step {step}, online weights: FID {online['fid']:.2f}", flush=True)
                grid = images[:64]
                paused = True
            if step >= budget.steps:
                break
        epoch += 1
    grid_path = WORK / "runs" / key / "grid.png"
    save_grid(grid, grid_path)
    return {
        "recipe": peer.settings,
        "num_parameters": peer.num_parameters,
        **summarize(rows, peer.batch_size, budget),
        "eval": {"sampler": peer.settings["sampler"], "samples": samples},
        "grid": str(grid_path),
    }


def draw(sample: Callable[[int, int], np.ndarray], samples: int) -> np.ndarray:
    """``samples`` images from a peer's sampler, in batches of 100 seeded 0, 1, ... (as the recipes')."""
    return np.concatenate([sample(min(100, samples - s), s // 100) for s in range(0, samples, 100)])


def save_grid(images: np.ndarray, path: Path) -> None:
    """uint8 (N, H, W, 3) -> one square PNG grid (N a square)."""
    from PIL import Image

    n = int(len(images) ** 0.5)
    h, w = images.shape[1:3]
    grid = images[: n * n].reshape(n, n, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(n * h, n * w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def eval_scorer(size: int) -> Any:
    """The benchmark's evaluator, the trainer's: facegen.fid.score.Scorer against the test faces at
    ``size`` px with FID, KID, precision/recall and memorization (the ``fid`` section's defaults)."""
    import torch

    from facegen.fid.score import FidConfig, Scorer

    return Scorer.from_config(
        FidConfig(extractor=BENCH["fid_extractor"], batch_size=BENCH["fid_batch_size"]),
        faces_parquet=WORK / "data" / "faces.parquet",
        root=WORK,
        image_size=size,
        device=torch.device("cpu"),
        cache_dir=WORK / "cache" / "fid",
    )


NOVELTY = ("precision", "recall", "memorized_fraction")


def novelty(scores: Any) -> dict[str, float]:
    """Precision, recall and the memorized fraction of one evaluation (a scores dict or a row of the
    trainer's metrics/train_epochs.csv), rounded; keys absent or empty are left out."""
    return {k: round(float(scores[k]), 4) for k in NOVELTY if scores.get(k) not in (None, "")}


def _recipe_keys(name: str) -> set[str]:
    from facegen.train.recipes import recipe

    return set(recipe(name))


def fid_scorer(cfg: Any) -> Any:
    """FID and KID against the test faces at ``cfg.image_size`` px with ``cfg``'s extractor (the floor, a rescore)."""
    import torch

    from facegen.fid.score import Scorer, ScoringOptions

    return Scorer.for_split(
        WORK / "data" / "faces.parquet",
        WORK,
        cfg.image_size,
        extractor=cfg.fid_extractor,
        device=torch.device("cpu"),
        cache_dir=WORK / "cache" / "fid",
        options=ScoringOptions(batch_size=cfg.fid_batch_size),
    )


def floor(cfg: Any) -> dict[str, float]:
    """FID/KID of the train faces against the test faces (the split's floor), at ``cfg.image_size``
    px; cached in cache/bench_quality/floor.json (32 px; floor_<size>.json otherwise) per
    faces.parquet content."""
    import hashlib

    from facegen.train.data import load_split

    faces = WORK / "data" / "faces.parquet"
    digest = hashlib.sha256(faces.read_bytes()).hexdigest()
    cached = WORK / ("floor.json" if cfg.image_size == IMAGE_SIZE else f"floor_{cfg.image_size}.json")
    if cached.is_file() and json.loads(cached.read_text(encoding="utf-8")).get("faces_sha256") == digest:
        return {k: v for k, v in json.loads(cached.read_text(encoding="utf-8")).items() if k != "faces_sha256"}
    scorer = fid_scorer(cfg)
    scores = scorer(load_split(faces, "train", WORK, cfg.image_size))
    result = {"fid": round(scores["fid"], 2), "kid": round(scores["kid"], 5)}
    cached.write_text(json.dumps({**result, "faces_sha256": digest}), encoding="utf-8")
    return result


def rescore(key: str, cfg: Any, results: Path) -> None:
    """Score ``runs/<key>/models/best`` (the best evaluated epoch) on ``cfg.fid_num_samples``
    DDIM samples, as the trainer's evaluator does, and record it under ``recipes[key].rescored``."""

    from facegen.diffusion.sampling import SampleSpec, generate, load_model

    best = WORK / "runs" / key / "models" / "best"
    unet, sched = load_model(best)
    spec = SampleSpec(sampler="ddim", steps=cfg.eval_steps, batch_size=100)
    images = generate(unet, sched, spec, range(cfg.fid_num_samples), progress=False)
    scorer = fid_scorer(cfg)
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


def plot(results: dict[str, Any], floor_fid: float, path: Path, size: int = IMAGE_SIZE) -> None:
    """FID vs training FLOPs of every recipe and peer at ``size`` px that records them, with the
    split's floor at that size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    xmax = 0.0
    for name, res in sorted(results.items()):
        if res.get("image_size", IMAGE_SIZE) != size:
            continue
        if not all("flops" in e for e in res["evals"]):
            print(f"plot: {name} has no FLOP counts (a timing-budget run), left out of {path.name}")
            continue
        xmax = max(xmax, *(e["flops"] / 1e15 for e in res["evals"]))
        ax.plot(
            [e["flops"] / 1e15 for e in res["evals"]],
            [e["fid"] for e in res["evals"]],
            "o-",
            label=f"{name} ({res['num_parameters'] / 1e6:.1f}M, {res['steps']} steps)",
        )
    ax.axhline(floor_fid, color="gray", ls="--", label=f"floor: train vs test ({floor_fid:.0f})")
    ax.axhline(1.3 * floor_fid, color="gray", ls=":", label=f"1.3x floor ({1.3 * floor_fid:.0f})")
    ax.set_xlabel("training compute (PFLOP: forward + backward, FlopCounterMode)")
    ax.set_ylabel(f"FID vs test faces ({size} px)")
    ax.set_xlim(0, xmax * 1.08 or 1)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def merge_result(path: Path, key: str, res: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """Put ``res`` under ``recipes[key]`` of the JSON at ``path`` (and ``fields`` at its top), under
    an exclusive lock, so runs that share the cores and finish together keep every entry."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    with path.open("r+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read()
        out = json.loads(text) if text.strip() else {}
        out.setdefault("recipes", {})[key] = res
        out.update(fields)
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(out, indent=2) + "\n")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from peers import PEERS, WIDTHS

    from facegen.train.recipes import RECIPES

    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--recipe", default="baseline", choices=sorted(RECIPES) + list(PEERS))
    ap.add_argument(
        "--minutes",
        type=float,
        default=20.0,
        help="training budget: minutes of the recipe's reference rate (quality_rates.json), as FLOPs",
    )
    ap.add_argument("--flops", type=float, default=None, help="training budget in FLOPs (instead of --minutes)")
    ap.add_argument(
        "--measure-rate",
        action="store_true",
        help="no training: measure the recipe's reference FLOP/s (on a quiet machine) into --rates",
    )
    ap.add_argument("--rates", type=Path, default=RATES)
    ap.add_argument("--peer-width", default="matched", choices=WIDTHS, help="a peer's documented or matched width")
    ap.add_argument("--peer-lr-scale", type=float, default=1.0, help="a peer's learning rate x this (e.g. 10)")
    ap.add_argument(
        "--peer-sampler",
        default="documented",
        choices=("documented", "ddim"),
        help="a peer's evaluation sampler: its documented one (ddpm-pytorch DDIM 250, the diffusers example's "
        f"DDPMPipeline 1000), or DDIM at the recipes' {BENCH['eval_steps']} steps (ddpm-pytorch's own DDIM, "
        "diffusers' DDIMPipeline)",
    )
    ap.add_argument(
        "--peer-sample-steps",
        type=int,
        default=None,
        help="a peer's sampling steps (default: those of --peer-sampler)",
    )
    ap.add_argument(
        "--size", type=int, default=IMAGE_SIZE, choices=SIZES, help="image size (px); not 32: names end in -<size>"
    )
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
    return ap.parse_args(argv)


def peer_maker(args: argparse.Namespace) -> Callable[[int], Any]:
    """``total_steps -> Peer`` for ``args.recipe`` at ``args.peer_width``."""
    from peers import build_peer

    kw: dict[str, Any] = {"lr_scale": args.peer_lr_scale}
    if args.peer_sampler == "ddim":
        kw["sample_steps"] = BENCH["eval_steps"]
        if args.recipe == "peer-diffusers-example":
            kw["sampler"] = "ddim"
    if args.peer_sample_steps:
        kw["sample_steps"] = args.peer_sample_steps
    return lambda steps: build_peer(args.recipe, args.peer_width, image_size=args.size, total_steps=steps, **kw)


def counted_step(args: argparse.Namespace, cfg: Any) -> tuple[int, Callable[[], None]]:
    """FLOPs of one optimizer step of the recipe or peer, and that step on random data."""
    import torch

    if args.recipe not in PEERS:
        loss, params, step = recipe_step(cfg)
        return train_flops(loss, params), step
    peer = peer_maker(args)(1000)
    x = torch.rand(peer.batch_size, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return train_flops(lambda: peer.loss(x), peer.module.parameters()), lambda: peer.step(x) and None


def entry_names(args: argparse.Namespace) -> tuple[str, str]:
    """(the reference-rate key, the results key) of a run: the recipe, or the peer and its width;
    then the results key's ``_lr<x>x`` and ``--tag``; both end in ``-<size>`` when not 32 px."""
    is_peer = args.recipe in PEERS
    name = f"{args.recipe}-{args.peer_width}" if is_peer else args.recipe
    lr_tag = f"_lr{args.peer_lr_scale:g}x" if is_peer and args.peer_lr_scale != 1 else ""
    size_tag = "" if args.size == IMAGE_SIZE else f"-{args.size}"
    return name + size_tag, name + lr_tag + args.tag + size_tag


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    import yaml
    from PIL import Image

    torch.set_num_threads(args.threads)
    is_peer = args.recipe in PEERS
    rate_key, key = entry_names(args)
    size_tag = "" if args.size == IMAGE_SIZE else f"-{args.size}"
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.sets)}
    cfg = bench_config("baseline" if is_peer else args.recipe, args.samples, extra, args.size)
    flops_per_step, step = counted_step(args, cfg)
    if args.measure_rate:
        rate = measure_rate(step, flops_per_step)
        record_rate(rate_key, rate, args.rates)
        print(
            f"{rate_key}: {flops_per_step / 1e9:.2f} GFLOP/step, {rate['s_per_step']} s/step, "
            f"{rate['flops_per_s'] / 1e9:.1f} GFLOP/s, load {rate['load_average']}"
        )
        return
    ref = reference_rate(rate_key, args.rates)
    rate = float(ref["flops_per_s"])
    budget = (
        Budget(args.flops, flops_per_step) if args.flops else Budget.from_minutes(args.minutes, flops_per_step, rate)
    )
    prepare_data()
    split_floor = floor(cfg)
    if args.rescore:
        rescore(key, cfg, args.results)
        return
    if is_peer:
        res = run_peer(
            key, peer_maker(args), budget=budget, rate=rate, evals=args.evals, samples=args.samples, size=args.size
        )
    else:
        res = run_recipe(key, args.recipe, cfg, budget=budget, rate=rate, evals=args.evals, out=WORK / "runs" / key)
    res.update(
        image_size=args.size,
        floor=split_floor,
        budget_minutes=round(budget.flops / rate / 60, 3),
        threads=args.threads,
        overrides=extra,
        reference_rate=ref,
        load_average_after=load_average(),
    )
    from facegen.train.data import face_paths

    faces = WORK / "data" / "faces.parquet"
    # the top-level floor is the 32 px one (every entry also records its own); other sizes' beside it
    floors = (
        {"image_size": IMAGE_SIZE, "floor": split_floor}
        if args.size == IMAGE_SIZE
        else {f"floor_{args.size}": split_floor}
    )
    out = merge_result(
        args.results,
        key,
        res,
        **floors,
        num_train=len(face_paths(faces, "train", WORK)),
        num_test=len(face_paths(faces, "test", WORK)),
        machine=f"{machine()}, no GPU",
        budget="FLOPs: --minutes x 60 x the recipe's reference FLOP/s (quality_rates.json), or --flops; "
        "FLOPs per step by FlopCounterMode over forward + backward at the recipe's batch",
        trainer="recipes: facegen.train.loop.train (whole epochs); peers: benchmarks/peers.py with their libraries",
        extractor="clean-fid Inception-V3 (facegen.fid.score.Scorer: FID, KID)",
    )
    if res["grid"]:
        grid = Image.open(res["grid"])
        grid.resize((grid.width * 2, grid.height * 2), Image.Resampling.NEAREST).save(
            args.results.with_name(f"{args.results.stem}_{key}_grid.png")
        )
    plot_name = f"{args.results.stem}_fid{size_tag.replace('-', '_')}.png"
    plot(out["recipes"], split_floor["fid"], args.results.with_name(plot_name), args.size)
    print(f"{key}: FID {res['fid']} KID {res['kid']} after {res['steps']} steps; floor FID {split_floor['fid']}")


if __name__ == "__main__" and sys.argv[1:2] == ["--prepare"]:
    prepare_data()
elif __name__ == "__main__":
    main()
