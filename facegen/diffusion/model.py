"""The denoising UNet (diffusers ``UNet2DModel``) presets and the ``models/best/`` format.

Presets
- ``tiny``: channels (16, 32), one layer per block, no attention; CPU demos and tests.
- ``faces32``: channels (32, 64, 128), one layer per block, no attention (2.5M parameters):
  the CPU recipe at 32 px; its FID per CPU-minute beat ``tiny`` (docs/quality.md).
- ``base``: channels (64, 128, 192, 256), self-attention at the two lowest resolutions.
- ``ddpm64``: the earlier course project's widths 128-256-384-512 with self-attention at
  32, 16 and 8 px of a 64 px input (and in the 8 px bottleneck), two layers per block.

``models/best/`` (read by the sample and fid stages) is a diffusers pipeline folder shipping its
code: ``DiffusionPipeline.from_pretrained("models/best", trust_remote_code=True)`` loads it and
samples as the sample stage's defaults do (DPM-Solver++ 2M, trailing timesteps; pass ``num_inference_steps=25``)::

    models/best/model_index.json    FacegenPipeline (pipeline_facegen.py): unet + scheduler
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
import math
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


def unet_config(
    preset: str,
    image_size: int,
    channels: tuple[int, ...] | None = None,
    *,
    layers_per_block: int = 0,
    dropout: float = 0.0,
) -> dict[str, Any]:
    """The ``UNet2DModel`` keyword arguments of a preset at ``image_size`` px.

    ``channels`` overrides the preset's ``block_out_channels`` (same number of levels),
    e.g. (8, 16) for the smallest test model; ``layers_per_block`` (0: the preset's) sets the
    residual blocks per level and ``dropout`` the residual blocks' dropout.
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
    if layers_per_block:
        cfg["layers_per_block"] = layers_per_block
    if dropout:
        cfg["dropout"] = dropout
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
    *,
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


class ModelFileError(ValueError):
    """A ``models/best``-layout folder that cannot be loaded: the message names the file and the fix."""


CONDITION_KEYS = ("condition_names", "condition_mean", "condition_std", "condition_min", "condition_max")
# bytes one image keeps alive while the UNet runs, per full-resolution pixel and channel of its first
# block (fp32, ~16 activations of that size alive at once): an estimate for refusing absurd sizes
ACTIVATION_BYTES_PER_PIXEL_CHANNEL = 64


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; a missing, unreadable or non-object file is a ModelFileError naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(f"{path} is missing (rerun `dvc repro train` to rewrite the model folder)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path} is not valid JSON ({err}); restore it or rerun `dvc repro train`") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path} holds {type(data).__name__}, not a JSON object; restore it")
    return data


