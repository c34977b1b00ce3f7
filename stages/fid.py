"""DVC stage `fid`: score data/samples against the test split of data/faces.parquet.

Reads params.yaml `fid`; writes metrics/fid.json (`fid` with Inception, `fd_offline` with the
offline extractor). Reference statistics are cached under cache/fid (shared with train).
"""

from __future__ import annotations

import argparse

from facegen.common.config import load_section
from facegen.fid.score import FidConfig, score_samples, write_metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--samples-dir", default="data/samples")
    parser.add_argument("--faces", default="data/faces.parquet")
    parser.add_argument("--cache-dir", default="cache/fid")
    parser.add_argument("--out", default="metrics/fid.json")
    args = parser.parse_args(argv)
    cfg = load_section(FidConfig, "fid", args.params)
    metrics = score_samples(cfg, args.samples_dir, args.faces, args.cache_dir)
    write_metrics(metrics, args.out)
    print("fid: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
