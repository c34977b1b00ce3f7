"""Does the fid stage catch copies? Plant training faces among a finished workspace's samples.

On a copy of a workspace that `make demo` (or `dvc repro`) finished: replace every 4th sample of
data/samples (16 of the demo's 64) by a training face of data/faces.parquet, resized to the
sample size with Lanczos, rerun `stages/fid.py` there, and count the flags of
data/memorization.parquet: the planted copies should be flagged (issue 26 asks for at least 15 of
16) and every other sample should keep the flag it had. The workspace given is not touched (the
work happens in a temporary copy). Writes benchmarks/results/memorization_demo.json.

    python benchmarks/memorization.py --workspace /path/to/finished/demo
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "memorization_demo.json"
SCORE_KEYS = ("fid", "kid", "precision", "recall", "memorized_fraction", "memorized_count")


def plant(ws: Path, every: int, seed: int) -> list[str]:
    """Overwrite every ``every``-th sample of ``ws``/data/samples with a training face; their names."""
    import pandas as pd
    from PIL import Image

    faces = pd.read_parquet(ws / "data/faces.parquet")
    train = faces[(faces["split"] == "train") & (faces["status"] == "ok")]
    samples = sorted((ws / "data/samples").glob("*.png"))[::every]
    if len(train) < len(samples):
        raise SystemExit(f"memorization: {len(train)} training faces, fewer than the {len(samples)} to plant")
    size = Image.open(samples[0]).size
    for sample, path in zip(samples, train.sample(len(samples), random_state=seed)["path"], strict=False):
        Image.open(ws / path).convert("RGB").resize(size, Image.Resampling.LANCZOS).save(sample)
    return [s.name for s in samples]


def flags(ws: Path) -> dict[str, bool]:
    """Sample file name -> flagged, from data/memorization.parquet."""
    import pandas as pd

    rows = pd.read_parquet(ws / "data/memorization.parquet")
    return {Path(s).name: bool(f) for s, f in zip(rows["sample"], rows["flagged"], strict=True)}


def run(workspace: Path, every: int = 4, seed: int = 0) -> dict[str, Any]:
    """Plant, rescore in a temporary copy of ``workspace``, and compare the flags before and after."""
    flagged_before, before = flags(workspace), read_scores(workspace)
    with tempfile.TemporaryDirectory(prefix="facegen-memorization-") as tmp:
        ws = Path(tmp) / "ws"
        shutil.copytree(workspace, ws, symlinks=True, ignore=shutil.ignore_patterns("checkpoints", "download", "crawl"))
        planted = plant(ws, every, seed)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "stages/fid.py"], cwd=ws, check=True)
        seconds = time.perf_counter() - t0
        after = flags(ws)
        scores = read_scores(ws)
    others = sorted(set(after) - set(planted))
    return {
        "samples": len(after),
        "planted": len(planted),
        "planted_flagged": sum(after[n] for n in planted),
        "others": len(others),
        "others_flagged_before": sum(flagged_before[n] for n in others),
        "others_flagged_after": sum(after[n] for n in others),
        "others_changed_flag": sum(flagged_before[n] != after[n] for n in others),
        "scores_before": {k: before.get(k) for k in SCORE_KEYS},
        "scores_after": {k: scores.get(k) for k in SCORE_KEYS},
        "thresholds": {k: v for k, v in scores.items() if k.startswith("memorization_")},
        "fid_stage_seconds": round(seconds, 1),
        "machine": "2-core development CPU, shared (no GPU)",
    }


def read_scores(ws: Path) -> dict[str, Any]:
    """The workspace's own metrics/fid.json."""
    return dict(json.loads((ws / "metrics/fid.json").read_text(encoding="utf-8")))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace whose fid stage has run")
    parser.add_argument("--every", type=int, default=4, help="plant a copy at every N-th sample (4: 16 of 64)")
    parser.add_argument("--seed", type=int, default=0, help="which training faces are planted")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    result = run(args.workspace.resolve(), args.every, args.seed)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
