"""DVC stage `train`: params.yaml `train` -> models/best/, metrics/train*, checkpoints in cache/checkpoints/.

Run from the repository root: `python stages/train.py` (what `dvc repro` runs). With
`train.num_processes: N` > 1 it re-runs itself under `accelerate launch --multi_gpu --num_processes N`
(CPU: gloo DDP), so multi-GPU works from `dvc repro`; `accelerate launch ... stages/train.py`
works too. Checkpoints: facegen.train.config.checkpoint_root (`<repo>/cache/checkpoints/<run_key>/`).
`--dry-run` prints what would run (options, run key, checkpoint folder, data counts) and exits.
A bad param prints one line (`train: error: ...`) and exits 2; SIGTERM ends the run as KILLED.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from pathlib import Path

if not sys.stderr.isatty() or os.environ.get("LOCAL_RANK", "0") != "0":
    # before tqdm is imported (it reads TQDM_* once): library bars (loading faces, MLflow
    # artifacts) only on the main process of a terminal; the trainer's own bar follows the same rule
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from facegen.common.config import load_section
from facegen.train.config import checkpoint_root, dry_run
from facegen.train.loop import TrainConfig, TrainPaths, train
from facegen.train.tracking import repo_root, tracking_uri


def _launch(n: int, precision: str, argv: list[str]) -> int:
    """Re-run this script as ``n`` Accelerate processes; returns their exit status."""
    import subprocess

    import torch

    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    gpus = torch.cuda.device_count()
    env = dict(os.environ)
    if gpus == 0:
        env["ACCELERATE_USE_CPU"] = "true"
    elif gpus < n:
        raise ValueError(f"train.num_processes = {n} but {gpus} GPU(s) are visible: set it to at most {gpus}")
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        str(n),
        "--num_machines",
        "1",
        "--mixed_precision",
        precision,
        "--dynamo_backend",
        "no",
        str(Path(__file__).resolve()),
        *argv,
    ]
    print(f"train: launching {n} processes: {' '.join(cmd)}", file=sys.stderr)
    return subprocess.run(cmd, env=env).returncode


def _paths(args: argparse.Namespace) -> TrainPaths:
    root = repo_root(".")
    return TrainPaths(
        faces=Path(args.faces),
        root=Path("."),
        models=Path(args.models),
        metrics=Path(args.metrics),
        fid_cache=Path(args.fid_cache),
        tracking_uri=tracking_uri(root),
        artifact_root=root / "mlruns",
        checkpoints=Path(args.checkpoints) if args.checkpoints else checkpoint_root(root),
    )


def _dry_run(cfg: TrainConfig, args: argparse.Namespace, world_size: int) -> int:
    try:
        plan = dry_run(cfg, _paths(args), world_size)
    except (ValueError, FileNotFoundError) as err:
        print(f"train: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(plan, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--faces", default="data/faces.parquet", help="aligned faces table (paths repo-relative)")
    parser.add_argument("--models", default="models", help="writes <models>/best/")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="checkpoint folder (default: $FACEGEN_CHECKPOINTS, else <repo>/cache/checkpoints)",
    )
    parser.add_argument("--metrics", default="metrics", help="writes train.json, train_epochs.csv, grids/")
    parser.add_argument("--fid-cache", default="cache/fid", help="cached reference stats of the test split")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved options, run key, checkpoint folder and data counts as JSON, and exit",
    )
    args = parser.parse_args(argv)

    try:
        cfg = load_section(TrainConfig, "train", args.params)
    except (ValueError, TypeError, KeyError) as err:
        print(
            f"train: error: {err} (params.yaml keeps the value `dvc exp run -S` wrote: fix it or "
            "`git checkout params.yaml`; outputs of the last good run are untouched)",
            file=sys.stderr,
        )
        return 2
    launched = "WORLD_SIZE" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ  # under accelerate launch
    if args.dry_run:
        return _dry_run(cfg, args, int(os.environ.get("WORLD_SIZE") or cfg.num_processes))
    if cfg.num_processes > 1 and not launched:
        try:
            return _launch(cfg.num_processes, cfg.precision, argv)
        except ValueError as err:
            print(f"train: error: {err}", file=sys.stderr)
            return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # -> run marked KILLED
    try:
        summary = train(cfg, _paths(args))
    except ValueError as err:  # user input (params, data, resume folder): one line, no traceback
        print(f"train: error: {err}", file=sys.stderr)
        return 2
    if summary:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
