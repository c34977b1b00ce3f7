"""Contact sheets: the accepted faces, and the rejected ones labelled with their reasons.

People judge a face dataset faster by looking than by reading a table, so the align stage
writes one PNG with two panels: a grid of accepted faces and a grid of rejected faces,
each tile captioned (face id or rejection reason). Rendering uses Pillow's built-in font
and no timestamps, so the same tiles give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from facegen.align.candidates import REASON_VALUE
from facegen.common.atomic import atomic_path

BACKGROUND = (255, 255, 255)
INK = (0, 0, 0)
CAPTION_H = 26  # two lines: reason, then the value that failed
LINE_H = 12
TITLE_H = 20


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> str:
    """``text`` cut (with '..') to fit ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


def sheet(tiles: Sequence[tuple[np.ndarray, str]], title: str, columns: int = 8, tile: int = 112) -> Image.Image:
    """A grid of (H, W, 3) uint8 RGB images, each resized to ``tile`` px with its caption below.

    A caption has up to two lines (split at the first newline), each cut to the tile width.

    An empty ``tiles`` gives just the title bar (saying there is nothing to show).
    """
    if columns < 1 or tile < 8:
        raise ValueError(f"contact sheet needs columns >= 1 and tile >= 8 px, got columns={columns}, tile={tile}")
    font = ImageFont.load_default()
    rows = (len(tiles) + columns - 1) // columns
    width = columns * tile
    canvas = Image.new("RGB", (width, TITLE_H + rows * (tile + CAPTION_H)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), _fit(draw, title if tiles else f"{title}: none", font, width - 8), fill=INK, font=font)
    for i, (image, caption) in enumerate(tiles):
        x, y = (i % columns) * tile, TITLE_H + (i // columns) * (tile + CAPTION_H)
        thumb = (
            Image.fromarray(np.ascontiguousarray(image)).convert("RGB").resize((tile, tile), Image.Resampling.NEAREST)
        )
        canvas.paste(thumb, (x, y))
        for k, line in enumerate(caption.split("\n", 1)):
            draw.text((x + 2, y + tile + 1 + k * LINE_H), _fit(draw, line, font, tile - 4), fill=INK, font=font)
    return canvas


def save_preview(
    accepted: Sequence[tuple[np.ndarray, str]],
    rejected: Sequence[tuple[np.ndarray, str]],
    path: str | Path,
    *,
    accepted_title: str = "accepted",
    rejected_title: str = "rejected",
    columns: int = 8,
    tile: int = 112,
) -> Path:
    """Write the accepted sheet above the rejected sheet as one PNG at ``path``."""
    top = sheet(accepted, accepted_title, columns, tile)
    bottom = sheet(rejected, rejected_title, columns, tile)
    canvas = Image.new("RGB", (top.width, top.height + 8 + bottom.height), (128, 128, 128))
    canvas.paste(top, (0, 0))
    canvas.paste(bottom, (0, top.height + 8))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG", compress_level=6)
    return path


def _spread(rows: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Up to ``limit`` rows spread evenly over their order."""
    if len(rows) <= limit:
        return rows
    return (
        rows.iloc[np.unique(np.linspace(0, len(rows) - 1, limit).round().astype(int))] if limit > 0 else rows.iloc[:0]
    )


def pick_accepted(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Up to ``limit`` ok faces spread evenly over the face_id order.

    When the table has ``crop_outside``, up to a quarter of the tiles go to faces whose crop
    reached past the photo (filled, not photographed), so the sheet shows how they look.
    """
    ok = table[table["status"] == "ok"].sort_values("face_id")
    if len(ok) <= limit:
        return ok
    outside = ok[ok["crop_outside"] > 0] if "crop_outside" in ok.columns else ok.iloc[:0]
    shown = _spread(outside, limit // 4)
    rest = _spread(ok.drop(index=shown.index), limit - len(shown))
    return pd.concat([shown, rest]).sort_values("face_id")


def accepted_caption(row: pd.Series) -> str:
    """``train 1a2b3c``, plus ``outside 0.23`` on a second line for a crop past the photo's edge."""
    text = f"{row['split']} {str(row['face_id'])[:6]}"
    outside = row.get("crop_outside")
    if outside is not None and not pd.isna(outside) and float(outside) > 0:
        text += f"\noutside {float(outside):.2f}"
    return text


def yield_titles(stats: dict, shown_ok: int, shown_rejected: int) -> tuple[str, str]:
    """The two panel titles from the align summary: the yield above, rejections by reason below."""
    y = stats["yield"]
    top = (
        f"accepted: {shown_ok} of {stats['ok']} faces from {y['photos']} photos "
        f"({y['photos_with_face']} with a face, {y['faces_accepted_per_photo']:.2f} per photo; "
        f"{y['accepted_outside']} reach past the edge)"
    )
    reasons = sorted(((n, r) for r, n in y["rejected"].items() if n), reverse=True)
    bottom = f"rejected: {shown_rejected} of {stats['candidates'] - stats['ok']} candidates: " + ", ".join(
        f"{r} {n}" for n, r in reasons
    )
    return top, bottom


def pick_rejected(table: pd.DataFrame, limit: int) -> pd.DataFrame:
    """Up to ``limit`` rejected faces, taken round-robin over the reasons so each reason shows."""
    rejected = table[table["status"] != "ok"].sort_values(["status", "face_id"])
    queues = [list(g.index) for _, g in rejected.groupby("status", sort=True)]
    picked: list[int] = []
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return rejected.loc[picked]


def caption(row: pd.Series) -> str:
    """A rejection reason and, on a second line, the value that failed (``blurry`` / ``sharpness 87``)."""
    status = str(row["status"])
    column = REASON_VALUE.get(status)
    if column is None or column not in row or pd.isna(row[column]):
        return status
    value = row[column]
    if isinstance(value, str):
        return f"{status}\nof {value}"
    number = float(value)
    return f"{status}\n{column} {number:.2f}" if abs(number) < 1 else f"{status}\n{column} {number:.0f}"
