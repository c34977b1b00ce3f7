"""The ``facegen`` command (``[project.scripts]``): questions about finished work, no browser.

    facegen best [--experiment NAME] [--all] [--tracking-uri URI] [--json]
    facegen studio [--host 127.0.0.1] [--port 8765] [--model models/best]

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
    _add_studio(sub)
    return parser


def _studio(args: argparse.Namespace) -> int:
    from facegen.studio.app import StudioConfig, create_app
    from facegen.studio.models import UnknownCheckpoint

    import uvicorn

    root = Path(args.root)
    overrides = {k: getattr(args, k) for k in ("max_images", "max_steps", "max_upload_bytes", "queue_size",
                                               "experiment", "detector", "device") if getattr(args, k) is not None}
    try:
        cfg = StudioConfig(model=Path(args.model), root=root,
                           tracking_uri=args.tracking_uri or tracking_uri(repo_root(root)), **overrides)
        app = create_app(cfg)
    except (UnknownCheckpoint, ValueError) as err:
        _say(f"facegen studio: {err}", err=True)
        return 2
    _say(f"facegen studio: model {app.state.studio.model.path} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _add_studio(sub: argparse._SubParsersAction) -> None:
    studio = sub.add_parser("studio", help="local web app: generate, explore, edit, browse runs, judge (docs/studio.md)")
    studio.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    studio.add_argument("--port", type=int, default=8765)
    studio.add_argument("--model", default="models/best", help="a models/best-layout folder (default models/best)")
    studio.add_argument("--root", default=".", help="repository root: params.yaml, data/ (default .)")
    studio.add_argument("--tracking-uri", default=None, help="MLflow store (default: as `facegen best`)")
    studio.add_argument("--experiment", default=None, help="MLflow experiment (default params.yaml train.experiment)")
    studio.add_argument("--detector", default=None, help="face detector for uploads (default params.yaml faces.model)")
    studio.add_argument("--device", default=None, help="torch device (default cpu)")
    studio.add_argument("--max-images", type=int, default=None, help="images per request (default 64)")
    studio.add_argument("--max-steps", type=int, default=None, help="denoising steps per request (default 250)")
    studio.add_argument("--max-upload-bytes", type=int, default=None, help="upload size limit (default 10 MB)")
    studio.add_argument("--queue-size", type=int, default=None, help="model jobs waiting at most (default 4)")
    studio.set_defaults(func=_studio)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
