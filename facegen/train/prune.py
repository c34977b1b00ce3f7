"""``facegen prune``: free the checkpoints of training runs that nothing names any more.

A run key's folder under :func:`facegen.train.config.checkpoint_root` is kept when an MLflow run
of the store names it (tag ``facegen.run_key``) and that run is not deleted, or when the DVC
experiment the run came from (tag ``dvc.exp_name``) still exists (``dvc exp list``), or when
``models/best`` came from it, or when a trainer holds its lock. Everything else is removed:
after ``dvc exp remove`` and deleting the runs in MLflow (UI or ``mlflow.delete_run``) the
checkpoints go too. A store that names none of the folders is refused, not emptied.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from facegen.train.tracking import RUN_KEY_TAG


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def dvc_experiments(root: Path) -> set[str] | None:
    """Names of the DVC experiments of ``root`` (all commits), None when DVC cannot list them."""
    try:
        proc = subprocess.run(
            ["dvc", "exp", "list", "--all-commits", "--name-only"], cwd=root, capture_output=True, text=True
        )
    except OSError:
        return None
    return set(proc.stdout.split()) if proc.returncode == 0 else None


def _named_keys(uri: str, root: Path) -> tuple[set[str], set[str]]:
    """(run keys some run or experiment still names, every run key the store has heard of)."""
    import mlflow
    from mlflow.entities import ViewType

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiments = dvc_experiments(root) or set()
    kept, known = set(), set()
    exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    for run in client.search_runs(exp_ids, run_view_type=ViewType.ALL, max_results=50000) if exp_ids else []:
        key = run.data.tags.get(RUN_KEY_TAG)
        if not key:
            continue
        known.add(key)
        if run.info.lifecycle_stage != "deleted" or run.data.tags.get("dvc.exp_name") in experiments:
            kept.add(key)
    best = root / "models" / "best" / "best.json"
    if best.is_file():  # the published model's run stays resumable
        run_id = json.loads(best.read_text(encoding="utf-8")).get("run_id")
        for run in client.search_runs(exp_ids, f"attributes.run_id = '{run_id}'", ViewType.ALL) if run_id else []:
            kept.add(run.data.tags.get(RUN_KEY_TAG, ""))
    return kept, known


def prune(uri: str, root: Path, checkpoints: Path, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Remove (or, with ``dry_run``, only list) the run folders under ``checkpoints`` that nothing
    names; returns one row per folder: key, bytes, action (``remove``/``removed``/``keep``), why."""
    from filelock import FileLock, Timeout

    from facegen.train.checkpoint import LOCK_FILE

    folders = sorted(p for p in Path(checkpoints).iterdir() if p.is_dir()) if Path(checkpoints).is_dir() else []
    kept, known = _named_keys(uri, root)
    if folders and not known & {p.name for p in folders}:
        raise ValueError(
            f"no MLflow run in {uri} names any of the {len(folders)} folders in {checkpoints}: is this the "
            "workspace's store (--tracking-uri, $MLFLOW_TRACKING_URI)? Nothing was removed."
        )
    rows = []
    for folder in folders:
        row = {"key": folder.name, "bytes": folder_bytes(folder), "action": "keep", "why": "named by a run"}
        if folder.name not in kept:
            lock: AbstractContextManager[Any] = (
                FileLock(folder / LOCK_FILE, timeout=0) if (folder / LOCK_FILE).exists() else nullcontext()
            )
            try:
                with lock:
                    row["action"], row["why"] = ("remove" if dry_run else "removed"), "no run or experiment names it"
                    if not dry_run:
                        shutil.rmtree(folder)
            except Timeout:
                row["why"] = "a trainer holds its lock"
        rows.append(row)
    return rows
