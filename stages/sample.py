"""DVC stage `sample`: draw `sample.num_images` images from the best checkpoint.

Reads params.yaml `sample`; writes data/samples/00001.png, ... (plus sample_config.json,
the resolved config and model hash) and data/samples_grid.png. A bad value or model file is one
line `sample: error: ...` (exit 1) before any existing sample is touched.
"""

from __future__ import annotations

import argparse
import sys

from facegen.common.config import load_section
from facegen.sample.stage import DiskFullError, SampleConfig, sample_to_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model-dir", default="models/best")
    parser.add_argument("--out-dir", default="data/samples")
    parser.add_argument("--grid", default="data/samples_grid.png")
    args = parser.parse_args(argv)
    try:
        cfg = load_section(SampleConfig, "sample", args.params)
        record = sample_to_dir(cfg, args.model_dir, args.out_dir, args.grid)
    except DiskFullError as err:
        sys.exit(f"sample: error: {err.strerror}")
    except (ValueError, FileNotFoundError) as err:  # named values and files; nothing was deleted
        sys.exit(f"sample: error: {err}")
    print(
        f"sample: {cfg.num_images} images ({record['num_drawn']} drawn) with {cfg.sampler} "
        f"{cfg.steps or 'all'} steps on {record['device']} -> {args.out_dir}"
    )


if __name__ == "__main__":
    main()
