"""facegen.align.geometry: eye levelling, framing, keypoint mapping, feather, crop-outside measure."""

from __future__ import annotations

import numpy as np
import pytest
from config_bounds import assert_named_in_one_line, bad_numbers, numeric_keys

from facegen.align.geometry import AlignConfig, align_face, crop_geometry, crop_outside_fraction
from facegen.common.config import from_dict

# an upright face: eyes 40 px apart, mouth 44 px below the eye line, nose centred
UPRIGHT = np.array([[180.0, 200.0], [220.0, 200.0], [200.0, 222.0], [184.0, 244.0], [216.0, 244.0]])


def rotate(points: np.ndarray, degrees: float, center: tuple[float, float] = (200.0, 200.0)) -> np.ndarray:
    """Points rotated on screen (y down) by ``degrees``, positive = clockwise."""
    t = np.radians(degrees)
    r = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.asarray(center)
    return (points - c) @ r.T + c


def dotted_image(kps: np.ndarray, shape: tuple[int, int] = (400, 400)) -> np.ndarray:
    """A gray image with a distinct colour disc (radius 6) on each keypoint."""
    image = np.full((*shape, 3), 90, np.uint8)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(kps, colours, strict=False):
        image[(xx - x) ** 2 + (yy - y) ** 2 <= 36] = colour
    return image


@pytest.mark.parametrize("roll", [0.0, 25.0, -40.0, 90.0])
def test_eyes_are_levelled_and_framed_the_same_at_any_roll(roll: float) -> None:
    cfg = AlignConfig(size=64)
    aligned = align_face(dotted_image(rotate(UPRIGHT, roll)), rotate(UPRIGHT, roll), cfg)
    assert aligned.image.shape == (64, 64, 3) and aligned.image.dtype == np.uint8
    assert aligned.roll == pytest.approx(roll, abs=1e-6)
    # F = max(2 * 40, 1.8 * 44) = 80, crop side 1.6 * 80 = 128 source px -> 64 px: scale 0.5
    assert aligned.face_size == pytest.approx(80.0)
    left, right = aligned.kps[0], aligned.kps[1]
    assert left[1] == pytest.approx(right[1], abs=1e-4)
    assert right[0] - left[0] == pytest.approx(20.0, abs=1e-4)
    # eye midpoint: centred horizontally, 0.45 * 22 px (44 * 0.5) above the centre
    centre = (64 - 1) / 2
    assert (left + right)[0] / 2 == pytest.approx(centre, abs=1e-4)
    assert (left + right)[1] / 2 == pytest.approx(centre - 0.45 * 22.0, abs=1e-4)


@pytest.mark.parametrize("interpolation", ["area", "linear", "cubic", "lanczos", "nearest"])
def test_mapped_keypoints_land_on_the_warped_pixels(interpolation: str) -> None:
    kps = rotate(UPRIGHT, 33.0)
    aligned = align_face(dotted_image(kps), kps, AlignConfig(size=128, interpolation=interpolation))
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255)]
    for (x, y), colour in zip(aligned.kps, expected, strict=False):
        pixel = aligned.image[int(round(y)), int(round(x))].astype(int)
        assert np.abs(pixel - colour).max() < 40, (x, y, pixel, colour)
    # and the matrix maps the source keypoints to the same place
    np.testing.assert_allclose(kps @ aligned.matrix[:, :2].T + aligned.matrix[:, 2], aligned.kps, atol=1e-9)


def test_turned_head_keeps_its_height_through_the_mouth_term() -> None:
    turned = UPRIGHT.copy()
    turned[:, 0] = 200 + (turned[:, 0] - 200) * 0.5  # eyes look half as far apart
    _, side, _, face = crop_geometry(turned, AlignConfig())
    assert face == pytest.approx(1.8 * 44.0) and side == pytest.approx(1.6 * 1.8 * 44.0)


