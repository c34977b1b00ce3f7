"""Tiny aligned-face datasets for the train tests: a faces.parquet + PNGs in a tmp folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def random_faces(n: int, size: int, seed: int) -> np.ndarray:
    """Smooth random colour blobs, uint8 (n, size, size, 3): cheap stand-ins for faces."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(n, 4, 4, 3)).astype(np.float32)
    return np.stack(
        [np.asarray(Image.fromarray(img.astype(np.uint8)).resize((size, size), Image.BICUBIC)) for img in low]
    )


def portrait_faces(faces_dir: Path, n: int, size: int) -> np.ndarray:
    """The first ``n`` real portraits of ../shared/faces, centre-cropped and resized to ``size``."""
    out = []
    for p in sorted((faces_dir / "portraits").glob("*.jpg"))[:n]:
        with Image.open(p) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            out.append(np.asarray(im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)))
    return np.stack(out)


def write_faceset(root: Path, train: np.ndarray, test: np.ndarray, rejected: int = 1) -> Path:
    """Write data/faces/<face_id>.png and data/faces.parquet (repo-relative paths) under ``root``.

    Adds ``rejected`` rows with status ``blurry`` (no split) that must never be loaded.
    """
    faces = root / "data" / "faces"
    faces.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, images in (("train", train), ("test", test)):
        for i, img in enumerate(images):
            face_id = f"{split}{i:04d}"
            Image.fromarray(img).save(faces / f"{face_id}.png")
            rows.append({"face_id": face_id, "path": f"data/faces/{face_id}.png", "status": "ok", "split": split})
    for i in range(rejected):
        rows.append({"face_id": f"zz{i:04d}", "path": f"data/faces/zz{i:04d}.png", "status": "blurry", "split": None})
    table = root / "data" / "faces.parquet"
    pd.DataFrame(rows).to_parquet(table, index=False)
    return table


# train.* of a tiny CPU run on these faces: channels (8, 16) at 32 px, no evaluation, a checkpoint per epoch
TINY_TRAIN: dict = dict(
    model="tiny",
    channels=(8, 16),
    image_size=32,
    batch_size=8,
    lr=2e-3,
    warmup_steps=2,
    precision="no",
    channels_last=False,
    fid_every=0,
    checkpoint_every=1,
    log_checkpoints=False,
    experiment="test",
)
