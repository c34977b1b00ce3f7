"""facegen.train.tracking: where the store lives, what a run records, the metrics files, best runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mlflow_runs import log_run as _log_run

from facegen.train import tracking


def test_repo_root_sees_through_dvc_temp_workspaces(tmp_path):
    assert tracking.repo_root(tmp_path) == tmp_path
    temp = tmp_path / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    temp.mkdir(parents=True)
    assert tracking.repo_root(temp) == tmp_path


def test_tracking_uri_is_absolute_sqlite_unless_env_overrides(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert tracking.tracking_uri(tmp_path) == "http://mlflow.internal:5000"


def test_git_commit_outside_a_checkout_is_unknown(tmp_path):
    assert tracking.git_commit(tmp_path) == "unknown"
    assert len(tracking.git_commit(Path(__file__).parent)) == 40


def test_epoch_files(tmp_path):
    history = [{"epoch": 1, "step": 4, "loss": 0.5, "lr": 1e-3, "images_per_s": 10.0, "seconds": 3.2},
               {"epoch": 2, "step": 8, "loss": 0.4, "lr": 5e-4, "images_per_s": 11.0, "seconds": 2.9, "fid": 42.5}]
    tracking.write_epoch_files(history, {"best_fid": 42.5, "best_epoch": 2}, tmp_path, "fid")
    assert json.loads((tmp_path / "train.json").read_text()) == {"best_fid": 42.5, "best_epoch": 2}
    with (tmp_path / "train_epochs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["fid"] == "" and rows[1]["fid"] == "42.5" and rows[1]["loss"] == "0.4"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    first = _log_run(uri, "first", {1: 9.0, 2: 7.0, 3: 8.0}, "/ckpt/first/best")
    second = _log_run(uri, "second", {1: 6.0, 2: 5.5}, "/ckpt/second/best")
    return uri, first, second


def test_tracker_records_params_metrics_per_epoch(two_runs):
    import mlflow

    uri, first, _ = two_runs
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(first)
    assert run.data.params == {"lr": "0.001", "channels": "[8, 16]"}
    assert [(m.step, m.value) for m in client.get_metric_history(first, "fd_offline")] == [(1, 9.0), (2, 7.0), (3, 8.0)]


def test_best_runs_latest_and_all(two_runs):
    uri, first, second = two_runs
    (latest,) = tracking.best_runs(uri, "exp")
    assert latest == {"run_id": second, "run_name": "second", "status": "FINISHED", "metric": "fd_offline",
                      "value": 5.5, "epoch": 2, "checkpoint": "/ckpt/second/best"}
    every = tracking.best_runs(uri, "exp", all_runs=True)
    assert [(r["run_id"], r["epoch"], r["value"]) for r in every] == [(second, 2, 5.5), (first, 2, 7.0)]
    with pytest.raises(ValueError, match="no MLflow experiment 'nope'"):
        tracking.best_runs(uri, "nope")


def test_resuming_a_run_missing_from_the_store_starts_a_new_one(two_runs):
    uri, first, second = two_runs
    t = tracking.Tracker(uri, "exp", "resumed", run_id="0" * 32)
    t.end()
    assert t.run_id not in ("0" * 32, first, second)
    again = tracking.Tracker(uri, "exp", "ignored", run_id=t.run_id)  # an existing run is continued
    again.end()
    assert again.run_id == t.run_id
