"""MLflow run records and the DVC metrics/plots files of a training run.

Store: ``MLFLOW_TRACKING_URI`` when set, else an embedded SQLite store at the absolute path
``<repo>/mlflow.db`` with artifacts under ``<repo>/mlruns``. ``<repo>`` is the real repository
even inside a ``dvc exp run --temp/--queue`` workspace (``<repo>/.dvc/tmp/exps/...``), so every
experiment lands in the same store. mlflow is imported inside the functions that use it.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from facegen.common.redact import mask_uri

EPOCH_COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds")


def repo_root(start: str | Path = ".") -> Path:
    """The repository that owns ``start``: the folder holding ``.dvc`` for DVC's temp workspaces."""
    path = Path(start).resolve()
    parts = path.parts
    for i in range(len(parts) - 1):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp":
            return Path(*parts[:i])
    return path


def tracking_uri(root: str | Path) -> str:
    """``$MLFLOW_TRACKING_URI`` or ``sqlite:///<root>/mlflow.db`` (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def git_commit(root: str | Path) -> str:
    """The commit of ``root`` (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def _experiment_id(name: str, uri: str, artifact_root: Path | None) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if artifact_root is not None and uri.startswith("sqlite:"):
        location = (artifact_root / name).resolve().as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


class Tracker:
    """One MLflow run: params once, metrics per epoch (step = epoch), images and artifacts.

    Use from the main process only. ``run_id`` continues an earlier run (resume).
    """

    def __init__(self, uri: str, experiment: str, run_name: str, artifact_root: Path | None = None,
                 run_id: str | None = None) -> None:
        import mlflow

        mlflow.set_tracking_uri(uri)
        self.mlflow = mlflow
        self.experiment_id = _experiment_id(experiment, uri, artifact_root)
        if run_id is not None and not self._exists(run_id):
            print(f"MLflow run {run_id} of the checkpoint is not in {mask_uri(uri)}; "
                  "logging the resumed run as a new run")
            run_id = None
        self.run = mlflow.start_run(run_id=run_id, experiment_id=None if run_id else self.experiment_id,
                                    run_name=None if run_id else run_name)
        self.run_id: str = self.run.info.run_id

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.mlflow.get_run(run_id)
        except MlflowException:
            return False
        return True

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params (skipped on a resumed run: MLflow params are immutable)."""
        existing = self.mlflow.get_run(self.run_id).data.params
        new = {k: v for k, v in params.items() if k not in existing}
        if new:
            self.mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in new.items()})

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        self.mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=epoch)

    def log_image(self, image: Any, artifact_file: str) -> None:
        self.mlflow.log_image(image, artifact_file=artifact_file)

    def log_artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self.mlflow.log_artifacts(str(local_dir), artifact_path=artifact_path)

    def set_tags(self, tags: dict[str, Any]) -> None:
        self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def write_epoch_files(history: list[dict[str, Any]], summary: dict[str, Any], metrics_dir: str | Path,
                      metric: str) -> None:
    """``metrics/train.json`` (summary) and ``metrics/train_epochs.csv`` (one row per epoch, for
    ``dvc plots``; the ``metric`` column is empty for epochs without an evaluation)."""
    out = Path(metrics_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    columns = [*EPOCH_COLUMNS, metric]
    with (out / "train_epochs.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({c: row.get(c, "") for c in columns})


def best_runs(uri: str, experiment: str, all_runs: bool = False) -> list[dict[str, Any]]:
    """The best epoch of the latest evaluated run (or of every run) of ``experiment``, newest first.

    Each entry: run_id, run_name, status, metric (``fid`` or ``fd_offline``), value, epoch,
    checkpoint (path of the best model folder). Runs without an evaluation yet are skipped.
    """
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(f"no MLflow experiment {experiment!r} in {mask_uri(uri)} (experiments: {names})")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000)
    results = []
    for run in runs:
        metrics, tags = run.data.metrics, run.data.tags
        name = tags.get("metric")
        if not name or f"best_{name}" not in metrics:
            continue
        results.append({
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
            "metric": name,
            "value": metrics[f"best_{name}"],
            "epoch": int(metrics["best_epoch"]),
            "checkpoint": tags.get("best_checkpoint", ""),
        })
        if not all_runs:
            break
    return results
