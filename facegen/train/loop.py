"""Train the DDPM with Accelerate: in-memory data, EMA, per-epoch FD, checkpoints, exact resume.

Accelerate owns devices, precision (``no``/``bf16``/``fp16``) and DDP (``accelerate launch``).
Gradient accumulation is explicit (``no_sync`` on all but the last micro-batch) so that one
optimizer step is always ``grad_accum`` micro-batches and a resumed run replays the same steps.
Randomness: the model init comes from ``seed``; each epoch's batch order from (seed, epoch); each
step's augmentation, timesteps and noise from a generator seeded by (seed, step, rank). A
checkpoint (``models/checkpoints/<run_key>/epoch_NNNNN/``) is ``accelerator.save_state`` (model,
optimizer, LR scheduler, RNG) plus ``ema.pt`` and ``state.json`` (epoch, step, history, best,
MLflow run id, config) written last, so a folder with ``state.json`` is complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from facegen.fid import features as fid
from facegen.common.config import to_dict
from facegen.train.data import augment, epoch_batches, load_split, pick_data_device, to_tensor
from facegen.diffusion.noise import diffusion_loss, make_noise_scheduler, min_snr_weights, noisy_batch, training_target
from facegen.train.evaluate import Evaluator
from facegen.diffusion.model import build_unet, count_parameters, save_model_dir, unet_from_ema
from facegen.train.tracking import Tracker, git_commit, tracking_uri, write_epoch_files


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml ``train`` (see docs/train.md for each key)."""

    seed: int = 0
    model: str = "tiny"
    channels: tuple[int, ...] = ()
    image_size: int = 64
    epochs: int = 100
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
    clip_grad: float = 1.0
    precision: str = "no"
    schedule: str = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: str = "epsilon"
    loss: str = "mse"
    l1_weight: float = 0.25
    min_snr_gamma: float = 0.0
    ema_decay: float = 0.998
    ema_start_step: int = 0
    ema_warmup: bool = False
    ema_power: float = 0.6667
    hflip: bool = True
    rotate_deg: float = 0.0
    color_jitter: float = 0.0
    data_device: str = "auto"
    channels_last: bool = False
    compile: bool = False
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    log_checkpoints: bool = True
    fid_every: int = 10
    fid_num_samples: int = 1000
    fid_extractor: str = "inception"
    fid_batch_size: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    eval_steps: int = 50
    grid_size: int = 16
    experiment: str = "facegen"
    resume: str = "auto"

    def __post_init__(self) -> None:
        choices = {"precision": ("no", "bf16", "fp16"), "data_device": ("auto", "cpu", "device"),
                   "fid_extractor": fid.EXTRACTORS}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"train.{key} = {getattr(self, key)!r}: choose one of {list(allowed)}")
        for key in ("epochs", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "eval_steps",
                    "kid_subsets"):
            if getattr(self, key) < 1:
                raise ValueError(f"train.{key} = {getattr(self, key)}: must be at least 1")
        if self.fid_every < 0 or (self.fid_every and self.fid_num_samples < 2):
            raise ValueError(f"train.fid_every = {self.fid_every}, fid_num_samples = {self.fid_num_samples}: "
                             "fid_every >= 0 (0 = never) and at least 2 samples")
        if self.kid_subset_size < 2:
            raise ValueError(f"train.kid_subset_size = {self.kid_subset_size}: must be at least 2")


@dataclass(frozen=True)
class TrainPaths:
    """Where the trainer reads and writes (stage arguments; contract defaults)."""

    faces: Path = Path("data/faces.parquet")
    root: Path = Path(".")
    models: Path = Path("models")
    metrics: Path = Path("metrics")
    fid_cache: Path = Path("cache/fid")
    tracking_uri: str | None = None
    artifact_root: Path | None = None


