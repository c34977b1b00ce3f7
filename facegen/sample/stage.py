"""The sample stage: draw ``sample.num_images`` PNGs from ``models/best`` with per-image seeds.

Image ``i`` (0-based) is ``data/samples/{i+1:05d}.png`` drawn with seed ``sample.seed + i`` by
:mod:`facegen.diffusion.sampling`; the run is resumable (only missing or damaged images are
drawn) and records its config and model fingerprint in ``sample_config.json``. Every file is
written atomically (temp file + rename), so a kill or a full disk never leaves a partial PNG
under a real name; on resume each kept PNG is decoded and checked, and a bad one is redrawn. A conditional model
(docs/condition.md) draws every image with ``sample.condition`` at guidance scale
``sample.guidance``; ``samples.parquet`` beside the PNGs records each image's seed and the
requested condition (NaN: that attribute unconditioned).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from facegen.common.atomic import atomic_path, is_temp_name, write_json
from facegen.common.config import AT_LEAST_ONE, NON_NEGATIVE, validate
from facegen.common.device import resolve_device
from facegen.common.images import make_grid
from facegen.common.tables import Schema, write_parquet
from facegen.diffusion.sampling import Precision, Sampler, SampleSpec, iter_batches, load_model

SEED_LIMIT = 2**32  # per-image seeds must be valid numpy / torch seeds
DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


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
    condition: dict[str, float] = field(default_factory=dict)  # {attribute: value in its units}; {} = none
    guidance: float = 1.0  # classifier-free guidance scale (1 = the plain conditional model)
    precision: Precision = "no"  # bf16: the UNet under bfloat16 autocast (~1.9x faster on AVX-512 CPUs)

    def spec(self, device: str) -> SampleSpec:
        """The sampling spec these params describe, on ``device`` (resolved, not ``auto``)."""
        return SampleSpec(
            sampler=self.sampler,
            steps=self.steps,
            timestep_spacing=self.timestep_spacing,
            batch_size=self.batch_size,
            precision=self.precision,
            guidance=self.guidance,
            device=device,
        )

    def __post_init__(self) -> None:
        if not isinstance(self.condition, dict):
            raise ValueError(
                f"sample.condition must be a mapping {{attribute: value}} (or {{}}), got {self.condition!r}"
            )
        bad = {
            k: v
            for k, v in self.condition.items()
            if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
        }
        if bad:
            raise ValueError(f"sample.condition must map attribute names to finite numbers, got {bad}")
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ValueError(f"sample.device = {self.device!r} is not auto, cpu, mps, cuda or cuda:N")
        for key in ("seed", "num_images"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"sample.{key} must be an integer, got {value!r}")
        if self.num_images > SEED_LIMIT:
            raise ValueError(f"sample.num_images = {self.num_images} must be <= 2**32 (one seed per image)")
        if self.num_images >= 1 and self.seed >= 0 and self.seed + self.num_images > SEED_LIMIT:
            raise ValueError(
                f"sample.seed = {self.seed}: image seeds seed .. seed + num_images - 1 must stay below 2**32 "
                f"(numpy's and torch's seed range); choose sample.seed <= {SEED_LIMIT - self.num_images}"
            )
        if self.num_images < 1:
            raise ValueError(f"sample.num_images must be >= 1, got {self.num_images}")
        if self.batch_size < 1:
            raise ValueError(f"sample.batch_size must be >= 1, got {self.batch_size}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"sample.steps must be >= 1 or null (the full schedule), got {self.steps}")
        if self.seed < 0:
            raise ValueError(f"sample.seed must be >= 0, got {self.seed}")
        self.spec("cpu")  # sampler, precision, spacing, batch size, steps and guidance checked by SampleSpec
        if self.grid_images < 1:  # data/samples_grid.png is a declared DVC output
            raise ValueError(f"sample.grid_images must be >= 1, got {self.grid_images}")
        validate(
            self,
            "sample",
            {
                "seed": NON_NEGATIVE,
                "num_images": AT_LEAST_ONE,
                "steps": AT_LEAST_ONE,
                "batch_size": AT_LEAST_ONE,
                "grid_images": AT_LEAST_ONE,
            },
        )


def image_name(index: int) -> str:
    """File name of the image at 0-based ``index``: 00001.png, 00002.png, ..."""
    return f"{index + 1:05d}.png"


def is_good_image(path: Path, size: int | tuple[int, int]) -> bool:
    """Whether ``path`` is a complete RGB PNG of ``size`` (side, or (width, height)): CRCs and full decode."""
    from PIL import Image, UnidentifiedImageError

    want = (size, size) if isinstance(size, int) else tuple(size)
    try:
        with Image.open(path) as im:
            im.verify()  # chunk CRCs: catches bit flips PIL would otherwise decode silently
        with Image.open(path) as im:
            im.load()  # catches truncation
            return im.format == "PNG" and im.mode == "RGB" and im.size == want
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return False


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


class DiskFullError(OSError):
    """The disk filled while writing samples: the message names the folder and the space needed."""


def check_before_work(cfg: SampleConfig, unet: Any, sched_config: dict[str, Any], device: str) -> dict[str, float]:
    """Every check that needs the model, before any file is touched: the condition against the
    model, steps against its schedule, one batch against free memory. Returns the checked request."""
    from facegen.diffusion.conditional import check_request
    from facegen.diffusion.model import available_bytes, image_bytes
    from facegen.diffusion.sampling import make_scheduler

    request = check_request(unet.config, cfg.condition)
    make_scheduler(sched_config, cfg.sampler, cfg.steps, cfg.timestep_spacing)  # sample.steps named
    batch = min(cfg.batch_size, cfg.num_images)
    need, free = batch * image_bytes(unet.config), available_bytes(device)
    if need > free:
        fit = max(1, free // image_bytes(unet.config))
        raise ValueError(
            f"sample.batch_size = {cfg.batch_size}: a batch of {batch} needs ~{need / 2**30:.1f} GiB, "
            f"{free / 2**30:.1f} GiB free on {device}; choose sample.batch_size <= {fit}"
        )
    return request


def _plan(cfg: SampleConfig, out_dir: Path, size: Any, record: dict[str, Any]) -> list[int]:
    """The image indices to draw; removes what the new config makes stale (after every check)."""
    record_path = out_dir / "sample_config.json"
    out_dir.mkdir(parents=True, exist_ok=True)
    old = _read_record(record_path)
    if old is not None and old.get("model") == record["model"] and _same_images(old["config"], record["config"]):
        # redo whole batches that miss an image, so each image keeps its batch layout
        todo = []
        for start in range(0, cfg.num_images, cfg.batch_size):
            chunk = list(range(start, min(start + cfg.batch_size, cfg.num_images)))
            if any(not is_good_image(out_dir / image_name(i), size) for i in chunk):
                todo += chunk
    else:
        for png in out_dir.glob("*.png"):
            png.unlink()
        todo = list(range(cfg.num_images))
    write_json(record_path, record)
    for leftover in out_dir.iterdir():  # temp files of a killed run
        if is_temp_name(leftover.name):
            leftover.unlink()
    for stale in out_dir.glob("*.png"):  # fewer images than last time
        if stale.stem.isdigit() and int(stale.stem) > cfg.num_images:
            stale.unlink()
    return todo


def sample_to_dir(
    cfg: SampleConfig, model_dir: str | Path, out_dir: str | Path, grid_path: str | Path | None = None
) -> dict[str, Any]:
    """Write ``cfg.num_images`` PNGs to ``out_dir`` (00001.png, ...) and an optional grid PNG.

    Resumable: ``out_dir/sample_config.json`` records the config and model; when it matches,
    images already on disk that decode as complete PNGs of the model's size are kept and only
    the missing or damaged ones are drawn (per-image seeds make that exact). Otherwise old PNGs
    are removed first, after every check (:func:`check_before_work`). Returns the run record.
    A full disk is a :class:`DiskFullError` naming the folder and the space still needed.
    """
    import errno
    import shutil

    from PIL import Image

    from facegen.diffusion.conditional import names

    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    unet, sched_config = load_model(model_dir, device)
    request = check_before_work(cfg, unet, sched_config, device)
    record: dict[str, Any] = {
        "config": _config_dict(cfg),
        "model": _model_fingerprint(Path(model_dir)),
        "scheduler": cfg.sampler,
        "device": device,
    }
    todo = _plan(cfg, out_dir, unet.config.sample_size, record)
    # todo is whole aligned batches (only the last may be short), so chunking it again by
    # batch_size reproduces each image's batch exactly
    seeds, done = [cfg.seed + i for i in todo], 0
    try:
        for offset, images in iter_batches(unet, sched_config, cfg.spec(device), seeds, conditions=request or None):
            for k, img in enumerate(images):
                _save_png(img, out_dir / image_name(todo[offset + k]))
                done += 1
        write_requests(out_dir / "samples.parquet", cfg, names(unet.config))
        if grid_path is not None:
            n = min(cfg.grid_images, cfg.num_images)
            tiles = np.stack([np.asarray(Image.open(out_dir / image_name(i)).convert("RGB")) for i in range(n)])
            Path(grid_path).parent.mkdir(parents=True, exist_ok=True)
            _save_png(make_grid(tiles), Path(grid_path))
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        png = int(np.prod(images.shape[1:])) + 1024 if done < len(todo) else 0  # an uncompressed PNG's bound
        need = (len(todo) - done) * png + (1 << 20)
        raise DiskFullError(
            errno.ENOSPC,
            f"no space left on the device of {out_dir}: {shutil.disk_usage(out_dir).free / 2**20:.0f} MiB free, "
            f"~{need / 2**20:.0f} MiB more needed for {len(todo) - done} images; free space and rerun "
            "(the images written are kept)",
        ) from None
    record["num_drawn"] = len(todo)
    return record


def _read_record(path: Path) -> dict[str, Any] | None:
    """The previous run's record, or None when absent or unreadable (then every image is redrawn)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("config"), dict) else None


