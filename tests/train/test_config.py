"""facegen.train.config: one source for the choices, run_key hashes only what changes the weights."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from facegen.train.config import LATER_KEYS, OPERATIONAL_KEYS, Extractor, Preset, TrainConfig, run_key


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
        "layers_per_block": 2,
        "dropout": 0.1,
        "lr_schedule": "constant",
        "adam_betas": (0.9, 0.99),
    }
    for key, value in weight_keys.items():
        assert run_key(dataclasses.replace(base, **{key: value}), "d") != run_key(base, "d"), key
    assert run_key(base, "other data") != run_key(base, "d")
    # the world size sets the effective batch: a 2-process run never resumes a 1-process checkpoint
    assert run_key(base, "d", 2) != run_key(base, "d", 1) == run_key(base, "d")


def test_keys_added_later_keep_the_run_keys_of_earlier_checkpoints():
    # the keys of these configs before layers_per_block, dropout, lr_schedule and adam_betas existed
    assert {"layers_per_block", "dropout", "lr_schedule", "adam_betas"} == LATER_KEYS
    assert run_key(TrainConfig(), "d") == "467e6a71d1c0"
    conditioned = TrainConfig(model="faces32", condition=("brightness",))
    assert run_key(conditioned, "d") == "ac58ae7a0e74"


def test_adam_betas_are_two_numbers_below_one():
    with pytest.raises(ValueError, match=r"train.adam_betas = \[0.9\] must be two numbers"):
        TrainConfig(adam_betas=(0.9,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"train\.adam_betas = \(0\.9, 1\.0\) is out of range"):
        TrainConfig(adam_betas=(0.9, 1.0))
    with pytest.raises(ValueError, match=r"train\.lr_schedule = 'linear': choose one of"):
        TrainConfig(lr_schedule="linear")  # type: ignore[arg-type]


def _stage(tmp_path, monkeypatch, train: dict | str, *args: str) -> int:
    """Run stages/train.py's main in ``tmp_path`` with a params.yaml ``train`` section."""
    import importlib.util
    from pathlib import Path

    import yaml

    spec = importlib.util.spec_from_file_location("train_stage", Path(__file__).parents[2] / "stages" / "train.py")
    assert spec is not None and spec.loader is not None
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": train}) if isinstance(train, dict) else train)
    monkeypatch.chdir(tmp_path)
    return int(stage.main(["--params", str(tmp_path / "params.yaml"), *args]))


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import json

    from tiny_faces import random_faces, write_faceset

    from facegen.fid.features import content_hash
    from facegen.train.data import load_split

    monkeypatch.delenv("FACEGEN_CHECKPOINTS", raising=False)
    write_faceset(tmp_path, random_faces(16, 32, 0), random_faces(8, 32, 1))
    train = {"model": "tiny", "channels": [8, 16], "image_size": 32, "batch_size": 8, "epochs": 3}
    before = sorted(tmp_path.rglob("*"))
    assert _stage(tmp_path, monkeypatch, train, "--dry-run") == 0
    plan = json.loads(capsys.readouterr().out)
    cfg = TrainConfig(**{**train, "channels": (8, 16)})
    assert plan["run_key"] == run_key(
        cfg, content_hash(load_split(tmp_path / "data" / "faces.parquet", "train", tmp_path, 32))
    )
    assert (
        plan["checkpoints"] == str(tmp_path / "cache" / "checkpoints" / plan["run_key"]) and plan["resume_from"] is None
    )
    assert (plan["train_images"], plan["test_images"], plan["image_shape"]) == (16, 8, [32, 32, 3])
    assert (plan["world_size"], plan["effective_batch"], plan["steps_per_epoch"], plan["total_steps"]) == (1, 8, 2, 6)
    assert plan["train"]["lr"] == TrainConfig().lr and plan["train"]["epochs"] == 3  # resolved: defaults filled in
    assert sorted(tmp_path.rglob("*")) == [*before, tmp_path / "params.yaml"]  # nothing else written


def _stage_error(tmp_path, monkeypatch, capsys, train: dict | str) -> str:
    """stages/train.py's one error line for a params.yaml ``train`` section; no MLflow store opened."""
    assert _stage(tmp_path, monkeypatch, train) == 2
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
