"""A tiny git + DVC workspace with some of the repository's real stages (dvc.yaml's own entries,
stages/*.py and facegen/ copied), for tests that run the studio's commands for real.

``make test`` runs .venv/bin/python without the venv's bin on PATH, so DVC is called as
``python -m dvc`` and the stages' ``python`` is found through PATH set to this interpreter's bin.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    """The environment of a stage: this interpreter first on PATH, this checkout importable, one thread."""
    out = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("DVC_")}
    out.update(PATH=f"{BIN}{os.pathsep}{out.get('PATH', '')}", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return out


def run(root: Path, *cmd: str, ok: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    """``cmd`` in ``root``; ``dvc`` means ``python -m dvc`` of this interpreter; asserts success when ``ok``."""
    argv = [sys.executable, "-m", "dvc", *cmd[1:]] if cmd[0] == "dvc" else list(cmd)
    proc = subprocess.run(argv, cwd=root, env=env(), capture_output=True, text=True, timeout=timeout)
    if ok:
        assert proc.returncode == 0, (shlex.join(cmd), proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def dvc_workspace(root: Path, stages: list[str]) -> Path:
    """Turn ``root`` (its data and params.yaml already there) into a committed git + DVC repository
    whose dvc.yaml holds the repository's own ``stages`` entries, with their scripts and facegen/."""
    real = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": {name: real[name] for name in stages}}, sort_keys=False))
    (root / "stages").mkdir(exist_ok=True)
    for name in stages:
        shutil.copy(REPO / "stages" / f"{name}.py", root / "stages" / f"{name}.py")
    shutil.copytree(REPO / "facegen", root / "facegen", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    init_repo(root)
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "workspace")
    return root


def init_repo(root: Path) -> None:
    """``git init`` with a test identity, then ``dvc init``, in ``root``."""
    run(root, "git", "init", "-q")
    run(root, "git", "config", "user.email", "t@example.com")
    run(root, "git", "config", "user.name", "t")
    run(root, "dvc", "init", "-q")
