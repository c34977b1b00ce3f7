"""The train stage under faults and launchers: a locked MLflow store, SIGTERM, num_processes, precision."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_faces import random_faces, write_faceset

from facegen.train.loop import TrainConfig, TrainPaths, train

REPO = Path(__file__).resolve().parents[2]
TINY = dict(
    model="tiny",
    channels=(8, 16),
    image_size=32,
    batch_size=8,
    lr=2e-3,
    warmup_steps=2,
    fid_every=0,
    checkpoint_every=1,
    log_checkpoints=False,
    experiment="faults",
)


def _paths(root: Path, uri: str) -> TrainPaths:
    return TrainPaths(
        faces=root / "data" / "faces.parquet",
        root=root,
        models=root / "models",
        metrics=root / "metrics",
        fid_cache=root / "cache",
        tracking_uri=uri,
        artifact_root=root / "mlruns",
        checkpoints=root / "cache" / "checkpoints",
    )


def _env(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(REPO),
    }


def _params(root: Path, **overrides) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"train": {**TINY, "channels": [8, 16], **overrides}}))


@pytest.mark.slow
def test_a_store_locked_mid_run_neither_stops_training_nor_loses_a_checkpoint(tmp_path, capsys):
    import mlflow

    write_faceset(tmp_path, random_faces(32, 32, 0), random_faces(8, 32, 1))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(uri).search_experiments()  # create the tables
    lock = sqlite3.connect(tmp_path / "mlflow.db", timeout=0, isolation_level=None)

    def on_step(epoch: int, step: int, loss: float) -> None:
        if step == 4:  # last step of epoch 1: epoch 1 is logged while the store is locked
            lock.execute("BEGIN EXCLUSIVE")
        if step == 9:  # into epoch 3: the store is back
            lock.execute("ROLLBACK")

    # in-process: the precision of the tests before it (Accelerate's state is per process)
    cfg = TrainConfig(**{**TINY, "epochs": 3, "precision": "no", "channels_last": False})
    summary = train(cfg, _paths(tmp_path, uri), on_step=on_step)
    assert summary["epochs"] == 3
    run_dir = next((tmp_path / "cache" / "checkpoints").iterdir())
    assert sorted(p.name for p in run_dir.glob("epoch_*")) == ["epoch_00002", "epoch_00003"]
    err = capsys.readouterr().err
    assert "warning: MLflow" in err and "training goes on" in err and "reachable again" in err
    client = mlflow.MlflowClient(uri)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]  # buffered, replayed


@pytest.mark.slow
def test_sigterm_marks_the_run_killed(tmp_path):
    import mlflow

    write_faceset(tmp_path, random_faces(32, 32, 0), random_faces(8, 32, 1))
    _params(tmp_path, epochs=500)
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=tmp_path,
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stderr:  # wait for the first epoch
        if line.startswith("epoch 1/500"):
            break
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("faults").experiment_id])
    assert run.info.status == "KILLED"


@pytest.mark.slow
def test_num_processes_launches_accelerate_from_the_stage_script(tmp_path):
    write_faceset(tmp_path, random_faces(32, 32, 0), random_faces(8, 32, 1))
    _params(tmp_path, epochs=1, num_processes=2)
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )  # what `dvc repro` runs
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: launching 2 processes" in proc.stderr and proc.stderr.count("epoch 1/1 loss") == 1
    (run_dir,) = (tmp_path / "cache" / "checkpoints").iterdir()
    state = json.loads((run_dir / "epoch_00001" / "state.json").read_text())
    assert state["num_processes"] == 2 and state["step"] == 2  # 32 faces / 2 processes / batch 8


@pytest.mark.slow
def test_a_launcher_running_fewer_processes_fails_loudly(tmp_path):
    write_faceset(tmp_path, random_faces(16, 32, 0), random_faces(8, 32, 1))
    _params(tmp_path, epochs=1, num_processes=2)
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--num_processes",
            "1",
            "--cpu",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(REPO / "stages" / "train.py"),
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "train: error: train.num_processes = 2 but 1 process(es) run" in proc.stderr
    assert not (tmp_path / "cache" / "checkpoints").exists()


def test_accelerate_launch_precision_wins_over_params(tmp_path, monkeypatch, capsys):
    write_faceset(tmp_path, random_faces(8, 32, 0), random_faces(8, 32, 1))
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")  # what `accelerate launch --mixed_precision no` sets
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    train(TrainConfig(**{**TINY, "epochs": 1, "precision": "bf16"}), _paths(tmp_path, uri))
    assert "precision no from accelerate launch/config (train.precision bf16 ignored)" in capsys.readouterr().out
