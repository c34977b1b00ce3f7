"""Judging (Parquet across restarts, Wilson interval, MLflow metric) and the runs/checkpoints catalog."""

from __future__ import annotations

import random

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow_runs import log_run
from PIL import Image
from studio_client import page_client

from facegen.diffusion.model import save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.studio.app import StudioConfig
from facegen.studio.judge import JudgementStore, wilson_interval


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and round(high, 4) == 0.1611
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="errors=11 must be between 0 and n=10"):
        wilson_interval(11, 10)


def test_store_is_atomic_and_refuses_a_foreign_table(tmp_path):
    path = tmp_path / "data" / "j.parquet"
    store = JudgementStore(path)
    store.add("best", None, None, item="sample:1", truth="fake", answer="real")
    assert sorted(p.name for p in path.parent.iterdir()) == ["j.parquet"]  # no temp file left
    pd.DataFrame({"x": [1]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"not a judgements table \(missing columns"):
        JudgementStore(path)


WRITER = """
import sys
from facegen.studio.judge import JudgementStore
store = JudgementStore(sys.argv[1])
while True:
    store.add("best", None, None, item="sample:%d" % len(store.rows), truth="fake", answer="real")
    print(len(store.rows), flush=True)
"""


def test_the_table_survives_a_kill_mid_write(tmp_path):
    """kill -9 a writer between and during rewrites: the table on disk is always whole and readable."""
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "j.parquet"
    store = JudgementStore(path)
    store.rows = [dict(store.add("best", None, None, item="seed", truth="fake", answer="real"))] * 200_000
    store.add("best", None, None, item="last", truth="real", answer="real")  # a big table: each rewrite is slow
    for delay in (0.6, 0.9, 1.3):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = int(proc.stdout.readline())  # one rewrite done: the next ones are in flight
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        rows = pd.read_parquet(path)
        assert len(rows) >= first and rows["item"].iloc[:200_001].tolist()[-1] == "last"


def _faces(repo, n=3):
    """A faces.parquet with n accepted test-split faces (32 px PNGs) and one train face."""
    rows = []
    (repo / "data" / "faces").mkdir(parents=True)
    for i in range(n + 1):
        rel = f"data/faces/f{i}.png"
        Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(repo / rel)
        rows.append({"face_id": f"f{i}", "path": rel, "status": "ok", "split": "test" if i < n else "train"})
    pd.DataFrame(rows).to_parquet(repo / "data" / "faces.parquet")


def _judge(client, answers):
    results = []
    for answer in answers:
        item = client.get("/api/judge/next").json()
        assert item["size"] == 16
        r = client.post("/api/judge", json={"token": item["token"], "answer": answer})
        assert r.status_code == 200, r.text
        results.append(r.json())
    return results


def test_judgements_persist_across_a_restart(repo):
    _faces(repo)
    cfg = StudioConfig(root=repo)
    with page_client(cfg) as c:
        c.app.state.studio.rng = random.Random(1)
        first = _judge(c, ["real", "fake", "real", "real", "fake", "fake"])
        assert {r["truth"] for r in first} == {"real", "fake"}
        reals = [r["item"] for r in first if r["truth"] == "real"]
        assert all(item in {"face:f0", "face:f1", "face:f2"} for item in reals)  # test split only
        # a token answers once
        token = c.get("/api/judge/next").json()["token"]
        assert c.post("/api/judge", json={"token": token, "answer": "real"}).status_code == 200
        assert c.post("/api/judge", json={"token": token, "answer": "real"}).status_code == 404
    errors = sum(not r["correct"] for r in first) + 0
    table = pd.read_parquet(repo / "data" / "studio_judgements.parquet")
    assert len(table) == 7 and list(table["answer"][:6]) == ["real", "fake", "real", "real", "fake", "fake"]
    with page_client(cfg) as c:  # a new server process reads them back
        summary = c.get("/api/judge/summary").json()["model"]
        assert summary["n"] == 7
        assert summary["errors"] == errors + int(not table["correct"].iloc[6])
        low, high = wilson_interval(summary["errors"], 7)
        assert (summary["ci_low"], summary["ci_high"]) == (low, high)
        more = _judge(c, ["fake"])
        assert more[0]["summary"]["n"] == 8 and more[0]["logged_to_mlflow"] is False


@pytest.fixture()
def tracked(repo, tiny_unet, tmp_path):
    """An MLflow store with one run whose best folder and epoch-2 checkpoint are on disk."""
    from diffusers.training_utils import EMAModel

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_dir = repo / "models" / "checkpoints" / "abc123"
    torch.manual_seed(1)
    other = type(tiny_unet).from_config(tiny_unet.config)  # different weights: epoch 2's EMA
    save_model_dir(run_dir / "best", tiny_unet, make_noise_scheduler(), {"model": "tiny"})
    (run_dir / "epoch_00002").mkdir()
    torch.save(EMAModel(other.parameters()).state_dict(), run_dir / "epoch_00002" / "ema.pt")
    mlflow.set_tracking_uri(uri)
    run_id = log_run(uri, "r1", {1: 3.0, 2: 2.0, 3: 2.5}, str(run_dir / "best"))
    grid = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    mlflow.MlflowClient(uri).log_image(run_id, grid, "samples/epoch_00002.png")
    return uri, run_id


def test_runs_checkpoints_and_judgements_logged_to_the_judged_run(repo, tracked):
    uri, run_id = tracked
    with page_client(StudioConfig(root=repo, tracking_uri=uri, experiment="exp")) as c:
        runs = c.get("/api/runs").json()["runs"]
        assert [r["run_id"] for r in runs] == [run_id]
        run = runs[0]
        assert (run["metric"], run["best_epoch"], run["best_value"]) == ("fd_offline", 2, 2.0)
        assert run["curves"]["fd_offline"] == [[1, 3.0], [2, 2.0], [3, 2.5]]
        assert run["grids"] == [2] and run["checkpoints"] == [f"run:{run_id}", f"run:{run_id}:epoch:2"]
        grid = c.get(f"/api/runs/{run_id}/grid/2")
        assert grid.status_code == 200 and grid.content.startswith(b"\x89PNG")
        assert c.get(f"/api/runs/{run_id}/grid/7").status_code == 404

        best = c.post("/api/generate", json={"n": 2}).json()["images"]
        m = c.post("/api/model", json={"id": f"run:{run_id}:epoch:2"})
        assert m.status_code == 200 and (m.json()["epoch"], m.json()["run_id"]) == (2, run_id)
        epoch2 = c.post("/api/generate", json={"n": 2}).json()
        assert epoch2["model"] == f"run:{run_id}:epoch:2" and epoch2["images"] != best
        r = c.post("/api/model", json={"id": f"run:{run_id}:epoch:9"})
        assert r.status_code == 404 and "no saved checkpoint of epoch 9; saved epochs: [2]" in r.json()["detail"]
        r = c.post("/api/model", json={"id": "run:ffffffffffffffffffffffffffffffff"})
        assert r.status_code == 404 and "is not in MLflow" in r.json()["detail"]
        assert c.post("/api/model", json={"id": f"run:{run_id}"}).json()["epoch"] is None  # no best.json

        c.post("/api/model", json={"id": f"run:{run_id}:epoch:2"})
        c.app.state.studio.rng = random.Random(3)
        results = _judge(c, ["fake", "fake", "real"])
        assert all(r["logged_to_mlflow"] for r in results)
    final = results[-1]["summary"]
    history = mlflow.MlflowClient(uri).get_metric_history(run_id, "human_error_rate")
    assert [h.step for h in history] == [2, 2, 2] and history[-1].value == final["error_rate"]
    metrics = mlflow.MlflowClient(uri).get_run(run_id).data.metrics
    assert metrics["human_judgements"] == 3 and metrics["human_ci_high"] == final["ci_high"]


def test_a_full_disk_answers_507_and_counts_only_saved_rows(repo, monkeypatch):
    import errno

    from facegen.studio import judge

    _faces(repo)
    with page_client(StudioConfig(root=repo)) as c:
        c.app.state.studio.rng = random.Random(1)
        assert len(_judge(c, ["real"])) == 1
        real_write = judge.write_parquet

        def full(*args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(judge, "write_parquet", full)
        token = c.get("/api/judge/next").json()["token"]
        for _ in range(3):  # retried answers are refused the same way and change nothing
            r = c.post("/api/judge", json={"token": token, "answer": "fake"})
            assert r.status_code == 507 and "no space left for" in r.json()["detail"]
        assert c.get("/api/judge/summary").json()["model"]["n"] == 1
        monkeypatch.setattr(judge, "write_parquet", real_write)
        r = c.post("/api/judge", json={"token": token, "answer": "fake"})  # room again: the same answer lands
        assert r.status_code == 200 and r.json()["summary"]["n"] == 2
    assert len(pd.read_parquet(repo / "data" / "studio_judgements.parquet")) == 2


def test_an_mlflow_failure_never_fails_a_saved_answer(repo, tracked, monkeypatch):
    from facegen.studio import judge_routes

    uri, run_id = tracked

    def broken(*args, **kwargs):
        raise OSError(28, "database or disk is full")

    monkeypatch.setattr(judge_routes, "log_to_mlflow", broken)
    with page_client(StudioConfig(root=repo, tracking_uri=uri, experiment="exp")) as c:
        assert c.post("/api/model", json={"id": f"run:{run_id}:epoch:2"}).status_code == 200
        c.app.state.studio.rng = random.Random(3)
        (result,) = _judge(c, ["fake"])
    assert result["logged_to_mlflow"] is False and "disk is full" in result["summary"]["mlflow_error"]
    assert len(pd.read_parquet(repo / "data" / "studio_judgements.parquet")) == 1


@pytest.mark.parametrize("where", ["inside", "outside"])
def test_the_summary_says_where_the_answers_are_saved(repo, tmp_path_factory, where):
    """saved_to is the store the server writes (the page's end screen shows it): repo-relative inside --root."""
    outside = tmp_path_factory.mktemp("elsewhere") / "j.parquet"
    path = repo / "data" / "judged" / "mine.parquet" if where == "inside" else outside
    path.parent.mkdir(parents=True, exist_ok=True)
    _faces(repo)
    with page_client(StudioConfig(root=repo, judgements=path)) as c:
        shown = "data/judged/mine.parquet" if where == "inside" else str(path)
        assert c.get("/api/judge/summary").json()["saved_to"] == shown
        (answer,) = _judge(c, ["real"])
        assert answer["saved_to"] == shown and c.get("/api/judge/summary").json()["model"]["n"] == 1
    assert len(pd.read_parquet(path)) == 1
