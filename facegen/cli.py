"""The ``facegen`` command (``[project.scripts]``): questions about finished work, no browser.

    facegen best [--experiment NAME] [--all] [--tracking-uri URI] [--json] [--register NAME]
                 [--max-memorized FRACTION] [--allow-memorized]
    facegen ui [--host 127.0.0.1] [--port 5000]
    facegen prune [--dry-run]
    facegen export [--model models/best] [--out DIR] [--push-to-hub REPO_ID [--private]]
    facegen studio [--host 127.0.0.1] [--port 8765] [--model models/best]
    facegen curate reject|restore FACE_ID [--note TEXT] [--faces data/faces.parquet] [--curation curation.csv]

``best`` prints, for the latest run (or every run) of an MLflow experiment (default: params.yaml's
``train.experiment``): run id, best epoch, its FID (or offline FD, named as such) and an existing
folder (or MLflow URI) holding that epoch's model; ``--register`` adds that run's logged model to
the MLflow model registry; it refuses (exit 3) a best epoch whose ``memorized_fraction`` (the
share of its samples flagged as near copies of training faces, docs/fid.md) is above
``--max-memorized`` (default params.yaml ``fid.max_memorized_fraction``), or only warns with
``--allow-memorized``. ``ui`` starts MLflow's UI on the workspace's store and artifacts (also in
a copied or moved workspace: :func:`facegen.train.mlflow_store.open_store`). ``prune`` removes the
checkpoints of runs that no MLflow run or DVC experiment names (:mod:`facegen.train.prune`). ``export`` checks that
a model folder loads as a diffusers pipeline, copies it and/or uploads it to the Hugging Face Hub
(token: ``$HF_TOKEN`` or ``huggingface-cli login``).
``curate`` records a manual decision on one aligned face in curation.csv (docs/align.md), which the
align stage applies on the next ``dvc repro``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from facegen import __version__
from facegen.common.redact import mask_uri
from facegen.train.mlflow_store import repo_root, tracking_uri
from facegen.train.runs import best_runs

DEFAULT_EXPERIMENT = "facegen"
DESCRIPTION = "facegen: questions about finished training runs, the MLflow UI, export, the studio, curation."
EPILOG = "Run `facegen COMMAND --help` for a command's options. The pipeline itself runs with `dvc repro`."


def _say(text: str, err: bool = False) -> None:
    """Print with credentials masked (a tracking URI's password never reaches the terminal)."""
    print(mask_uri(text), file=sys.stderr if err else sys.stdout)


def params_experiment(root: str | Path) -> str:
    """``train.experiment`` of ``<root>/params.yaml`` (``facegen`` when absent)."""
    import yaml

    path = Path(root) / "params.yaml"
    if not path.is_file():
        return DEFAULT_EXPERIMENT
    params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return str((params.get("train") or {}).get("experiment") or DEFAULT_EXPERIMENT)


def _best(args: argparse.Namespace) -> int:
    root = repo_root(".")
    uri = args.tracking_uri or tracking_uri(root)
    experiment = args.experiment or params_experiment(root)
    try:
        rows = best_runs(uri, experiment, all_runs=args.all, root=root)
    except ValueError as err:
        _say(f"facegen best: {err}", err=True)
        return 2
    if not rows:
        _say(f"facegen best: no evaluated run in experiment {experiment!r} ({uri})", err=True)
        return 1
    try:
        if not _memorization_ok(rows, args, uri, root):
            return 3
    except ValueError as err:  # a bad fid.max_memorized_fraction in params.yaml
        _say(f"facegen best: error: {err}", err=True)
        return 2
    if args.register:
        from facegen.diffusion.pipeline import register_model

        try:
            version = register_model(rows[0]["run_id"], args.register, uri)
        except ValueError as err:
            _say(f"facegen best: {err}", err=True)
            return 2
        rows[0]["registered"] = f"{version.name} v{version.version}"
    if args.json:
        _say(json.dumps(rows if args.all else rows[0], indent=2))
        return 0
    for row in rows:
        exp = f", dvc exp {row['dvc_exp_name']}" if row.get("dvc_exp_name") else ""
        _say(
            f"run {row['run_id']} ({row['run_name']}, {row['status']}{exp}): best epoch {row['epoch']} "
            f"{row['metric']} {row['value']:.4f} checkpoint {row['checkpoint']}"
        )
    if args.register:
        print(f"registered as {rows[0]['registered']}")
    return 0


def _memorization_ok(rows: list[dict], args: argparse.Namespace, uri: str, root: Path) -> bool:
    """Add each row's ``memorized_fraction``; False (and one line each) when one is over the limit."""
    from facegen.fid.score import epoch_score, max_memorized_fraction

    limit = args.max_memorized if args.max_memorized is not None else max_memorized_fraction(root)
    ok = True
    for row in rows:
        row["memorized_fraction"] = fraction = epoch_score(uri, row["run_id"], row["epoch"])
        if fraction is None or fraction <= limit:
            continue
        verdict = "warning" if args.allow_memorized else "error"
        _say(
            f"facegen best: {verdict}: run {row['run_id']} epoch {row['epoch']} has memorized_fraction "
            f"{fraction:.4f} > {limit:g} (fid.max_memorized_fraction / --max-memorized): its samples copy "
            "training faces (docs/fid.md); pass --allow-memorized to accept it anyway",
            err=True,
        )
        ok = ok and args.allow_memorized
    return ok


def _export(args: argparse.Namespace) -> int:
    from facegen.diffusion.pipeline import export_model

    try:
        result = export_model(args.model, args.out, args.push_to_hub, private=args.private)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        _say(f"facegen export: {err}", err=True)
        return 2
    where = f"pushed to {result['url']}" if result["url"] else f"folder {result['folder']}"
    print(f"{result['pipeline']} from {args.model}: {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegen", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"facegen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    best = sub.add_parser("best", help="which epoch of the latest (or every) training run was best")
    best.add_argument("--experiment", default=None, help="MLflow experiment (default: params.yaml train.experiment)")
    best.add_argument("--all", action="store_true", help="every run of the experiment, newest first")
    best.add_argument(
        "--tracking-uri",
        default=None,
        help=f"default: $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db (here {Path.cwd()})",
    )
    best.add_argument("--json", action="store_true", help="machine-readable output")
    best.add_argument(
        "--register",
        metavar="NAME",
        default=None,
        help="register the latest run's MLflow model under NAME in the model registry",
    )
    best.add_argument(
        "--max-memorized",
        type=float,
        metavar="FRACTION",
        default=None,
        help="refuse a best epoch with more samples flagged as copies (default fid.max_memorized_fraction)",
    )
    best.add_argument(
        "--allow-memorized", action="store_true", help="only warn about a best epoch over --max-memorized"
    )
    best.set_defaults(func=_best)
    _add_ui(sub)
    _add_prune(sub)

    export = sub.add_parser("export", help="check models/best as a diffusers pipeline; copy it or push it to the Hub")
    export.add_argument("--model", default="models/best", help="pipeline folder (default models/best)")
    export.add_argument("--out", default=None, help="copy the folder here (must not exist)")
    export.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        default=None,
        help="upload to this Hugging Face Hub model repository (e.g. you/facegen-ddpm)",
    )
    export.add_argument("--private", action="store_true", help="create the Hub repository private")
    export.set_defaults(func=_export)
    _add_studio(sub)
    _add_curate(sub)
    return parser


def ui_command(root: Path, uri: str, host: str, port: int) -> list[str]:
    """``mlflow ui`` on workspace ``root``'s store, new experiments' artifacts under ``<root>/mlruns``."""
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    artifacts = ["--default-artifact-root", str(root / "mlruns")] if uri.startswith("sqlite:") else []
    return [mlflow, "ui", "--backend-store-uri", uri, *artifacts, "--host", host, "--port", str(port)]


def _ui(args: argparse.Namespace) -> int:
    import subprocess

    from facegen.train.mlflow_store import open_store, store_home

    root = repo_root(args.root)
    uri = open_store(root, args.tracking_uri)  # a copied or moved workspace: paths brought home first
    cmd = ui_command(root, uri, args.host, args.port)
    _say(f"facegen ui: {' '.join(cmd)}", err=True)
    try:
        return subprocess.run(cmd, cwd=store_home(uri) or root).returncode  # relative artifact paths resolve there
    except KeyboardInterrupt:
        return 0


def _prune(args: argparse.Namespace) -> int:
    from facegen.train.config import checkpoint_root
    from facegen.train.mlflow_store import open_store
    from facegen.train.prune import prune

    root = repo_root(args.root)
    folder = Path(args.checkpoints) if args.checkpoints else checkpoint_root(root)
    try:
        rows = prune(open_store(root, args.tracking_uri), root, folder, dry_run=args.dry_run)
    except ValueError as err:
        _say(f"facegen prune: error: {err}", err=True)
        return 2
    for row in rows:
        print(f"{row['action']:8} {row['bytes'] / 2**20:9.1f} MiB  {folder / row['key']}  ({row['why']})")
    freed = sum(r["bytes"] for r in rows if r["action"] in ("remove", "removed"))
    print(f"{'would free' if args.dry_run else 'freed'} {freed / 2**20:.1f} MiB of {len(rows)} run folder(s)")
    return 0


def _add_prune(sub: argparse._SubParsersAction) -> None:
    prune = sub.add_parser("prune", help="remove checkpoints of runs no MLflow run or DVC experiment names")
    prune.add_argument("--dry-run", action="store_true", help="list each run folder, its size and fate; remove nothing")
    prune.add_argument("--root", default=".", help="workspace (repository) root (default .)")
    prune.add_argument("--checkpoints", default=None, help="checkpoint folder (default: as the train stage)")
    prune.add_argument("--tracking-uri", default=None, help="MLflow store (default: as `facegen best`)")
    prune.set_defaults(func=_prune)


def _add_ui(sub: argparse._SubParsersAction) -> None:
    ui = sub.add_parser("ui", help="MLflow's UI on this workspace's store (also after copying or moving it)")
    ui.add_argument("--root", default=".", help="workspace (repository) root (default .)")
    ui.add_argument("--tracking-uri", default=None, help="MLflow store (default: as `facegen best`)")
    ui.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=_ui)


