"""Sampling from a trained diffusion UNet: ancestral DDPM and the fast DDIM / DPM-Solver++.

The model is a diffusers ``UNet2DModel``; the noise schedule is the ``DDPMScheduler``
config it was trained with. Each sampler is a diffusers scheduler built ``from_config`` of
that saved config, so betas, prediction type (epsilon / v) and clipping always match
training:

- ``ddpm``: ancestral sampling, Ho et al. 2020 eq. 11 (all ``num_train_timesteps`` steps
  by default, as the earlier projects sampled);
- ``ddim``: Song et al. 2021 eq. 12 with eta = 0 (deterministic), ``steps`` steps;
- ``dpm++``: DPM-Solver++(2M), Lu et al. 2022 alg. 2, ``steps`` steps.

Seeds are per image: image ``i`` of a run uses seed ``seed + i`` for its initial noise and
for every noise draw of the ancestral sampler (one CPU ``torch.Generator`` per image), so
the same seed gives the same image on any device and asking for more images never changes
the first ones. Batches are fixed chunks of the seed list and the last chunk is padded to a
full batch (the padding images are discarded), so every image is computed in a batch of
the same size whatever ``num_images`` is. (Batch size itself may change the last bit of a
CPU convolution, so ``batch_size`` is part of what fixes an image.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:  # heavy imports stay inside the functions that need them
    import torch
    from diffusers import UNet2DModel

Sampler = Literal["ddpm", "ddim", "dpm++"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm++")


@dataclass(frozen=True)
class SampleConfig:
    """params.yaml ``sample``: which sampler, how many images, from which seed.

    ``steps`` is the number of denoising steps; ``None`` means the full training schedule
    (``num_train_timesteps``, 1000 for the DDPM sampler as trained). ``timestep_spacing``
    is how the fast samplers pick their steps (``trailing`` starts at the last training
    step, which few-step samplers need; Lin et al. 2024, table 2).
    """

    seed: int = 0
    num_images: int = 1000
    sampler: Sampler = "dpm++"
    steps: int | None = 25
    timestep_spacing: Literal["leading", "linspace", "trailing"] = "trailing"
    batch_size: int = 64
    device: str = "auto"
    grid_images: int = 64

    def __post_init__(self) -> None:
        if self.num_images < 1:
            raise ValueError(f"sample.num_images must be >= 1, got {self.num_images}")
        if self.batch_size < 1:
            raise ValueError(f"sample.batch_size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sample.steps must be >= 1 or null (the full schedule), got {self.steps}")
        if self.seed < 0:
            raise ValueError(f"sample.seed must be >= 0, got {self.seed}")
        if self.grid_images < 1:  # data/samples_grid.png is a declared DVC output
            raise ValueError(f"sample.grid_images must be >= 1, got {self.grid_images}")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but no CUDA device is visible; use 'cpu' or 'auto'")
    return device


def make_scheduler(scheduler_config: dict[str, Any], sampler: str, steps: int | None,
                   timestep_spacing: str = "trailing") -> Any:
    """A diffusers scheduler for ``sampler`` built from the training DDPMScheduler config,
    with its timesteps set (``steps`` None = all ``num_train_timesteps``)."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    config = dict(scheduler_config)
    train_steps = int(config.get("num_train_timesteps", 1000))
    n = train_steps if steps is None else int(steps)
    if not 1 <= n <= train_steps:
        raise ValueError(f"sample.steps={steps} must be between 1 and num_train_timesteps={train_steps}")
    if sampler == "ddpm":
        scheduler = DDPMScheduler.from_config(config)
    elif sampler == "ddim":
        scheduler = DDIMScheduler.from_config(config, timestep_spacing=timestep_spacing)
    elif sampler == "dpm++":
        # pixel-space model trained with clipped x0: DPM-Solver++ needs the same clipping
        # (its "thresholding", Lu et al. 2022 sec. 5) or x0 predictions at t ~ T explode
        clip = bool(config.get("clip_sample", True))
        scheduler = DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing=timestep_spacing,
            thresholding=clip, sample_max_value=float(config.get("clip_sample_range", 1.0)))
    else:
        raise ValueError(f"sample.sampler={sampler!r} is not one of {list(SAMPLERS)}")
    scheduler.set_timesteps(n)
    return scheduler


