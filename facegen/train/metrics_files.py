"""The DVC side of a training run: ``metrics/train.json`` (``dvc metrics``/``dvc exp show``) and the
CSV files that ``dvc plots show`` draws (dvc.yaml's top-level ``plots``).

- ``train.json``: numbers only, the headline first (``best_<metric>``, ``best_epoch``), so the
  scores lead ``dvc exp show``; text about the run (metric name, run id, run key) is in
  ``models/best/best.json``, which is no DVC metric.
- ``train_epochs.csv``: one row per epoch (loss, lr, speed; the score columns of
  :data:`SCORE_COLUMNS` too, empty on epochs not scored, for scripts that read one table).
- ``train_<metric>.csv`` for each metric of :data:`SCORE_FILES`: only the scored epochs, so a
  chart has a point per evaluation and no empty cell drawn as 0. The file of the other
  extractor is written with its header only (DVC needs the file and its fields to draw the chart).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_json

EPOCH_COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds")
# metric -> its score columns; one CSV each (train_fid.csv, train_fd_offline.csv): stable plot keys
SCORE_FILES = {"fid": ("fid", "kid", "kid_std"), "fd_offline": ("fd_offline", "kid_offline", "kid_offline_std")}
SCORE_COLUMNS = tuple(c for cols in SCORE_FILES.values() for c in cols)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def write_epoch_files(
    history: list[dict[str, Any]], summary: dict[str, Any], metrics_dir: str | Path, metric: str
) -> None:
    """Write ``train.json``, ``train_epochs.csv`` and the ``train_<metric>.csv`` score files (see the
    module docstring) from the epochs' rows and the run's summary."""
    out = Path(metrics_dir)
    out.mkdir(parents=True, exist_ok=True)
    headline = [f"best_{metric}", "best_epoch"]
    numbers = {k: summary[k] for k in [*headline, *summary] if k in summary and _number(summary[k])}
    write_json(out / "train.json", numbers, sort_keys=False)
    from facegen.fid.features import kid_of

    kid = kid_of(metric)
    files = {**SCORE_FILES, metric: (metric, kid, f"{kid}_std")}
    extra = [c for c in files[metric] if c not in SCORE_COLUMNS]
    _write_csv(out / "train_epochs.csv", [*EPOCH_COLUMNS, *SCORE_COLUMNS, *extra], history)
    for name, columns in files.items():
        scored = [row for row in history if _number(row.get(name))] if name == metric else []
        _write_csv(out / f"train_{name}.csv", ["epoch", *columns], scored)
