"""facegen.faces.pose: yaw measured on small face images (aligned faces, samples) by re-detection."""

from __future__ import annotations

import numpy as np
import pytest
import wild_faces as w

from facegen.align.geometry import AlignConfig, align_face
from facegen.common.images import read_image
from facegen.faces import attributes
from facegen.faces.pose import measure_yaw


def _aligned(faces_dir, scrfd_model, name: str, size: int) -> np.ndarray:
    det = w.detect(scrfd_model, faces_dir / "wild" / name)[0]
    return align_face(read_image(faces_dir / "wild" / name), np.asarray(det.kps), AlignConfig(size=size)).image


@pytest.mark.parametrize("size", [32, 64])
def test_yaw_of_aligned_faces_follows_the_head_turn(faces_dir, scrfd_model, size: int) -> None:
    profile = _aligned(faces_dir, scrfd_model, w.PROFILE, size)
    frontal = _aligned(faces_dir, scrfd_model, w.FRONTAL, size)
    gray = np.full((size, size, 3), 128, np.uint8)
    yaw = measure_yaw(np.stack([profile, profile[:, ::-1], frontal, gray]), w.detector(str(scrfd_model)))
    det = w.detect(scrfd_model, faces_dir / "wild" / w.PROFILE)[0]
    assert abs(yaw[0] - attributes.yaw(det.kps, det.pose)) < 5.0  # the photo's yaw (52.8 degrees), kept at 32 px
    assert abs(yaw[0] + yaw[1]) < 5.0  # a mirror image turns the other way
    assert abs(yaw[2]) < 8.0
    assert np.isnan(yaw[3])  # no face: NaN, not a guess


def test_measure_yaw_refuses_non_rgb_batches(scrfd_model) -> None:
    with pytest.raises(ValueError, match=r"expected RGB images \(N, H, W, 3\)"):
        measure_yaw(np.zeros((2, 32, 32), np.uint8), w.detector(str(scrfd_model)))
