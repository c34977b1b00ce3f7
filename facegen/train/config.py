"""The train stage's config (params.yaml ``train``), its paths, and the checkpoint folder key.

Defaults equal params.yaml (tests/common/test_config.py checks it); choices are ``Literal``
and numbers carry ranges, so a bad value fails when the config is built, before a run opens.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from facegen.common.config import AT_LEAST_ONE, FRACTION, NON_NEGATIVE, POSITIVE, Range, to_dict, validate
from facegen.diffusion.noise import LossKind, Prediction, Schedule
from facegen.train.ema import MAX_SIGMA_REL

Preset = Literal["tiny", "faces32", "base", "ddpm64"]  # facegen.diffusion.model.PRESETS (a test checks they agree)
Extractor = Literal["inception", "offline"]  # facegen.fid.features.EXTRACTORS (a test checks they agree)
LrSchedule = Literal["cosine", "constant"]  # after the linear warmup (diffusers.optimization)

# keys that do NOT change the trained weights (logging, evaluation, retention, resume, data placement):
# left out of the run key, so changing one resumes a run instead of starting a new one
OPERATIONAL_KEYS = frozenset(
    {
        "resume",
        "experiment",
        "log_checkpoints",
        "keep_checkpoints",
        "checkpoint_every",
        "grid_size",
        "fid_every",
        "fid_num_samples",
        "fid_batch_size",
        "kid_subsets",
        "kid_subset_size",
        "eval_steps",
        "data_device",
    }
)

MAX_SEED = 2**32 - 1  # numpy's RandomState (and the batch order's seeding) takes seeds below 2**32
MAX_IMAGE_SIZE = 1024  # a 64-px face model at 1024 px already needs tens of GiB of activations
MAX_TIMESTEPS = 100_000  # the noise schedule holds a few float tensors of this length (DDPM: 1000)

_RANGES = {
    "num_processes": AT_LEAST_ONE,
    "seed": Range(0, MAX_SEED),
    "channels": AT_LEAST_ONE,
    "image_size": Range(8, MAX_IMAGE_SIZE),
    "epochs": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "grad_accum": AT_LEAST_ONE,
    "lr": Range(0, 1, lo_open=True),
    "adam_betas": Range(0, 1, hi_open=True),
    "dropout": Range(0, 1, hi_open=True),
    "layers_per_block": NON_NEGATIVE,
    "weight_decay": Range(0, 1e3),  # finite: AdamW scales the weights by 1 - lr x weight_decay each step
    "warmup_steps": NON_NEGATIVE,
    "clip_grad": NON_NEGATIVE,
    "num_train_timesteps": Range(2, MAX_TIMESTEPS),
    "beta_start": Range(0, 1, lo_open=True, hi_open=True),
    "beta_end": Range(0, 1, lo_open=True, hi_open=True),
    "l1_weight": FRACTION,
    "min_snr_gamma": NON_NEGATIVE,
    "ema_decay": FRACTION,
    "ema_start_step": NON_NEGATIVE,
    "ema_power": POSITIVE,
    "ema_sigma_rel": Range(0, MAX_SIGMA_REL, hi_open=True),
    "rotate_deg": Range(0, 180),
    "color_jitter": FRACTION,
    "checkpoint_every": AT_LEAST_ONE,
    "keep_checkpoints": AT_LEAST_ONE,
    "fid_every": NON_NEGATIVE,
    "fid_num_samples": Range(2),
    "fid_batch_size": AT_LEAST_ONE,
    "eval_steps": AT_LEAST_ONE,
    "grid_size": AT_LEAST_ONE,
    "condition_dropout": FRACTION,
    "condition_margin": Range(0, 1e3),  # finite: a fraction of the training range (0.25 = a quarter)
    "kid_subsets": AT_LEAST_ONE,
    "kid_subset_size": Range(2),
}


@dataclass(frozen=True)
class TrainConfig:
    """params.yaml ``train`` (see docs/train.md for each key)."""

    seed: int = 0
    model: Preset = "ddpm64"
    channels: tuple[int, ...] = ()
    layers_per_block: int = 0  # residual blocks per UNet level; 0 = the preset's
    dropout: float = 0.0  # dropout in the UNet's residual blocks (EDM: 0.13 on CIFAR-10)
    image_size: int = 64
    epochs: int = 160
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    lr_schedule: LrSchedule = "cosine"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    warmup_steps: int = 100
    clip_grad: float = 1.0
    precision: Literal["no", "bf16", "fp16"] = "bf16"
    schedule: Schedule = "linear"
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction: Prediction = "epsilon"
    loss: LossKind = "mse"
    l1_weight: float = 0.25
    min_snr_gamma: float = 0.0
    ema_decay: float = 0.998
    ema_start_step: int = 0
    ema_warmup: bool = False
    ema_power: float = 0.6667
    ema_sigma_rel: float = 0.0
    hflip: bool = True
    rotate_deg: float = 0.0
    color_jitter: float = 0.0
    data_device: Literal["auto", "cpu", "device"] = "auto"
    channels_last: bool = True
    compile: bool = False
    checkpoint_every: int = 5
    keep_checkpoints: int = 2
    log_checkpoints: bool = True
    fid_every: int = 5
    fid_num_samples: int = 1000
    fid_extractor: Extractor = "inception"
    fid_batch_size: int = 100
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    eval_steps: int = 25
    grid_size: int = 16
    experiment: str = "facegen"
    resume: str = "auto"
    num_processes: int = 1
    condition: tuple[str, ...] = ()  # faces.parquet attribute columns (facegen.train.condition); () = unconditional
    condition_dropout: float = 0.1
    condition_margin: float = 0.25

    def __post_init__(self) -> None:
        validate(self, "train", _RANGES)
        if self.beta_start >= self.beta_end:
            raise ValueError(
                f"train.beta_start = {self.beta_start} must be below train.beta_end = {self.beta_end} "
                "(noise grows along the schedule; the DDPM paper uses 1e-4 .. 0.02)"
            )
        if len(self.adam_betas) != 2:
            raise ValueError(f"train.adam_betas = {list(self.adam_betas)} must be two numbers, e.g. [0.9, 0.999]")
        if not self.experiment.strip():
            raise ValueError("train.experiment is empty: name the MLflow experiment (e.g. facegen)")


# keys added after checkpoints existed: at their default they are left out of the run key, so
# those runs keep their key and resume
LATER_KEYS = frozenset({"layers_per_block", "dropout", "lr_schedule", "adam_betas"})
_LATER_DEFAULTS = {k: v for k, v in to_dict(TrainConfig()).items() if k in LATER_KEYS}

CHECKPOINTS_ENV = "FACEGEN_CHECKPOINTS"


def checkpoint_root(repo: str | Path) -> Path:
    """Where checkpoints live, the one place that says it: ``$FACEGEN_CHECKPOINTS``, else
    ``<repo>/cache/checkpoints`` (git-ignored and no DVC output, so no DVC command deletes them;
    ``<repo>`` is the real repository inside ``dvc exp run --temp/--queue``). Each run writes
    ``<root>/<run_key>/epoch_NNNNN/`` (:func:`run_key`)."""
    from facegen.train.mlflow_store import repo_root

    return Path(os.environ.get(CHECKPOINTS_ENV) or repo_root(repo) / "cache" / "checkpoints")


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
    checkpoints: Path | None = None  # None: checkpoint_root(root)


def run_key(cfg: TrainConfig, data_hash: str, world_size: int = 1) -> str:
    """Checkpoint folder name: hash of the settings that change the trained weights, and of the data.

    Operational keys (:data:`OPERATIONAL_KEYS`: logging, evaluation cadence, retention, resume)
    are left out, so changing one resumes the run instead of silently restarting it. The number
    of processes is in (it sets the effective batch, ``batch_size x grad_accum x world_size``, and
    the batch order), so a run never resumes a checkpoint made with another world size; one
    process hashes as before it was added, so earlier single-process checkpoints still resume.
    """
    from facegen.train.condition import key_settings

    settings = key_settings({k: v for k, v in to_dict(cfg).items() if k not in OPERATIONAL_KEYS})
    settings = {k: v for k, v in settings.items() if k not in LATER_KEYS or v != _LATER_DEFAULTS[k]}
    if world_size != 1:
        settings = {**settings, "world_size": world_size}
    return hashlib.sha256(json.dumps([settings, data_hash], sort_keys=True).encode()).hexdigest()[:12]


def dry_run(cfg: TrainConfig, paths: TrainPaths, world_size: int = 1) -> dict[str, Any]:
    """What a training with ``cfg`` would do, without doing it (``stages/train.py --dry-run``, as
    NVlabs/edm's ``--dry-run``): the resolved options, run key, checkpoint folder and whether a
    checkpoint there would be resumed, the data counts and the schedule. Reads the train split
    (the run key hashes its pixels); writes nothing."""
    from facegen.fid.features import content_hash
    from facegen.train.checkpoint import latest_checkpoint
    from facegen.train.data import epoch_batches, face_paths, load_split

    train_np = load_split(paths.faces, "train", paths.root, cfg.image_size)
    key = run_key(cfg, content_hash(train_np), world_size)
    run_dir = Path(paths.checkpoints or checkpoint_root(paths.root)) / key
    micro = len(epoch_batches(len(train_np), cfg.batch_size, epoch=0, seed=cfg.seed, world_size=world_size))
    latest = latest_checkpoint(run_dir) if cfg.resume == "auto" else None
    return {
        "train": to_dict(cfg),
        "run_key": key,
        "checkpoints": str(run_dir),
        "resume_from": str(latest) if latest else (cfg.resume if cfg.resume not in ("auto", "never") else None),
        "train_images": len(train_np),
        "test_images": len(face_paths(paths.faces, "test", paths.root)),
        "image_shape": list(train_np.shape[1:]),
        "world_size": world_size,
        "effective_batch": cfg.batch_size * cfg.grad_accum * world_size,
        "steps_per_epoch": micro // cfg.grad_accum,
        "total_steps": cfg.epochs * (micro // cfg.grad_accum),
    }
