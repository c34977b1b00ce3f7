"""The workspace's embedded MLflow store, whose artifact paths are relative to the workspace.

Store: ``sqlite:///<repo>/mlflow.db`` with artifacts under ``<repo>/mlruns`` (:func:`tracking_uri`).
An experiment that facegen creates there has the artifact root ``mlruns/<name>``, relative to
the folder holding ``mlflow.db``, and MLflow derives every run's, logged model's and model
version's artifact location from it, so they stay relative too: after ``cp -a`` or ``mv`` of the
workspace, plain ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` started in the workspace
root, ``mlflow.pyfunc.load_model("models:/NAME/1")`` run there, and every facegen command find
the artifacts with nothing rewritten. MLflow resolves a relative local path against the current
directory, so facegen runs its MLflow calls on a store from the store's folder (:func:`at_store`).
MLflow has no public way to create such an experiment (``create_experiment`` makes a local
root absolute against the current directory): :func:`experiment_id` creates it with MLflow and
then writes the relative root into that one new row. Stores made by earlier facegen versions
(absolute paths, tagged :data:`ROOT_TAG`) are still brought home by :func:`relocate_store`.
The SQL on MLflow's tables lives here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ARTIFACTS = "mlruns"  # the embedded store's artifact folder, beside mlflow.db
ROOT_TAG = "facegen.repo_root"  # legacy experiment tag: the root an earlier facegen made absolute paths under
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
    """Rewrite the absolute artifact paths that an earlier facegen made in the embedded store
    ``<root>/mlflow.db`` under another root (experiments tagged :data:`ROOT_TAG`; new ones are
    relative and never need it).

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
    ``mlflow.db``); an earlier facegen's absolute paths are moved home first (:func:`relocate_store`)."""
    home = repo_root(root)
    uri = uri or tracking_uri(home)
    relocate_store(uri, home)
    return uri


def store_home(uri: str) -> Path | None:
    """The folder a ``sqlite:///`` store's relative artifact paths are relative to: the database's."""
    db = sqlite_file(uri)
    return db.resolve().parent if db is not None else None


@contextlib.contextmanager
def at_store(uri: str) -> Iterator[None]:
    """Run MLflow calls on store ``uri`` from its folder, where its relative artifact paths resolve
    (MLflow resolves them against the current directory); a no-op for other stores. It changes
    the process's directory for the block: facegen calls it from the main thread only, around
    single MLflow calls that are given absolute local paths."""
    home = store_home(uri)
    if home is None or not home.is_dir() or home == Path.cwd().resolve():
        yield
        return
    before = os.getcwd()
    os.chdir(home)
    try:
        yield
    finally:
        os.chdir(before)


def _embedded(uri: str, artifact_root: Path | None, workspace: Path) -> bool:
    """Whether ``uri`` is the store ``<root>/mlflow.db`` of ``workspace``, the one the process runs
    in (:func:`repo_root` of its current directory, so also from a DVC temp workspace),
    with artifacts in ``<root>/mlruns``: the store whose experiments get relative roots. Any other
    store (a test's, one named by ``$MLFLOW_TRACKING_URI``) keeps MLflow's absolute paths, which
    a process running elsewhere resolves the same."""
    home = store_home(uri)
    if artifact_root is None or home is None:
        return False
    return Path(artifact_root).resolve() == home / ARTIFACTS and workspace == home


def experiment_id(client: Any, name: str, uri: str, *, artifact_root: Path | None, workspace: Path) -> str:
    """The id of experiment ``name``, created when absent. In ``workspace``'s own store its artifact
    root is ``mlruns/<name>``, relative to the workspace (see the module docstring); in another
    SQLite store it is ``<artifact_root>/<name>``; elsewhere the store's default."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if artifact_root is not None and uri.startswith("sqlite:"):
        location = (Path(artifact_root) / name).resolve().as_uri()
    exp_id = str(client.create_experiment(name, artifact_location=location))
    db = sqlite_file(uri)
    if db is not None and _embedded(uri, artifact_root, workspace):
        con = sqlite3.connect(db)
        try:  # the one row MLflow made absolute: the runs and models made from it stay relative
            sql = "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?"
            con.execute(sql, (f"{ARTIFACTS}/{name}", exp_id))
            con.commit()
        finally:
            con.close()
    return exp_id


def local_artifacts(uri: str, artifact_uri: str) -> Path | None:
    """The local folder of an artifact URI of store ``uri`` (a relative one joined to the store's
    folder), or None when the artifacts are not local files."""
    from mlflow.utils.file_utils import local_file_uri_to_path

    if artifact_uri.startswith("file:"):
        return Path(local_file_uri_to_path(artifact_uri))
    if "://" in artifact_uri or ":" in artifact_uri.split("/")[0]:
        return None  # s3://, mlflow-artifacts:/, runs:/ ...
    path = Path(artifact_uri)
    home = store_home(uri)
    return path if path.is_absolute() or home is None else home / path


def run_artifact(root: str | Path, run_id: str, path: str, uri: str | None = None) -> Path:
    """A local path to artifact ``path`` of MLflow run ``run_id`` of workspace ``root``, also in a
    copied or moved workspace: the file in place when the store is local, else a download."""
    import mlflow

    uri = open_store(root, uri)
    client = mlflow.MlflowClient(tracking_uri=uri)
    base = local_artifacts(uri, client.get_run(run_id).info.artifact_uri)
    if base is not None:
        local = base / path
        if local.exists():
            return local
        raise FileNotFoundError(f"run {run_id} has no artifact {path!r} (looked in {local})")
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, tracking_uri=uri))
