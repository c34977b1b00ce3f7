"""MLflow run records and the DVC metrics/plots files of a training run.

Store: ``MLFLOW_TRACKING_URI`` when set, else an embedded SQLite store ``<repo>/mlflow.db`` with
artifacts under ``<repo>/mlruns``. ``<repo>`` is the real repository even inside a ``dvc exp run
--temp/--queue`` workspace (``<repo>/.dvc/tmp/exps/...``), so every experiment lands in the same
store. MLflow keeps absolute artifact paths; the embedded store records the root it was made
under and, when the repository was moved or copied, rewrites those paths to the new root on
open (:func:`relocate_store`), so a copy never writes into the original's tree.

The tracker never stops training: each call is retried with backoff, and a call that still fails
is kept in a buffer (replayed before the next call and at the end) with one warning on stderr.
mlflow is imported inside the functions that use it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_json
from facegen.common.redact import mask_uri

EPOCH_COLUMNS = ("epoch", "step", "loss", "lr", "images_per_s", "seconds")
SCORE_COLUMNS = (
    "fid",
    "kid",
    "kid_std",
    "fd_offline",
    "kid_offline",
    "kid_offline_std",
    "precision",
    "recall",
    "density",
    "coverage",
    "memorized_fraction",
    "memorized_count",
)  # always written (empty when not scored): stable plot keys
ROOT_TAG = "facegen.repo_root"  # experiment tag: the root the embedded store's paths were made under
RUN_KEY_TAG = "facegen.run_key"


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


def run_tags(root: str | Path) -> dict[str, str]:
    """Tags naming where a run came from: git commit (MLflow's own tag too) and, under ``dvc exp
    run``, the DVC experiment name and baseline revision (DVC's ``DVC_EXP_*`` variables)."""
    commit = git_commit(root)
    tags = {"git_commit": commit, "mlflow.source.git.commit": commit}
    for env, tag in (
        ("DVC_EXP_NAME", "dvc.exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc.baseline_rev"),
        ("DVC_STAGE", "dvc.stage"),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def portable_path(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` when inside it (a tag that survives moving the repo), else absolute."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _sqlite_file(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def relocate_store(uri: str, root: str | Path) -> int:
    """Rewrite the artifact paths of the embedded store ``<root>/mlflow.db`` made under another root.

    Returns the number of rows changed (0 when the store is not ``<root>/mlflow.db``, is new, or
    already belongs to ``root``). Only the path prefix changes, so artifacts copied along with the
    repository are found and new ones are written under ``root``.
    """
    db = _sqlite_file(uri)
    root = Path(root).resolve()
    if db is None or not db.is_file() or db.resolve() != root / "mlflow.db":
        return 0
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT experiment_id, value FROM experiment_tags WHERE key = ?", (ROOT_TAG,)).fetchall()
        changed = 0
        for exp_id, old in rows:
            if old == str(root):
                continue
            old_uri, new_uri = Path(old).as_uri(), root.as_uri()
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column, key in (
                ("experiments", "artifact_location", "experiment_id"),
                ("runs", "artifact_uri", "experiment_id"),
                ("logged_models", "artifact_location", "experiment_id"),
            ):  # MLflow 3 models
                if table not in tables:
                    continue
                for prefix_old, prefix_new in ((old_uri, new_uri), (old, str(root))):
                    cur = con.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE {key} = ? AND substr({column}, 1, ?) = ?",
                        (prefix_new, len(prefix_old) + 1, exp_id, len(prefix_old), prefix_old),
                    )
                    changed += cur.rowcount
            con.execute(
                "UPDATE experiment_tags SET value = ? WHERE experiment_id = ? AND key = ?",
                (str(root), exp_id, ROOT_TAG),
            )
        con.commit()
    finally:
        con.close()
    return changed


def _experiment_id(client: Any, name: str, uri: str, artifact_root: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = tags = None
    if artifact_root is not None and uri.startswith("sqlite:"):
        location = (Path(artifact_root) / name).resolve().as_uri()
        tags = {ROOT_TAG: str(Path(artifact_root).resolve().parent)}
    return client.create_experiment(name, artifact_location=location, tags=tags)


class Tracker:
    """One MLflow run: params once, metrics per epoch (step = epoch), images and artifacts.

    Use from the main process only. ``run_id`` continues an earlier run (resume): epochs already
    logged there (replayed after a resume) are not logged twice. ``run_key`` tags the run; RUNNING
    runs of the same key left by a kill are marked KILLED. Tracking failures never raise: see the
    module docstring. ``offline`` is True while the store is unreachable.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str,
        artifact_root: Path | None = None,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        run_key: str | None = None,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        import mlflow

        self.mlflow, self.uri, self.retries, self.backoff_s = mlflow, uri, retries, backoff_s
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        self.warned = False
        self.last_step = 0
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.monitor: Any = None
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        mlflow.set_tracking_uri(uri)  # the system-metrics monitor logs through the fluent API
        tags = {k: str(v) for k, v in (tags or {}).items()}
        if run_key:
            tags[RUN_KEY_TAG] = run_key
        self._call("open the run", lambda: self._open(experiment, run_name, artifact_root, run_id, tags, run_key))

    def _open(
        self,
        experiment: str,
        run_name: str,
        artifact_root: Path | None,
        run_id: str | None,
        tags: dict[str, str],
        run_key: str | None,
    ) -> None:
        from mlflow.exceptions import MlflowException

        if artifact_root is not None:
            relocate_store(self.uri, Path(artifact_root).resolve().parent)
        self.experiment_id = _experiment_id(self.client, experiment, self.uri, artifact_root)
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
            except MlflowException:
                print(
                    f"MLflow run {run_id} of the checkpoint is not in {mask_uri(self.uri)}; "
                    "logging the resumed run as a new run",
                    file=sys.stderr,
                )
                run_id = None
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name, tags={"mlflow.runName": run_name, **tags}
            )
        else:
            self.client.update_run(run_id, status="RUNNING")
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
            history = self.client.get_metric_history(run_id, "loss")
            self.last_step = max((m.step for m in history), default=0)
        self.run_id = run.info.run_id
        if run_key:
            self._close_orphans(run_key)
        self._start_system_metrics()

    def _close_orphans(self, run_key: str) -> None:
        """Mark RUNNING runs of ``run_key`` other than this one KILLED (a kill -9 leaves them open)."""
        orphans = self.client.search_runs(
            [self.experiment_id], f"tags.`{RUN_KEY_TAG}` = '{run_key}' and attributes.status = 'RUNNING'"
        )
        for run in orphans:
            if run.info.run_id != self.run_id:
                self.client.set_tag(run.info.run_id, "facegen.superseded_by", self.run_id)
                self.client.set_terminated(run.info.run_id, "KILLED")

    def _start_system_metrics(self) -> None:
        """CPU/GPU/memory every 10 s as ``system/*`` metrics, when psutil is installed."""
        try:
            import psutil  # noqa: F401
            from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
        except ImportError:
            return
        self.monitor = SystemMetricsMonitor(self.run_id, sampling_interval=10, resume_logging=self.last_step > 0)
        self.monitor.start()

    @property
    def offline(self) -> bool:
        return self.run_id is None or bool(self.pending)

    def _call(self, what: str, fn: Callable[[], Any]) -> bool:
        """Run ``fn`` after the buffered calls, retrying with backoff; buffer it when it still fails."""
        self.pending.append((what, fn))
        while self.pending:
            name, call = self.pending[0]
            if self.run_id is None and name != "open the run":
                return False  # nothing can be logged before the run exists
            for attempt in range(self.retries):
                try:
                    call()
                    break
                # any store failure (sqlite locked/readonly, HTTP, disk): degrade, warn, keep the record
                except Exception as err:
                    if attempt == self.retries - 1:
                        if not self.warned:
                            print(
                                f"warning: MLflow ({mask_uri(self.uri)}) failed to {name}: {type(err).__name__}: "
                                f"{mask_uri(str(err))}; "
                                "training goes on, records are buffered and retried",
                                file=sys.stderr,
                            )
                            self.warned = True
                        return False
                    time.sleep(self.backoff_s * 2**attempt)
            self.pending.pop(0)
        if self.warned:
            print(f"MLflow ({mask_uri(self.uri)}) reachable again: buffered records logged", file=sys.stderr)
            self.warned = False
        return True

    def log_params(self, params: dict[str, Any]) -> None:
        """Log params (skipped on a resumed run: MLflow params are immutable)."""

        def log() -> None:
            from mlflow.entities import Param

            existing = self.client.get_run(self.run_id).data.params
            new = [
                Param(k, json.dumps(v) if isinstance(v, (list, tuple, dict)) else str(v))
                for k, v in params.items()
                if k not in existing
            ]
            if new:
                self.client.log_batch(self.run_id, params=new)

        self._call("log params", log)

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        """Metrics at step ``epoch``; epochs the resumed run already holds are skipped."""
        if epoch <= self.last_step:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, epoch) for k, v in metrics.items()]
        self._call(f"log epoch {epoch}", lambda: self.client.log_batch(self.run_id, metrics=batch))

    def log_grid(self, image: Any, epoch: int, key: str = "samples") -> None:
        """A sample grid at step ``epoch`` (MLflow's image slider) and as ``samples/epoch_NNNNN.png``."""
        if epoch <= self.last_step:
            return

        def log() -> None:
            self.client.log_image(self.run_id, image, key=key, step=epoch)
            self.client.log_image(self.run_id, image, artifact_file=f"samples/epoch_{epoch:05d}.png")

        self._call(f"log the epoch {epoch} grid", log)

    def log_image(self, image: Any, artifact_file: str) -> None:
        self._call(
            f"log {artifact_file}", lambda: self.client.log_image(self.run_id, image, artifact_file=artifact_file)
        )

    def log_artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self._call(
            f"log {artifact_path}", lambda: self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)
        )

    def log_dataset(self, faces_table: str | Path, split: str, digest: str, context: str = "training") -> None:
        """The faces of ``split`` (rows of the faces table) as an MLflow dataset input of the run."""

        def log() -> None:
            import pandas as pd
            from mlflow.entities import DatasetInput, InputTag

            table = pd.read_parquet(faces_table)
            rows = table[(table["status"] == "ok") & (table["split"] == split)].reset_index(drop=True)
            dataset = self.mlflow.data.from_pandas(
                rows, source=str(faces_table), name=f"faces-{split}", digest=digest[:36]
            )
            tag = InputTag("mlflow.data.context", context)
            self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), [tag])])

        self._call(f"log the {split} dataset", log)

    def log_model(self, model_dir: str | Path, register_as: str | None = None, step: int = 0) -> None:
        """The diffusers pipeline folder as an MLflow pyfunc model ``model`` (see diffusion/pipeline.py),
        registered as ``register_as`` when given."""
        from facegen.diffusion.pipeline import log_mlflow_model

        run_id = self.run_id
        if run_id is None:  # the store was never reached: nothing to attach the model to
            return
        self._call("log the model", lambda: log_mlflow_model(self.uri, run_id, model_dir, register_as, step))

    def set_tags(self, tags: dict[str, Any]) -> None:
        self._call("set tags", lambda: [self.client.set_tag(self.run_id, k, str(v)) for k, v in tags.items()])

    def end(self, status: str = "FINISHED") -> None:
        """Close the run (replaying what was buffered); records still unlogged are reported."""
        if self.monitor is not None:
            self.monitor.finish()
            self.monitor = None
        self._call(f"close the run as {status}", lambda: self.client.set_terminated(self.run_id, status))
        if self.pending:
            lost = ", ".join(name for name, _ in self.pending)
            print(
                f"warning: MLflow ({mask_uri(self.uri)}) unreachable at the end of the run; not logged: {lost}. "
                "Checkpoints and metrics/ files are complete.",
                file=sys.stderr,
            )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def write_epoch_files(
    history: list[dict[str, Any]], summary: dict[str, Any], metrics_dir: str | Path, metric: str
) -> None:
    """``metrics/train.json`` (the summary's finite numbers only: stable keys for ``dvc metrics``)
    and ``metrics/train_epochs.csv`` (one row per epoch for ``dvc plots``; every score column of
    :data:`SCORE_COLUMNS` is present, empty for epochs without that score)."""
    out = Path(metrics_dir)
    out.mkdir(parents=True, exist_ok=True)
    numbers = {k: v for k, v in summary.items() if _number(v)}
    write_json(out / "train.json", numbers)
    from facegen.fid.features import kid_of

    kid = kid_of(metric)
    extra = [c for c in (metric, kid, f"{kid}_std") if c not in SCORE_COLUMNS]
    columns = [*EPOCH_COLUMNS, *SCORE_COLUMNS, *extra]
    with (out / "train_epochs.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({c: row.get(c, "") for c in columns})


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
