"""Questions about finished training runs, answered from the MLflow store: which epoch was best,
and an existing folder holding its model (``facegen best``, the studio, the pipeline test)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from facegen.common.redact import mask_uri
from facegen.train.mlflow_store import open_store


def resolve_checkpoint(tag: str, root: str | Path, run_id: str) -> str:
    """An existing folder for a run's best model: the ``best_checkpoint`` tag (repo-relative or
    absolute), else ``models/best`` when it holds that run, else the run's MLflow ``best`` artifact
    (``runs:/<id>/best``)."""
    root = Path(root)
    if tag:
        path = Path(tag) if Path(tag).is_absolute() else root / tag
        if path.is_dir():
            return str(path)
    best_json = root / "models" / "best" / "best.json"
    if best_json.is_file() and json.loads(best_json.read_text(encoding="utf-8")).get("run_id") == run_id:
        return str(root / "models" / "best")
    return f"runs:/{run_id}/best"


def best_runs(uri: str, experiment: str, all_runs: bool = False, root: str | Path = ".") -> list[dict[str, Any]]:
    """The best epoch of the latest evaluated run (or of every run) of ``experiment``, newest first.

    Each entry: run_id, run_name, status, metric (``fid`` or ``fd_offline``), value, epoch,
    checkpoint (an existing folder of the best model, see :func:`resolve_checkpoint`), and the DVC
    experiment name when the run came from ``dvc exp run``. Runs without an evaluation are skipped.
    """
    import mlflow

    open_store(root, uri)  # a copied or moved workspace: its paths brought home first
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
        results.append(
            {
                "run_id": run.info.run_id,
                "run_name": run.info.run_name,
                "status": run.info.status,
                "metric": name,
                "value": metrics[f"best_{name}"],
                "epoch": int(metrics["best_epoch"]),
                "checkpoint": resolve_checkpoint(tags.get("best_checkpoint", ""), root, run.info.run_id),
                "dvc_exp_name": tags.get("dvc.exp_name", ""),
            }
        )
        if not all_runs:
            break
    return results