def test_feather_fades_to_the_fill_outside_the_face_disc() -> None:
    image = np.full((400, 400, 3), 200, np.uint8)
    cfg = AlignConfig(size=64, feather=True, feather_fill=10)
    plain = align_face(image, UPRIGHT, cfg, feather=False).image
    soft = align_face(image, UPRIGHT, cfg).image
    assert (plain == 200).all()
    assert (soft[0, 0] == 10).all() and (soft[-1, -1] == 10).all()  # corners: outside the disc
    assert (soft[32, 32] == 200).all()  # centre: untouched


def test_crop_outside_fraction_counts_the_part_beyond_the_border() -> None:
    cfg = AlignConfig(size=64)
    inside = align_face(np.zeros((400, 400, 3), np.uint8), UPRIGHT, cfg)
    assert crop_outside_fraction(inside.matrix, 64, 400, 400) == 0.0
    # the same face with its eyes centred on x=20: the 128 px crop spans x in [-44, 84]
    shifted = UPRIGHT - [180.0, 0.0]
    edge = align_face(np.zeros((400, 400, 3), np.uint8), shifted, cfg)
    assert crop_outside_fraction(edge.matrix, 64, 400, 400) == pytest.approx(44 / 128, abs=1 / 64)


def test_config_names_bad_values() -> None:
    with pytest.raises(ValueError, match=r"align.interpolation"):
        from_dict(AlignConfig, {"interpolation": "bicubic"}, "align")
    with pytest.raises(ValueError, match=r"align.faces_per_image"):
        from_dict(AlignConfig, {"faces_per_image": "two"}, "align")
    with pytest.raises(ValueError, match="margn"):
        from_dict(AlignConfig, {"margn": 1.5}, "align")
    with pytest.raises(ValueError, match=r"align.test_fraction=1.0"):
        AlignConfig(test_fraction=1.0)
    with pytest.raises(ValueError, match="eye keypoints coincide"):
        align_face(np.zeros((10, 10, 3), np.uint8), np.zeros((5, 2)), AlignConfig())


# real photos: align from the stored detection, then detect again on the aligned face
def _redetect(model, faces_dir, name: str, cfg: AlignConfig):
    from wild_faces import detect, detect_array, read_image

    path = faces_dir / "wild" / name
    image = read_image(path)
    aligned = align_face(image, np.asarray(detect(model, path)[0].kps), cfg)
    pad = cfg.size  # SCRFD misses a face that fills the whole frame: give it a border
    canvas = np.full((3 * cfg.size, 3 * cfg.size, 3), 127, np.uint8)
    canvas[pad : pad + cfg.size, pad : pad + cfg.size] = aligned.image
    found = detect_array(model, canvas)
    assert found, f"no face found again in the aligned {name}"
    return aligned, np.asarray(found[0].kps) - pad, found[0]


@pytest.mark.parametrize(
    "name",
    ["EXIF_ROTATED", "WEBP", "RGBA", "TILTED_RIGHT", "FRONTAL", "OBAMA", "BIDEN", "BLURRED"],
)
def test_real_faces_come_out_level_and_consistently_framed(faces_dir, scrfd_model, name: str) -> None:
    import wild_faces

    cfg = AlignConfig(size=128)
    aligned, kps, det = _redetect(scrfd_model, faces_dir, getattr(wild_faces, name), cfg)
    eyes = kps[1] - kps[0]
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) < 3.0
    # the face sits where the mapped keypoints say, at the same scale for every photo
    assert np.abs(kps - aligned.kps).max() < 0.05 * cfg.size
    assert np.hypot(*eyes) == pytest.approx(0.3125 * cfg.size, rel=0.12)  # 128 / (1.6 * 2.0) = 40 px
    x1, _y1, x2, _y2 = det.bbox
    assert 0.45 * cfg.size < x2 - x1 < 0.7 * cfg.size


def test_strongly_rolled_face_is_mostly_levelled(faces_dir, scrfd_model) -> None:
    """A 47-degree roll: SCRFD's 5 points on the tilted face are less exact, the residual is small."""
    from wild_faces import TILTED_LEFT

    aligned, kps, _ = _redetect(scrfd_model, faces_dir, TILTED_LEFT, AlignConfig(size=128))
    eyes = kps[1] - kps[0]
    assert aligned.roll < -40
    assert abs(np.degrees(np.arctan2(eyes[1], eyes[0]))) < abs(aligned.roll) / 3


