"""metrics/nearest_pairs.png: the samples closest to a training face, each beside that face.

Samples are ranked by ``score`` = min(feature distance / its threshold, pixel distance / its
threshold) (facegen.fid.memorization): the top of the sheet is what a reviewer should look at
first. Each tile: sample | nearest training face, then the two distances with their thresholds,
red when flagged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from facegen.fid.memorization import Detector, Nearest


def nearest_pairs_image(
    samples: np.ndarray, names: Sequence[str], *, nearest: Nearest, detector: Detector, count: int = 16
) -> object:
    """A PIL image of the ``count`` lowest-score samples (uint8 (N, H, W, 3)), 4 pairs per row."""
    from PIL import Image, ImageDraw

    order = np.argsort(nearest.score, kind="stable")[:count]
    size = max(64, samples.shape[1] * max(1, 96 // samples.shape[1]))
    text_h, cols = 36, 4
    tile_w, tile_h = 2 * size + 8, size + text_h
    rows = max(1, -(-len(order) // cols))
    sheet = Image.new("RGB", (cols * tile_w, rows * tile_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for n, i in enumerate(order):
        x, y = (n % cols) * tile_w, (n // cols) * tile_h
        face = detector.train.images[nearest.index[i]]
        for k, img in enumerate((samples[i], face)):
            sheet.paste(Image.fromarray(img).resize((size, size), Image.Resampling.NEAREST), (x + k * size, y))
        colour = (200, 0, 0) if nearest.flagged[i] else (0, 0, 0)
        lines = (
            f"{names[i]} ~ {detector.train.ids[nearest.index[i]]}" + (" FLAGGED" if nearest.flagged[i] else ""),
            f"feat {nearest.feature_distance[i]:.4f} / {detector.feature_threshold:.4f}",
            f"pix {nearest.pixel_distance[i]:.4f} / {detector.pixel_threshold:.4f}",
        )
        for j, line in enumerate(lines):
            draw.text((x + 2, y + size + 1 + 11 * j), line, fill=colour)
    return sheet


def write_nearest_pairs(
    path: str | Path, samples: np.ndarray, names: Sequence[str], *, nearest: Nearest, detector: Detector
) -> None:
    """Write :func:`nearest_pairs_image` as a PNG (atomically)."""
    from facegen.common.atomic import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        nearest_pairs_image(samples, names, nearest=nearest, detector=detector).save(tmp, format="PNG")  # type: ignore[attr-defined]
