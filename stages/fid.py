"""DVC stage `fid`: score data/samples against the test split of data/faces.parquet.

Reads params.yaml `fid`; writes metrics/fid.json (`fid`, `kid`, `kid_std` with Inception;
`fd_offline`, `kid_offline`, `kid_offline_std` with the offline extractor; `precision`, `recall`,
`density`, `coverage`; `memorized_fraction`, `memorized_count` and the calibrated thresholds;
sample and reference counts, resolution, Inception source), data/memorization.parquet (each
sample's nearest training face) and metrics/nearest_pairs.png, and logs the numbers
(`sample_fid`, ...) to the MLflow run of models/best. Features are cached under cache/fid
(shared with train). A bad value prints one line `fid: error: ...` and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from facegen.common.config import load_section
from facegen.fid.score import FidConfig, log_to_run, model_run, score_samples, write_metrics
from facegen.train.tracking import repo_root, tracking_uri


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--samples-dir", default="data/samples")
    parser.add_argument("--faces", default="data/faces.parquet")
    parser.add_argument("--model", default="models/best", help="the scored model (its best.json names the MLflow run)")
    parser.add_argument("--cache-dir", default="cache/fid")
    parser.add_argument("--out", default="metrics/fid.json")
    parser.add_argument("--memorization", default="data/memorization.parquet", help="one row per sample")
    parser.add_argument(
        "--pairs", default="metrics/nearest_pairs.png", help="the 16 samples closest to a training face"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_section(FidConfig, "fid", args.params)
        metrics = score_samples(
            cfg, args.samples_dir, args.faces, args.cache_dir, memorization_out=args.memorization, pairs_out=args.pairs
        )
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        print(f"fid: error: {err}", file=sys.stderr)
        return 2
    best = model_run(args.model)
    if best and best.get("run_id"):
        metrics["run_id"] = best["run_id"]
    write_metrics(metrics, args.out)
    if best and best.get("run_id"):
        log_to_run(metrics, best["run_id"], tracking_uri(repo_root(".")))
    shown = {k: v for k, v in metrics.items() if k != "memorization_calibration"}
    print("fid: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
