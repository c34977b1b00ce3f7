"""A tiny align input for curation tests: three sharp noise photos (one the near-duplicate of
another, one grey level up) and a flat (blurry) one, each with a fixed detection."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from facegen.align.candidates import face_id
from facegen.faces.detect import Detection

REPO = Path(__file__).resolve().parents[1]
KPS = ((80.0, 90.0), (120.0, 90.0), (100.0, 110.0), (85.0, 130.0), (115.0, 130.0))
DET = Detection(bbox=(50.0, 50.0, 150.0, 160.0), score=0.9, kps=KPS)


def _png(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def build_repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """data/raw, downloads.parquet and params.yaml's align section in ``tmp_path``; name -> face id."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    noise = np.random.default_rng(0).integers(40, 215, (200, 200, 3), dtype=np.uint8)
    other = np.random.default_rng(1).integers(40, 215, (200, 200, 3), dtype=np.uint8)
    images = {"a": noise, "a_twin": noise + 1, "b": other, "flat": np.full((200, 200, 3), 120, np.uint8)}
    rows, ids = [], {}
    for number, (name, rgb) in enumerate(images.items()):
        data = _png(rgb)
        sha = hashlib.sha256(data).hexdigest()
        (raw / f"{sha}.png").write_bytes(data)
        ids[name] = face_id(sha, 0)
        rows.append(
            {
                "post_id": f"M.{number}.A.{number}",
                "status": "ok",
                "sha256": sha,
                "path": f"data/raw/{sha}.png",
                "width": 200,
                "height": 200,
                "detections": json.dumps([DET.to_record()]),
            }
        )
    pd.DataFrame(rows).to_parquet(tmp_path / "data" / "downloads.parquet", index=False)
    params = yaml.safe_load((REPO / "params.yaml").read_text())["align"]
    params.update(workers=1, test_fraction=0.3, seed=0, min_face_size=10.0, min_eye_distance=5.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"align": params}))
    return tmp_path, ids


def run_stage(root: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "stages" / "align.py"), "--no-progress", *extra]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=120)
