"""POST /api/nearest: a generated image's nearest training face by the fid stage's memorization
detector (facegen.fid.memorization), with metrics/fid.json's thresholds or calibrated on the test split."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from studio_client import page_client
from tiny_faces import random_faces, write_faceset

from facegen.studio.app import StudioConfig
from facegen.studio.editing import png_b64

NONE = np.zeros((0, 32, 32, 3), np.uint8)
FID = "fid:\n  extractor: offline\n  batch_size: 16\n  memorization_quantile: 0.01\n  pixel_shift: 1\n"


@pytest.fixture()
def faced(repo):
    """The tiny repository with 24 train and 12 test faces (32 px blobs) and the offline extractor."""
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + FID)
    train = random_faces(24, 32, 0)
    write_faceset(repo, train, random_faces(12, 32, 1))
    return repo, train


def _small(face: np.ndarray) -> np.ndarray:
    """A 32 px face at the model's 16 px, resized as training data is (PIL bicubic)."""
    return np.asarray(Image.fromarray(face).resize((16, 16), Image.BICUBIC))


def test_a_planted_training_face_is_flagged_and_random_faces_are_not(faced):
    repo, train = faced
    with page_client(StudioConfig(root=repo)) as c:
        copy = c.post("/api/nearest", json={"image": png_b64(_small(train[5]))})
        assert copy.status_code == 200, copy.text
        body = copy.json()
        assert body["face_id"] == "train0005" and body["flagged"] is True
        assert body["feature_distance"] < 1e-6 and body["pixel_distance"] < 1e-3
        assert body["feature_threshold"] > 0 and body["pixel_threshold"] > 0
        assert "calibrated now on 12 test faces" in body["source"] and body["num_train"] == 24
        shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["face_image"]))).convert("RGB"))
        np.testing.assert_array_equal(shown, _small(train[5]))
        assert body["face_url"] == "/api/dataset/train0005/image"
        # a mirrored copy is flagged too (the pixel distance tries the mirror image)
        assert c.post("/api/nearest", json={"image": png_b64(_small(train[7])[:, ::-1])}).json()["flagged"] is True
        for image in random_faces(6, 16, 99):
            other = c.post("/api/nearest", json={"image": png_b64(image)}).json()
            assert other["flagged"] is False, other
            assert other["feature_distance"] >= other["feature_threshold"]


def test_the_fid_stages_thresholds_are_used_when_scored_at_the_models_size(faced):
    repo, _ = faced
    (repo / "metrics").mkdir()
    stored = {
        "fd_offline": 1.0,
        "image_size": 16,
        "memorization_quantile": 0.01,
        "memorization_feature_threshold": 5.0,  # everything is closer than this: every image flagged
        "memorization_pixel_threshold": 0.0,
        "memorization_pixel_shift": 1,
        "memorization_calibration_faces": 12,
    }
    (repo / "metrics" / "fid.json").write_text(json.dumps(stored))
    image = png_b64(random_faces(1, 16, 99)[0])
    with page_client(StudioConfig(root=repo)) as c:
        body = c.post("/api/nearest", json={"image": image}).json()
        assert (body["feature_threshold"], body["pixel_threshold"]) == (5.0, 0.0)
        assert body["flagged"] is True and body["source"].startswith("metrics/fid.json")
        (repo / "metrics" / "fid.json").write_text(json.dumps({**stored, "image_size": 32}))  # another size
        body = c.post("/api/nearest", json={"image": image}).json()
        assert body["flagged"] is False and body["source"].startswith("calibrated now")


def test_nothing_to_compare_with_is_a_clear_404(repo):
    (repo / "params.yaml").write_text((repo / "params.yaml").read_text() + FID)
    image = png_b64(random_faces(1, 16, 0)[0])
    with page_client(StudioConfig(root=repo)) as c:
        r = c.post("/api/nearest", json={"image": image})
        assert r.status_code == 404 and "no aligned faces" in r.json()["detail"]
        write_faceset(repo, random_faces(4, 32, 0), NONE)
        r = c.post("/api/nearest", json={"image": image})
        assert r.status_code == 404 and "no memorization threshold" in r.json()["detail"]
        assert "dvc repro fid" in r.json()["detail"]
        write_faceset(repo, NONE, random_faces(4, 32, 1))
        r = c.post("/api/nearest", json={"image": image})
        assert r.status_code == 404 and "no accepted train-split faces" in r.json()["detail"]
        assert c.post("/api/nearest", json={"image": "%%"}).status_code == 422
