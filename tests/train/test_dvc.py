"""The train stage under real DVC commands in a temporary repository: checkpoints survive every
command, a failed experiment keeps the last good outputs, temp experiments tag MLflow and leave
resolvable checkpoints, plots and metrics are what `dvc plots/metrics` users expect."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_workspace import init_repo
from dvc_workspace import run as _sh
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


def _terminal(root: Path, cols: int, *cmd: str) -> list[str]:
    """What ``cmd`` shows in a ``cols``-wide terminal, as a user sees it: run in a pseudo-terminal
    with DVC's default pager (``less -RS``: long lines chopped at the window), ``q`` pressed once
    the output settles; the screen's lines without escape codes."""
    import fcntl
    import pty
    import re
    import select
    import struct
    import termios
    import time

    drop = ("COLUMNS", "LINES", "PAGER", "DVC_PAGER", "LESS", "MLFLOW_TRACKING_URI")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("DVC_")}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", PYTHONPATH=str(REPO), TERM="xterm-256color")
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session whose controlling terminal is the pty (as less needs)
        os.chdir(root)
        os.execvpe(cmd[0], list(cmd), env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, cols, 0, 0))
    out, quiet, deadline = b"", 0, time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:  # the child closed the terminal
                break
            out, quiet = out + chunk, 0
        elif os.waitpid(pid, os.WNOHANG)[0]:
            break
        elif out and (quiet := quiet + 1) >= 4:  # the pager waits for a key (RETURN past a terminfo warning)
            os.write(fd, b"\rq" if b"not fully functional" in out else b"q")
    os.close(fd)
    text = re.sub(rb"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[=>()][0-9A-B]?|\r", b"", out).decode(errors="replace")
    return text.splitlines()


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
    init_repo(root)
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
    assert {"loss", "fid", "kid"} <= names and any(n.startswith("metrics/grids") for n in names), names
    _sh(repo, "dvc", "plots", "show")
    assert (repo / "dvc_plots" / "index.html").is_file()
    assert "dvc_plots" not in _sh(repo, "git", "status", "--porcelain").stdout
    score = plots["fid"][0]["content"]
    assert [row["fd_offline"] != "" for row in score["data"]["values"]] == [True, True]


@pytest.fixture(scope="module")
def views(tmp_path_factory) -> Path:
    """git + DVC repo with the real dvc.yaml and params.yaml and the metrics files the train and fid
    stages write (their own writers), for three epochs of which 2 and 3 were scored; nothing run."""
    from PIL import Image

    from facegen.fid.score import write_metrics
    from facegen.train.metrics_files import write_epoch_files

    root = tmp_path_factory.mktemp("views")
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    rows = [
        {"epoch": e, "step": 4 * e, "loss": 1 / e, "lr": 1e-3, "images_per_s": 10.0, "seconds": 1.0} for e in (1, 2, 3)
    ]
    novelty = dict(precision=0.5, recall=0.25, density=0.75, coverage=0.5, memorized_fraction=0.0, memorized_count=0)
    rows[1].update(fid=90.5, kid=0.05, kid_std=0.01, **novelty)
    rows[2].update(fid=80.25, kid=0.04, kid_std=0.01, **novelty)
    summary = {"metric": "fid", "best_epoch": 3, "best_fid": 80.25, "epochs": 3, "steps": 12, "run_id": "a" * 32}
    write_epoch_files(rows, summary, root / "metrics", "fid")
    score = {"fid": 81.5, "kid": 0.041, "kid_std": 0.01, "num_samples": 16, "num_reference": 8, "image_size": 32}
    write_metrics({**score, "fid_extractor": "inception", "inception_sha256": "f" * 64, "run_id": "a" * 32},
                  root / "metrics" / "fid.json")  # fmt: skip
    (root / "metrics" / "grids").mkdir()
    for epoch in (2, 3):
        Image.new("RGB", (8, 8), "gray").save(root / "metrics" / "grids" / f"epoch_{epoch:05d}.png")
    (root / "data").mkdir()
    for image in ("samples_grid.png", "faces_preview.png"):  # the sample and align stages' image plots
        Image.new("RGB", (8, 8), "gray").save(root / "data" / image)
    Image.new("RGB", (8, 8), "gray").save(root / "metrics" / "nearest_pairs.png")  # the fid stage's
    init_repo(root)
    _sh(root, "git", "add", "-A")
    _sh(root, "git", "commit", "-qm", "views")
    return root