def run_key(cfg: TrainConfig, data_hash: str) -> str:
    """Checkpoint folder name: hash of the config (except ``resume``) and the training data."""
    settings = {k: v for k, v in to_dict(cfg).items() if k != "resume"}
    return hashlib.sha256(json.dumps([settings, data_hash], sort_keys=True).encode()).hexdigest()[:12]


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (has ``state.json``) under ``run_dir``."""
    done = sorted(p.parent for p in run_dir.glob("epoch_*/state.json"))
    return done[-1] if done else None


def _resume_from(cfg: TrainConfig, run_dir: Path) -> Path | None:
    if cfg.resume == "never":
        return None
    if cfg.resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(cfg.resume)
    if not (path / "state.json").is_file():
        raise ValueError(f"train.resume = {cfg.resume!r}: not a checkpoint folder with state.json "
                         "(use 'auto', 'never' or a models/checkpoints/<run>/epoch_NNNNN path)")
    return path


def _step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 256 + rank) % (2**63)


def train(cfg: TrainConfig, paths: TrainPaths = TrainPaths(),
          on_step: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
    """Train per ``cfg``; return the summary also written to ``metrics/train.json``.

    ``on_step(epoch, step, loss)`` is called after each optimizer step on every process
    (tests use it to record losses or to simulate a kill).
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel
    from tqdm import tqdm

    accelerator = Accelerator(mixed_precision=cfg.precision, step_scheduler_with_optimizer=False)
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    set_seed(cfg.seed)
    train_np = load_split(paths.faces, "train", paths.root, cfg.image_size)
    data_hash = fid.content_hash(train_np)
    key = run_key(cfg, data_hash)
    run_dir = Path(paths.models) / "checkpoints" / key
    data = to_tensor(train_np, pick_data_device(train_np.nbytes, device, cfg.data_device))
    del train_np

    unet = build_unet(cfg.model, cfg.image_size, cfg.channels or None)
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    noise_sched = make_noise_scheduler(cfg.schedule, cfg.num_train_timesteps, cfg.prediction, cfg.beta_start, cfg.beta_end)
    micro_per_epoch = len(epoch_batches(len(data), cfg.batch_size, 0, cfg.seed, rank, world))
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(f"train.grad_accum = {cfg.grad_accum} exceeds the {micro_per_epoch} batches per epoch")
    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    lr_sched = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.epochs * steps_per_epoch)
    unet, optimizer, lr_sched = accelerator.prepare(unet, optimizer, lr_sched)
    forward = torch.compile(unet) if cfg.compile else unet
    raw_unet = accelerator.unwrap_model(unet)
    ema = EMAModel(raw_unet.parameters(), decay=cfg.ema_decay, update_after_step=cfg.ema_start_step,
                   use_ema_warmup=cfg.ema_warmup, power=cfg.ema_power) if main else None

    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best": None, "run_id": None}
    ckpt = _resume_from(cfg, run_dir)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if ema is not None:
            ema.load_state_dict(torch.load(ckpt / "ema.pt", map_location="cpu", weights_only=False))
            ema.to(device)
        accelerator.print(f"resumed from {ckpt} (epoch {state['epoch']}, step {state['step']})")

    metric = fid.metric_name(cfg.fid_extractor)
    tracker = evaluator = None
    if main:
        uri = paths.tracking_uri or tracking_uri(paths.root)
        tracker = Tracker(uri, cfg.experiment, f"{cfg.model}-{key}", paths.artifact_root, state["run_id"])
        state["run_id"] = tracker.run_id
        tracker.log_params({**to_dict(cfg), "git_commit": git_commit(paths.root), "data_hash": data_hash,
                            "run_key": key, "num_train_images": len(data), "num_processes": world,
                            "num_parameters": count_parameters(raw_unet)})
        tracker.set_tags({"metric": metric, "best_checkpoint": (run_dir / "best").resolve()})
        if cfg.fid_every:
            evaluator = Evaluator(cfg, noise_sched, raw_unet.config, paths, device)
            tracker.set_tags(evaluator.scorer.tags())

    try:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            unet.train()
            batches = epoch_batches(len(data), cfg.batch_size, epoch, cfg.seed, rank, world)
            losses, start = [], time.perf_counter()
            for _ in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", disable=not main, leave=False):
                step = state["step"] + 1
                gen = torch.Generator(device).manual_seed(_step_seed(cfg.seed, step, rank))
                total = torch.zeros((), device=device)
                for micro in range(cfg.grad_accum):
                    idx = batches[(step - 1) % steps_per_epoch * cfg.grad_accum + micro]
                    x0 = augment(data[idx.to(data.device)].to(device, non_blocking=True), gen,
                                 cfg.hflip, cfg.rotate_deg, cfg.color_jitter)
                    if cfg.channels_last:
                        x0 = x0.contiguous(memory_format=torch.channels_last)
                    xt, noise, t = noisy_batch(noise_sched, x0, gen)
                    weights = min_snr_weights(noise_sched, t, cfg.min_snr_gamma) if cfg.min_snr_gamma > 0 else None
                    sync = nullcontext() if micro == cfg.grad_accum - 1 else accelerator.no_sync(unet)
                    with sync:
                        pred = forward(xt, t).sample
                        loss = diffusion_loss(pred, training_target(noise_sched, x0, noise, t), cfg.loss, cfg.l1_weight, weights)
                        accelerator.backward(loss / cfg.grad_accum)
                    total += loss.detach() / cfg.grad_accum
                step_loss = accelerator.reduce(total, "mean").item()
                if not math.isfinite(step_loss):
                    raise FloatingPointError(
                        f"loss is {step_loss} at epoch {epoch}, step {step}: training diverged. Lower train.lr "
                        f"(now {cfg.lr}), set train.clip_grad (now {cfg.clip_grad}) or use train.precision: no")
                if cfg.clip_grad > 0:
                    accelerator.clip_grad_norm_(unet.parameters(), cfg.clip_grad)
                optimizer.step()
                lr_sched.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(raw_unet.parameters())
                state["step"] = step
                losses.append(step_loss)
                if on_step is not None:
                    on_step(epoch, step, step_loss)
            seconds = time.perf_counter() - start
            row = {"epoch": epoch, "step": state["step"], "loss": sum(losses) / len(losses),
                   "lr": lr_sched.get_last_lr()[0], "seconds": round(seconds, 3),
                   "images_per_s": round(steps_per_epoch * cfg.grad_accum * cfg.batch_size * world / seconds, 2)}
            state["epoch"] = epoch
            if main:
                _end_epoch(cfg, state, row, ema, evaluator, tracker, noise_sched, raw_unet, run_dir, metric)
            if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
                _checkpoint(accelerator, cfg, state, ema, raw_unet, run_dir, tracker)
    except BaseException as err:
        if tracker is not None:  # a kill (Ctrl-C, sys.exit) is resumable; a divergence or a bug is a failure
            tracker.end("KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED")
        raise

    summary: dict[str, Any] = {}
    if main:
        summary = _finish(cfg, state, paths, run_dir, key, metric, tracker, ema, raw_unet, noise_sched)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _end_epoch(cfg: TrainConfig, state: dict, row: dict, ema: Any, evaluator: "Evaluator | None",
               tracker: Tracker, noise_sched: Any, raw_unet: Any, run_dir: Path, metric: str) -> None:
    """Main process: evaluate on schedule, keep the best EMA weights, log the epoch."""
    epoch = row["epoch"]
    logged = {"loss": row["loss"], "lr": row["lr"], "images_per_s": row["images_per_s"]}
    if evaluator is not None and (epoch % cfg.fid_every == 0 or epoch == cfg.epochs):
        scores, grid, eval_unet = evaluator.run(ema)
        value = scores[metric]
        row.update(scores)
        logged.update(scores)
        tracker.log_image(grid, f"samples/epoch_{epoch:05d}.png")
        best = state["best"]
        if best is None or value < best["value"]:
            state["best"] = {"epoch": epoch, "metric": metric, "value": value, "run_id": state["run_id"]}
            save_model_dir(run_dir / "best", eval_unet, noise_sched, to_dict(cfg), state["best"])
        logged[f"best_{metric}"], logged["best_epoch"] = state["best"]["value"], state["best"]["epoch"]
    state["history"].append(row)
    tracker.log_metrics(logged, epoch)


