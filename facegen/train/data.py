"""The aligned faces of one split, held in memory as one uint8 tensor, with augmentations.

The aligned set is small (100k x 64 x 64 x 3 uint8 = 1.2 GB), so it is decoded once and kept
in memory (on the accelerator when it fits) instead of decoding PNGs every step. Batches are
index lists drawn from a seeded permutation per epoch and sharded across processes, so the
order depends only on (seed, epoch, rank, world size): a resumed run sees the same batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facegen.common.images import load_images

if TYPE_CHECKING:  # pragma: no cover
    import torch


def face_paths(faces_parquet: str | Path, split: str, root: str | Path = ".") -> list[Path]:
    """Paths of the accepted faces (status ``ok``) of ``split``, in face_id order.

    ``path`` in faces.parquet is repo-relative; ``root`` is the repository root.
    """
    import pandas as pd

    table = pd.read_parquet(faces_parquet, columns=["face_id", "path", "status", "split"])
    rows = table[(table["status"] == "ok") & (table["split"] == split)].sort_values("face_id")
    if rows.empty:
        splits = sorted(table.loc[table["status"] == "ok", "split"].dropna().unique())
        raise ValueError(f"{faces_parquet}: no accepted faces in split {split!r} (accepted splits: {splits})")
    return [Path(root) / p for p in rows["path"]]


def load_split(
    faces_parquet: str | Path, split: str, root: str | Path = ".", image_size: int | None = None
) -> np.ndarray:
    """Decode the accepted faces of ``split`` into uint8 (N, H, W, 3).

    Faces are resized (PIL bicubic) when ``image_size`` differs from the stored size.
    """
    from tqdm import tqdm

    from facegen.common.progress import bar_disable

    paths = face_paths(faces_parquet, split, root)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} face image(s) listed in {faces_parquet} are missing, e.g. {missing[0]}"
        )
    if image_size is None:
        return load_images(tqdm(paths, desc=f"load {split} faces", leave=False, disable=bar_disable()))
    from PIL import Image

    out = np.empty((len(paths), image_size, image_size, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"load {split} faces", leave=False, disable=bar_disable())):
        with Image.open(p) as src:
            im = src.convert("RGB")
            if im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BICUBIC)
            out[i] = np.asarray(im)
    return out


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 (N, H, W, 3) numpy -> uint8 (N, 3, H, W) tensor on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)


def pick_data_device(nbytes: int, device: torch.device, mode: str, max_fraction: float = 0.25) -> torch.device:
    """Where to keep the dataset: ``cpu``, ``device``, or ``auto`` (the accelerator when the data
    takes at most ``max_fraction`` of its free memory)."""
    import torch

    if mode == "cpu":
        return torch.device("cpu")
    if mode == "device":
        return device
    if mode != "auto":
        raise ValueError(f"train.data_device = {mode!r}: choose 'auto', 'cpu' or 'device'")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return device if nbytes <= max_fraction * free else torch.device("cpu")
    return device  # CPU: the data already lives there


def epoch_batches(
    n: int, batch_size: int, *, epoch: int, seed: int, rank: int = 0, world_size: int = 1
) -> list[torch.Tensor]:
    """This process's batches (index tensors) for one epoch.

    One permutation per (seed, epoch), split into ``world_size`` equal shards; each shard is
    cut into full batches (the remainder is dropped so every process runs the same steps).
    """
    import torch

    per_rank = n // world_size
    if per_rank < batch_size:
        raise ValueError(
            f"train.batch_size = {batch_size} is larger than the {per_rank} training faces per process "
            f"({n} faces, {world_size} process(es)); lower train.batch_size"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    shard = perm[rank * per_rank : (rank + 1) * per_rank]
    steps = per_rank // batch_size
    return [shard[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def augment(
    images: torch.Tensor,
    generator: torch.Generator,
    *,
    hflip: bool = True,
    rotate_deg: float = 0.0,
    color_jitter: float = 0.0,
) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 (B, 3, H, W) in [-1, 1], randomly augmented on its device.

    hflip: mirror half the images. rotate_deg: rotate by U(-r, r) degrees (reflection padding).
    color_jitter: brightness shift U(-j, j) and contrast scale 1 + U(-j, j) per image.
    """
    import math

    import torch
    import torch.nn.functional as F

    x = images.float() / 127.5 - 1.0
    b, dev = x.shape[0], x.device

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(b, generator=generator, device=dev) * 2 - 1) * scale

    if hflip:
        flip = torch.rand(b, generator=generator, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if rotate_deg > 0:
        angle = uniform(rotate_deg * math.pi / 180)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if color_jitter > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (1 + uniform(color_jitter))[:, None, None, None] + mean
        x = x + uniform(color_jitter)[:, None, None, None]
    return x.clamp(-1.0, 1.0)