def _curate(args: argparse.Namespace) -> int:
    import pandas as pd

    from facegen.align.curation import decide

    faces = Path(args.faces)
    if not faces.is_file():
        _say(f"facegen curate: error: {faces} not found: run the align stage first (dvc repro align)", err=True)
        return 2
    table = pd.read_parquet(faces, columns=["face_id", "face_index", "status", "eye_distance"])
    match = table[table["face_id"] == args.face_id]
    row = None if match.empty else match.iloc[0].to_dict()
    try:
        decide(args.curation, row, args.face_id, args.decision, note=args.note)
    except ValueError as err:
        _say(f"facegen curate: error: {err}", err=True)
        return 2
    was = "" if row is None else f" (now {row['status']})"
    print(f"{args.decision} {args.face_id}{was} recorded in {args.curation}; `dvc repro` applies it")
    return 0


def _add_curate(sub: argparse._SubParsersAction) -> None:
    curate = sub.add_parser("curate", help="reject or restore one aligned face (curation.csv, docs/align.md)")
    curate.add_argument("decision", choices=["reject", "restore"])
    curate.add_argument("face_id", help="a face_id of data/faces.parquet (e.g. 0123456789abcdef_00)")
    curate.add_argument("--note", default="", help="why (one line, kept in curation.csv)")
    curate.add_argument("--faces", default="data/faces.parquet", help="the aligned faces table")
    curate.add_argument("--curation", default="curation.csv", help="the decisions file (default curation.csv)")
    curate.set_defaults(func=_curate)


