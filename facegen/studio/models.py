"""Which generator the studio runs: ``models/best`` or any checkpoint an MLflow run knows.

A checkpoint is named by a short id:

- ``best``: the folder given to ``facegen studio --model`` (``models/best`` by default);
- ``run:<run_id>``: the best epoch of a training run (its ``best_checkpoint`` folder, the
  ``models/best`` layout kept beside the run's checkpoints);
- ``run:<run_id>:epoch:<N>``: the EMA weights of a saved epoch checkpoint
  (``<checkpoint_root>/<key>/epoch_NNNNN/ema.pt``, :func:`facegen.train.config.checkpoint_root`)
  in the run's UNet architecture.

Runs and their per-epoch metrics come from MLflow through :mod:`facegen.train.tracking`'s
store; mlflow and torch are imported inside the functions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import UNet2DModel

CURVE_METRICS = ("fid", "fd_offline", "kid", "loss")


class UnknownCheckpoint(LookupError):
    """A checkpoint id that names no model folder, run or saved epoch."""


@dataclass
class LoadedModel:
    """A generator on its device: the UNet, its training noise schedule and where it came from."""

    id: str
    path: Path
    unet: UNet2DModel
    scheduler_config: dict[str, Any]
    train_config: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None
    epoch: int | None = None

    @property
    def size(self) -> int:
        """Side of the generated images, px."""
        size = self.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0])

    @property
    def conditions(self) -> list[dict[str, Any]]:
        """Attributes the model was trained on (``train.condition``; empty: unconditional).

        Each ``{name, min, max, default}``: the range a request may ask for and the training
        mean, from the statistics the conditional UNet saves in its own config
        (facegen.diffusion.conditional).
        """
        from facegen.diffusion import conditional

        cfg = dict(self.unet.config)
        out = []
        for i, name in enumerate(conditional.names(cfg)):
            lo, hi = conditional.allowed_range(cfg, name)
            out.append({"name": name, "min": lo, "max": hi, "default": float(cfg["condition_mean"][i])})
        return out

    def describe(self) -> dict[str, Any]:
        """JSON summary for the page: id, size, run, epoch, conditions, training preset."""
        return {
            "id": self.id,
            "path": str(self.path),
            "size": self.size,
            "run_id": self.run_id,
            "epoch": self.epoch,
            "conditions": self.conditions,
            "preset": self.train_config.get("model"),
            "num_train_timesteps": int(self.scheduler_config.get("num_train_timesteps", 1000)),
        }


def load_dir(model_id: str, path: str | Path, device: str = "cpu") -> LoadedModel:
    """Load a ``models/best``-layout folder; its ``best.json`` gives the MLflow run and epoch."""
    from facegen.diffusion.model import BEST_FILE, load_model_dir

    path = Path(path)
    try:
        unet, scheduler, config = load_model_dir(path, device)
    except FileNotFoundError as exc:
        raise UnknownCheckpoint(str(exc)) from exc
    best_path = path / BEST_FILE
    best = json.loads(best_path.read_text(encoding="utf-8")) if best_path.is_file() else {}
    return LoadedModel(
        model_id, path, unet.to(device).eval(), dict(scheduler.config), config, best.get("run_id"), best.get("epoch")
    )


def load_epoch(
    model_id: str, best_dir: Path, epoch_dir: Path, *, run_id: str, epoch: int, device: str = "cpu"
) -> LoadedModel:
    """The EMA weights of one epoch checkpoint, in the architecture and schedule of the run's best folder.

    The UNet is built as training builds it (:func:`facegen.diffusion.model.unet_from_ema`: a
    conditional run's checkpoint is a conditioned UNet), the schedule read as the sample stage reads it."""
    from diffusers import UNet2DModel
    from diffusers.training_utils import EMAModel

    from facegen.diffusion.conditional import unet_class
    from facegen.diffusion.model import UNET_DIR, load_schedule_and_config, unet_from_ema
    from facegen.train.checkpoint import EMA_FILE, safe_torch_load

    unet_config = UNet2DModel.load_config(best_dir / UNET_DIR)
    ema = EMAModel(unet_class(unet_config).from_config(unet_config).parameters())
    ema.load_state_dict(safe_torch_load(epoch_dir / EMA_FILE))  # tensors only: no code from the folder
    unet = unet_from_ema(ema, unet_config)
    scheduler, config = load_schedule_and_config(best_dir)
    return LoadedModel(model_id, epoch_dir, unet.to(device).eval(), dict(scheduler.config), config, run_id, epoch)


class Catalog:
    """The checkpoints the studio may load: the default folder and what MLflow's runs know."""

    def __init__(
        self, default_dir: str | Path, tracking_uri: str | None, experiment: str, *, root: str | Path = "."
    ) -> None:
        """``root``: the workspace; a store it holds that a copy or move left with old absolute paths
        is brought home first, and its relative artifact paths and checkpoint tags resolve there,
        wherever the studio was started."""
        from facegen.train.mlflow_store import open_store

        self.default_dir = Path(default_dir)
        self.root = Path(root)
        self.tracking_uri = open_store(self.root, tracking_uri) if tracking_uri else None
        self.experiment = experiment

    def _best_dir(self, tags: dict[str, str]) -> Path:
        """The run's model folder from its ``best_checkpoint`` tag (workspace-relative or absolute)."""
        tag = tags.get("best_checkpoint", "")
        return Path(tag) if not tag or Path(tag).is_absolute() else self.root / tag

    def _client(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)

    def _run(self, run_id: str) -> Any:
        from mlflow.exceptions import MlflowException

        if self.tracking_uri is None:
            raise UnknownCheckpoint(f"run {run_id!r}: no MLflow store configured (pass --tracking-uri)")
        try:
            return self._client().get_run(run_id)
        except MlflowException as exc:
            raise UnknownCheckpoint(
                f"run {run_id!r} is not in MLflow ({self.tracking_uri}); GET /api/runs lists the known runs"
            ) from exc

    @staticmethod
    def _epochs_on_disk(best_dir: Path) -> list[int]:
        return sorted(int(p.parent.name.split("_")[1]) for p in best_dir.parent.glob("epoch_*/ema.pt"))

    def load(self, model_id: str, device: str = "cpu") -> LoadedModel:
        """Load the checkpoint named ``model_id`` (see module docstring)."""
        if model_id == "best":
            return load_dir("best", self.default_dir, device)
        parts = model_id.split(":")
        if parts[0] != "run" or len(parts) not in (2, 4) or (len(parts) == 4 and parts[2] != "epoch"):
            raise UnknownCheckpoint(f"checkpoint {model_id!r}: use 'best', 'run:<run_id>' or 'run:<run_id>:epoch:<N>'")
        run = self._run(parts[1])
        best_dir = self._best_dir(run.data.tags)
        if not (best_dir / "unet").is_dir():
            raise UnknownCheckpoint(
                f"run {parts[1]} has no model folder on this machine (tag best_checkpoint={str(best_dir)!r})"
            )
        if len(parts) == 2:
            return load_dir(model_id, best_dir, device)
        try:
            epoch = int(parts[3])
        except ValueError as exc:
            raise UnknownCheckpoint(f"checkpoint {model_id!r}: epoch {parts[3]!r} is not an integer") from exc
        epoch_dir = best_dir.parent / f"epoch_{epoch:05d}"
        if not (epoch_dir / "ema.pt").is_file():
            raise UnknownCheckpoint(
                f"run {parts[1]} has no saved checkpoint of epoch {epoch}; "
                f"saved epochs: {self._epochs_on_disk(best_dir)}"
            )
        return load_epoch(model_id, best_dir, epoch_dir, run_id=parts[1], epoch=epoch, device=device)

    def runs(self) -> list[dict[str, Any]]:
        """The experiment's runs, newest first: metrics per epoch, best epoch, grids, loadable checkpoints."""
        if self.tracking_uri is None:
            return []
        client = self._client()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            return []
        out = []
        for run in client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=200):
            metrics, tags = run.data.metrics, run.data.tags
            metric = tags.get("metric")
            curves = {}
            for name in CURVE_METRICS:
                if name in metrics:
                    history = client.get_metric_history(run.info.run_id, name)
                    curves[name] = [[int(m.step), float(m.value)] for m in sorted(history, key=lambda m: m.step)]
            best_dir = self._best_dir(tags)
            loadable = (best_dir / "unet").is_dir()
            out.append(
                {
                    "run_id": run.info.run_id,
                    "run_name": run.info.run_name,
                    "status": run.info.status,
                    "metric": metric,
                    "best_value": metrics.get(f"best_{metric}") if metric else None,
                    "best_epoch": int(metrics["best_epoch"]) if "best_epoch" in metrics else None,
                    "curves": curves,
                    "grids": self.grid_epochs(run.info.run_id),
                    "checkpoints": ([f"run:{run.info.run_id}"] if loadable else [])
                    + [
                        f"run:{run.info.run_id}:epoch:{e}" for e in (self._epochs_on_disk(best_dir) if loadable else [])
                    ],
                    "human_error_rate": metrics.get("human_error_rate"),
                }
            )
        return out

    def grid_epochs(self, run_id: str) -> list[int]:
        """Epochs with a logged sample grid (``samples/epoch_NNNNN.png``)."""
        from facegen.train.mlflow_store import at_store

        assert self.tracking_uri is not None
        with at_store(self.tracking_uri):  # relative artifact paths resolve in the store's folder
            files = self._client().list_artifacts(run_id, "samples")
        names = [Path(f.path).name for f in files]
        return sorted(int(n[6:11]) for n in names if n.startswith("epoch_") and n.endswith(".png"))

    def grid_png(self, run_id: str, epoch: int) -> bytes:
        """The PNG bytes of a run's sample grid at ``epoch``."""
        from mlflow.exceptions import MlflowException

        from facegen.train.mlflow_store import run_artifact

        self._run(run_id)
        assert self.tracking_uri is not None
        try:  # one lookup of the file itself, not a listing of every grid first
            return run_artifact(self.root, run_id, f"samples/epoch_{epoch:05d}.png", self.tracking_uri).read_bytes()
        except (OSError, MlflowException) as exc:  # a local file, or a remote store's download
            raise UnknownCheckpoint(f"run {run_id} has no sample grid for epoch {epoch}") from exc