def _cut_at_left(faces_dir, scrfd_model, name: str = "facerec__biden.jpg") -> tuple[np.ndarray, np.ndarray]:
    """A wild photo cut just left of the face's left eye, and its keypoints in the cut photo."""
    from wild_faces import detect, read_image

    path = faces_dir / "wild" / name
    image, kps = read_image(path), np.asarray(detect(scrfd_model, path)[0].kps)
    x0 = int(kps[0, 0] - 0.5 * (kps[1, 0] - kps[0, 0]))
    return np.ascontiguousarray(image[:, x0:]), kps - [x0, 0]


def _gradient_energy(image: np.ndarray, band: np.ndarray) -> float:
    import cv2

    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    return float((gx**2 + gy**2)[band].mean())


def test_crop_past_the_photo_is_filled_without_a_mirror_seam(faces_dir, scrfd_model) -> None:
    import cv2

    from facegen.align.geometry import crop_outside_fraction, outside_distance

    photo, kps = _cut_at_left(faces_dir, scrfd_model)
    cfg = AlignConfig(size=128)
    aligned = align_face(photo, kps, cfg)
    h, w = photo.shape[:2]
    assert 0.15 < aligned.outside < 0.3  # about a fifth of the crop lies left of the cut
    assert aligned.outside == crop_outside_fraction(aligned.matrix, cfg.size, w, h)
    dist = outside_distance(aligned.matrix, cfg.size, w, h)
    edge, inside, beyond = np.abs(dist) < 1.5, (dist < -4) & (dist > -12), (dist > 3) & (dist < 12)
    # what a plain mirror (reflection only) and a constant border would give
    mirror = cv2.warpAffine(
        photo, aligned.matrix, (cfg.size,) * 2, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    constant = cv2.warpAffine(
        photo, aligned.matrix, (cfg.size,) * 2, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    )
    assert _gradient_energy(constant, edge) > 10 * _gradient_energy(constant, inside)  # the measure sees a hard seam
    # filled: the photo's edge is smoother than the photo near it, and the mirrored copy is gone
    assert _gradient_energy(aligned.image, edge) < 0.5 * _gradient_energy(aligned.image, inside)
    assert _gradient_energy(aligned.image, beyond) < 0.2 * _gradient_energy(mirror, beyond)
    # far out the fill fades to the photo's median colour; well inside the photo is untouched
    far = dist > 0.6 * cfg.fill_ramp * cfg.size
    median = np.median(aligned.image[dist <= 0], axis=0)
    off = np.abs(aligned.image[far].astype(float) - median).mean()
    assert far.sum() > 100 and off < 0.5 * np.abs(mirror[far].astype(float) - median).mean()
    deep = dist < -cfg.fill_ramp * cfg.size / 3 - 1
    assert np.abs(aligned.image[deep].astype(int) - mirror[deep].astype(int)).mean() < 6  # only resize differences


def test_fill_settings_are_checked() -> None:
    with pytest.raises(ValueError, match=r"align.fill_blur_outer=0.01"):
        AlignConfig(fill_blur_outer=0.01)
    with pytest.raises(ValueError, match=r"align.max_crop_outside=1.5"):
        AlignConfig(max_crop_outside=1.5)
    with pytest.raises(ValueError, match=r"align.fill_ramp=0"):
        AlignConfig(fill_ramp=0)


@pytest.mark.parametrize(("key", "value"), bad_numbers(AlignConfig))
def test_every_number_is_finite_and_bounded(key, value):
    assert_named_in_one_line(AlignConfig, "align", key, value)


def test_seed_beyond_numpy_range_is_named():
    assert_named_in_one_line(AlignConfig, "align", "seed", 2**32)


def test_every_number_has_a_range():
    from facegen.align.geometry import ALIGN_RANGES

    assert set(ALIGN_RANGES) == numeric_keys(AlignConfig)
