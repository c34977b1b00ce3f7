"""facegen.align.preview: grid layout, captions, which faces are shown, same tiles -> same bytes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facegen.align.preview import (
    CAPTION_H,
    TITLE_H,
    accepted_caption,
    caption,
    pick_accepted,
    pick_rejected,
    save_preview,
    sheet,
    yield_titles,
)


def tile(value: int) -> np.ndarray:
    return np.full((64, 64, 3), value, np.uint8)


def test_sheet_lays_out_tiles_in_a_grid_with_captions() -> None:
    img = sheet([(tile(v), f"face {v}") for v in (0, 50, 100)], "three", columns=2, tile=96)
    assert img.size == (2 * 96, TITLE_H + 2 * (96 + CAPTION_H))
    arr = np.asarray(img)
    assert (arr[TITLE_H + 10, 10] == 0).all()  # first tile
    assert (arr[TITLE_H + 10, 96 + 10] == 50).all()  # second tile, same row
    assert (arr[TITLE_H + 96 + CAPTION_H + 10, 10] == 100).all()  # third tile, next row
    assert (arr[TITLE_H + 96 + CAPTION_H + 10, 96 + 10] == 255).all()  # empty cell: background
    caption_strip = arr[TITLE_H + 96 : TITLE_H + 96 + CAPTION_H, :96]
    assert (caption_strip < 128).any()  # text was drawn
    assert sheet([], "nothing", columns=4, tile=32).size == (128, TITLE_H)
    with pytest.raises(ValueError, match="columns=0"):
        sheet([], "x", columns=0)


def test_preview_is_deterministic(tmp_path) -> None:
    tiles = [(tile(v), "blurry\nsharpness 12") for v in range(0, 250, 25)]
    a = save_preview(tiles[:4], tiles[4:], tmp_path / "a.png")
    b = save_preview(tiles[:4], tiles[4:], tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()
    with Image.open(a) as img:
        assert img.mode == "RGB" and img.width == 8 * 112


def table() -> pd.DataFrame:
    rows = [
        ("f01", "ok"),
        ("f02", "ok"),
        ("f03", "ok"),
        ("f04", "blurry"),
        ("f05", "blurry"),
        ("f06", "blurry"),
        ("f07", "extreme_yaw"),
        ("f08", "near_duplicate"),
        ("f09", "ok"),
    ]
    t = pd.DataFrame(rows, columns=["face_id", "status"])
    t["sharpness"] = [500.0, 400, 300, 12.4, 40, 55, 300, 300, 200]
    t["yaw"] = [0.0, 0, 0, 0, 0, 0, -61.6, 0, 0]
    t["eye_brightness"] = 100.0
    t["eye_distance"] = 40.0
    return t


def test_rejected_faces_are_picked_round_robin_over_reasons() -> None:
    picked = pick_rejected(table(), 4)
    assert picked["face_id"].tolist() == ["f04", "f07", "f08", "f05"]
    assert pick_rejected(table(), 100)["face_id"].tolist() == ["f04", "f07", "f08", "f05", "f06"]


def test_accepted_faces_are_spread_over_the_set() -> None:
    assert pick_accepted(table(), 2)["face_id"].tolist() == ["f01", "f09"]
    assert pick_accepted(table(), 10)["face_id"].tolist() == ["f01", "f02", "f03", "f09"]


def test_captions_say_the_reason_and_the_failing_value() -> None:
    t = table().set_index("face_id")
    assert caption(t.loc["f04"]) == "blurry\nsharpness 12"
    assert caption(t.loc["f07"]) == "extreme_yaw\nyaw -62"
    assert caption(t.loc["f08"]) == "near_duplicate"  # no duplicate_of column in this table
    assert caption(t.assign(duplicate_of="f01").loc["f08"]) == "near_duplicate\nof f01"
    assert caption(t.assign(status="crop_outside_image", crop_outside=0.256).loc["f02"]) == (
        "crop_outside_image\ncrop_outside 0.26"
    )


def test_faces_past_the_edge_get_a_quarter_of_the_accepted_tiles_and_their_fraction() -> None:
    t = pd.DataFrame({"face_id": [f"f{i:02d}" for i in range(12)], "status": "ok", "split": "train"})
    t["crop_outside"] = [0.0] * 10 + [0.2, 0.35]
    picked = pick_accepted(t, 4)
    assert picked["face_id"].tolist() == ["f00", "f05", "f10", "f11"]  # f10 reserved, the rest spread over all
    assert pick_accepted(t.assign(crop_outside=0.0), 4)["face_id"].tolist() == ["f00", "f04", "f07", "f11"]
    assert int((pick_accepted(t, 8)["crop_outside"] > 0).sum()) == 2
    assert accepted_caption(t.iloc[11]) == "train f11\noutside 0.35"
    assert accepted_caption(t.iloc[0]) == "train f00"


def test_sheet_titles_carry_the_yield() -> None:
    stats = {
        "ok": 3,
        "candidates": 10,
        "yield": {
            "photos": 9,
            "photos_with_face": 8,
            "faces_accepted_per_photo": 0.3333,
            "accepted_outside": 2,
            "rejected": {"blurry": 4, "no_face": 1, "crop_outside_image": 2, "eyes_occluded": 0},
        },
    }
    top, bottom = yield_titles(stats, 3, 5)
    assert top == "accepted: 3 of 3 faces from 9 photos (8 with a face, 0.33 per photo; 2 reach past the edge)"
    assert bottom == "rejected: 5 of 7 candidates: blurry 4, crop_outside_image 2, no_face 1"
