"""The denoising UNet (diffusers ``UNet2DModel``) presets and the ``models/best/`` format.

Presets
- ``tiny``: channels (16, 32), one layer per block, no attention; CPU demos and tests.
- ``faces32``: channels (32, 64, 128), one layer per block, no attention (2.5M parameters):
  the CPU recipe at 32 px; its FID per CPU-minute beat ``tiny`` (docs/quality.md).
- ``base``: channels (64, 128, 192, 256), self-attention at the two lowest resolutions.
- ``ddpm64``: the earlier course project's widths 128-256-384-512 with self-attention at
  32, 16 and 8 px of a 64 px input (and in the 8 px bottleneck), two layers per block.

``models/best/`` (read by the sample and fid stages) is a diffusers ``DDPMPipeline`` folder:
``DiffusionPipeline.from_pretrained("models/best")`` loads it and samples as the sample stage's
defaults do (DPM-Solver++ 2M, trailing timesteps; pass ``num_inference_steps=25``)::

    models/best/model_index.json    DDPMPipeline: unet + scheduler
    models/best/unet/               UNet2DModel.save_pretrained (EMA weights of the best epoch)
    models/best/scheduler/          the sampling scheduler (DPMSolverMultistepScheduler config)
    models/best/noise_scheduler/    DDPMScheduler.save_pretrained (the training noise schedule)
    models/best/train_config.json   the resolved ``train`` config of the run
    models/best/best.json           epoch, metric name and value, MLflow run id, data hash
    models/best/README.md           model card (scores, data hash, params; see diffusion/pipeline.py)

torch and diffusers are imported inside the functions (no heavy work at import).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegen.common.atomic import write_json

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import DDPMScheduler, UNet2DModel

_ATTN_DOWN, _DOWN = "AttnDownBlock2D", "DownBlock2D"
_ATTN_UP, _UP = "AttnUpBlock2D", "UpBlock2D"

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "block_out_channels": (16, 32),
        "layers_per_block": 1,
        "down_block_types": (_DOWN, _DOWN),
        "up_block_types": (_UP, _UP),
        "norm_num_groups": 8,
        "add_attention": False,
    },
    "faces32": {
        "block_out_channels": (32, 64, 128),
        "layers_per_block": 1,
        "down_block_types": (_DOWN, _DOWN, _DOWN),
        "up_block_types": (_UP, _UP, _UP),
        "norm_num_groups": 8,
        "add_attention": False,
    },
    "base": {
        "block_out_channels": (64, 128, 192, 256),
        "layers_per_block": 2,
        "down_block_types": (_DOWN, _DOWN, _ATTN_DOWN, _ATTN_DOWN),
        "up_block_types": (_ATTN_UP, _ATTN_UP, _UP, _UP),
        "norm_num_groups": 32,
        "attention_head_dim": 64,
    },
    "ddpm64": {
        "block_out_channels": (128, 256, 384, 512),
        "layers_per_block": 2,
        "down_block_types": (_DOWN, _ATTN_DOWN, _ATTN_DOWN, _ATTN_DOWN),
        "up_block_types": (_ATTN_UP, _ATTN_UP, _ATTN_UP, _UP),
        "norm_num_groups": 32,
        "attention_head_dim": 64,
    },
}

UNET_DIR = "unet"
SCHEDULER_DIR = "scheduler"
NOISE_SCHEDULER_DIR = "noise_scheduler"
TRAIN_CONFIG_FILE = "train_config.json"
BEST_FILE = "best.json"


def unet_config(preset: str, image_size: int, channels: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The ``UNet2DModel`` keyword arguments of a preset at ``image_size`` px.

    ``channels`` overrides the preset's ``block_out_channels`` (same number of levels),
    e.g. (8, 16) for the smallest test model.
    """
    if preset not in PRESETS:
        raise ValueError(f"train.model = {preset!r} is not a known preset; choose one of {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset])
    if channels:
        if len(channels) != len(cfg["block_out_channels"]):
            raise ValueError(
                f"train.channels = {list(channels)} must have {len(cfg['block_out_channels'])} entries "
                f"for preset {preset!r} (or be empty to keep {list(cfg['block_out_channels'])})"
            )
        groups = cfg["norm_num_groups"]
        if any(c % groups for c in channels):
            raise ValueError(
                f"train.channels = {list(channels)}: each must be a multiple of {groups} (GroupNorm groups)"
            )
        cfg["block_out_channels"] = tuple(channels)
    levels = len(cfg["block_out_channels"])
    if image_size % (2 ** (levels - 1)):
        raise ValueError(
            f"train.image_size = {image_size} must be divisible by {2 ** (levels - 1)} for preset {preset!r}"
        )
    cfg.update(sample_size=image_size, in_channels=3, out_channels=3)
    return cfg


def build_unet(preset: str, image_size: int, channels: tuple[int, ...] | None = None) -> UNet2DModel:
    """A freshly initialised UNet: input and output (B, 3, image_size, image_size)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**unet_config(preset, image_size, channels))


def count_parameters(model: Any) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unet_from_ema(ema: Any, unet_config: Any) -> UNet2DModel:
    """A fresh UNet built from ``unet_config`` holding the EMA weights of ``ema`` (a diffusers
    ``EMAModel``): what evaluation scores and ``models/best/`` saves."""
    from facegen.diffusion.conditional import unet_class

    unet = unet_class(unet_config).from_config(unet_config)  # a conditioned UNet stays conditioned
    ema.copy_to(unet.parameters())
    return unet


def save_model_dir(
    out_dir: str | Path,
    unet: UNet2DModel,
    scheduler: DDPMScheduler,
    train_config: dict[str, Any],
    best: dict[str, Any] | None = None,
) -> Path:
    """Write the ``models/best/`` layout (see module docstring) into ``out_dir``.

    ``best`` (epoch, metric, value, run_id, and optionally data_hash, kid, ...) feeds best.json
    and the model card.
    """
    from facegen.diffusion.pipeline import write_pipeline_files

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    unet.save_pretrained(out / UNET_DIR)
    scheduler.save_pretrained(out / NOISE_SCHEDULER_DIR)
    write_json(out / TRAIN_CONFIG_FILE, train_config)
    if best is not None:
        write_json(out / BEST_FILE, best)
    write_pipeline_files(out, dict(scheduler.config), train_config, best or {})
    return out


def load_model_dir(model_dir: str | Path) -> tuple[UNet2DModel, DDPMScheduler, dict[str, Any]]:
    """Load ``(unet, noise_scheduler, train_config)`` from a ``models/best/`` folder."""

    from facegen.diffusion.conditional import unet_class

    root = Path(model_dir)
    if not (root / UNET_DIR).is_dir():
        raise FileNotFoundError(
            f"no trained model at {root}: expected {root / UNET_DIR}/ (run `dvc repro train` first)"
        )
    unet_dir = root / UNET_DIR
    unet = unet_class(json.loads((unet_dir / "config.json").read_text(encoding="utf-8"))).from_pretrained(unet_dir)
    scheduler, config = load_schedule_and_config(root)
    return unet, scheduler, config


def load_schedule_and_config(model_dir: str | Path) -> tuple[DDPMScheduler, dict[str, Any]]:
    """The training noise schedule and train config of a ``models/best/`` folder (its UNet aside:
    an epoch checkpoint's EMA weights go into that folder's architecture, :func:`unet_from_ema`)."""
    from diffusers import DDPMScheduler

    root = Path(model_dir)
    noise_dir = root / NOISE_SCHEDULER_DIR  # older folders kept the training schedule in scheduler/
    scheduler = DDPMScheduler.from_pretrained(noise_dir if noise_dir.is_dir() else root / SCHEDULER_DIR)
    config_path = root / TRAIN_CONFIG_FILE
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    return scheduler, config