def _generators(seeds: Sequence[int]) -> list[torch.Generator]:
    import torch

    return [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]


def _denoise(unet: UNet2DModel, scheduler: Any, seeds: Sequence[int], device: str) -> torch.Tensor:
    """Run one batch of the reverse process; returns x0 of shape (B, C, H, W) in [-1, 1]."""
    import torch
    from diffusers.utils.torch_utils import randn_tensor

    gens = _generators(seeds)
    size = unet.config.sample_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = (len(seeds), unet.config.in_channels, h, w)
    dtype = next(unet.parameters()).dtype
    # per-image noise: one CPU generator per image, so the device never changes the draw
    x = randn_tensor(shape, generator=gens if len(gens) > 1 else gens[0], device=torch.device(device), dtype=dtype)
    x = x * scheduler.init_noise_sigma
    step_kwargs: dict[str, Any] = {"generator": gens if len(gens) > 1 else gens[0]}
    if type(scheduler).__name__ == "DDIMScheduler":
        # eps re-derived from the clipped x0, so the step stays consistent with the clipping
        step_kwargs["use_clipped_model_output"] = True
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(x, t)
        out = unet(model_in, t).sample
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x.clamp(-1.0, 1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) float in [-1, 1] -> (B, H, W, 3) uint8 in [0, 255]."""
    import torch

    x = ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round()
    return x.to("cpu", dtype=torch.uint8).permute(0, 2, 3, 1).numpy()


def iter_batches(unet: UNet2DModel, scheduler_config: dict[str, Any], sampler: str, steps: int | None,
                 seeds: Sequence[int], batch_size: int, device: str = "cpu",
                 timestep_spacing: str = "trailing", progress: bool = True) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(offset, images)`` per batch: images (b, H, W, 3) uint8 for ``seeds[offset:offset+b]``.

    The last batch is padded with further seeds to ``batch_size`` (results discarded) so an
    image's batch never depends on how many images were asked for.
    """
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seeds = [int(s) for s in seeds]
    scheduler = make_scheduler(scheduler_config, sampler, steps, timestep_spacing)
    was_training = unet.training
    unet.eval()
    try:
        bar = tqdm(total=len(seeds), desc=f"sample {sampler} {len(scheduler.timesteps)} steps",
                   unit="img", disable=not progress)
        with torch.inference_mode(), bar:
            for offset in range(0, len(seeds), batch_size):
                chunk = seeds[offset:offset + batch_size]
                padded = chunk + [chunk[-1] + 1 + k for k in range(batch_size - len(chunk))]
                scheduler = make_scheduler(scheduler_config, sampler, steps, timestep_spacing)  # fresh solver state
                images = to_uint8(_denoise(unet, scheduler, padded, device))[: len(chunk)]
                bar.update(len(chunk))
                yield offset, images
    finally:
        unet.train(was_training)


