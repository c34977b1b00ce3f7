"""A tiny MLflow run with per-epoch scores, shared by the tracking and CLI tests."""

from __future__ import annotations

from pathlib import Path

from facegen.train import tracking


def log_run(uri: str, name: str, values: dict[int, float], checkpoint: str, experiment: str = "exp") -> str:
    # artifacts beside the test's store: MLflow's default (./mlruns of the cwd) would write test runs into the checkout
    root = Path(uri.removeprefix("sqlite:///")).parent / "mlruns" if uri.startswith("sqlite:///") else None
    t = tracking.Tracker(uri, experiment, name, artifact_root=root)
    t.log_params({"lr": 0.001, "channels": [8, 16]})
    t.set_tags({"metric": "fd_offline", "best_checkpoint": checkpoint})
    best = None
    for epoch, value in values.items():
        best = epoch if best is None or value < values[best] else best
        t.log_metrics(
            {"loss": 1.0 / epoch, "fd_offline": value, "best_fd_offline": values[best], "best_epoch": best}, epoch
        )
    t.end()
    return t.run_id
