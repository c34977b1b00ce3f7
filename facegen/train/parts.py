"""The parts one training holds (:class:`Run`), built once before the first epoch: the Accelerator,
the in-memory data, the prepared UNet, optimizer, LR and noise schedules and the EMA.

:func:`facegen.train.loop.train` calls :func:`make_accelerator`, then :func:`build_run` and
:func:`announce`; the epoch loop lives in :mod:`facegen.train.loop`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.diffusion.noise import make_noise_scheduler
from facegen.fid import features as fid
from facegen.train import condition as conditioning
from facegen.train.config import TrainConfig, TrainPaths, checkpoint_root, run_key
from facegen.train.data import epoch_batches, load_split, pick_data_device, to_tensor
from facegen.train.ema import make_ema
from facegen.train.evaluate import Evaluator
from facegen.train.tracking import Tracker


@dataclass
class Run:
    """Everything one training holds, built once by :func:`build_run` (tracker/evaluator: main process)."""

    cfg: TrainConfig
    paths: TrainPaths
    accelerator: Any
    key: str
    run_dir: Path
    data_hash: str
    data: Any  # uint8 (N, 3, H, W) on the data device
    unet: Any  # prepared by Accelerate (DDP-wrapped when distributed)
    forward: Any  # unet, or torch.compile(unet)
    raw_unet: Any
    optimizer: Any
    lr_sched: Any
    ema: Any  # diffusers EMAModel on the main process, else None
    noise_sched: Any
    steps_per_epoch: int
    metric: str
    cond: Any = None  # facegen.train.condition.Conditioning, None when unconditional
    tracker: Tracker | None = None
    evaluator: Evaluator | None = None
    bar: Any = None  # one tqdm bar over the whole run (main process, terminal only)
    fid_cfg: Any = None  # facegen.fid.score.FidConfig: params.yaml `fid` (pr_k, memorization keys)


def make_accelerator(cfg: TrainConfig) -> Any:
    """The Accelerator: ``train.precision`` unless `accelerate launch`/config set one; the process
    count checked against ``train.num_processes`` (a plain `python` start of a DDP run is refused)."""
    from accelerate import Accelerator

    launched = os.environ.get("ACCELERATE_MIXED_PRECISION")  # `accelerate launch` flags / `accelerate config`
    accelerator = Accelerator(mixed_precision=None if launched else cfg.precision, step_scheduler_with_optimizer=False)
    if launched and launched != cfg.precision:
        accelerator.print(
            f"precision {launched} from accelerate launch/config (train.precision {cfg.precision} ignored)"
        )
    if cfg.num_processes > 1 and accelerator.num_processes != cfg.num_processes:
        raise ValueError(
            f"train.num_processes = {cfg.num_processes} but {accelerator.num_processes} process(es) run: "
            "start the stage with `python stages/train.py` (it launches Accelerate) or `accelerate launch "
            f"--multi_gpu --num_processes {cfg.num_processes} stages/train.py` (ACCELERATE_USE_CPU=true on CPU)"
        )
    return accelerator


def announce(run: Run) -> None:
    """Say what really runs (an Accelerate launch that started fewer processes shows here)."""
    cfg, accelerator, world = run.cfg, run.accelerator, run.accelerator.num_processes
    accelerator.print(
        f"train: {world} process(es), device {accelerator.device}, precision {accelerator.mixed_precision}, "
        f"effective batch {cfg.batch_size * cfg.grad_accum * world} ({cfg.batch_size} x {cfg.grad_accum} "
        f"micro-batches x {world}), run key {run.key}, checkpoints {run.run_dir}",
        file=sys.stderr,
    )


def build_run(cfg: TrainConfig, paths: TrainPaths, accelerator: Any) -> Run:
    """Load the data, build and prepare the UNet, optimizer, LR and noise schedules and the EMA."""
    import torch
    from diffusers.optimization import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

    device, rank, world = accelerator.device, accelerator.process_index, accelerator.num_processes
    train_np = load_split(paths.faces, "train", paths.root, cfg.image_size)
    data_hash = fid.content_hash(train_np)
    key = run_key(cfg, data_hash, world)
    data = to_tensor(train_np, pick_data_device(train_np.nbytes, device, cfg.data_device))
    del train_np
    cond = conditioning.prepare(cfg, paths.faces, device)  # None: unconditional, as before

    unet = conditioning.build_unet(cfg, cond)
    if cfg.channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    noise_sched = make_noise_scheduler(
        cfg.schedule, cfg.num_train_timesteps, cfg.prediction, beta_start=cfg.beta_start, beta_end=cfg.beta_end
    )
    micro_per_epoch = len(epoch_batches(len(data), cfg.batch_size, epoch=0, seed=cfg.seed, rank=rank, world_size=world))
    steps_per_epoch = micro_per_epoch // cfg.grad_accum
    if steps_per_epoch < 1:
        raise ValueError(f"train.grad_accum = {cfg.grad_accum} exceeds the {micro_per_epoch} batches per epoch")
    optimizer = torch.optim.AdamW(
        unet.parameters(),
        lr=cfg.lr,
        betas=(cfg.adam_betas[0], cfg.adam_betas[1]),
        weight_decay=cfg.weight_decay,
        fused=device.type == "cuda",
    )
    if cfg.lr_schedule == "constant":
        lr_sched = get_constant_schedule_with_warmup(optimizer, cfg.warmup_steps)
    else:
        lr_sched = get_cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.epochs * steps_per_epoch)
    unet, optimizer, lr_sched = accelerator.prepare(unet, optimizer, lr_sched)
    raw_unet = accelerator.unwrap_model(unet)
    ema = make_ema(raw_unet.parameters(), cfg) if accelerator.is_main_process else None
    return Run(
        cfg=cfg,
        paths=paths,
        accelerator=accelerator,
        key=key,
        run_dir=Path(paths.checkpoints or checkpoint_root(paths.root)) / key,
        data_hash=data_hash,
        data=data,
        unet=unet,
        forward=torch.compile(unet) if cfg.compile else unet,
        raw_unet=raw_unet,
        optimizer=optimizer,
        lr_sched=lr_sched,
        ema=ema,
        noise_sched=noise_sched,
        steps_per_epoch=steps_per_epoch,
        metric=fid.metric_name(cfg.fid_extractor),
        cond=cond,
    )
