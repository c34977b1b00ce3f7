"""DVC stage `fid`: score data/samples against the test split of data/faces.parquet.

Reads params.yaml `fid`; writes metrics/fid.json (`fid`, `kid`, `kid_std` with Inception;
`fd_offline`, `kid_offline`, `kid_offline_std` with the offline extractor; sample and reference
counts, resolution, Inception source) and logs the same numbers (`sample_fid`, ...) to the MLflow
run of models/best. Reference features are cached under cache/fid (shared with train).
"""

from __future__ import annotations

import argparse

from facegen.common.config import load_section
from facegen.fid.score import FidConfig, log_to_run, model_run, score_samples, write_metrics
from facegen.train.tracking import repo_root, tracking_uri


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--samples-dir", default="data/samples")
    parser.add_argument("--faces", default="data/faces.parquet")
    parser.add_argument("--model", default="models/best", help="the scored model (its best.json names the MLflow run)")
    parser.add_argument("--cache-dir", default="cache/fid")
    parser.add_argument("--out", default="metrics/fid.json")
    args = parser.parse_args(argv)
    cfg = load_section(FidConfig, "fid", args.params)
    metrics = score_samples(cfg, args.samples_dir, args.faces, args.cache_dir)
    best = model_run(args.model)
    if best and best.get("run_id"):
        metrics["run_id"] = best["run_id"]
    write_metrics(metrics, args.out)
    if best and best.get("run_id"):
        log_to_run(metrics, best["run_id"], tracking_uri(repo_root(".")))
    print("fid: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
