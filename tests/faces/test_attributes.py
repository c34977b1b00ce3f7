"""facegen.faces.attributes: yaw from 5 keypoints (synthetic and real profile photos), eye patches, boxes."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.faces import attributes
from facegen.faces.detect import box_area

FRONTAL = np.array([[80.0, 100.0], [120.0, 100.0], [100.0, 120.0], [85.0, 140.0], [115.0, 140.0]])


def turned(yaw_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """Keypoints of the model head (eyes 40 px apart, nose 20 px in front) turned and rolled."""
    t = np.radians(yaw_deg)
    eye_half = 20.0 * np.cos(t)
    kps = np.array([[-eye_half, 0.0], [eye_half, 0.0], [20.0 * np.sin(t), 20.0], [-15.0, 40.0], [15.0, 40.0]])
    r = np.radians(roll_deg)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    return kps @ rot.T + [100.0, 100.0]


@pytest.mark.parametrize("yaw", [0.0, 15.0, -30.0, 60.0, -75.0])
@pytest.mark.parametrize("roll", [0.0, 35.0])
def test_yaw_from_keypoints_inverts_the_head_model(yaw: float, roll: float) -> None:
    assert attributes.yaw_from_keypoints(turned(yaw, roll)) == pytest.approx(yaw, abs=1e-9)


def test_yaw_prefers_the_3d_pose_and_handles_degenerate_eyes() -> None:
    assert attributes.yaw(FRONTAL, (5.0, -33.0, 2.0)) == -33.0
    assert attributes.yaw(FRONTAL, None) == pytest.approx(0.0)
    coincident = FRONTAL.copy()
    coincident[1] = coincident[0]
    assert attributes.yaw_from_keypoints(coincident) == 90.0
    with pytest.raises(ValueError, match=r"\(5, 2\)"):
        attributes.yaw_from_keypoints(np.zeros((4, 2)))


def test_eye_brightness_takes_the_darker_eye() -> None:
    gray = np.full((200, 200), 180, np.uint8)
    assert attributes.eye_brightness(gray, FRONTAL, 0.15) == pytest.approx(180.0)
    gray[94:107, 114:127] = 10  # one covered eye (patch half-side 0.15 * 40 = 6 px around (120, 100))
    assert attributes.eye_brightness(gray, FRONTAL, 0.15) == pytest.approx(10.0)
    off_image = FRONTAL - [200.0, 0.0]
    assert attributes.eye_brightness(gray, off_image, 0.15) == 0.0


def test_box_and_keypoint_measures() -> None:
    assert attributes.eye_distance(FRONTAL) == pytest.approx(40.0)
    assert box_area((10, 20, 50, 100)) == 3200.0
    assert attributes.face_min_side((10, 20, 50, 100)) == 40.0
    assert box_area((50, 20, 10, 100)) == 0.0
    assert attributes.keypoints_inside(FRONTAL, 200, 200)
    assert not attributes.keypoints_inside(FRONTAL, 120, 200)  # right eye at x=120 is on the border


def test_yaw_on_real_photos(faces_dir, scrfd_model) -> None:
    """Profile beyond 45 degrees, frontal and rolled-but-frontal faces near 0 (SCRFD keypoints)."""
    import wild_faces as w

    def yaw_of(name: str) -> float:
        det = w.detect(scrfd_model, faces_dir / "wild" / name)[0]
        return attributes.yaw(det.kps, det.pose)

    assert abs(yaw_of(w.PROFILE)) > 45.0
    for name in (w.FRONTAL, w.OBAMA, w.WEBP):
        assert abs(yaw_of(name)) < 10.0, name
    for name in (w.TILTED_LEFT, w.TILTED_RIGHT):  # heads rolled 35-47 degrees, not turned much
        assert abs(yaw_of(name)) < 15.0, name
