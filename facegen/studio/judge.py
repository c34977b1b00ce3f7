"""Real-vs-fake judgements (HYPE-style, Zhou et al. 2019): a Parquet that survives restarts.

One row per judgement: when, which model (checkpoint id, MLflow run, epoch), the item shown
(a test-split face id or a generated seed), its truth and the answer. The file is rewritten
atomically after every judgement (temp file + rename: a killed server never leaves half a
table), and read back on start, so no judgement is lost.

The human error rate is the fraction of judgements that were wrong (fakes called real plus
reals called fake), HYPE-infinity's score: 50% means people cannot tell. Its 95% confidence
interval is Wilson's score interval for a binomial proportion (Wilson 1927), which stays
inside [0, 1] and behaves at small counts where the normal approximation does not.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from facegen.common.tables import Schema, write_parquet

# judgements.parquet columns (facegen.common.tables)
SCHEMA: Schema = {
    "timestamp": "float64",
    "model_id": "string",
    "run_id": "string",
    "epoch": "int64",
    "item": "string",
    "truth": "string",
    "answer": "string",
    "correct": "bool",
}
COLUMNS = tuple(SCHEMA)
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(errors: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) for ``errors`` successes out of ``n``; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= errors <= n:
        raise ValueError(f"errors={errors} must be between 0 and n={n}")
    p = errors / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


class JudgementStore:
    """The judgements Parquet: append one row at a time, summarise per model."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.rows: list[dict[str, Any]] = self._read()

    def _read(self) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        if not self.path.is_file():
            return []
        table = pq.read_table(self.path)
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{self.path}: not a judgements table (missing columns {missing}); move it away")
        return table.select(list(COLUMNS)).to_pylist()

    def _write(self, rows: list[dict[str, Any]]) -> None:
        write_parquet(rows, SCHEMA, self.path)

    def add(
        self, model_id: str, run_id: str | None, epoch: int | None, *, item: str, truth: str, answer: str
    ) -> dict[str, Any]:
        """Record one judgement (truth/answer are ``real`` or ``fake``) and persist the table.

        The row joins :attr:`rows` (and so every summary) only once the table holding it is on
        disk: a failed write (a full disk) raises its OSError and changes nothing."""
        for name, value in (("truth", truth), ("answer", answer)):
            if value not in ("real", "fake"):
                raise ValueError(f"{name}={value!r} must be 'real' or 'fake'")
        row = {
            "timestamp": time.time(),
            "model_id": model_id,
            "run_id": run_id,
            "epoch": epoch,
            "item": item,
            "truth": truth,
            "answer": answer,
            "correct": truth == answer,
        }
        with self._lock:
            self._write([*self.rows, row])
            self.rows.append(row)
        return row

    def summary(
        self, model_id: str | None = None, run_id: str | None = None, epoch: int | None = None
    ) -> dict[str, Any]:
        """Error rate and its Wilson 95% interval over the judgements of one model (all when None)."""
        with self._lock:
            rows = [
                r
                for r in self.rows
                if (model_id is None or r["model_id"] == model_id)
                and (run_id is None or (r["run_id"] == run_id and r["epoch"] == epoch))
            ]
        n = len(rows)
        errors = sum(not r["correct"] for r in rows)
        fakes = [r for r in rows if r["truth"] == "fake"]
        fooled = sum(r["answer"] == "real" for r in fakes)
        low, high = wilson_interval(errors, n)
        return {
            "n": n,
            "errors": errors,
            "error_rate": errors / n if n else None,
            "ci_low": low,
            "ci_high": high,
            "n_fake": len(fakes),
            "fake_called_real": fooled,
            "fake_error_rate": fooled / len(fakes) if fakes else None,
        }

    def summary_of(self, model_id: str, run_id: str | None, epoch: int | None) -> dict[str, Any]:
        """The summary of one model: by MLflow run and epoch when it has one, else by checkpoint id."""
        return self.summary(None, run_id, epoch) if run_id else self.summary(model_id)


def log_to_mlflow(tracking_uri: str, run_id: str, summary: dict[str, Any], epoch: int | None) -> None:
    """Log the error rate and its interval as metrics of the judged run (step = the judged epoch)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    step = int(epoch or 0)
    now = int(time.time() * 1000)
    for key in ("error_rate", "ci_low", "ci_high"):
        client.log_metric(run_id, f"human_{key}", float(summary[key]), timestamp=now, step=step)
    client.log_metric(run_id, "human_judgements", float(summary["n"]), timestamp=now, step=step)
