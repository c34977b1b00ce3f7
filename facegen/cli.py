"""The ``facegen`` command (``[project.scripts]``): questions about finished work, no browser.

    facegen best [--experiment NAME] [--all] [--tracking-uri URI] [--json]

prints, for the latest run (or every run) of an MLflow experiment: run id, best epoch, its FID
(or offline FD, named as such) and the folder holding that epoch's EMA weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facegen.common.redact import mask_uri
from facegen.train.tracking import best_runs, repo_root, tracking_uri


def _say(text: str, err: bool = False) -> None:
    """Print with credentials masked (a tracking URI's password never reaches the terminal)."""
    print(mask_uri(text), file=sys.stderr if err else sys.stdout)


def _best(args: argparse.Namespace) -> int:
    uri = args.tracking_uri or tracking_uri(repo_root("."))
    try:
        rows = best_runs(uri, args.experiment, all_runs=args.all)
    except ValueError as err:
        _say(f"facegen best: {err}", err=True)
        return 2
    if not rows:
        _say(f"facegen best: no evaluated run in experiment {args.experiment!r} ({uri})", err=True)
        return 1
    if args.json:
        _say(json.dumps(rows if args.all else rows[0], indent=2))
        return 0
    for row in rows:
        _say(f"run {row['run_id']} ({row['run_name']}, {row['status']}): best epoch {row['epoch']} "
              f"{row['metric']} {row['value']:.4f} checkpoint {row['checkpoint']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    best = sub.add_parser("best", help="which epoch of the latest (or every) training run was best")
    best.add_argument("--experiment", default="facegen", help="MLflow experiment (params.yaml train.experiment)")
    best.add_argument("--all", action="store_true", help="every run of the experiment, newest first")
    best.add_argument("--tracking-uri", default=None,
                      help=f"default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db (here {Path.cwd()})")
    best.add_argument("--json", action="store_true", help="machine-readable output")
    best.set_defaults(func=_best)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
