"""facegen.fid.memorization: planted training faces (also mirrored and shifted) are flagged, unseen
real faces are not (beyond the calibrated quantile), and the fid stage and the trainer agree."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from tiny_faces import random_faces, write_faceset

from facegen.fid import features as fid
from facegen.fid.memorization import Detector, TrainingFaces, feature_nearest, nearest_training_face, pixel_nearest
from facegen.fid.score import NOVELTY_SCORES, FidConfig, score_samples

SIZE = 16


def _detector(train: np.ndarray, test: np.ndarray, quantile: float, shift: int = 2) -> tuple[Detector, object]:
    ext = fid.get_extractor("offline")
    faces = TrainingFaces(
        tuple(f"t{i}" for i in range(len(train))),
        tuple(f"data/faces/t{i}.png" for i in range(len(train))),
        train,
        fid.extract_features(train, ext),
    )
    det = Detector.calibrate(faces, test, fid.extract_features(test, ext), quantile=quantile, pixel_shift=shift)
    return det, ext


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(img, (dy, dx), axis=(0, 1))  # wrapped-in rows/columns fall outside the compared centre crop


def test_feature_and_pixel_nearest_by_hand():
    dist, index = feature_nearest(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[0.0, 2.0], [3.0, 0.0]]))
    np.testing.assert_allclose(dist, [0.0, 1 - 2**-0.5])
    assert list(index) == [1, 0] or list(index) == [1, 1]  # (1, 1) is equally far from both
    a = np.zeros((1, 8, 8, 3), np.uint8)
    b = np.stack([np.full((8, 8, 3), 255, np.uint8), np.full((8, 8, 3), 51, np.uint8)])
    dist, index = pixel_nearest(a, b, shift=1)
    assert list(index) == [1] and dist[0] == pytest.approx(0.2, abs=1e-6)  # RMS of 51/255 everywhere
    with pytest.raises(ValueError, match=r"fid.pixel_shift = 4"):
        pixel_nearest(a, b, shift=4)


def test_planted_training_faces_and_their_flips_and_shifts_are_flagged():
    train, test = random_faces(120, SIZE, 0), random_faces(120, SIZE, 1)
    det, ext = _detector(train, test, quantile=0.05)
    fresh = random_faces(40, SIZE, 2)  # stand-ins for new samples: same distribution, never trained on
    picks = np.arange(0, 120, 3)[:40]
    copies = train[picks]
    flips = copies[:, :, ::-1]
    shifts = np.stack(
        [_shift(img, dy, dx) for img, (dy, dx) in zip(copies, [(1, 0), (0, -2), (2, 1), (-1, -1)] * 10, strict=True)]
    )
    samples = np.concatenate([fresh, copies, flips, shifts])
    nearest = det.nearest(samples, fid.extract_features(samples, ext))
    for k, block in enumerate(("copies", "flips", "shifts"), start=1):
        part = slice(40 * k, 40 * (k + 1))
        assert nearest.flagged[part].mean() >= 0.95, block
        np.testing.assert_array_less(nearest.pixel_distance[part], 1e-3)  # an exact copy once aligned
        assert (nearest.pixel_index[part] == picks).mean() >= 0.95, block
    assert (nearest.feature_index[40:80] == picks).all() and (nearest.feature_distance[40:80] < 1e-9).all()
    # unseen faces: flagged about as often as the calibration allows (the quantile, per distance)
    assert nearest.flagged[:40].mean() <= 2 * 0.05 + 0.1
    assert det.summary(nearest) == {
        "memorized_fraction": nearest.flagged.mean(),
        "memorized_count": 120 + int(nearest.flagged[:40].sum()),
    }


def test_nearest_training_face_of_one_image():
    train, test = random_faces(20, SIZE, 10), random_faces(20, SIZE, 11)
    det, ext = _detector(train, test, quantile=0.05)
    got = nearest_training_face(train[7][:, ::-1], detector=det, extractor=ext)  # a mirrored training face
    assert got["pixel_face_id"] == "t7" and got["flagged"] is True and got["pixel_distance"] < 1e-3
    assert got["path"] == "data/faces/t7.png" and got["pixel_threshold"] == det.pixel_threshold


def test_unseen_real_faces_are_flagged_at_about_the_quantile():
    train, test, unseen = random_faces(200, SIZE, 3), random_faces(200, SIZE, 4), random_faces(200, SIZE, 5)
    det, ext = _detector(train, test, quantile=0.05)
    assert det.num_calibration == 200 and 0.05 <= det.test_flagged_fraction <= 0.1  # the union of two 5% tails
    nearest = det.nearest(unseen, fid.extract_features(unseen, ext))
    assert nearest.flagged.mean() <= 0.1 + 0.06  # at most both quantiles, plus sampling noise (3 sigma)
    assert nearest.flagged.mean() > 0  # and the detector is not blind: some unseen faces are that close too
    assert det.feature_threshold > 0 and det.pixel_threshold > 0


def _workspace(root, samples: np.ndarray) -> None:
    write_faceset(root, random_faces(30, SIZE, 6), random_faces(20, SIZE, 7))
    out = root / "data" / "samples"
    out.mkdir(parents=True)
    for i, img in enumerate(samples):
        Image.fromarray(img).save(out / f"{i + 1:05d}.png")


def test_the_fid_stage_and_the_trainers_evaluation_give_the_same_numbers(tmp_path):
    from facegen.train.config import TrainConfig, TrainPaths
    from facegen.train.evaluate import Evaluator

    train = random_faces(30, SIZE, 6)
    samples = np.concatenate([random_faces(12, SIZE, 8), train[:4], train[4:8, :, ::-1]])
    _workspace(tmp_path, samples)
    fid_cfg = FidConfig(extractor="offline", batch_size=5, device="cpu", memorization_quantile=0.1, pixel_shift=1)
    stage = score_samples(
        fid_cfg,
        tmp_path / "data" / "samples",
        tmp_path / "data" / "faces.parquet",
        tmp_path / "cache",
        root=tmp_path,
        memorization_out=tmp_path / "data" / "memorization.parquet",
        pairs_out=tmp_path / "metrics" / "nearest_pairs.png",
    )
    cfg = TrainConfig(image_size=SIZE, fid_extractor="offline", fid_batch_size=5)
    paths = TrainPaths(faces=tmp_path / "data" / "faces.parquet", root=tmp_path, fid_cache=tmp_path / "cache")
    fid_cfg = FidConfig(memorization_quantile=0.1, pixel_shift=1)
    scorer = Evaluator(cfg, paths, noise_scheduler=None, unet_config=None, device="cpu", fid_cfg=fid_cfg).scorer
    epoch = scorer(samples)
    for key in NOVELTY_SCORES:
        assert epoch[key] == stage[key], key
    assert scorer.detector.feature_threshold == stage["memorization_feature_threshold"]
    assert scorer.detector.pixel_threshold == stage["memorization_pixel_threshold"]
    assert stage["memorized_count"] >= 8 and stage["memorization_calibration_faces"] == 20
    rows = pd.read_parquet(tmp_path / "data" / "memorization.parquet")
    assert len(rows) == 20 and rows["flagged"].sum() == stage["memorized_count"]
    assert rows["flagged"].iloc[12:].all()
    assert list(rows["face_id"].iloc[12:]) == [f"train{i:04d}" for i in range(8)]
    assert list(rows["path"].iloc[12:16]) == [f"data/faces/train{i:04d}.png" for i in range(4)]
    assert json.loads(json.dumps(stage))  # JSON-ready
    sheet = Image.open(tmp_path / "metrics" / "nearest_pairs.png")
    assert sheet.size == (4 * (2 * 96 + 8), 4 * (96 + 36))  # 16 pairs, 4 per row, 16 px shown at 96 px


def test_replacing_samples_by_training_faces_flags_them_and_keeps_the_other_flags(tmp_path):
    """The issue's acceptance check, small: plant training faces, rerun, the others keep their flags."""
    samples = random_faces(24, SIZE, 9)
    _workspace(tmp_path, samples)
    cfg = FidConfig(extractor="offline", device="cpu", memorization_quantile=0.05)
    args = (tmp_path / "data" / "samples", tmp_path / "data" / "faces.parquet", tmp_path / "cache")
    out = tmp_path / "m.parquet"
    score_samples(cfg, *args, root=tmp_path, memorization_out=out)
    before = pd.read_parquet(out)["flagged"].to_numpy()
    train = random_faces(30, SIZE, 6)
    for i in range(8):
        Image.fromarray(train[i * 3]).save(tmp_path / "data" / "samples" / f"{i * 3 + 1:05d}.png")
    after_metrics = score_samples(cfg, *args, root=tmp_path, memorization_out=out)
    after = pd.read_parquet(out)["flagged"].to_numpy()
    planted = np.zeros(24, bool)
    planted[::3] = True
    assert after[planted].all()
    np.testing.assert_array_equal(after[~planted], before[~planted])
    assert after_metrics["memorized_count"] == int(after.sum())