# samples.parquet: these columns, then one float64 column per attribute of the model
REQUESTS_SCHEMA: Schema = {"file": "string", "seed": "int64", "guidance": "float64"}


def write_requests(path: Path, cfg: SampleConfig, attributes: list[str]) -> None:
    """``samples.parquet``: one row per image: file, seed, guidance and the requested value of
    each attribute of the model (NaN: not requested)."""
    import pandas as pd

    rows = {
        "file": [image_name(i) for i in range(cfg.num_images)],
        "seed": [cfg.seed + i for i in range(cfg.num_images)],
        "guidance": float(cfg.guidance),
    }
    table = pd.DataFrame(rows)
    for name in attributes:
        table[name] = float(cfg.condition.get(name, float("nan")))
    write_parquet(table, {**REQUESTS_SCHEMA, **dict.fromkeys(attributes, "float64")}, path)


def _config_dict(cfg: SampleConfig) -> dict[str, Any]:
    from facegen.common.config import to_dict

    return to_dict(cfg)


def _same_images(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether two configs draw the same image for the same index (count and grid may differ)."""
    keys = ("seed", "sampler", "steps", "timestep_spacing", "batch_size")
    added = {"condition": {}, "guidance": 1.0}  # keys newer than some records: their defaults
    return all(old.get(k) == new.get(k) for k in keys) and all(old.get(k, v) == new.get(k, v) for k, v in added.items())


def _model_fingerprint(model_dir: Path) -> str:
    """Content hash of the saved weights and scheduler config, to know when old samples are stale."""
    import hashlib

    digest = hashlib.sha256()
    from facegen.diffusion.model import SCHEDULER_DIR, UNET_DIR

    files = [p for d in (UNET_DIR, SCHEDULER_DIR) for p in (model_dir / d).rglob("*") if p.is_file()]
    for path in sorted(files):
        digest.update(path.relative_to(model_dir).as_posix().encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
