"""Train the DDPM with Accelerate: in-memory data, EMA, per-epoch FD, checkpoints, exact resume.

Accelerate owns devices, precision (``no``/``bf16``/``fp16``) and DDP (``accelerate launch``).
Gradient accumulation is explicit (``no_sync`` on all but the last micro-batch) so that one
optimizer step is always ``grad_accum`` micro-batches and a resumed run replays the same steps.
Randomness: the model init comes from ``seed``; each epoch's batch order from (seed, epoch); each
step's augmentation, timesteps and noise from a generator seeded by (seed, step, rank). A
checkpoint (``<checkpoint_root>/<run_key>/epoch_NNNNN/``, :func:`facegen.train.config.checkpoint_root`) is
written after the epoch's evaluation and before the epoch is logged to MLflow, so a tracker
failure never costs a checkpoint. The config and run key live in :mod:`facegen.train.config`.

Reading order: :func:`train` builds the parts (:mod:`facegen.train.parts`), takes the run
folder's lock, resumes, opens tracking (:func:`_open_tracking`), runs the epochs
(:func:`_run_epochs`), and finally publishes (:func:`_finish`). Each epoch (:func:`_epoch`)
trains (:func:`_train_epoch`: per step :func:`_micro_batch` x ``grad_accum``, then
:func:`_optimizer_step`), evaluates (:func:`_evaluate`), checkpoints and logs (:func:`_log_epoch`).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from facegen.common.config import to_dict
from facegen.diffusion.model import count_parameters, save_model_dir, unet_from_ema
from facegen.diffusion.noise import diffusion_loss, min_snr_weights, noisy_batch, training_target
from facegen.fid import features as fid
from facegen.fid.score import NOVELTY_SCORES
from facegen.train.checkpoint import TrainState, latest_checkpoint, resume, run_lock, save_checkpoint
from facegen.train.config import TrainConfig, TrainPaths, run_key
from facegen.train.data import augment, epoch_batches
from facegen.train.evaluate import Evaluator
from facegen.train.metrics_files import write_epoch_files
from facegen.train.parts import Run, announce, build_run, make_accelerator
from facegen.train.tracking import (
    Tracker,
    git_commit,
    portable_path,
    repo_root,
    run_name,
    run_tags,
    tracking_uri,
)

__all__ = ["TrainConfig", "TrainPaths", "TrainState", "latest_checkpoint", "run_key", "train"]


def _step_seed(seed: int, step: int, rank: int) -> int:
    return ((seed * 1_000_003 + step) * 256 + rank) % (2**63)


def train(
    cfg: TrainConfig,
    paths: TrainPaths | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
    *,
    fid_cfg: Any = None,  # facegen.fid.score.FidConfig (params.yaml `fid`); None = its defaults
) -> dict[str, Any]:
    """Train per ``cfg``; return the summary also written to ``metrics/train.json``.

    ``paths`` defaults to the contract paths (``TrainPaths()``).

    ``on_step(epoch, step, loss)`` is called after each optimizer step on every process
    (tests use it to record losses or to simulate a kill).
    """
    from accelerate.utils import set_seed

    paths = paths if paths is not None else TrainPaths()
    accelerator = make_accelerator(cfg)
    set_seed(cfg.seed)
    run = build_run(cfg, paths, accelerator)
    announce(run)
    run.fid_cfg = fid_cfg
    main = accelerator.is_main_process
    with run_lock(run.run_dir) if main else nullcontext():
        state, ckpt = resume(accelerator, cfg.resume, run.run_dir, ema=run.ema, raw_unet=run.raw_unet)
        if ckpt is not None:
            accelerator.print(f"resumed from {ckpt} (epoch {state.epoch}, step {state.step})")
        if main:
            _open_tracking(run, state)
        _run_epochs(run, state, on_step)
        summary = _finish(run, state) if main else {}
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


def _open_tracking(run: Run, state: TrainState) -> None:
    """Main process: open (or continue) the MLflow run, log params and tags, set up evaluation."""
    cfg, paths = run.cfg, run.paths
    uri = paths.tracking_uri or tracking_uri(paths.root)
    run.tracker = Tracker(
        uri,
        cfg.experiment,
        run_name(cfg.model, run.key),
        artifact_root=paths.artifact_root,
        run_id=state.run_id,
        tags={
            "metric": run.metric,
            "data_hash": run.data_hash,
            **run_tags(paths.root),
            "best_checkpoint": portable_path(run.run_dir / "best", repo_root(paths.root)),
        },
        run_key=run.key,
    )
    state.run_id = run.tracker.run_id
    run.tracker.log_params(
        {
            **to_dict(cfg),
            "git_commit": git_commit(paths.root),
            "data_hash": run.data_hash,
            "run_key": run.key,
            "num_train_images": len(run.data),
            "num_processes": run.accelerator.num_processes,
            "num_parameters": count_parameters(run.raw_unet),
        }
    )
    run.tracker.log_dataset(paths.faces, "train", run.data_hash)
    if cfg.fid_every:
        run.evaluator = Evaluator(
            cfg,
            paths,
            noise_scheduler=run.noise_sched,
            unet_config=run.raw_unet.config,
            device=run.accelerator.device,
            fid_cfg=run.fid_cfg,
        )
        run.tracker.set_tags(run.evaluator.scorer.tags())


def _run_epochs(run: Run, state: TrainState, on_step: Callable[[int, int, float], None] | None) -> None:
    """Each remaining epoch in turn (:func:`_epoch`) under one progress bar. A kill (Ctrl-C,
    sys.exit) ends the MLflow run as KILLED (resumable), any other error as FAILED."""
    from tqdm import tqdm

    main = run.accelerator.is_main_process
    run.bar = tqdm(
        total=run.cfg.epochs * run.steps_per_epoch,
        initial=state.step,
        desc="train",
        unit="step",
        disable=not main or not sys.stderr.isatty(),
        dynamic_ncols=True,
    )
    try:
        for epoch in range(state.epoch + 1, run.cfg.epochs + 1):
            _epoch(run, state, epoch, on_step)
        run.bar.close()
    except BaseException as err:
        run.bar.close()
        if run.tracker is not None:
            run.tracker.end("KILLED" if isinstance(err, (KeyboardInterrupt, SystemExit)) else "FAILED")
        raise


def _epoch(run: Run, state: TrainState, epoch: int, on_step: Callable[[int, int, float], None] | None) -> None:
    """One epoch: train on every process, evaluate (main), checkpoint when due (all), then log (main).

    The checkpoint is written before the epoch is logged, so a tracker failure never costs one.
    """
    cfg, main = run.cfg, run.accelerator.is_main_process
    row = _train_epoch(run, state, epoch, on_step)
    grid = _evaluate(run, state, row) if main else None
    saved = None
    if epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs:
        saved = save_checkpoint(run.accelerator, cfg, state, run.run_dir, ema=run.ema, raw_unet=run.raw_unet)
    if main:
        _log_epoch(run, state, row, grid=grid, checkpoint=saved)
        scored = f" {run.metric} {row[run.metric]:.4f}" if run.metric in row else ""
        (run.bar.write if not run.bar.disable else print)(
            f"epoch {epoch}/{cfg.epochs} loss {row['loss']:.4f} lr {row['lr']:.2e} "
            f"{row['images_per_s']:.0f} img/s{scored}",
            file=sys.stderr,
        )


def _train_epoch(
    run: Run, state: TrainState, epoch: int, on_step: Callable[[int, int, float], None] | None
) -> dict[str, Any]:
    """One epoch of optimizer steps on every process; returns the epoch's row (loss, lr, speed).

    Each step is ``grad_accum`` micro-batches (:func:`_micro_batch`) drawn with one generator
    seeded by (seed, step, rank), so a resumed run replays the same steps.
    """
    import torch

    cfg, accelerator = run.cfg, run.accelerator
    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    run.unet.train()
    batches = epoch_batches(len(run.data), cfg.batch_size, epoch=epoch, seed=cfg.seed, rank=rank, world_size=world)
    losses, start = [], time.perf_counter()
    for _ in range(run.steps_per_epoch):
        step = state.step + 1
        gen = torch.Generator(device).manual_seed(_step_seed(cfg.seed, step, rank))
        first = (step - 1) % run.steps_per_epoch * cfg.grad_accum
        total = torch.zeros((), device=device)
        for micro in range(cfg.grad_accum):
            total += _micro_batch(run, batches[first + micro], gen, sync=micro == cfg.grad_accum - 1) / cfg.grad_accum
        step_loss = accelerator.reduce(total, "mean").item()
        if not math.isfinite(step_loss):
            raise FloatingPointError(
                f"loss is {step_loss} at epoch {epoch}, step {step}: training diverged. Lower train.lr "
                f"(now {cfg.lr}), set train.clip_grad (now {cfg.clip_grad}) or use train.precision: no"
            )
        _optimizer_step(run)
        state.step = step
        losses.append(step_loss)
        if run.bar is not None:
            run.bar.update(1)
        if on_step is not None:
            on_step(epoch, step, step_loss)
    seconds = time.perf_counter() - start
    state.epoch = epoch
    images = run.steps_per_epoch * cfg.grad_accum * cfg.batch_size * world
    return {
        "epoch": epoch,
        "step": state.step,
        "loss": sum(losses) / len(losses),
        "lr": run.lr_sched.get_last_lr()[0],
        "seconds": round(seconds, 3),
        "images_per_s": round(images / seconds, 2),
    }


def _micro_batch(run: Run, idx: Any, gen: Any, *, sync: bool) -> Any:
    """Forward and backward of the faces ``idx`` (augmentation, timesteps, noise from ``gen``);
    gradients are all-reduced only when ``sync`` (the step's last micro-batch). Returns the detached loss."""
    import torch

    cfg, accelerator, sched = run.cfg, run.accelerator, run.noise_sched
    x0 = augment(
        run.data[idx.to(run.data.device)].to(accelerator.device, non_blocking=True),
        gen,
        hflip=cfg.hflip,
        rotate_deg=cfg.rotate_deg,
        color_jitter=cfg.color_jitter,
    )
    if cfg.channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    xt, noise, t = noisy_batch(sched, x0, gen)
    weights = min_snr_weights(sched, t, cfg.min_snr_gamma) if cfg.min_snr_gamma > 0 else None
    with nullcontext() if sync else accelerator.no_sync(run.unet):
        pred = run.forward(xt, t, **(run.cond.batch(idx, gen) if run.cond else {})).sample
        loss = diffusion_loss(
            pred, training_target(sched, x0, noise, t), cfg.loss, l1_weight=cfg.l1_weight, weights=weights
        )
        accelerator.backward(loss / cfg.grad_accum)
    return loss.detach()


def _optimizer_step(run: Run) -> None:
    """Clip (when ``train.clip_grad``), step the optimizer and LR schedule, clear the gradients, update the EMA."""
    if run.cfg.clip_grad > 0:
        run.accelerator.clip_grad_norm_(run.unet.parameters(), run.cfg.clip_grad)
    run.optimizer.step()
    run.lr_sched.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.step(run.raw_unet.parameters())


def _evaluate(run: Run, state: TrainState, row: dict[str, Any]) -> Any:
    """Main process: score the EMA weights when due, keep the best epoch's model; record the row.

    Returns the epoch's sample grid (PIL image) when evaluated, else None.
    """
    cfg, epoch, grid = run.cfg, row["epoch"], None
    if run.evaluator is not None and (epoch % cfg.fid_every == 0 or epoch == cfg.epochs):
        scores, grid, eval_unet = run.evaluator.run(run.ema)
        value = scores[run.metric]
        row.update(scores)  # fid, kid, kid_std (or the offline names)
        if state.best is None or value < state.best["value"]:
            state.best = {
                "epoch": epoch,
                "metric": run.metric,
                "value": value,
                "run_id": state.run_id,
                "data_hash": run.data_hash,
                "num_train_images": len(run.data),
                **scores,  # kid, precision, recall, memorized_fraction, ... for best.json and the model card
            }
            save_model_dir(run.run_dir / "best", eval_unet, run.noise_sched, to_dict(cfg), best=state.best)
    state.history.append(row)
    return grid


def _log_epoch(run: Run, state: TrainState, row: dict[str, Any], *, grid: Any, checkpoint: Path | None) -> None:
    """Main process: log the epoch's metrics, sample grid and (when asked) checkpoint to MLflow."""
    assert run.tracker is not None
    kid = fid.kid_of(run.metric)
    keys = ("loss", "lr", "images_per_s", run.metric, kid, f"{kid}_std", *NOVELTY_SCORES)
    logged = {k: row[k] for k in keys if k in row}
    state.run_id = run.tracker.run_id or state.run_id  # a run opened late (store was down at the start)
    if grid is not None:
        run.tracker.log_grid(grid, row["epoch"])
        (run.run_dir / "grids").mkdir(parents=True, exist_ok=True)  # for dvc plots (metrics/grids at the end)
        grid.save(run.run_dir / "grids" / f"epoch_{row['epoch']:05d}.png")
    if run.metric in row and state.best is not None:
        logged[f"best_{run.metric}"], logged["best_epoch"] = state.best["value"], state.best["epoch"]
    run.tracker.log_metrics(logged, row["epoch"])
    if checkpoint is not None and run.cfg.log_checkpoints:
        run.tracker.log_artifacts(checkpoint, f"checkpoints/{checkpoint.name}")


def _finish(run: Run, state: TrainState) -> dict[str, Any]:
    """Main process: publish models/best, write the metrics files, close the MLflow run."""
    assert run.tracker is not None
    cfg, paths = run.cfg, run.paths
    best_dir = Path(paths.models) / "best"
    if state.best is None:  # no evaluation configured: the last epoch's EMA weights
        state.best = {"epoch": state.epoch, "metric": None, "value": None, "run_id": state.run_id}
        save_model_dir(
            run.run_dir / "best",
            unet_from_ema(run.ema, run.raw_unet.config),
            run.noise_sched,
            to_dict(cfg),
            best=state.best,
        )
    _publish(run.run_dir / "best", best_dir)
    grids = Path(paths.metrics) / "grids"
    if (run.run_dir / "grids").is_dir():
        _publish(run.run_dir / "grids", grids)
    else:  # no evaluation (fid_every: 0): an empty folder, so DVC still finds the declared output
        shutil.rmtree(grids, ignore_errors=True)
        grids.mkdir(parents=True)
    history, metric = state.history, run.metric
    summary = {
        "metric": metric,
        "best_epoch": state.best["epoch"],
        f"best_{metric}": state.best["value"],
        "epochs": state.epoch,
        "steps": state.step,
        "final_loss": history[-1]["loss"] if history else None,
        "images_per_s": round(sum(r["images_per_s"] for r in history) / max(1, len(history)), 2),
        "run_id": state.run_id,
        "run_key": run.key,
    }
    write_epoch_files(history, summary, paths.metrics, metric)
    shown = sorted((run.run_dir / "grids").glob("epoch_*.png"))
    if shown:  # the last grid at step 0 too: the step MLflow's image chart opens on
        from PIL import Image

        with Image.open(shown[-1]) as grid:
            run.tracker.log_grid(grid.convert("RGB"), 0)
    run.tracker.log_artifacts(best_dir, "best")
    run.tracker.log_model(best_dir, step=state.best["epoch"])
    run.tracker.end("FINISHED")
    return summary


def _publish(src: Path, dst: Path) -> None:
    """Replace ``dst`` by a copy of ``src`` (copied beside it, then swapped: never half-written)."""
    tmp, old = dst.with_name(f".tmp_{dst.name}"), dst.with_name(f".old_{dst.name}")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    shutil.copytree(src, tmp)
    if dst.exists():
        dst.rename(old)
    tmp.rename(dst)
    if old.exists():
        shutil.rmtree(old)
