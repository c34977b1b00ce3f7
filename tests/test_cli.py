"""facegen.cli: `facegen best` answers which epoch was best, from the MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow_runs import log_run as _log_run

from facegen import cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    (root / "m" / "newer").mkdir(parents=True)
    older = _log_run(uri, "older", {1: 3.0, 2: 2.0}, str(root / "m" / "older"))
    newer = _log_run(uri, "newer", {1: 4.0, 2: 1.5, 3: 1.75}, str(root / "m" / "newer"))
    _log_run(uri, "demo", {1: 0.5}, "", experiment="facegen-demo")
    return uri, older, newer, root


def test_best_prints_the_latest_run(store, capsys):
    uri, _, newer, root = store
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out == (
        f"run {newer} (newer, FINISHED): best epoch 2 fd_offline 1.5000 checkpoint {root / 'm' / 'newer'}\n"
    )


def test_best_follows_params_yaml_experiment(store, tmp_path, monkeypatch, capsys):
    uri = store[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("train:\n  experiment: facegen-demo\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli.main(["best", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["run_name"] == "demo" and row["checkpoint"] == f"runs:/{row['run_id']}/best"
    (tmp_path / "params.yaml").write_text("crawl: {}\n")
    assert cli.main(["best"]) == 2  # no train.experiment: MLflow experiment "facegen", absent here
    assert "no MLflow experiment 'facegen'" in capsys.readouterr().err


def test_best_all_as_json(store, capsys):
    uri, older, newer, _ = store
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", uri, "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["epoch"], r["value"]) for r in rows] == [(newer, 2, 1.5), (older, 2, 2.0)]


def test_unknown_experiment_is_a_clear_error(store, capsys):
    assert cli.main(["best", "--experiment", "nope", "--tracking-uri", store[0]]) == 2
    assert "no MLflow experiment 'nope'" in capsys.readouterr().err


def test_console_script_entry_point(store):
    out = subprocess.run(
        [sys.executable, "-m", "facegen.cli", "best", "--experiment", "exp", "--tracking-uri", store[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"run {store[2]} (newer") and "best epoch 2" in out


def test_prune_removes_only_checkpoints_nothing_names(tmp_path, monkeypatch, capsys):
    import mlflow

    from facegen.train import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpts = tmp_path / "cache" / "checkpoints"
    for key, size in (("kept", 3000), ("gone", 2 * 2**20), ("orphan", 1000)):
        (ckpts / key / "epoch_00001").mkdir(parents=True)
        (ckpts / key / "epoch_00001" / "model.safetensors").write_bytes(b"x" * size)
    runs = {key: tracking.Tracker(uri, "exp", key, run_key=key) for key in ("kept", "gone")}
    for t in runs.values():
        t.end()
    mlflow.MlflowClient(tracking_uri=uri).delete_run(runs["gone"].run_id)  # the user deleted it in MLflow
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("FACEGEN_CHECKPOINTS", raising=False)
    assert cli.main(["prune", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["remove", "2.0", "MiB"] and out[0].split()[3] == str(ckpts / "gone")
    assert out[1].split()[0] == "keep" and out[1].split()[3] == str(ckpts / "kept")
    assert out[2].split()[0] == "remove" and out[2].split()[3] == str(ckpts / "orphan")
    assert out[3] == "would free 2.0 MiB of 3 run folder(s)"
    assert sorted(p.name for p in ckpts.iterdir()) == ["gone", "kept", "orphan"]  # dry run: nothing removed
    assert cli.main(["prune"]) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == ["kept"]
    assert capsys.readouterr().out.splitlines()[-1] == "freed 2.0 MiB of 3 run folder(s)"
    (ckpts / "other").mkdir()
    assert cli.main(["prune", "--tracking-uri", f"sqlite:///{tmp_path / 'empty.db'}"]) == 2  # a store naming none
    assert "Nothing was removed" in capsys.readouterr().err and (ckpts / "kept").is_dir()
