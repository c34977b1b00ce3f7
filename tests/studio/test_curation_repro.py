"""Curation survives ``dvc repro``: a face rejected in the Dataset tab's API changes curation.csv,
and ``dvc repro`` (the repository's own align and train stages, in a git + DVC workspace) then
reruns align and what follows it, with that face marked ``manual`` (issue 24 item 8)."""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from curation_faces import DET, REPO, build_repo
from dvc_workspace import dvc_workspace, run
from fastapi import FastAPI
from fastapi.testclient import TestClient

from facegen.align.candidates import face_id
from facegen.align.curation import read_curation
from facegen.studio import dataset_routes
from facegen.studio.dataset_routes import FaceTable

# the smallest training that writes models/best and its grid: one epoch of a tiny UNet, offline FD
TRAIN = dict(
    model="tiny",
    channels=[8, 16],
    image_size=32,
    batch_size=1,
    epochs=1,
    fid_every=1,
    fid_extractor="offline",
    fid_num_samples=2,
    fid_batch_size=2,
    eval_steps=2,
    grid_size=1,
    checkpoint_every=1,
    log_checkpoints=False,
    experiment="test-curation",
    precision="no",
)


def _ran(proc) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", proc.stdout + proc.stderr))


def _status(root) -> dict[str, str]:
    table = pd.read_parquet(root / "data" / "faces.parquet")
    return dict(zip(table["face_id"], table["status"], strict=True))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_rejection_in_the_dataset_tab_reruns_align_onward_with_the_face_manual(tmp_path) -> None:
    root, ids = build_repo(tmp_path)
    ids.update(_more_photos(root, 4))  # a score needs two test faces, training one train face
    params = yaml.safe_load((root / "params.yaml").read_text())
    fid = yaml.safe_load((REPO / "params.yaml").read_text())["fid"]  # train reads fid.pr_k, fid.memorization_*
    fid["pr_k"] = 1  # precision/recall need more than k test faces: this split has 2
    (root / "params.yaml").write_text(yaml.safe_dump({**params, "train": TRAIN, "fid": fid}))
    (root / "curation.csv").write_text((REPO / "curation.csv").read_text())  # the repository's empty file
    dvc_workspace(root, ["align", "train"])
    assert _ran(run(root, "dvc", "repro")) == {"align", "train"}
    split = pd.read_parquet(root / "data" / "faces.parquet").set_index("face_id")["split"]
    gone = next(i for i in sorted(ids.values()) if split.get(i) == "train")
    assert _status(root)[gone] == "ok"
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "aligned and trained")
    assert _ran(run(root, "dvc", "repro")) == set()  # nothing changed: nothing runs

    client = TestClient(_app(root))
    answer = client.post(f"/api/dataset/{gone}", json={"decision": "reject", "note": "a drawing"})
    assert answer.status_code == 200, answer.text
    assert read_curation(root / "curation.csv").decisions == {gone: ("reject", "a drawing")}
    assert "curation.csv" in run(root, "git", "status", "--porcelain").stdout

    assert _ran(run(root, "dvc", "repro")) == {"align", "train"}
    status = _status(root)
    assert status[gone] == "manual" and sum(s == "ok" for s in status.values()) == 5
    assert not (root / "data" / "faces" / f"{gone}.png").exists()
    assert json.loads((root / "metrics" / "align.json").read_text())["manual"]["rejected"] == 1
    faces = {f["face_id"]: f for f in client.get("/api/dataset").json()["faces"]}
    assert (faces[gone]["status"], faces[gone]["applied"]) == ("manual", True)


def _app(root) -> FastAPI:
    app = FastAPI()
    app.state.dataset = FaceTable.at(root)
    app.include_router(dataset_routes.router)
    return app


def _more_photos(root: Path, n: int) -> dict[str, str]:
    """``n`` more distinct noise photos (detected as curation_faces' are) in data/raw and downloads.parquet."""
    from PIL import Image

    table = pd.read_parquet(root / "data" / "downloads.parquet")
    rows, ids = [], {}
    for k in range(n):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(100 + k).integers(40, 215, (200, 200, 3), dtype=np.uint8)).save(
            buf, "PNG"
        )
        sha = hashlib.sha256(buf.getvalue()).hexdigest()
        (root / "data" / "raw" / f"{sha}.png").write_bytes(buf.getvalue())
        ids[f"extra{k}"] = face_id(sha, 0)
        row = {**table.iloc[0].to_dict(), "post_id": f"M.{10 + k}.A.{k}", "sha256": sha, "path": f"data/raw/{sha}.png"}
        rows.append({**row, "detections": json.dumps([DET.to_record()])})
    pd.concat([table, pd.DataFrame(rows)], ignore_index=True).to_parquet(
        root / "data" / "downloads.parquet", index=False
    )
    return ids
