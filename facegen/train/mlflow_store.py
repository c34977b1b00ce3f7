"""The workspace's embedded MLflow store, and the one place that knows MLflow keeps absolute paths.

Store: ``sqlite:///<repo>/mlflow.db`` with artifacts under ``<repo>/mlruns`` (:func:`tracking_uri`).
MLflow (3.x; tests/train/test_mlflow_store.py checks the tables below exist in the installed
version) resolves a local artifact location to an absolute path when an experiment is created
and copies it into every run, logged model and model version; no public MLflow call changes
them afterwards. After ``cp -a`` or ``mv`` of the workspace those rows still name the old tree,
so :func:`open_store` rewrites the prefix of the paths made under another root (the experiments
made here carry that root in the tag :data:`ROOT_TAG`). The SQL on MLflow's tables lives here
and nowhere else; every entry point opens the store through :func:`open_store`: the trainer,
``facegen best``/``ui`` and :func:`run_artifact` (the studio).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

ROOT_TAG = "facegen.repo_root"  # experiment tag: the root the embedded store's paths were made under
# (table, path column, experiment column or None): every row MLflow 3 fills with an artifact path
PATH_COLUMNS = (
    ("experiments", "artifact_location", "experiment_id"),
    ("runs", "artifact_uri", "experiment_id"),
    ("logged_models", "artifact_location", "experiment_id"),
    ("model_versions", "storage_location", None),
)


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


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for any other store)."""
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


def _rewrite(con: sqlite3.Connection, old: str, root: Path, exp_id: str) -> int:
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    changed = 0
    for table, column, key in PATH_COLUMNS:
        if table not in tables:
            continue
        for prefix_old, prefix_new in ((Path(old).as_uri(), root.as_uri()), (old, str(root))):
            where, args = f"substr({column}, 1, ?) = ?", [len(prefix_old), prefix_old]
            if key is not None:
                where, args = f"{key} = ? AND {where}", [exp_id, *args]
            cur = con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?) WHERE {where}",
                (prefix_new, len(prefix_old) + 1, *args),
            )
            changed += cur.rowcount
    tag = "UPDATE experiment_tags SET value = ? WHERE experiment_id = ? AND key = ?"
    con.execute(tag, (str(root), exp_id, ROOT_TAG))
    return changed


def relocate_store(uri: str, root: str | Path) -> int:
    """Rewrite the artifact paths of the embedded store ``<root>/mlflow.db`` made under another root.

    Returns the number of rows changed (0 when the store is not ``<root>/mlflow.db``, is new, or
    already belongs to ``root``). Only the path prefix changes, so artifacts copied along with the
    repository are found and new ones are written under ``root``.
    """
    db = sqlite_file(uri)
    root = Path(root).resolve()
    if db is None or not db.is_file() or db.resolve() != root / "mlflow.db":
        return 0
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT experiment_id, value FROM experiment_tags WHERE key = ?", (ROOT_TAG,)).fetchall()
        changed = sum(_rewrite(con, old, root, exp_id) for exp_id, old in rows if old != str(root))
        con.commit()
    finally:
        con.close()
    return changed


def open_store(root: str | Path, uri: str | None = None) -> str:
    """The tracking URI of workspace ``root`` (``uri``, else ``$MLFLOW_TRACKING_URI``, else its
    ``mlflow.db``), its paths moved home first when the workspace was copied or moved."""
    home = repo_root(root)
    uri = uri or tracking_uri(home)
    relocate_store(uri, home)
    return uri


def experiment_id(client: Any, name: str, uri: str, artifact_root: Path | None) -> str:
    """The id of experiment ``name``, created when absent; in the embedded store its artifacts go
    under ``<artifact_root>/<name>`` and it is tagged with its root (see :func:`relocate_store`)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = tags = None
    if artifact_root is not None and uri.startswith("sqlite:"):
        location = (Path(artifact_root) / name).resolve().as_uri()
        tags = {ROOT_TAG: str(Path(artifact_root).resolve().parent)}
    return str(client.create_experiment(name, artifact_location=location, tags=tags))


def run_artifact(root: str | Path, run_id: str, path: str, uri: str | None = None) -> Path:
    """A local path to artifact ``path`` of MLflow run ``run_id`` of workspace ``root``, also in a
    copied or moved workspace: the file in place when the store is local, else a download."""
    import mlflow
    from mlflow.utils.file_utils import local_file_uri_to_path

    uri = open_store(root, uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    base = client.get_run(run_id).info.artifact_uri
    if base.startswith("file:") or "://" not in base:
        local = Path(local_file_uri_to_path(base)) / path
        if local.exists():
            return local
        raise FileNotFoundError(f"run {run_id} has no artifact {path!r} (looked in {local})")
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=uri))
