"""DVC stage `train`: params.yaml `train` -> models/best/, models/checkpoints/, metrics/train*.

Run from the repository root: `python stages/train.py` (one process) or
`accelerate launch --num_processes N stages/train.py` (DDP; multi-node as Accelerate supports).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from facegen.common.config import load_section
from facegen.train.tracking import repo_root, tracking_uri
from facegen.train.loop import TrainConfig, TrainPaths, train


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--faces", default="data/faces.parquet", help="aligned faces table (paths repo-relative)")
    parser.add_argument("--models", default="models", help="writes <models>/best/ and <models>/checkpoints/")
    parser.add_argument("--metrics", default="metrics", help="writes train.json and train_epochs.csv")
    parser.add_argument("--fid-cache", default="cache/fid", help="cached reference stats of the test split")
    args = parser.parse_args(argv)

    cfg = load_section(TrainConfig, "train", args.params)
    root = repo_root(".")
    paths = TrainPaths(faces=Path(args.faces), root=Path("."), models=Path(args.models), metrics=Path(args.metrics),
                       fid_cache=Path(args.fid_cache), tracking_uri=tracking_uri(root), artifact_root=root / "mlruns")
    summary = train(cfg, paths)
    if summary:
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
