"""facegen.train.tracking: where the store lives, what a run records, the metrics files, best runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from mlflow_runs import log_run as _log_run

from facegen.fid.score import NOVELTY_SCORES
from facegen.train import metrics_files, mlflow_store, tracking


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


def test_epoch_files_hold_numbers_and_stable_columns(tmp_path):
    history = [
        {"epoch": 1, "step": 4, "loss": 0.5, "lr": 1e-3, "images_per_s": 10.0, "seconds": 3.2},
        {"epoch": 2, "step": 8, "loss": 0.4, "lr": 5e-4, "images_per_s": 11.0, "seconds": 2.9, "fid": 42.5},
    ]
    summary = {
        "best_fid": 42.5,
        "best_epoch": 2,
        "metric": "fid",
        "run_id": "abc",
        "final_loss": None,
        "nan": float("nan"),
        "flag": True,
    }
    metrics_files.write_epoch_files(history, {"epochs": 2, **summary}, tmp_path, "fid")
    assert list(json.loads((tmp_path / "train.json").read_text()).items()) == [  # headline first
        ("best_fid", 42.5),
        ("best_epoch", 2),
        ("epochs", 2),
    ]
    with (tmp_path / "train_epochs.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == [
        "epoch",
        "step",
        "loss",
        "lr",
        "images_per_s",
        "seconds",
        "fid",
        "kid",
        "kid_std",
        "fd_offline",
        "kid_offline",
        "kid_offline_std",
        *NOVELTY_SCORES,
    ]
    assert rows[0]["fid"] == "" and rows[1]["fid"] == "42.5" and rows[1]["loss"] == "0.4" and rows[1]["kid"] == ""
    # the scores alone, one row per scored epoch (dvc plots); the other extractor's file: header only
    novelty = "," + ",".join(NOVELTY_SCORES)
    assert (tmp_path / "train_fid.csv").read_text().splitlines() == [
        "epoch,fid,kid,kid_std" + novelty,
        "2,42.5,," + "," * len(NOVELTY_SCORES),
    ]
    offline = (tmp_path / "train_fd_offline.csv").read_text().splitlines()
    assert offline == ["epoch,fd_offline,kid_offline,kid_offline_std" + novelty]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "cache" / "checkpoints" / "k2" / "best").mkdir(parents=True)
    first = _log_run(uri, "first", {1: 9.0, 2: 7.0, 3: 8.0}, "cache/checkpoints/k1/best")  # deleted since
    second = _log_run(uri, "second", {1: 6.0, 2: 5.5}, "cache/checkpoints/k2/best")
    return uri, first, second, root


def test_tracker_records_params_metrics_per_epoch(two_runs):
    import mlflow

    uri, first, *_ = two_runs
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(first)
    assert run.data.params == {"lr": "0.001", "channels": "[8, 16]"}
    assert [(m.step, m.value) for m in client.get_metric_history(first, "fd_offline")] == [(1, 9.0), (2, 7.0), (3, 8.0)]


def test_best_runs_latest_and_all(two_runs):
    uri, first, second, root = two_runs
    (latest,) = tracking.best_runs(uri, "exp", root=root)
    assert latest == {
        "run_id": second,
        "run_name": "second",
        "status": "FINISHED",
        "metric": "fd_offline",
        "value": 5.5,
        "epoch": 2,
        "checkpoint": str(root / "cache/checkpoints/k2/best"),
        "dvc_exp_name": "",
    }
    every = tracking.best_runs(uri, "exp", all_runs=True, root=root)
    assert [(r["run_id"], r["epoch"], r["value"]) for r in every] == [(second, 2, 5.5), (first, 2, 7.0)]
    assert every[1]["checkpoint"] == f"runs:/{first}/best"  # its folder is gone: the MLflow copy
    with pytest.raises(ValueError, match="no MLflow experiment 'nope'"):
        tracking.best_runs(uri, "nope")


def test_resuming_a_run_missing_from_the_store_starts_a_new_one(two_runs):
    uri, first, second, _ = two_runs
    t = tracking.Tracker(uri, "exp", "resumed", run_id="0" * 32)
    t.end()
    assert t.run_id not in ("0" * 32, first, second)
    again = tracking.Tracker(uri, "exp", "ignored", run_id=t.run_id)  # an existing run is continued
    again.end()
    assert again.run_id == t.run_id


def test_run_tags_name_the_dvc_experiment_and_commit(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert tracking.run_tags(tmp_path) == {"git_commit": "unknown", "mlflow.source.git.commit": "unknown"}
    monkeypatch.setenv("DVC_EXP_NAME", "lr1e-4")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    tags = tracking.run_tags(tmp_path)
    assert tags["dvc.exp_name"] == "lr1e-4" and tags["dvc.baseline_rev"] == "a" * 40
    assert tracking.run_name("tiny", "abc") == "lr1e-4"  # the DVC experiment's name
    monkeypatch.delenv("DVC_EXP_NAME")
    assert tracking.run_name("tiny", "abc") == "tiny-abc"
    assert tracking.portable_path(tmp_path / "cache" / "x", tmp_path) == "cache/x"
    assert tracking.portable_path("/elsewhere/x", tmp_path) == "/elsewhere/x"


def test_resume_logs_no_step_twice_and_kill_orphans_are_closed(two_runs):
    import mlflow

    uri = two_runs[0]
    client = mlflow.MlflowClient(tracking_uri=uri)
    killed = tracking.Tracker(uri, "resume", "r", run_key="k")  # never ended: a kill -9 before a checkpoint
    for epoch in (1, 2, 3):
        killed.log_metrics({"loss": float(epoch)}, epoch)
    fresh = tracking.Tracker(uri, "resume", "r", run_key="k")  # the rerun starts over: a new run
    assert client.get_run(killed.run_id).info.status == "KILLED"
    assert client.get_run(killed.run_id).data.tags["facegen.superseded_by"] == fresh.run_id
    for epoch in (1, 2):
        fresh.log_metrics({"loss": 10.0 + epoch}, epoch)
    fresh.end("KILLED")  # checkpoint at epoch 1, killed in epoch 2 (logged before the kill)
    resumed = tracking.Tracker(uri, "resume", "r", run_id=fresh.run_id, run_key="k")
    assert client.get_run(fresh.run_id).info.status == "RUNNING"
    for epoch in (2, 3):  # epoch 2 replayed from the epoch-1 checkpoint
        resumed.log_metrics({"loss": 10.0 + epoch}, epoch)
    resumed.end()
    assert [(m.step, m.value) for m in client.get_metric_history(fresh.run_id, "loss")] == [
        (1, 11.0),
        (2, 12.0),
        (3, 13.0),
    ]
    assert client.get_run(fresh.run_id).info.status == "FINISHED"


def test_a_locked_store_is_retried_buffered_and_replayed(two_runs, capsys, short_sqlite_busy_timeout):
    import sqlite3

    import mlflow

    uri = two_runs[0]
    t = tracking.Tracker(uri, "lock", "r", retry=tracking.Retry(attempts=2, backoff_s=0.01))
    t.log_metrics({"loss": 1.0}, 1)
    capsys.readouterr()
    lock = sqlite3.connect(two_runs[3] / "mlflow.db", timeout=0)
    lock.execute("BEGIN EXCLUSIVE")  # another process holds the store (mlflow ui, a second trainer)
    t.log_metrics({"loss": 2.0}, 2)  # does not raise
    assert t.offline and [name for name, _ in t.pending] == ["log epoch 2"]
    assert "failed to log epoch 2" in capsys.readouterr().err
    lock.rollback()
    lock.close()
    t.log_metrics({"loss": 3.0}, 3)  # the store is back: epoch 2 goes first
    t.end()
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert [(m.step, m.value) for m in client.get_metric_history(t.run_id, "loss")] == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert not t.pending and "reachable again" in capsys.readouterr().err


def test_a_moved_store_writes_into_its_new_tree(tmp_path, monkeypatch):
    """The workspace store's artifact paths are relative to the workspace: a copy (the original
    deleted) logs into its own tree and reads the old runs with nothing rewritten, also from
    another current directory, where no call writes anything."""
    import shutil

    import mlflow

    first = tmp_path / "repo"
    (first / "notes").mkdir(parents=True)
    (first / "notes" / "note.txt").write_text("hi")
    monkeypatch.chdir(first)  # the stages run in the workspace root
    t = tracking.Tracker(f"sqlite:///{first / 'mlflow.db'}", "move", "r", artifact_root=first / "mlruns")
    t.log_artifacts(first / "notes", "notes")
    t.end()
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    monkeypatch.chdir(tmp_path)  # neither workspace: the calls still write into the store's tree
    shutil.rmtree(first)  # the original is gone: nothing may point there
    new_uri = f"sqlite:///{copy / 'mlflow.db'}"
    again = tracking.Tracker(new_uri, "move", "r2", artifact_root=copy / "mlruns")
    again.log_artifacts(copy / "notes", "notes")
    again.end()
    client = mlflow.MlflowClient(tracking_uri=new_uri)
    assert client.get_experiment_by_name("move").artifact_location == "mlruns/move"
    assert client.get_run(again.run_id).info.artifact_uri == f"mlruns/move/{again.run_id}/artifacts"
    assert mlflow_store.relocate_store(new_uri, copy) == 0  # nothing to rewrite
    for run_id in (t.run_id, again.run_id):
        assert (copy / "mlruns" / "move" / run_id / "artifacts" / "notes" / "note.txt").read_text() == "hi"
        assert mlflow_store.run_artifact(copy, run_id, "notes/note.txt").read_text() == "hi"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]  # no mlruns/ in the current directory


def test_grid_logged_with_its_step(two_runs):
    import mlflow
    from PIL import Image

    uri = two_runs[0]
    t = tracking.Tracker(uri, "grid", "r", artifact_root=two_runs[3] / "mlruns")
    t.log_grid(Image.new("RGB", (8, 8), "red"), 3)
    t.log_grid(Image.new("RGB", (8, 8), "red"), 0)  # the end of the run: the last grid where the UI opens
    t.end()
    client = mlflow.MlflowClient(tracking_uri=uri)
    names = [a.path for a in client.list_artifacts(t.run_id, "images")]
    steps = sorted({n.split("+step+")[1].split("+")[0] for n in names})
    assert steps == ["0", "3"]  # MLflow's image-slider naming: samples+step+N+...
    assert [a.path for a in client.list_artifacts(t.run_id, "samples")] == ["samples/epoch_00003.png"]


def test_a_run_monitors_the_system_without_mlflows_info_lines(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from facegen.train import tracking\n"
        "t = tracking.Tracker(sys.argv[1], 'quiet', 'r', artifact_root=sys.argv[2])\n"
        "assert t.monitor is not None\n"
        "t.end()\n"
    )
    uri, artifacts = f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "mlruns")
    proc = subprocess.run([sys.executable, "-c", code, uri, artifacts], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "system_metrics" not in proc.stderr, proc.stderr  # started / GPU skipped / stopping / terminated


def test_logging_the_training_split_as_a_dataset_warns_nothing(tmp_path):
    import warnings

    import mlflow
    import pandas as pd

    table = tmp_path / "faces.parquet"
    pd.DataFrame(
        {"face_id": ["a", "b", "c"], "status": ["ok", "ok", "blurry"], "split": ["train", "test", "train"],
         "face_index": [0, 1, 2]}  # an integer column: MLflow's schema inference hints about it
    ).to_parquet(table)  # fmt: skip
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = tracking.Tracker(uri, "ds", "r", artifact_root=tmp_path / "mlruns")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t.log_dataset(table, "train", "0" * 64)
    t.end()
    assert [str(w.message)[:80] for w in caught] == []
    run = mlflow.MlflowClient(uri).get_run(t.run_id)
    (only,) = run.inputs.dataset_inputs
    assert only.dataset.name == "faces-train" and '"num_rows": 1' in only.dataset.profile
