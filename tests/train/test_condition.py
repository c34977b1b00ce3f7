"""facegen.train.condition and its hooks in the train loop: values, statistics, dropout,
configuration errors, the unchanged unconditional run, and one conditioned run end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_faces import random_faces, write_faceset

from facegen.diffusion.model import build_unet, load_model_dir
from facegen.faces.appearance import measure_batch
from facegen.train import condition
from facegen.train.loop import TrainConfig, TrainPaths, run_key, train


def _table(tmp_path, n=16):
    train_faces, test_faces = random_faces(n, 32, 0), random_faces(4, 32, 1)
    table = write_faceset(tmp_path, train_faces, test_faces)
    df = pd.read_parquet(table)
    df["brightness"] = np.nan
    ok = df["status"] == "ok"
    df.loc[ok, "brightness"] = measure_batch(np.concatenate([train_faces, test_faces]), "brightness")
    df.loc[df["face_id"] == "train0003", "brightness"] = np.nan  # a face missing the attribute
    df["gender"] = pd.Series([None] * len(df), dtype="float64")
    df.to_parquet(table, index=False)
    return table, measure_batch(train_faces, "brightness")


def test_values_in_load_order_with_missing_as_nan_and_stats(tmp_path):
    table, expected = _table(tmp_path)
    values = condition.load_values(table, "train", ("brightness",))
    assert values.shape == (16, 1) and np.isnan(values[3, 0])
    np.testing.assert_allclose(np.delete(values[:, 0], 3), np.delete(expected, 3))
    stats = condition.fit_stats(values, ("brightness",), 0.25)
    kept = np.delete(expected, 3)
    assert stats["count"] == [15] and stats["mean"][0] == pytest.approx(kept.mean())
    assert stats["min"][0] == kept.min() and stats["std"][0] == pytest.approx(kept.std())
    with pytest.raises(ValueError, match=r"\['hair'\] not numeric attribute columns .*choose from"):
        condition.load_values(table, "train", ("hair",))
    with pytest.raises(ValueError, match=r"\['gender'\] are empty \(null\) for every train face"):
        condition.load_values(table, "train", ("gender",))


def test_dropout_drops_whole_conditions_and_missing_values():
    z = torch.tensor([[0.5], [float("nan")], [-1.0], [2.0]])
    data = condition.ConditionData(z, {}, 0.0)
    out = data.batch(torch.arange(4), torch.Generator().manual_seed(0))["condition"]
    torch.testing.assert_close(out, torch.tensor([[0.5, 1.0], [0.0, 0.0], [-1.0, 1.0], [2.0, 1.0]]))
    z = torch.zeros(4000, 2)
    drop = condition.ConditionData(z, {}, 0.2).batch(torch.arange(4000), torch.Generator().manual_seed(1))["condition"]
    flags = drop[:, 2:]
    both = (flags.sum(1) == 0).float().mean().item()
    assert 0.2 < both < 0.26  # 0.2 whole + 0.8 x 0.2^2 both alone = 0.232
    assert 0.3 < (flags[:, 0] == 0).float().mean().item() < 0.4  # 0.2 + 0.8 x 0.2 = 0.36
    same = condition.ConditionData(z, {}, 0.2).batch(torch.arange(4000), torch.Generator().manual_seed(1))
    torch.testing.assert_close(same["condition"], drop, rtol=0, atol=0)


def test_config_errors():
    with pytest.raises(ValueError, match=r"horizontal flip negates.*train.hflip: false"):
        condition.check_config(("yaw",), dropout=0.1, margin=0.25, hflip=True, color_jitter=0.0)
    with pytest.raises(ValueError, match=r"colour jitter changes.*train.color_jitter: 0"):
        condition.check_config(("brightness",), dropout=0.1, margin=0.25, hflip=False, color_jitter=0.1)
    with pytest.raises(ValueError, match=r"train.condition_dropout = 1.0"):
        condition.check_config(("brightness",), dropout=1.0, margin=0.25, hflip=True, color_jitter=0.0)
    with pytest.raises(ValueError, match="twice"):
        condition.check_config(("brightness", "brightness"), dropout=0.1, margin=0.25, hflip=True, color_jitter=0.0)
    condition.check_config(("yaw",), dropout=0.1, margin=0.25, hflip=False, color_jitter=0.0)


def test_unconditional_config_is_todays_run():
    cfg = TrainConfig()
    assert condition.prepare(cfg, "no-such.parquet", "cpu") is None  # reads nothing, draws nothing
    # the condition keys do not enter an unconditional run's key (its checkpoints resume as before)
    base = run_key(TrainConfig(), "abc")
    assert run_key(TrainConfig(condition_dropout=0.5, condition_margin=1.0), "abc") == base
    conditioned = run_key(TrainConfig(condition=("brightness",)), "abc")
    assert conditioned != base
    assert run_key(TrainConfig(condition=("brightness",), condition_dropout=0.5), "abc") != conditioned
    tiny = TrainConfig(model="tiny", channels=(8, 16), image_size=16)
    torch.manual_seed(0)
    a = condition.build_unet(tiny, None)
    torch.manual_seed(0)
    b = build_unet("tiny", 16, (8, 16))
    assert type(a) is type(b) and a.config == b.config
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def test_conditioned_training_run_saves_a_conditioned_model(tmp_path):
    table, expected = _table(tmp_path)
    cfg = TrainConfig(
        model="tiny",
        channels=(8, 16),
        image_size=32,
        batch_size=8,
        lr=2e-3,
        warmup_steps=1,
        epochs=2,
        precision="no",  # in-process: the precision of the other training tests (Accelerate's state is per process)
        channels_last=False,
        fid_every=0,
        checkpoint_every=2,
        log_checkpoints=False,
        experiment="test",
        condition=("brightness",),
        condition_dropout=0.2,
    )
    paths = TrainPaths(
        faces=table,
        root=tmp_path,
        models=tmp_path / "models",
        metrics=tmp_path / "metrics",
        fid_cache=tmp_path / "cache",
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root=tmp_path / "mlruns",
    )
    (tmp_path / "metrics" / "grids").mkdir(parents=True)
    (tmp_path / "metrics" / "grids" / "epoch_00009.png").write_bytes(b"an earlier run's grid")
    summary = train(cfg, paths)
    assert summary["steps"] == 4
    # fid_every: 0 scores nothing, so no grids; the declared DVC output is still there, emptied
    assert (tmp_path / "metrics" / "grids").is_dir() and not any((tmp_path / "metrics" / "grids").iterdir())
    unet, _, saved_cfg = load_model_dir(tmp_path / "models" / "best")
    assert type(unet).__name__ == "ConditionedUNet2DModel" and saved_cfg["condition"] == ["brightness"]
    kept = np.delete(expected, 3)
    assert unet.config.condition_mean[0] == pytest.approx(kept.mean())
    assert unet.config.condition_max[0] == pytest.approx(kept.max())
    # training moved the (zero-initialised) embedding: the condition reaches the UNet
    assert unet.condition_embedding[2].weight.abs().sum() > 0
