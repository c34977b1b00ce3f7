"""The Dataset tab's API (facegen.studio.dataset_routes): list, show, reject and restore faces."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from curation_faces import build_repo, run_stage
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from facegen.align.curation import read_curation
from facegen.studio import dataset_routes
from facegen.studio.dataset_routes import FaceTable


@pytest.fixture()
def aligned(tmp_path: Path) -> tuple[Path, dict[str, str], TestClient]:
    root, ids = build_repo(tmp_path)
    assert run_stage(root).returncode == 0
    app = FastAPI()
    app.state.dataset = FaceTable.at(root)
    app.include_router(dataset_routes.router)
    return root, ids, TestClient(app)


def test_lists_filters_and_pages_the_aligned_faces(aligned) -> None:
    _, ids, client = aligned
    body = client.get("/api/dataset").json()
    assert body["counts"] == {"all": 4, "accepted": 2, "rejected": 2}
    assert body["reasons"] == {"blurry": 1, "near_duplicate": 1, "ok": 2}
    assert [f["face_id"] for f in body["faces"]] == sorted(ids.values())
    rejected = client.get("/api/dataset", params={"status": "rejected"}).json()
    assert {f["face_id"]: f["reason"] for f in rejected["faces"]} == {
        ids["a_twin"]: "near_duplicate",
        ids["flat"]: "blurry",
    }
    assert rejected["faces"][[f["face_id"] for f in rejected["faces"]].index(ids["a_twin"])]["duplicate_of"] == ids["a"]
    accepted = client.get("/api/dataset", params={"status": "accepted", "limit": 1, "offset": 1}).json()
    assert accepted["total"] == 2 and [f["face_id"] for f in accepted["faces"]] == sorted([ids["a"], ids["b"]])[1:]
    assert [f["face_id"] for f in client.get("/api/dataset", params={"reason": "blurry"}).json()["faces"]] == [
        ids["flat"]
    ]
    assert client.get("/api/dataset", params={"status": "maybe"}).status_code == 422
    assert client.get("/api/dataset", params={"limit": 0}).status_code == 422


def test_images_of_accepted_and_rejected_faces(aligned) -> None:
    root, ids, client = aligned
    ok = client.get(f"/api/dataset/{ids['a']}/image")
    assert ok.status_code == 200 and ok.content == _png_bytes(root / "data" / "faces" / f"{ids['a']}.png")
    flat = client.get(f"/api/dataset/{ids['flat']}/image")  # no PNG in data/faces: re-aligned from its photo
    assert flat.status_code == 200 and Image.open(io.BytesIO(flat.content)).size == (64, 64)
    assert client.get("/api/dataset/0123456789abcdef_00/image").status_code == 404
    assert client.get("/api/dataset/..%2Fparams.yaml/image").status_code == 404


def _png_bytes(path: Path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).save(buf, format="PNG")
    return buf.getvalue()


def test_reject_and_restore_write_curation_csv_and_the_stage_applies_them(aligned) -> None:
    root, ids, client = aligned
    got = client.post(f"/api/dataset/{ids['b']}", json={"decision": "reject", "note": "a drawing"})
    assert got.status_code == 200
    assert got.json()["face"] == {
        "face_id": ids["b"],
        "status": "ok",
        "reason": None,
        "split": got.json()["face"]["split"],
        "post_id": "M.2.A.2",
        "duplicate_of": None,
        "decision": "reject",
        "note": "a drawing",
        "applied": False,
    }
    assert client.post(f"/api/dataset/{ids['flat']}", json={"decision": "restore"}).status_code == 200
    assert read_curation(root / "curation.csv").decisions == {
        ids["b"]: ("reject", "a drawing"),
        ids["flat"]: ("restore", ""),
    }
    assert client.post("/api/dataset/0123456789abcdef_00", json={"decision": "reject"}).status_code == 404
    assert client.post(f"/api/dataset/{ids['b']}", json={"decision": "drop"}).status_code == 422
    bad = client.post(f"/api/dataset/{ids['b']}", json={"decision": "reject", "note": "two\nlines"})
    assert bad.status_code == 422 and "must be one line" in bad.json()["detail"]

    assert run_stage(root).returncode == 0  # what `dvc repro` runs: the table now reflects both
    faces = {f["face_id"]: f for f in client.get("/api/dataset").json()["faces"]}
    assert (faces[ids["b"]]["status"], faces[ids["b"]]["applied"]) == ("manual", True)
    assert (faces[ids["flat"]]["status"], faces[ids["flat"]]["applied"]) == ("ok", True)
    assert client.get(f"/api/dataset/{ids['b']}/image").status_code == 200  # rejected: from its photo
