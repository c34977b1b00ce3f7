"""facegen.fid.score and stages/fid.py: samples vs the test split of faces.parquet -> metrics/fid.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facegen.fid import features as fid
from facegen.fid.score import FidConfig, sample_paths, score_samples

REPO = Path(__file__).resolve().parents[2]


def _faces(root: Path) -> np.ndarray:
    """A tiny aligned set in ``root``: 5 ok test faces, 3 ok train faces, 1 rejected test-less face.
    Returns the test faces (5, 16, 16, 3) in face_id order."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (9, 16, 16, 3), dtype=np.uint8)
    (root / "data" / "faces").mkdir(parents=True)
    rows = []
    for i, img in enumerate(images):
        path = f"data/faces/f{i:02d}.png"
        Image.fromarray(img).save(root / path)
        status, split = ("ok", "test") if i < 5 else ("ok", "train") if i < 8 else ("blurry", None)
        rows.append({"face_id": f"f{i:02d}", "path": path, "status": status, "split": split})
    pd.DataFrame(rows).to_parquet(root / "data" / "faces.parquet")
    return images[:5]


def _samples(root: Path, images: np.ndarray) -> Path:
    out = root / "data" / "samples"
    out.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(out / f"{i + 1:05d}.png")
    (out / "sample_config.json").write_text("{}")
    return out


def _run(root: Path, params: str) -> subprocess.CompletedProcess:
    (root / "params.yaml").write_text(params, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(REPO / "stages" / "fid.py")], cwd=root, capture_output=True, text=True, timeout=300
    )


def test_stage_scores_samples_against_the_test_split_only(tmp_path):
    test_faces = _faces(tmp_path)
    samples = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    _samples(tmp_path, samples)
    proc = _run(tmp_path, "fid:\n  extractor: offline\n  batch_size: 3\n  device: cpu\n")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "fid.json").read_text())
    assert set(metrics) == {
        "fd_offline",
        "kid_offline",
        "kid_offline_std",
        "num_samples",
        "num_reference",
        "image_size",
        "precision",
        "recall",
        "density",
        "coverage",
        "pr_k",
        "memorized_fraction",
        "memorized_count",
        "memorization_quantile",
        "memorization_feature_threshold",
        "memorization_pixel_threshold",
        "memorization_calibration_faces",
        "memorization_test_flagged_fraction",
        "memorization_num_train",
        "memorization_pixel_shift",
    }  # never called "fid" / "kid"; the text beside it, no DVC metric
    info = json.loads((tmp_path / "metrics" / "fid_info.json").read_text())
    assert set(info) == {"fid_extractor", "fid_reference", "memorization_calibration"}
    rows = pd.read_parquet(tmp_path / "data" / "memorization.parquet")
    assert list(rows["sample"]) == ["00001.png", "00002.png", "00003.png", "00004.png"]
    assert set(rows["face_id"]) <= {"f05", "f06", "f07"} and rows["path"].str.startswith("data/faces/f0").all()
    assert metrics["memorized_count"] == int(rows["flagged"].sum())
    assert Image.open(tmp_path / "metrics" / "nearest_pairs.png").size[0] > 0
    assert metrics["num_samples"] == 4 and metrics["num_reference"] == 5 and metrics["image_size"] == 16
    ext = fid.get_extractor("offline")
    feats, ref = fid.extract_features(samples, ext), fid.extract_features(test_faces, ext)
    expected = fid.frechet_distance(*fid.feature_stats(feats), *fid.feature_stats(ref))
    assert metrics["fd_offline"] == pytest.approx(expected, rel=1e-6)  # batch size moves the last float bits
    kid, kid_std = fid.kernel_distance(feats, ref, num_subsets=100, max_subset_size=1000)
    assert (metrics["kid_offline"], metrics["kid_offline_std"]) == pytest.approx((kid, kid_std), rel=1e-6)
    # the reference features were cached by extractor, resolution and content, for the next run and for train
    cached = list((tmp_path / "cache" / "fid").glob("offline-16px-*.npz"))
    assert len(cached) == 2 and info["fid_reference"] in [p.stem for p in cached]  # test split + train split
    assert "MLflow" not in proc.stdout  # no models/best: nothing to log to


def test_samples_equal_to_the_test_split_score_zero(tmp_path):
    test_faces = _faces(tmp_path)
    _samples(tmp_path, test_faces)
    metrics = score_samples(
        FidConfig(extractor="offline", device="cpu"),
        tmp_path / "data" / "samples",
        tmp_path / "data" / "faces.parquet",
        tmp_path / "cache",
        root=tmp_path,
    )
    assert metrics["fd_offline"] == pytest.approx(0.0, abs=1e-6)


def test_too_few_samples_and_bad_extractor_are_clear_errors(tmp_path):
    _faces(tmp_path)
    _samples(tmp_path, np.zeros((1, 16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match=r"found 1 sample image.*sample.num_images"):
        sample_paths(tmp_path / "data" / "samples")
    with pytest.raises(ValueError, match=r"fid.extractor='vgg'"):
        FidConfig(extractor="vgg")
    proc = _run(tmp_path, "fid:\n  extractor: offline\n  typo: 1\n")
    assert proc.returncode == 2 and "typo" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(tmp_path, "fid:\n  extractor: offline\n  memorization_quantile: 2\n")
    assert proc.returncode == 2 and proc.stderr.startswith("fid: error: fid.memorization_quantile = 2")
    assert not (tmp_path / "metrics").exists()  # validated before anything is written


def test_stage_logs_its_score_to_the_run_of_the_scored_model(tmp_path):
    import mlflow

    _faces(tmp_path)
    samples = np.random.default_rng(2).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    _samples(tmp_path, samples)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("t", artifact_location=str(tmp_path / "mlruns"))
    run_id = client.create_run(exp).info.run_id
    client.set_terminated(run_id)
    (tmp_path / "models" / "best").mkdir(parents=True)
    (tmp_path / "models" / "best" / "best.json").write_text(json.dumps({"epoch": 3, "run_id": run_id}))
    proc = _run(tmp_path, "fid:\n  extractor: offline\n  device: cpu\n")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "metrics" / "fid.json").read_text())
    info = json.loads((tmp_path / "metrics" / "fid_info.json").read_text())
    assert info["run_id"] == run_id
    run = client.get_run(run_id)
    assert run.data.metrics["sample_fd_offline"] == metrics["fd_offline"]
    assert run.data.metrics["sample_kid_offline"] == metrics["kid_offline"]
    assert run.data.metrics["sample_precision"] == metrics["precision"]
    assert run.data.metrics["sample_memorized_fraction"] == metrics["memorized_fraction"]
    assert run.data.metrics["sample_num_samples"] == 4 and run.data.tags["fid_reference"] == info["fid_reference"]
    # a run that is not in the store: the score stays in metrics/fid.json, the stage still succeeds
    (tmp_path / "models" / "best" / "best.json").write_text(json.dumps({"epoch": 3, "run_id": "0" * 32}))
    proc = _run(tmp_path, "fid:\n  extractor: offline\n  device: cpu\n")
    assert proc.returncode == 0 and "is not in" in proc.stdout, proc.stderr