def _checkpoint(accelerator: Any, cfg: TrainConfig, state: dict, ema: Any, raw_unet: Any, run_dir: Path,
                tracker: Tracker | None) -> None:
    """Save a complete checkpoint on all processes (written to a temp folder, renamed when done)."""
    import torch

    final = run_dir / f"epoch_{state['epoch']:05d}"
    tmp = run_dir / f".tmp_epoch_{state['epoch']:05d}"
    checksum = torch.stack([p.detach().double().sum() for p in raw_unet.parameters()]).sum().reshape(1)
    sums = accelerator.gather(checksum.to(accelerator.device)).cpu()
    if not torch.allclose(sums, sums[0], rtol=1e-9, atol=0):
        raise RuntimeError(f"processes hold different weights at epoch {state['epoch']} ({sums.tolist()}): DDP is broken")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        torch.save(ema.state_dict(), tmp / "ema.pt")
        extra = {"config": to_dict(cfg), "num_processes": accelerator.num_processes, "param_checksum": float(sums[0])}
        (tmp / "state.json").write_text(json.dumps({**state, **extra}, indent=2), encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in sorted(run_dir.glob("epoch_*"))[: -cfg.keep_checkpoints]:
            shutil.rmtree(old)
        if tracker is not None and cfg.log_checkpoints:
            tracker.log_artifacts(final, f"checkpoints/{final.name}")
    accelerator.wait_for_everyone()


def _finish(cfg: TrainConfig, state: dict, paths: TrainPaths, run_dir: Path, key: str, metric: str,
            tracker: Tracker, ema: Any, raw_unet: Any, noise_sched: Any) -> dict[str, Any]:
    """Main process: publish models/best, write metrics files, close the MLflow run."""
    best_dir = Path(paths.models) / "best"
    if state["best"] is None:  # no evaluation configured: the last epoch's EMA weights
        eval_unet = unet_from_ema(ema, raw_unet.config)
        state["best"] = {"epoch": state["epoch"], "metric": None, "value": None, "run_id": state["run_id"]}
        save_model_dir(run_dir / "best", eval_unet, noise_sched, to_dict(cfg), state["best"])
    if best_dir.exists():
        shutil.rmtree(best_dir)
    shutil.copytree(run_dir / "best", best_dir)
    history = state["history"]
    summary = {"metric": metric, "best_epoch": state["best"]["epoch"], f"best_{metric}": state["best"]["value"],
               "epochs": state["epoch"], "steps": state["step"], "final_loss": history[-1]["loss"] if history else None,
               "images_per_s": round(sum(r["images_per_s"] for r in history) / max(1, len(history)), 2),
               "run_id": state["run_id"], "run_key": key}
    write_epoch_files(history, summary, paths.metrics, metric)
    tracker.log_artifacts(best_dir, "best")
    tracker.end("FINISHED")
    return summary
