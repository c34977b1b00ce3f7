"""facegen.train.mlflow_store: a copied or moved workspace finds its MLflow artifacts and registered
model before any training run, through `facegen best`, `facegen best --register` and
`mlflow.pyfunc.load_model`; the SQL adapter matches the installed MLflow's tables."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3

import numpy as np
import pytest

from facegen import cli
from facegen.train import mlflow_store, tracking


def test_the_tables_the_adapter_rewrites_exist_in_this_mlflow(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()  # creates MLflow's schema
    con = sqlite3.connect(tmp_path / "mlflow.db")
    for table, column, key in mlflow_store.PATH_COLUMNS:
        columns = {row[1] for row in con.execute(f"PRAGMA table_info({table})")}
        assert {column, key or column} <= columns, (mlflow.__version__, table, columns)
    con.close()


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """A workspace with one finished run (a logged pyfunc model and a file), copied with `cp -a`
    semantics to another folder; the original is deleted, so nothing may still point there."""
    import torch

    from facegen.diffusion.model import build_unet, save_model_dir
    from facegen.diffusion.noise import make_noise_scheduler

    base = tmp_path_factory.mktemp("ws")
    first = base / "repo"
    (first / "models").mkdir(parents=True)
    torch.manual_seed(0)
    best = {"epoch": 2, "metric": "fd_offline", "value": 3.5, "run_id": "x"}
    save_model_dir(first / "models" / "best", build_unet("tiny", 16, (8, 16)), make_noise_scheduler("linear", 50),
                   {"model": "tiny", "image_size": 16}, best=best)  # fmt: skip
    with contextlib.chdir(first):  # the trainer runs in the workspace root
        t = tracking.Tracker(f"sqlite:///{first / 'mlflow.db'}", "move", "r", artifact_root=first / "mlruns")
        t.set_tags({"metric": "fd_offline"})
        t.log_metrics({"fd_offline": 3.5, "best_fd_offline": 3.5, "best_epoch": 2}, 2)
        (first / "notes").mkdir()
        (first / "notes" / "note.txt").write_text("hi")
        t.log_artifacts(first / "notes", "notes")
        t.log_model(first / "models" / "best", step=2)
        t.end()
    (first / "params.yaml").write_text("train:\n  experiment: move\n")
    copy = base / "copy"
    shutil.copytree(first, copy, symlinks=True)
    shutil.rmtree(first)
    return copy, t.run_id


@pytest.mark.slow
def test_a_copied_workspace_answers_best_register_and_load_before_any_run(moved, monkeypatch, capsys):
    import mlflow

    copy, run_id = moved
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert cli.main(["best", "--json", "--register", "facegen-faces"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert (row["run_id"], row["epoch"], row["registered"]) == (run_id, 2, "facegen-faces v1")
    uri = f"sqlite:///{copy / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    assert [a.path for a in client.list_artifacts(run_id, "notes")] == ["notes/note.txt"]
    assert client.get_run(run_id).info.artifact_uri == f"mlruns/move/{run_id}/artifacts"  # relative: it moves
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model("models:/facegen-faces/1")  # from the workspace root
    import pandas as pd

    images = model.predict(pd.DataFrame({"seed": np.array([1], dtype=np.int64)}), params={"steps": 2})
    assert images.shape == (1, 16, 16, 3) and images.dtype == np.uint8
    assert mlflow_store.run_artifact(copy, run_id, "notes/note.txt").read_text() == "hi"
    assert mlflow_store.run_artifact(copy, run_id, "notes/note.txt").is_relative_to(copy)
    with pytest.raises(FileNotFoundError, match=r"no artifact 'nope\.txt'"):
        mlflow_store.run_artifact(copy, run_id, "nope.txt")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_plain_mlflow_ui_in_a_copied_workspace_lists_and_serves_the_artifacts(moved):
    """The documented `mlflow ui --backend-store-uri sqlite:///mlflow.db`, started in the copy's
    root before any facegen command: the run's artifacts and the logged model's files are there."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    copy, run_id = moved
    port = _free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "ui", "--backend-store-uri", "sqlite:///mlflow.db"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=copy, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def get(path: str) -> bytes:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            return resp.read()

    try:
        for _ in range(120):
            try:
                get("/health")
                break
            except OSError:
                time.sleep(0.5)
        listed = json.loads(get(f"/ajax-api/2.0/mlflow/artifacts/list?run_uuid={run_id}&path=notes"))
        assert [f["path"] for f in listed["files"]] == ["notes/note.txt"]
        assert get(f"/get-artifact?path=notes/note.txt&run_uuid={run_id}") == b"hi"
        models = json.loads(get(f"/ajax-api/2.0/mlflow/artifacts/list?run_uuid={run_id}"))
        assert "notes" in [f["path"] for f in models["files"]]
        model_id = mlflow_model_id(copy, run_id)
        files = json.loads(get(f"/ajax-api/2.0/mlflow/logged-models/{model_id}/artifacts/directories"))
        assert "MLmodel" in [f["path"] for f in files["files"]], files
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def mlflow_model_id(copy, run_id: str) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")
    (model,) = client.search_logged_models([client.get_run(run_id).info.experiment_id])
    return model.model_id


def test_ui_command_serves_the_workspace_store(tmp_path):
    cmd = cli.ui_command(tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}", "127.0.0.1", 5001)
    assert cmd[1:] == [
        "ui",
        "--backend-store-uri",
        f"sqlite:///{tmp_path / 'mlflow.db'}",
        "--default-artifact-root",
        str(tmp_path / "mlruns"),
        "--host",
        "127.0.0.1",
        "--port",
        "5001",
    ]
    assert shutil.which(cmd[0])
