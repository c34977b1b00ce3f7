"""A tiny MLflow run with per-epoch scores, shared by the tracking and CLI tests."""

from __future__ import annotations

from facegen.train import tracking


def log_run(uri: str, name: str, values: dict[int, float], checkpoint: str, experiment: str = "exp") -> str:
    t = tracking.Tracker(uri, experiment, name)
    t.log_params({"lr": 0.001, "channels": [8, 16]})
    t.set_tags({"metric": "fd_offline", "best_checkpoint": checkpoint})
    best = None
    for epoch, value in values.items():
        best = epoch if best is None or value < values[best] else best
        t.log_metrics({"loss": 1.0 / epoch, "fd_offline": value, "best_fd_offline": values[best], "best_epoch": best}, epoch)
    t.end()
    return t.run_id
