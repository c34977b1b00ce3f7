"""facegen.align.candidates: the per-image work: which faces are candidates, checks in order, reasons."""

from __future__ import annotations

import json

import numpy as np

from facegen.align.candidates import ImageTask, process_image
from facegen.align.geometry import AlignConfig
from facegen.faces.detect import Detection


def test_checks_run_in_order_and_every_face_of_a_group_photo_is_a_candidate(tmp_path, faces_dir, scrfd_model) -> None:
    import wild_faces as w

    path = faces_dir / "wild" / "insightface__t1.jpg"
    dets = w.detect(scrfd_model, path)
    task = ImageTask(
        sha256="ab" * 32,
        post_id="M.1.A.1",
        source=str(path),
        detections=w.detections_json(dets),
        width=None,
        height=None,
    )
    rows = process_image(task, AlignConfig(faces_per_image="all", workers=1), str(tmp_path))
    assert [r["face_index"] for r in rows] == list(range(len(dets))) and len(dets) == 6
    assert [r["face_id"] for r in rows] == [f"{'ab' * 8}_{i:02d}" for i in range(6)]
    assert sorted(p.stem for p in tmp_path.glob("*.png")) == [r["face_id"] for r in rows if r["status"] == "ok"]
    # a big box with eyes 10 px apart: eyes_too_close (after face_too_small passed)
    big = dets[0]
    mid = np.mean(big.kps[:2], axis=0)
    close = Detection(bbox=big.bbox, score=big.score, kps=((mid[0] - 5, mid[1]), (mid[0] + 5, mid[1]), *big.kps[2:]))
    task = ImageTask("cd" * 32, "M.1.A.1", str(path), w.detections_json([close]), None, None)
    assert process_image(task, AlignConfig(workers=1), str(tmp_path))[0]["status"] == "eyes_too_close"
    # the recorded size disagrees with the file: the detections cannot be trusted
    task = ImageTask("ef" * 32, "M.1.A.1", str(path), w.detections_json(dets), 10, 10)
    (row,) = process_image(task, AlignConfig(workers=1), str(tmp_path))
    assert row["status"] == "size_mismatch" and "10x10" in row["error"]


def test_image_level_failures_keep_one_row_with_the_reason(tmp_path) -> None:
    from PIL import Image

    missing = ImageTask("01" * 32, "M.2.A.2", str(tmp_path / "gone.jpg"), "[]", None, None)
    (row,) = process_image(missing, AlignConfig(), str(tmp_path))
    assert (row["face_id"], row["face_index"], row["status"]) == ("01" * 8 + "_none", -1, "unreadable")
    assert "gone.jpg" in row["error"]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (30, 20), (9, 9, 9)).save(blank)
    for detections in ("[]", None):
        (row,) = process_image(
            ImageTask("02" * 32, "M.2.A.2", str(blank), detections, 30, 20), AlignConfig(), str(tmp_path)
        )
        assert row["status"] == "no_face"
    assert not list(tmp_path.glob("*_none.png"))


