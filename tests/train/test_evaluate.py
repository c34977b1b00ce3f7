"""facegen.train.evaluate: per-epoch scoring is the fid stage's scoring (same reference, size, cache)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facegen.fid.score import NOVELTY_SCORES, FidConfig, score_samples
from facegen.train.config import TrainConfig, TrainPaths
from facegen.train.evaluate import Evaluator


def _faces(root, n_test=5, n_train=3, size=16):
    rng = np.random.default_rng(0)
    (root / "data" / "faces").mkdir(parents=True)
    rows = []
    for i in range(n_test + n_train):
        path = f"data/faces/f{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / path)
        rows.append({"face_id": f"f{i:02d}", "path": path, "status": "ok", "split": "test" if i < n_test else "train"})
    pd.DataFrame(rows).to_parquet(root / "data" / "faces.parquet")


def test_epoch_scores_equal_the_fid_stage_at_the_models_image_size(tmp_path):
    _faces(tmp_path, size=16)
    cfg = TrainConfig(image_size=8, fid_extractor="offline", fid_batch_size=2, kid_subsets=7, kid_subset_size=4)
    paths = TrainPaths(faces=tmp_path / "data" / "faces.parquet", root=tmp_path, fid_cache=tmp_path / "cache")
    scorer = Evaluator(cfg, paths, noise_scheduler=None, unet_config=None, device="cpu").scorer
    assert scorer.image_size == 8 and scorer.reference.key.startswith("offline-8px-")  # test faces resized to 8 px
    samples = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    epoch = scorer(samples)
    (tmp_path / "samples").mkdir()
    for i, img in enumerate(samples):
        Image.fromarray(img).save(tmp_path / "samples" / f"{i + 1:05d}.png")
    stage = score_samples(
        FidConfig(extractor="offline", batch_size=3, device="cpu", kid_subsets=7, kid_subset_size=4),
        tmp_path / "samples",
        paths.faces,
        paths.fid_cache,
        root=tmp_path,
    )
    assert set(epoch) == {"fd_offline", "kid_offline", "kid_offline_std", *NOVELTY_SCORES}
    for key, value in epoch.items():
        assert stage[key] == pytest.approx(value, rel=1e-6)
    assert stage["fid_reference"] == scorer.reference.key and stage["image_size"] == 8
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2  # one cached test split and train split for both
    with pytest.raises(ValueError, match=r"samples are 16x16 px.*8 px"):
        scorer(np.zeros((2, 16, 16, 3), np.uint8))


def test_kid_settings_are_validated():
    with pytest.raises(ValueError, match=r"train.kid_subset_size = 1 is out of range: valid values are >= 2"):
        TrainConfig(kid_subset_size=1)
    with pytest.raises(ValueError, match=r"train.kid_subsets = 0 is out of range"):
        TrainConfig(kid_subsets=0)
    with pytest.raises(ValueError, match=r"fid.kid_subsets = 0 is out of range: valid values are >= 1"):
        FidConfig(kid_subsets=0)
