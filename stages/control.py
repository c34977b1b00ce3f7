"""DVC stage `control`: how well a conditional models/best follows requested attribute values.

Reads params.yaml `control` (the sweep), the `sample` sampler keys and `faces` (the detector
that measures yaw on the samples); writes data/control/
(<attribute>.png sweep grids: requested values across, seeds down; sweep.parquet) and
metrics/control.json, and logs the scores to the model's MLflow run. An unconditional model
writes metrics with no attributes.
"""

from __future__ import annotations

import argparse
import json
import sys

from facegen.common.config import load_section
from facegen.faces.detect import FaceDetector, FacesConfig
from facegen.sample.control import ControlConfig, run_control
from facegen.sample.stage import SampleConfig
from facegen.train.tracking import repo_root, tracking_uri


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model-dir", default="models/best")
    parser.add_argument("--out-dir", default="data/control")
    parser.add_argument("--metrics", default="metrics/control.json")
    parser.add_argument("--no-mlflow", action="store_true", help="do not log to the model's MLflow run")
    args = parser.parse_args(argv)
    try:
        cfg = load_section(ControlConfig, "control", args.params)
        sample_cfg = load_section(SampleConfig, "sample", args.params)
    except ValueError as err:
        sys.exit(f"control: error: {err}")
    uri = None if args.no_mlflow else tracking_uri(repo_root("."))

    def detector() -> FaceDetector:  # built only for a model conditioned on yaw: measures it on the samples
        return FaceDetector(load_section(FacesConfig, "faces", args.params))

    try:
        result = run_control(
            args.model_dir,
            sample_cfg,
            cfg,
            out_dir=args.out_dir,
            metrics_path=args.metrics,
            tracking_uri=uri,
            detector=detector,
        )
    except (ValueError, FileNotFoundError) as err:  # a named value or model file
        sys.exit(f"control: error: {err}")
    print(
        "control: " + json.dumps({k: {m: v[m] for m in ("spearman", "mae")} for k, v in result["attributes"].items()})
        if result["attributes"]
        else f"control: nothing to sweep (conditioned on {result['conditioned']})"
    )


if __name__ == "__main__":
    main()
