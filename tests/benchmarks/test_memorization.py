"""benchmarks/memorization.py: which samples it overwrites, with what, and how it reads the flags."""

from pathlib import Path

import numpy as np
import pandas as pd
from memorization import flags, plant
from PIL import Image


def workspace(tmp_path: Path) -> Path:
    """8 samples (8x8), 3 train faces (16x16, one colour each), 1 test face, a memorization table."""
    (tmp_path / "data/samples").mkdir(parents=True)
    (tmp_path / "data/faces").mkdir()
    for i in range(1, 9):
        Image.new("RGB", (8, 8), (0, 0, 0)).save(tmp_path / f"data/samples/{i:05d}.png")
    rows = []
    for i, (split, colour) in enumerate([("train", 50), ("train", 100), ("test", 200), ("train", 150)]):
        Image.new("RGB", (16, 16), (colour,) * 3).save(tmp_path / f"data/faces/f{i}.png")
        rows.append({"face_id": f"f{i}", "path": f"data/faces/f{i}.png", "split": split, "status": "ok"})
    pd.DataFrame(rows).to_parquet(tmp_path / "data/faces.parquet")
    names = [f"data/samples/{i:05d}.png" for i in range(1, 9)]
    pd.DataFrame({"sample": names, "flagged": [i == 2 for i in range(8)]}).to_parquet(
        tmp_path / "data/memorization.parquet"
    )
    return tmp_path


def test_every_fourth_sample_becomes_a_resized_training_face(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    planted = plant(ws, every=4, seed=0)
    assert planted == ["00001.png", "00005.png"]
    colours = {int(np.asarray(Image.open(ws / "data/samples" / n))[0, 0, 0]) for n in planted}
    assert len(colours) == 2 and colours <= {50, 100, 150}  # two different train faces, never the test one
    assert all(Image.open(ws / "data/samples" / n).size == (8, 8) for n in planted)
    untouched = np.asarray(Image.open(ws / "data/samples/00002.png"))
    assert untouched.max() == 0


def test_flags_are_read_by_file_name(tmp_path: Path) -> None:
    assert flags(workspace(tmp_path)) == {f"{i:05d}.png": i == 3 for i in range(1, 9)}