def generate(unet: UNet2DModel, scheduler_config: dict[str, Any], sampler: str, steps: int | None,
             seeds: Sequence[int], batch_size: int = 64, device: str = "cpu",
             timestep_spacing: str = "trailing", progress: bool = True) -> np.ndarray:
    """Sample one image per seed: (N, H, W, 3) uint8. Stable API, also used for in-training FID.

    ``unet`` must already be on ``device``; ``scheduler_config`` is the training
    ``DDPMScheduler.config`` (a dict); ``steps`` None = the full training schedule.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("generate() needs at least one seed")
    parts = [images for _, images in iter_batches(unet, scheduler_config, sampler, steps, seeds, batch_size,
                                                   device, timestep_spacing, progress)]
    return np.concatenate(parts, axis=0)


def load_model(model_dir: str | Path, device: str = "cpu") -> tuple[UNet2DModel, dict[str, Any]]:
    """Load ``<model_dir>/unet`` (UNet2DModel, on ``device``) and the training DDPMScheduler config."""
    from facegen.model import load_model_dir

    unet, scheduler, _ = load_model_dir(model_dir)
    return unet.to(device), dict(scheduler.config)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) uint8 grid."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    n, h, w, _ = images.shape
    cols = nrow or max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y:y + h, x:x + w] = img
    return grid


def image_name(index: int) -> str:
    """File name of the image at 0-based ``index``: 00001.png, 00002.png, ..."""
    return f"{index + 1:05d}.png"


def sample_to_dir(cfg: SampleConfig, model_dir: str | Path, out_dir: str | Path,
                  grid_path: str | Path | None = None) -> dict[str, Any]:
    """Write ``cfg.num_images`` PNGs to ``out_dir`` (00001.png, ...) and an optional grid PNG.

    Resumable: ``out_dir/sample_config.json`` records the config and model; when it matches,
    images already on disk are kept and only the missing ones are drawn (per-image seeds make
    that exact). Otherwise old PNGs are removed first. Returns the run record.
    """
    from PIL import Image

    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    unet, sched_config = load_model(model_dir, device)
    record = {"config": _config_dict(cfg), "model": _model_fingerprint(Path(model_dir)),
              "scheduler": cfg.sampler, "device": device}
    record_path = out_dir / "sample_config.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    old = json.loads(record_path.read_text()) if record_path.is_file() else None
    if old is not None and old.get("model") == record["model"] and _same_images(old["config"], record["config"]):
        # redo whole batches that miss an image, so each image keeps its batch layout
        todo = []
        for start in range(0, cfg.num_images, cfg.batch_size):
            chunk = list(range(start, min(start + cfg.batch_size, cfg.num_images)))
            if any(not (out_dir / image_name(i)).is_file() for i in chunk):
                todo += chunk
    else:
        for old in out_dir.glob("*.png"):
            old.unlink()
        todo = list(range(cfg.num_images))
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for stale in out_dir.glob("*.png"):  # fewer images than last time
        if stale.stem.isdigit() and int(stale.stem) > cfg.num_images:
            stale.unlink()
    # todo is whole aligned batches (only the last may be short), so chunking it again by
    # batch_size reproduces each image's batch exactly
    for offset, images in iter_batches(unet, sched_config, cfg.sampler, cfg.steps, [cfg.seed + i for i in todo],
                                       cfg.batch_size, device, cfg.timestep_spacing):
        for k, img in enumerate(images):
            Image.fromarray(img).save(out_dir / image_name(todo[offset + k]))
    if grid_path is not None:
        n = min(cfg.grid_images, cfg.num_images)
        tiles = np.stack([np.asarray(Image.open(out_dir / image_name(i)).convert("RGB")) for i in range(n)])
        Path(grid_path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_grid(tiles)).save(grid_path)
    record["num_drawn"] = len(todo)
    return record


def _config_dict(cfg: SampleConfig) -> dict[str, Any]:
    from facegen.config import to_dict

    return to_dict(cfg)


def _same_images(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two configs draw the same image for the same index (count and grid may differ)."""
    keys = ("seed", "sampler", "steps", "timestep_spacing", "batch_size")
    return all(old.get(k) == new.get(k) for k in keys)


def _model_fingerprint(model_dir: Path) -> str:
    """Content hash of the saved weights and scheduler config, to know when old samples are stale."""
    import hashlib

    digest = hashlib.sha256()
    from facegen.model import SCHEDULER_DIR, UNET_DIR

    files = [p for d in (UNET_DIR, SCHEDULER_DIR) for p in (model_dir / d).rglob("*") if p.is_file()]
    for path in sorted(files):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
