"""Controllability benchmark: how well a conditional model's samples follow requested values.

Runs the control stage's sweep (facegen.sample.control.run_control: ``control.*`` and
``sample.*`` from params.yaml, yaw measured by re-detecting the samples with the SCRFD detector
from ``$FACEGEN_SHARED/models``) on a trained conditional ``--model-dir``, at each
``--guidance`` scale. Typical input: the yaw-conditioned run of the quality benchmark::

    .venv/bin/python benchmarks/quality.py --recipe faces32 -S "condition=[yaw]" -S hflip=false \
        --minutes 10 --evals 2 --tag _yaw --results benchmarks/results/quality_yaw.json
    .venv/bin/python benchmarks/control.py --model-dir cache/bench_quality/runs/faces32_yaw/models/best

Writes benchmarks/results/control_<attributes>.json (scores per attribute and guidance, the
machine) and control_<attribute>_g<guidance>.png (requested values across, seeds down).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("FACEGEN_SHARED", REPO.parent / "shared"))
RESULTS = REPO / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, required=True, help="a conditional models/best")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    from facegen.common.config import load_section
    from facegen.demo.run import DETECTOR
    from facegen.faces.detect import FaceDetector, FacesConfig
    from facegen.sample.control import ControlConfig, run_control
    from facegen.sample.stage import SampleConfig

    torch.set_num_threads(args.threads)
    params = REPO / "params.yaml"
    cfg = load_section(ControlConfig, "control", params)
    faces = dataclasses.replace(load_section(FacesConfig, "faces", params), model=str(SHARED / DETECTOR))
    detector = FaceDetector(faces)
    out: dict = {"model_dir": str(args.model_dir), "control": dataclasses.asdict(cfg), "runs": {}}
    for guidance in args.guidance:
        sample_cfg = dataclasses.replace(
            load_section(SampleConfig, "sample", params), guidance=guidance, device="cpu", batch_size=64
        )
        with tempfile.TemporaryDirectory() as tmp:
            result = run_control(
                args.model_dir,
                sample_cfg,
                cfg,
                out_dir=Path(tmp) / "c",
                metrics_path=Path(tmp) / "m.json",
                detector=lambda: detector,
            )
            for name in result["attributes"]:
                shutil.copy(Path(tmp) / "c" / f"{name}.png", RESULTS / f"control_{name}_g{guidance:g}.png")
        out["runs"][f"guidance_{guidance:g}"] = result
        print(guidance, json.dumps(result["attributes"], indent=1), flush=True)
    out.update(
        sampler={"sampler": sample_cfg.sampler, "steps": sample_cfg.steps},
        detector=f"SCRFD {Path(faces.model).name}, det_size {faces.det_size}, samples enlarged to 160 px",
        machine=f"{platform.machine()} {os.cpu_count()} CPUs, torch {torch.__version__}, no GPU",
    )
    names = "_".join(out["runs"][next(iter(out["runs"]))]["conditioned"]) or "none"
    (RESULTS / f"control_{names}.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
