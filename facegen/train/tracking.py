"""MLflow run records of a training run (the :class:`Tracker`) and the tags naming where it came from.

Store: ``MLFLOW_TRACKING_URI`` when set, else an embedded SQLite store ``<repo>/mlflow.db`` with
artifacts under ``<repo>/mlruns``. ``<repo>`` is the real repository even inside a ``dvc exp run
--temp/--queue`` workspace (``<repo>/.dvc/tmp/exps/...``), so every experiment lands in the same
store. Its artifact paths are relative to the workspace, so a copied or moved workspace keeps
them (:mod:`facegen.train.mlflow_store`); each MLflow call runs from the store's folder. The DVC
metrics and plots files are :mod:`facegen.train.metrics_files`; questions about finished runs are
:mod:`facegen.train.runs`.

The tracker never stops training: each call is retried with backoff, and a call that still fails
is kept in a buffer (replayed before the next call and at the end) with one warning on stderr.
mlflow is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facegen.common.redact import mask_uri
from facegen.train.mlflow_store import at_store, experiment_id, open_store, repo_root, tracking_uri
from facegen.train.runs import best_runs, resolve_checkpoint  # their home before runs.py

__all__ = [
    "RUN_KEY_TAG",
    "Retry",
    "Tracker",
    "best_runs",
    "git_commit",
    "portable_path",
    "repo_root",
    "resolve_checkpoint",
    "run_name",
    "run_tags",
    "tracking_uri",
]

RUN_KEY_TAG = "facegen.run_key"


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


def run_name(model: str, key: str) -> str:
    """The MLflow run name: the DVC experiment's name under ``dvc exp run`` (``$DVC_EXP_NAME``,
    which DVC sets for the stage), else ``<model preset>-<run key>``."""
    return os.environ.get("DVC_EXP_NAME") or f"{model}-{key}"


def portable_path(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` when inside it (a tag that survives moving the repo), else absolute."""
    path, root = Path(path).resolve(), Path(root).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Retry:
    """How a tracking call is retried before it is buffered: ``attempts`` tries, waiting
    ``backoff_s`` x 2^attempt between them."""

    attempts: int = 3
    backoff_s: float = 0.5


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
        *,
        artifact_root: Path | None = None,
        run_id: str | None = None,
        tags: dict[str, Any] | None = None,
        run_key: str | None = None,
        retry: Retry = Retry(),
    ) -> None:
        import mlflow

        self.mlflow, self.uri, self.retry = mlflow, uri, retry
        self.pending: list[tuple[str, Callable[[], Any]]] = []
        self.warned = False
        self.last_step = 0
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.monitor: Any = None
        self.client = mlflow.MlflowClient(tracking_uri=uri)
        mlflow.set_tracking_uri(uri)  # the system-metrics monitor logs through the fluent API
        tags = {k: str(v) for k, v in (tags or {}).items()}
        artifact_root = Path(artifact_root).resolve() if artifact_root is not None else None  # before at_store
        self.workspace = repo_root(Path.cwd())  # the workspace this process runs in (before at_store)
        if run_key:
            tags[RUN_KEY_TAG] = run_key
        self._call(
            "open the run",
            lambda: self._open(
                experiment, run_name, artifact_root=artifact_root, run_id=run_id, tags=tags, run_key=run_key
            ),
        )

    def _open(
        self,
        experiment: str,
        run_name: str,
        *,
        artifact_root: Path | None,
        run_id: str | None,
        tags: dict[str, str],
        run_key: str | None,
    ) -> None:
        from mlflow.exceptions import MlflowException

        if artifact_root is not None:
            open_store(Path(artifact_root).resolve().parent, self.uri)
        self.experiment_id = experiment_id(
            self.client, experiment, self.uri, artifact_root=artifact_root, workspace=self.workspace
        )
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
        # its four INFO lines per run (started, GPU skipped, stopping, terminated) say nothing the
        # system/* metrics do not: keep its warnings and errors only
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
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
            for attempt in range(self.retry.attempts):
                try:
                    with at_store(self.uri):  # relative artifact paths resolve in the store's folder
                        call()
                    break
                # any store failure (sqlite locked/readonly, HTTP, disk): degrade, warn, keep the record
                except Exception as err:
                    if attempt == self.retry.attempts - 1:
                        if not self.warned:
                            print(
                                f"warning: MLflow ({mask_uri(self.uri)}) failed to {name}: {type(err).__name__}: "
                                f"{mask_uri(str(err))}; "
                                "training goes on, records are buffered and retried",
                                file=sys.stderr,
                            )
                            self.warned = True
                        return False
                    time.sleep(self.retry.backoff_s * 2**attempt)
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
        """A sample grid at step ``epoch`` (MLflow's image slider) and as ``samples/epoch_NNNNN.png``.

        Epoch 0 is the final grid again, at the step MLflow's image chart opens on (its slider
        starts at 0), logged once at the end of a run.
        """
        if epoch == 0:
            self._call("log the latest grid", lambda: self.client.log_image(self.run_id, image, key=key, step=0))
            return
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
        local = str(Path(local_dir).resolve())  # the call runs from the store's folder (at_store)
        self._call(f"log {artifact_path}", lambda: self.client.log_artifacts(self.run_id, local, artifact_path))

    def log_dataset(self, faces_table: str | Path, split: str, digest: str, context: str = "training") -> None:
        """The faces of ``split`` (rows of the faces table) as an MLflow dataset input of the run."""
        table_path = Path(faces_table).resolve()  # the call runs from the store's folder (at_store)

        def log() -> None:
            import warnings

            import pandas as pd
            from mlflow.entities import Dataset, DatasetInput, InputTag

            table = pd.read_parquet(table_path)
            rows = table[(table["status"] == "ok") & (table["split"] == split)].reset_index(drop=True)
            with warnings.catch_warnings():
                # MLflow registers its local-file source for two URI schemes and warns that a path
                # matches both (it picks that same source); the integer-column hint is about
                # enforcing a model signature, and nothing enforces a logged dataset's schema
                warnings.filterwarnings("ignore", message=".*(interpreted in multiple ways|integer column).*")
                dataset = self.mlflow.data.from_pandas(
                    rows, source=str(faces_table), name=f"faces-{split}", digest=digest[:36]
                )
                entity = Dataset(**dataset.to_dict())  # the schema is inferred here, lazily
            tag = InputTag("mlflow.data.context", context)
            self.client.log_inputs(self.run_id, datasets=[DatasetInput(entity, [tag])])

        self._call(f"log the {split} dataset", log)

    def log_model(self, model_dir: str | Path, register_as: str | None = None, step: int = 0) -> None:
        """The diffusers pipeline folder as an MLflow pyfunc model ``model`` (see diffusion/pipeline.py),
        registered as ``register_as`` when given."""
        from facegen.diffusion.pipeline import log_mlflow_model

        run_id = self.run_id
        if run_id is None:  # the store was never reached: nothing to attach the model to
            return

        folder = Path(model_dir).resolve()  # the call runs from the store's folder (at_store)

        def log() -> None:
            log_mlflow_model(self.uri, run_id, folder, register_as=register_as, step=step)

        self._call("log the model", log)

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
