"""The train stage under real DVC commands in a temporary repository: checkpoints survive every
command, a failed experiment keeps the last good outputs, temp experiments tag MLflow and leave
resolvable checkpoints, plots and metrics are what `dvc plots/metrics` users expect."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny_faces import random_faces, write_faceset

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRAIN = dict(
    model="tiny",
    channels=[8, 16],
    image_size=32,
    batch_size=8,
    lr=2e-3,
    warmup_steps=2,
    epochs=2,
    fid_every=1,
    fid_num_samples=8,
    fid_batch_size=8,
    fid_extractor="offline",
    eval_steps=2,
    grid_size=4,
    checkpoint_every=1,
    log_checkpoints=False,
    experiment="test-dvc",
    precision="no",
)


def _sh(root: Path, *cmd: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("DVC_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run(list(cmd), cwd=root, env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def _checkpoints(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / "cache" / "checkpoints").glob("*/epoch_*")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """git + DVC repo: the real train stage and plots of dvc.yaml, tiny params, DVC-tracked faces."""
    root = tmp_path_factory.mktemp("dvcrepo")
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())
    plots = [p for p in real["plots"] if "metrics/" in json.dumps(p)]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"train": real["stages"]["train"]}, "plots": plots}))
    fid = yaml.safe_load((REPO / "params.yaml").read_text())["fid"]  # train reads fid.pr_k, fid.memorization_*
    (root / "params.yaml").write_text(yaml.safe_dump({"train": TRAIN, "fid": fid}))
    (root / "stages").mkdir()
    shutil.copy(REPO / "stages" / "train.py", root / "stages" / "train.py")
    shutil.copytree(REPO / "facegen", root / "facegen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    write_faceset(root, random_faces(16, 32, 0), random_faces(8, 32, 1))
    _sh(root, "git", "init", "-q")
    _sh(root, "git", "config", "user.email", "t@example.com")
    _sh(root, "git", "config", "user.name", "t")
    _sh(root, "dvc", "init", "-q")
    _sh(root, "dvc", "add", "-q", "data/faces", "data/faces.parquet")
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "faces")
    proc = _sh(root, "dvc", "repro")
    root.joinpath("repro.log").write_text(proc.stdout + proc.stderr)
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "trained")
    return root


@pytest.mark.slow
def test_first_run_outputs_progress_and_plots(repo):
    log = (repo / "repro.log").read_text()
    assert [line.split(" loss")[0] for line in log.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/2",
        "epoch 2/2",
    ]
    assert "it/s" not in log and "step/s" not in log  # no progress bars off a terminal
    assert len(_checkpoints(repo)) == 2 and not (repo / "models" / "checkpoints").exists()
    assert (repo / "models" / "best" / "model_index.json").is_file()
    assert sorted(p.name for p in (repo / "metrics" / "grids").iterdir()) == ["epoch_00001.png", "epoch_00002.png"]
    metrics = json.loads(_sh(repo, "dvc", "metrics", "show", "--json").stdout)
    values = next(iter(metrics.values()))["data"]["metrics/train.json"]["data"]
    assert set(values) == {"best_epoch", "best_fd_offline", "epochs", "steps", "final_loss", "images_per_s"}
    assert all(isinstance(v, (int, float)) for v in values.values())
    plots = json.loads(_sh(repo, "dvc", "plots", "show", "--json").stdout)["data"]
    names = set(plots)
    assert {"loss", "score"} <= names and any(n.startswith("metrics/grids") for n in names), names
    _sh(repo, "dvc", "plots", "show")
    assert (repo / "dvc_plots" / "index.html").is_file()
    assert "dvc_plots" not in _sh(repo, "git", "status", "--porcelain").stdout
    score = plots["score"][0]["content"]
    assert {row["fd_offline"] != "" for row in score["data"]["values"]} == {True}


def test_exp_show_lists_scores_first():
    """`dvc exp show` orders metric columns by stage order in dvc.yaml: fid, then train."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    with_metrics = [name for name, stage in stages.items() if stage.get("metrics")]
    assert with_metrics[:2] == ["fid", "train"]
    assert "models/checkpoints" not in json.dumps(stages)  # checkpoints are no DVC output


@pytest.mark.slow
def test_failed_experiment_keeps_the_last_good_outputs_and_prints_one_line(repo):
    before = (repo / "models" / "best" / "best.json").read_text(), _checkpoints(repo)
    proc = _sh(repo, "dvc", "exp", "run", "-S", "train.lr=abc", ok=False)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("train: error:")]
    assert len(errors) == 1 and "train.lr" in errors[0] and "git checkout params.yaml" in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert (repo / "models" / "best" / "best.json").read_text() == before[0] and _checkpoints(repo) == before[1]
    assert (repo / "metrics" / "train.json").is_file() and (repo / "metrics" / "train_epochs.csv").is_file()
    _sh(repo, "git", "checkout", "params.yaml")  # the documented way back
    assert "modified" not in _sh(repo, "dvc", "status").stdout


@pytest.mark.slow
def test_checkpoints_survive_exp_apply_checkout_and_temp_experiments(repo):
    import mlflow

    _sh(repo, "dvc", "exp", "run", "-n", "e3", "-S", "train.epochs=3")
    after_e3 = _checkpoints(repo)
    assert len(after_e3) == 4  # two run keys (epochs is part of the config), keep_checkpoints 2 each
    _sh(repo, "git", "checkout", "params.yaml")
    _sh(repo, "dvc", "checkout", "--force")
    _sh(repo, "dvc", "exp", "apply", "e3")
    assert _checkpoints(repo) == after_e3
    _sh(repo, "dvc", "checkout", "--force")
    assert _checkpoints(repo) == after_e3

    _sh(repo, "dvc", "exp", "run", "--temp", "-n", "t4", "-S", "train.epochs=4")
    assert len(_checkpoints(repo)) == 6  # the temp workspace trained into the repository's cache/
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("test-dvc")
    assert exp.artifact_location.startswith((repo / "mlruns").as_uri())
    (run,) = client.search_runs([exp.experiment_id], "tags.`dvc.exp_name` = 't4'")
    head = _sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    assert run.data.tags["dvc.baseline_rev"] == head and run.data.tags["mlflow.source.git.commit"] == head
    assert run.data.tags["best_checkpoint"].startswith("cache/checkpoints/")
    assert (repo / run.data.tags["best_checkpoint"]).is_dir()
    out = _sh(repo, sys.executable, "-m", "facegen.cli", "best", "--json").stdout  # params.yaml's experiment
    best = json.loads(out)
    assert best["run_id"] == run.info.run_id and best["dvc_exp_name"] == "t4"
    assert Path(best["checkpoint"]) == repo / run.data.tags["best_checkpoint"]
    assert {i.dataset.name for i in run.inputs.dataset_inputs} == {"faces-train"}
    shown = json.loads(_sh(repo, "dvc", "exp", "show", "--json").stdout)
    assert shown  # the experiments are listed
