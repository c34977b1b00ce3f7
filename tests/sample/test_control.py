"""facegen.sample.control (controllability sweep) and the sample stage's conditional run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from cond_toy import SIZE, toy_model
from PIL import Image

from facegen.diffusion.model import build_unet, save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.sample import control
from facegen.sample.stage import SampleConfig, sample_to_dir


def test_scores_are_exact_on_known_measurements():
    s = control.scores(np.array([1.0, 2.0, 3.0]), np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]))
    assert s == {
        "spearman": pytest.approx(1.0),
        "spearman_of_means": pytest.approx(1.0),
        "mae": 0.0,
        "slope": pytest.approx(1.0),
        "measured_fraction": 1.0,
    }
    flat = control.scores(np.array([1.0, 2.0, 3.0]), np.full((3, 2), 5.0))
    assert flat["spearman"] is None and flat["mae"] == pytest.approx(3.0)


def test_sweep_values_span_and_clip():
    cfg = {
        "condition_names": ["brightness"],
        "condition_mean": [100.0],
        "condition_std": [20.0],
        "condition_min": [80.0],
        "condition_max": [200.0],
    }
    np.testing.assert_allclose(control.sweep_values(cfg, "brightness", 5, 1.5), np.linspace(80.0, 130.0, 5))


@pytest.fixture()
def toy_dir(tmp_path):
    unet, config, _ = toy_model()
    from diffusers import DDPMScheduler

    best = save_model_dir(
        tmp_path / "best",
        unet,
        DDPMScheduler.from_config(config),
        {"experiment": "test"},
        best={"epoch": 1, "run_id": None},
    )
    return best


FAST = SampleConfig(num_images=4, sampler="ddim", steps=10, batch_size=8, device="cpu", grid_images=4)


def test_control_stage_measures_the_toy_model(tmp_path, toy_dir):
    result = control.run_control(
        toy_dir,
        FAST,
        control.ControlConfig(num_values=5, num_seeds=4),
        out_dir=tmp_path / "control",
        metrics_path=tmp_path / "metrics" / "control.json",
        detector=lambda: pytest.fail("the face detector is built only for a model conditioned on yaw"),
    )
    scores = result["attributes"]["brightness"]
    assert scores["spearman"] >= 0.9 and scores["spearman_of_means"] == pytest.approx(1.0)
    assert json.loads((tmp_path / "metrics" / "control.json").read_text())["attributes"]["brightness"] == scores
    grid = np.asarray(Image.open(tmp_path / "control" / "brightness.png"))
    assert grid.shape == (4 * (SIZE + 2) + 2, 5 * (SIZE + 2) + 2, 3)  # 5 values across, 4 seeds down
    table = pd.read_parquet(tmp_path / "control" / "sweep.parquet")
    assert len(table) == 20 and sorted(table["seed"].unique()) == [0, 1, 2, 3]


def test_control_of_an_unconditional_model_reports_nothing(tmp_path):
    torch.manual_seed(0)
    best = save_model_dir(tmp_path / "best", build_unet("tiny", 8, (8, 16)), make_noise_scheduler(), {})
    result = control.run_control(
        best, FAST, control.ControlConfig(), out_dir=tmp_path / "c", metrics_path=tmp_path / "m.json"
    )
    assert result["conditioned"] == [] and result["attributes"] == {}
    assert not list((tmp_path / "c").glob("*.png"))


def test_sample_stage_records_the_requested_condition(tmp_path, toy_dir):
    cfg = SampleConfig(**{**FAST.__dict__, "condition": {"brightness": 150.0}, "guidance": 2.0})
    sample_to_dir(cfg, toy_dir, tmp_path / "samples")
    table = pd.read_parquet(tmp_path / "samples" / "samples.parquet")
    assert table["file"].tolist() == ["00001.png", "00002.png", "00003.png", "00004.png"]
    assert table["brightness"].tolist() == [150.0] * 4 and table["guidance"].tolist() == [2.0] * 4
    with pytest.raises(ValueError, match="unknown attribute 'yaw'"):
        sample_to_dir(SampleConfig(**{**FAST.__dict__, "condition": {"yaw": 10.0}}), toy_dir, tmp_path / "samples")
    assert len(list((tmp_path / "samples").glob("*.png"))) == 4  # the error came before any image was touched
    with pytest.raises(ValueError, match="must map attribute names to finite numbers"):
        SampleConfig(condition={"brightness": "high"})


def test_control_stage_entry_point(tmp_path, toy_dir):
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    params = tmp_path / "params.yaml"
    params.write_text(
        "sample:\n  sampler: ddim\n  steps: 8\n  batch_size: 8\n  device: cpu\n"
        "control:\n  num_values: 3\n  num_seeds: 2\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [
            sys.executable,
            str(repo / "stages" / "control.py"),
            "--params",
            str(params),
            "--model-dir",
            str(toy_dir),
            "--out-dir",
            str(tmp_path / "control"),
            "--metrics",
            str(tmp_path / "control.json"),
            "--no-mlflow",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert 'control: {"brightness"' in out.stdout
    assert json.loads((tmp_path / "control.json").read_text())["attributes"]["brightness"]["requested"][0] < 100


def test_scores_leave_out_unmeasured_samples_and_count_them():
    measured = np.array([[1.0, np.nan], [2.0, 2.0], [np.nan, np.nan]])
    s = control.scores(np.array([1.0, 2.0, 3.0]), measured)
    assert s["measured_fraction"] == pytest.approx(0.5)
    assert s["mae"] == 0.0 and s["slope"] == pytest.approx(1.0) and s["spearman"] == pytest.approx(1.0)
    none = control.scores(np.array([1.0, 2.0]), np.full((2, 2), np.nan))
    assert none == {"spearman": None, "spearman_of_means": None, "mae": None, "slope": None, "measured_fraction": 0.0}


def test_yaw_needs_a_detector():
    with pytest.raises(ValueError, match=r"measuring 'yaw' on images needs a face detector"):
        control.measure(np.zeros((1, 8, 8, 3), np.uint8), "yaw")