def test_plots_show_one_chart_each_and_only_scored_epochs(views):
    plots = json.loads(_sh(views, "dvc", "plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots["errors"]
    names = sorted(plots["data"])
    grids = ["metrics/grids/epoch_00002.png", "metrics/grids/epoch_00003.png"]
    charts = ["fid", "kid", "loss", "memorized", *grids, "metrics/nearest_pairs.png", "precision_recall"]
    assert names == ["data/faces_preview.png", "data/samples_grid.png", *charts]
    values = {name: plots["data"][name][0]["content"]["data"]["values"] for name in ("fid", "kid", "loss")}
    series = {
        name: [(int(v["epoch"]), float(v.get("dvc_inferred_y_value", v[name]))) for v in vs]
        for name, vs in values.items()
    }
    assert series["fid"] == [(2, 90.5), (3, 80.25)] and series["kid"] == [(2, 0.05), (3, 0.04)]
    assert [e for e, _ in series["loss"]] == [1, 2, 3]
    assert all(len(plots["data"][n]) == 1 for n in names)  # each grid once


def test_exp_show_lists_scores_first(views):
    """Real `dvc exp show`: the fid stage's score, then train's best epoch, lead the metric columns;
    no text column among them; docs/pipeline.md's short command shows them at 120 columns."""
    header = _sh(views, "dvc", "exp", "show", "--csv").stdout.splitlines()[0].split(",")
    first = header.index("parent") + 1
    assert header[first : first + 5] == ["fid", "kid", "kid_std", "num_samples", "num_reference"]
    assert header[first + 6 : first + 8] == ["best_fid", "best_epoch"]
    assert not {"run_id", "fid_extractor", "inception_sha256", "metric"} & set(header)
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "models/checkpoints" not in json.dumps(stages)  # checkpoints are no DVC output
    docs = (REPO / "docs" / "pipeline.md").read_text()
    short = next(line for line in docs.splitlines() if line.startswith("dvc exp show --only-changed"))
    cmd = shlex.split(short.split("  #")[0])
    env = {**os.environ, "COLUMNS": "120", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # dvc of this venv
    proc = subprocess.run([*cmd, "--no-pager"], cwd=views, env=env, capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert lines[1].split() == ["Experiment", "Created", "fid", "kid", "kid_std", "best_fid", "best_epoch"]
    assert lines[3].split()[2:] == ["81.5", "0.041", "0.01", "80.25", "3"]  # workspace row: values, no "…"


def test_plain_exp_show_in_a_120_column_terminal_shows_fid_and_kid(views):
    """Plain ``dvc exp show`` in a terminal: DVC lays the table out up to 1024 columns for its pager
    and ``less -S`` shows its first 120, which begin with the scores (fid, kid, ...) and their values;
    piped, the same table."""
    if shutil.which("less") is None:
        pytest.skip("no less: DVC's default pager")
    lines = _terminal(views, 120, str(BIN / "dvc"), "exp", "show")
    header = next(line for line in lines if "Experiment" in line)
    assert header.split()[:5] == ["Experiment", "Created", "fid", "kid", "kid_std"], lines[:6]
    workspace = next(line for line in lines if line.split()[:1] == ["workspace"])
    assert workspace.split()[1:5] == ["-", "81.5", "0.041", "0.01"], workspace  # values, no "…"
    assert max(len(line) for line in lines) <= 120
    env = {**os.environ, "COLUMNS": "120", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    piped = subprocess.run([str(BIN / "dvc"), "exp", "show"], cwd=views, env=env, capture_output=True, text=True)
    rows = piped.stdout.splitlines()  # no terminal: the same wide table, the scores first on each line
    assert rows[1].split()[:5] == ["Experiment", "Created", "fid", "kid", "kid_std"], rows[:3]
    assert rows[3].split()[:5] == ["workspace", "-", "81.5", "0.041", "0.01"]


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
    assert exp.artifact_location == "mlruns/test-dvc"  # relative to the workspace: it moves with it
    (run,) = client.search_runs([exp.experiment_id], "tags.`dvc.exp_name` = 't4'")
    assert run.info.run_name == "t4"  # the DVC experiment's name
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