def test_malformed_detections_and_coincident_eyes_are_reasons_not_crashes(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(path)
    for bad in ("not json", '{"bbox": 1}', '[{"kps": [[1, 2]]}]'):
        (row,) = process_image(
            ImageTask("03" * 32, "M.3.A.3", str(path), bad, None, None), AlignConfig(), str(tmp_path)
        )
        assert row["status"] == "bad_detections" and row["error"]
    flat = Detection(bbox=(50.0, 50.0, 150.0, 150.0), score=0.9, kps=((100.0, 90.0),) * 2 + ((100.0, 110.0),) * 3)
    task = ImageTask("04" * 32, "M.3.A.3", str(path), json.dumps([flat.to_record()]), 200, 200)
    (row,) = process_image(task, AlignConfig(), str(tmp_path))
    assert row["status"] == "eyes_too_close" and np.isnan(row["sharpness"]) and row["eye_distance"] == 0.0


def test_coincident_eyes_never_pass_even_with_every_threshold_open(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "img.png"
    Image.new("RGB", (200, 200), (120, 120, 120)).save(path)
    open_cfg = AlignConfig(
        min_face_size=0.0,
        min_eye_distance=0.0,
        max_abs_yaw=90.0,
        max_crop_outside=1.0,
        min_eye_brightness=0.0,
        min_sharpness=0.0,
    )
    flat = Detection(bbox=(50.0, 50.0, 150.0, 150.0), score=0.9, kps=((100.0, 90.0),) * 2 + ((100.0, 110.0),) * 3)
    task = ImageTask("05" * 32, "M.3.A.3", str(path), json.dumps([flat.to_record()]), 200, 200)
    (row,) = process_image(task, open_cfg, str(tmp_path))
    assert row["status"] == "eyes_too_close"  # not "ok" with no aligned PNG and no phash
    assert not list(tmp_path.glob("*_00.png"))


def test_crop_past_the_photo_is_accepted_with_its_fraction_recorded(tmp_path, faces_dir, scrfd_model) -> None:
    import wild_faces as w
    from PIL import Image

    photo = w.read_image(faces_dir / "wild" / w.BIDEN)
    kps = np.asarray(w.detect(scrfd_model, faces_dir / "wild" / w.BIDEN)[0].kps)
    x0 = int(kps[0, 0] - 0.5 * (kps[1, 0] - kps[0, 0]))  # cut just left of the left eye
    path = tmp_path / "cut.png"
    Image.fromarray(np.ascontiguousarray(photo[:, x0:])).save(path)
    dets = w.detect(scrfd_model, path)
    task = ImageTask("06" * 32, "M.4.A.4", str(path), w.detections_json(dets), photo.shape[1] - x0, photo.shape[0])
    (row,) = process_image(task, AlignConfig(), str(tmp_path))
    assert row["status"] == "ok" and 0.1 < row["crop_outside"] <= AlignConfig().max_crop_outside
    assert (tmp_path / f"{row['face_id']}.png").is_file()
    (strict,) = process_image(task, AlignConfig(max_crop_outside=0.1), str(tmp_path))
    assert strict["status"] == "crop_outside_image" and strict["crop_outside"] == row["crop_outside"]


def test_tight_portraits_are_accepted_with_level_eyes(tmp_path, faces_dir, scrfd_model) -> None:
    """Frame-filling portraits: found by the padded pass, aligned, eyes level in the aligned face."""
    import wild_faces as w

    from facegen.align.geometry import align_face

    names = (
        "dlib__johns_John_Salley_000179_02159509.jpg",
        "dlib__johns_John_Savage_000274_01099061.jpg",
        "dlib__johns_John_Simm_000305_00470717.jpg",
        "facemaskdet__1_0_anhu_0202.jpg",
    )
    cfg = AlignConfig()
    for i, name in enumerate(names):
        path = faces_dir / "portraits" / name
        dets = w.detect(scrfd_model, path)
        assert len(dets) == 1, name
        (row,) = process_image(
            ImageTask(f"{i:02d}" * 32, "M.5.A.5", str(path), w.detections_json(dets), None, None), cfg, str(tmp_path)
        )
        assert row["status"] == "ok", (name, row["status"], row["crop_outside"], row["sharpness"])
        assert row["crop_outside"] > 0  # a tight crop: the 1.6x frame reaches past the photo
        aligned = align_face(w.read_image(path), np.asarray(dets[0].kps), cfg)
        (lx, ly), (rx, ry) = aligned.kps[:2]
        assert abs(ly - ry) < 0.5 and rx - lx > 0.25 * cfg.size


def test_face_checks_are_the_one_list_of_rejection_reasons() -> None:
    """Statuses, the summary's reasons and the contact sheet's captions all come from FACE_CHECKS."""
    from facegen.align import preview, stage
    from facegen.align.candidates import FACE_CHECKS, IMAGE_STATUSES, REASON_VALUE, STATUSES

    reasons = [c.reason for c in FACE_CHECKS]
    assert ("ok", *IMAGE_STATUSES, *reasons, "near_duplicate", "manual") == STATUSES
    assert len(set(STATUSES)) == len(STATUSES)
    assert stage.STATUSES is STATUSES and preview.REASON_VALUE is REASON_VALUE
    assert {c.column for c in FACE_CHECKS if c.column} <= set(stage.SCHEMA)
    assert REASON_VALUE["crop_outside_image"] == "crop_outside" and "kps_outside_image" not in REASON_VALUE
