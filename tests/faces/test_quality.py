"""facegen.faces.quality: Laplacian-variance sharpness and face-region crops."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.faces.quality import crop_box, laplacian_variance, region_sharpness


def test_constant_image_has_zero_sharpness():
    assert laplacian_variance(np.full((32, 32), 77, np.uint8)) == 0.0
    assert laplacian_variance(np.full((32, 32, 3), 200, np.uint8)) == 0.0


def test_single_bright_pixel_has_exact_variance():
    # Laplacian of a single 1 at the centre of a 5x5 zero image: -4 at the centre, +1 at its 4
    # neighbours, 0 elsewhere (cv2 ksize=1 kernel [[0,1,0],[1,-4,1],[0,1,0]]), so the 25 values
    # are {-4, 1, 1, 1, 1, 0 x 20}: mean 0, variance (16 + 4) / 25 = 0.8; scaled by 255^2 for 255.
    img = np.zeros((5, 5), np.uint8)
    img[2, 2] = 255
    assert laplacian_variance(img) == pytest.approx(0.8 * 255**2)


def test_matches_opencv_on_rgb_and_gray():
    import cv2

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    expected = cv2.Laplacian(gray, cv2.CV_64F).var()
    assert laplacian_variance(rgb) == expected
    assert laplacian_variance(gray) == expected
    assert laplacian_variance(gray[:, :, None]) == expected
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert laplacian_variance(rgba) == expected


def test_blur_lowers_sharpness_below_the_classic_threshold():
    import cv2

    rng = np.random.default_rng(1)
    img = (rng.random((64, 64)) > 0.5).astype(np.uint8) * 255
    blurred = cv2.GaussianBlur(img, (0, 0), 4)
    assert laplacian_variance(img) > 60.0 > laplacian_variance(blurred)


def test_tiny_and_wrong_inputs():
    assert laplacian_variance(np.zeros((2, 10), np.uint8)) == 0.0
    assert laplacian_variance(np.zeros((0, 0, 3), np.uint8)) == 0.0
    with pytest.raises(ValueError, match="uint8"):
        laplacian_variance(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        laplacian_variance(np.zeros((8, 8, 2), np.uint8))


def test_crop_box_clips_and_rounds_outward():
    img = np.arange(10 * 20, dtype=np.uint8).reshape(10, 20)
    assert crop_box(img, (-5, -5, 3.2, 2.1)).shape == (3, 4)
    assert crop_box(img, (18.5, 8.5, 40, 40)).shape == (2, 2)
    assert crop_box(img, (30, 30, 40, 40)).size == 0
    np.testing.assert_array_equal(crop_box(img, (2, 1, 4, 3)), img[1:3, 2:4])


def test_region_sharpness_measures_only_the_box():
    img = np.zeros((40, 40), np.uint8)
    img[5, 5] = 255  # sharp detail in the top-left corner only
    assert region_sharpness(img, (0, 0, 10, 10)) > 0
    assert region_sharpness(img, (20, 20, 40, 40)) == 0.0
    assert region_sharpness(img, (50, 50, 60, 60)) == 0.0


def test_region_sharpness_max_side_shrinks_only_large_crops():
    import cv2

    rng = np.random.default_rng(2)
    small = (rng.random((50, 50)) > 0.5).astype(np.uint8) * 255
    big = cv2.resize(small, (400, 400), interpolation=cv2.INTER_NEAREST)  # same picture, 8x the pixels
    box_small, box_big = (0, 0, 50, 50), (0, 0, 400, 400)
    # native: the big copy looks far smoother per pixel
    assert region_sharpness(big, box_big) < region_sharpness(small, box_small) / 4
    # shrunk back to 50 px, it scores like the small one; the small one is never enlarged
    assert region_sharpness(big, box_big, max_side=50) == laplacian_variance(
        cv2.resize(big, (50, 50), interpolation=cv2.INTER_AREA)
    )
    assert region_sharpness(small, box_small, max_side=200) == laplacian_variance(small)