def _studio(args: argparse.Namespace) -> int:
    import uvicorn

    from facegen.common.config import load_params
    from facegen.studio.app import StudioConfig, create_app, params_limits
    from facegen.studio.guard import is_loopback
    from facegen.studio.models import UnknownCheckpoint

    if not is_loopback(args.host):
        if not args.public:
            _say(
                f"facegen studio: error: --host {args.host} is reachable from other machines: anyone who can "
                "reach it can use the model and post judgements; add --public to mean it",
                err=True,
            )
            return 2
        _say(f"facegen studio: warning: listening on {args.host}, reachable from other machines", err=True)
    root = Path(args.root)
    flags = ("max_images", "max_steps", "max_cost", "max_upload_bytes", "queue_size", "experiment", "detector")
    overrides = {k: getattr(args, k) for k in (*flags, "device") if getattr(args, k) is not None}
    try:
        params_path = root / "params.yaml"
        overrides = {**params_limits(load_params(params_path) if params_path.is_file() else {}), **overrides}
        cfg = StudioConfig(
            model=Path(args.model),
            root=root,
            tracking_uri=args.tracking_uri or tracking_uri(repo_root(root)),
            host=args.host,
            port=args.port,
            allow_hosts=tuple(args.allow_host),
            **overrides,
        )
        app = create_app(cfg)
    except (UnknownCheckpoint, ValueError) as err:
        _say(f"facegen studio: {err}", err=True)
        return 2
    _say(f"facegen studio: model {app.state.studio.model.path} on http://{args.host}:{args.port}/")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _add_studio(sub: argparse._SubParsersAction) -> None:
    studio = sub.add_parser(
        "studio", help="local web app: generate, explore, edit, browse runs, judge (docs/studio.md)"
    )
    studio.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)"
    )
    studio.add_argument("--port", type=int, default=8765)
    studio.add_argument(
        "--public", action="store_true", help="allow a --host other than loopback (reachable from other machines)"
    )
    studio.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="a further Host name the studio answers to (repeatable; default: the bound address only)",
    )
    studio.add_argument("--model", default="models/best", help="a models/best-layout folder (default models/best)")
    studio.add_argument("--root", default=".", help="repository root: params.yaml, data/ (default .)")
    studio.add_argument("--tracking-uri", default=None, help="MLflow store (default: as `facegen best`)")
    studio.add_argument("--experiment", default=None, help="MLflow experiment (default params.yaml train.experiment)")
    studio.add_argument("--detector", default=None, help="face detector for uploads (default params.yaml faces.model)")
    studio.add_argument("--device", default=None, help="torch device (default params.yaml sample.device)")
    studio.add_argument("--max-images", type=int, default=None, help="images per request (default 64)")
    studio.add_argument("--max-steps", type=int, default=None, help="denoising steps per request (default 250)")
    studio.add_argument(
        "--max-cost", type=int, default=None, help="images x steps per request (default params.yaml studio.max_cost)"
    )
    studio.add_argument("--max-upload-bytes", type=int, default=None, help="upload size limit (default 10 MB)")
    studio.add_argument("--queue-size", type=int, default=None, help="model jobs waiting at most (default 4)")
    studio.set_defaults(func=_studio)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