def test_16_training_faces_resized_to_the_sample_size_among_64_samples_are_flagged(tmp_path):
    """The issue's acceptance shape: training faces stored at 32 px, 64 samples at 16 px; 16 of them
    replaced by training faces resized to 16 px (as the scorer loads them): >= 15 flagged and pointed
    at their face, the other 48 keep their flags, the count follows."""
    write_faceset(tmp_path, random_faces(40, 2 * SIZE, 12), random_faces(30, 2 * SIZE, 13))
    samples_dir = tmp_path / "data" / "samples"
    samples_dir.mkdir(parents=True)
    for i, img in enumerate(random_faces(64, SIZE, 14)):
        Image.fromarray(img).save(samples_dir / f"{i + 1:05d}.png")
    cfg = FidConfig(extractor="offline", device="cpu", memorization_quantile=0.05)
    out = tmp_path / "m.parquet"

    def score() -> tuple[pd.DataFrame, dict]:
        metrics = score_samples(
            cfg,
            samples_dir,
            tmp_path / "data" / "faces.parquet",
            tmp_path / "cache",
            root=tmp_path,
            memorization_out=out,
        )
        return pd.read_parquet(out), metrics

    before, _ = score()
    planted = np.zeros(64, bool)
    planted[::4] = True
    for n, i in enumerate(np.flatnonzero(planted)):
        with Image.open(tmp_path / "data" / "faces" / f"train{2 * n:04d}.png") as face:
            face.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC).save(samples_dir / f"{i + 1:05d}.png")
    after, metrics = score()
    assert after["flagged"][planted].sum() >= 15
    assert (after["face_id"][planted] == [f"train{2 * n:04d}" for n in range(16)]).sum() >= 15
    np.testing.assert_array_equal(after["flagged"][~planted], before["flagged"][~planted])
    assert metrics["memorized_count"] == int(after["flagged"].sum()) and metrics["num_samples"] == 64
    assert metrics["image_size"] == SIZE and metrics["memorization_num_train"] == 40


@pytest.mark.slow
def test_inception_features_find_mirrored_and_shifted_real_faces(portraits, portrait_feats, inception):
    """Real portraits, real Inception: copies of 4 training faces (mirrored, shifted 1-2 px) are
    flagged and point at their face; the 4 other portraits (different people) are not copies."""
    train = TrainingFaces(tuple("abcd"), tuple(f"{c}.png" for c in "abcd"), portraits[:4], portrait_feats[:4])
    det = Detector.calibrate(train, portraits[4:], portrait_feats[4:], quantile=0.01, pixel_shift=2)
    copies = np.stack([portraits[0][:, ::-1], _shift(portraits[1], 1, 0), _shift(portraits[2], -2, 2), portraits[3]])
    nearest = det.nearest(copies, fid.extract_features(copies, inception, batch_size=4))
    assert nearest.flagged.all() and list(nearest.pixel_index) == [0, 1, 2, 3]
    assert (nearest.pixel_distance < 1e-3).all() and nearest.feature_distance[3] < 1e-6
    assert det.pixel_threshold > 1e-3 and det.feature_threshold > 1e-3  # the other portraits are no copies