def image_bytes(config: Any) -> int:
    """Estimated memory one image needs while sampling a UNet of ``config`` (see the constant)."""
    size = config["sample_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return int(h * w * int(config["block_out_channels"][0]) * ACTIVATION_BYTES_PER_PIXEL_CHANNEL)


def available_bytes(device: str = "cpu") -> int:
    """Free memory where sampling runs: the GPU's free memory for ``cuda*``, else available RAM."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_unet_config(config: dict[str, Any], path: Path, device: str = "cpu") -> None:
    """Name a UNet config that cannot be sampled: sample_size not a positive size or too large for
    one image in memory, condition statistics missing or inconsistent."""
    size = config.get("sample_size")
    sizes = [size] if isinstance(size, int) else list(size) if isinstance(size, (list, tuple)) else []
    if not sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in sizes):
        raise ModelFileError(f"{path}: sample_size = {size!r} must be a positive integer (or [h, w])")
    need, free = image_bytes(config), available_bytes(device)
    if need > free:
        raise ModelFileError(
            f"{path}: sample_size = {size} needs ~{need / 2**30:.1f} GiB per image, {free / 2**30:.1f} GiB "
            "available: the file is damaged or not this pipeline's; restore it or rerun `dvc repro train`"
        )
    if "condition_names" not in config:
        return
    missing = [k for k in (*CONDITION_KEYS, "condition_margin") if config.get(k) is None]
    if missing:
        raise ModelFileError(f"{path}: a conditional model without {', '.join(missing)}; restore the file")
    lengths = {k: len(config[k]) for k in CONDITION_KEYS if isinstance(config[k], list)}
    if len(lengths) != len(CONDITION_KEYS) or len(set(lengths.values())) != 1 or not lengths["condition_names"]:
        raise ModelFileError(f"{path}: condition statistics must be lists of one value per name, got {lengths}")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in config["condition_std"]):
        raise ModelFileError(f"{path}: condition_std = {config['condition_std']} must be finite and > 0")


def load_unet(unet_dir: Path, device: str = "cpu") -> Any:
    """The UNet of ``unet_dir`` (config.json + diffusion_pytorch_model.safetensors), every check named:
    bad JSON, an unsamplable config, a missing, unexpected or mis-shaped tensor (with its file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from facegen.diffusion.conditional import unet_class

    config = read_json(unet_dir / "config.json")
    check_unet_config(config, unet_dir / "config.json", device)
    weights = unet_dir / "diffusion_pytorch_model.safetensors"
    try:
        unet = unet_class(config).from_config(config)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{unet_dir / 'config.json'}: not a UNet config this pipeline writes ({err})") from None
    try:
        state = load_file(weights)
    except (OSError, SafetensorError) as err:
        raise ModelFileError(f"{weights}: cannot read the weights ({err}); restore it") from None
    own = unet.state_dict()
    for name in sorted(set(own) | set(state)):
        if name not in state:
            raise ModelFileError(f"{weights}: tensor {name} is missing; restore the file")
        if name not in own:
            raise ModelFileError(f"{weights}: unexpected tensor {name} (not in {unet_dir / 'config.json'})")
        if tuple(state[name].shape) != tuple(own[name].shape):
            raise ModelFileError(
                f"{weights}: tensor {name} has shape {tuple(state[name].shape)}, "
                f"{unet_dir / 'config.json'} needs {tuple(own[name].shape)}"
            )
    unet.load_state_dict(state)
    return unet.eval()


def load_model_dir(model_dir: str | Path, device: str = "cpu") -> tuple[UNet2DModel, DDPMScheduler, dict[str, Any]]:
    """Load ``(unet, noise_scheduler, train_config)`` from a ``models/best/`` folder: THE checked
    loader (sample and control stages, studio, pyfunc). Every problem is a ModelFileError naming
    its file (:func:`load_unet`, :func:`read_json`; ``best.json`` too when present); ``device``
    sizes the memory check (the UNet is returned on the CPU)."""
    root = Path(model_dir)
    if not (root / UNET_DIR).is_dir():
        raise FileNotFoundError(
            f"no trained model at {root}: expected {root / UNET_DIR}/ (run `dvc repro train` first)"
        )
    unet = load_unet(root / UNET_DIR, device)
    scheduler, config = load_schedule_and_config(root)
    return unet, scheduler, config


def load_schedule_and_config(model_dir: str | Path) -> tuple[DDPMScheduler, dict[str, Any]]:
    """The training noise schedule and train config of a ``models/best/`` folder, each file checked
    (its UNet aside: an epoch checkpoint's EMA weights go into that folder's architecture, :func:`unet_from_ema`)."""
    from diffusers import DDPMScheduler

    root = Path(model_dir)
    noise_dir = root / NOISE_SCHEDULER_DIR  # older folders kept the training schedule in scheduler/
    noise_dir = noise_dir if noise_dir.is_dir() else root / SCHEDULER_DIR
    noise_file = noise_dir / "scheduler_config.json"
    noise_config = read_json(noise_file)
    try:
        scheduler = DDPMScheduler.from_config(noise_config)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{noise_file}: not a DDPMScheduler config ({err})") from None
    config = read_json(root / TRAIN_CONFIG_FILE) if (root / TRAIN_CONFIG_FILE).is_file() else {}
    if (root / BEST_FILE).is_file():
        read_json(root / BEST_FILE)
    return scheduler, config
