"""facegen.train.config: one source for the choices, run_key hashes only what changes the weights."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from facegen.train.config import OPERATIONAL_KEYS, Extractor, Preset, TrainConfig, run_key


def test_choices_agree_with_their_implementations():
    from facegen.diffusion.model import PRESETS
    from facegen.fid.features import EXTRACTORS

    assert set(typing.get_args(Preset)) == set(PRESETS)
    assert set(typing.get_args(Extractor)) == set(EXTRACTORS)


def test_run_key_ignores_operational_keys_only():
    base = TrainConfig()
    changed = {
        "resume": "never",
        "experiment": "other",
        "log_checkpoints": False,
        "keep_checkpoints": 5,
        "checkpoint_every": 1,
        "grid_size": 4,
        "fid_every": 0,
        "fid_num_samples": 10,
        "fid_batch_size": 7,
        "eval_steps": 3,
        "data_device": "cpu",
        "kid_subsets": 7,
        "kid_subset_size": 50,
    }
    assert set(changed) == OPERATIONAL_KEYS
    for key, value in changed.items():
        assert run_key(dataclasses.replace(base, **{key: value}), "d") == run_key(base, "d"), key
    weight_keys = {
        "lr": 1e-4,
        "epochs": 10,
        "seed": 1,
        "model": "tiny",
        "precision": "no",
        "loss": "l1_l2",
        "ema_decay": 0.99,
        "fid_extractor": "offline",
        "compile": True,
    }
    for key, value in weight_keys.items():
        assert run_key(dataclasses.replace(base, **{key: value}), "d") != run_key(base, "d"), key
    assert run_key(base, "other data") != run_key(base, "d")
    # the world size sets the effective batch: a 2-process run never resumes a 1-process checkpoint
    assert run_key(base, "d", 2) != run_key(base, "d", 1) == run_key(base, "d")


def _stage_error(tmp_path, monkeypatch, capsys, train: dict) -> str:
    """stages/train.py's one error line for a params.yaml ``train`` section; no MLflow store opened."""
    import importlib.util
    from pathlib import Path

    import yaml

    spec = importlib.util.spec_from_file_location("train_stage", Path(__file__).parents[2] / "stages" / "train.py")
    assert spec is not None and spec.loader is not None
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": train}) if isinstance(train, dict) else train)
    monkeypatch.chdir(tmp_path)
    assert stage.main(["--params", str(tmp_path / "params.yaml")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("train: error: ") and not (tmp_path / "mlflow.db").exists()
    return lines[0]


@pytest.mark.parametrize(
    ("train", "named"),
    [
        ({"seed": 2**32}, "train.seed = 4294967296 is out of range: valid values are in [0, 4294967295]"),
        ({"weight_decay": float("inf")}, "train.weight_decay = inf is out of range"),
        ({"condition_margin": float("inf")}, "train.condition_margin = inf is out of range"),
        ({"image_size": 100000}, "train.image_size = 100000 is out of range: valid values are in [8, 1024]"),
        ({"num_train_timesteps": 10**11}, "train.num_train_timesteps = 100000000000 is out of range"),
    ],
)
def test_values_that_would_fail_late_are_named_before_a_run_opens(tmp_path, monkeypatch, capsys, train, named):
    assert named in _stage_error(tmp_path, monkeypatch, capsys, train)


def test_a_bad_number_is_hinted_as_quoted_only_when_it_was(tmp_path, monkeypatch, capsys):
    line = _stage_error(tmp_path, monkeypatch, capsys, "train:\n  lr: abc\n")  # what `-S train.lr=abc` writes
    assert "train.lr" in line and "quoted" not in line and "not a number" in line
    line = _stage_error(tmp_path, monkeypatch, capsys, 'train:\n  lr: "0.001"\n')
    assert "it is quoted: remove the quotes" in line
