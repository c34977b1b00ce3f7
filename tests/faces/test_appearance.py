"""facegen.faces.appearance: each image attribute on images whose value is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.faces import appearance


def test_brightness_is_bt601_luma_of_the_face_region():
    green = np.zeros((20, 20, 3), np.uint8)
    green[..., 1] = 200
    assert appearance.brightness(green) == pytest.approx(0.587 * 200)
    img = np.zeros((20, 20, 3), np.uint8)
    img[5:15, 5:15] = 255  # exactly the central face square: rows/columns 0.25..0.75 of 20 px
    assert appearance.brightness(img) == pytest.approx(255.0)
    assert appearance.top_brightness(img) == 0.0 and appearance.background_brightness(img) == 0.0


def test_top_and_background_regions():
    img = np.zeros((20, 20, 3), np.uint8)
    img[:3, 6:14] = 100  # rows 0..0.15, columns 0.3..0.7
    img[:10, :2] = 40  # left strip, rows 0..0.5, columns 0..0.1
    img[:10, 18:] = 80  # right strip
    assert appearance.top_brightness(img) == pytest.approx(100.0)
    assert appearance.background_brightness(img) == pytest.approx(60.0)
    assert appearance.brightness(img) == 0.0


def test_colourfulness_is_hasler_susstrunk():
    gray = np.full((8, 8, 3), 90, np.uint8)
    assert appearance.colourfulness(gray) == 0.0
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200  # rg = 200, yb = 100, no spread
    assert appearance.colourfulness(red) == pytest.approx(0.3 * np.hypot(200, 100))
    half = red.copy()
    half[:, 4:] = 0  # rg, yb each half 0: sd = 100, 50; mean = 100, 50
    assert appearance.colourfulness(half) == pytest.approx(np.hypot(100, 50) + 0.3 * np.hypot(100, 50))


def test_measure_batch_and_errors():
    imgs = np.stack([np.full((8, 8, 3), v, np.uint8) for v in (10, 20)])
    np.testing.assert_allclose(appearance.measure_batch(imgs, "brightness"), [10.0, 20.0])
    assert set(appearance.measure(imgs[0])) == set(appearance.IMAGE_ATTRIBUTES)
    with pytest.raises(ValueError, match=r"'yaw' cannot be measured on an image"):
        appearance.measure_batch(imgs, "yaw")
    with pytest.raises(ValueError, match="expected an"):
        appearance.brightness(np.zeros((8, 8), np.uint8))


def test_face_model_attributes_are_null_without_the_models():
    assert appearance.model_attributes(None) == {"pitch": None, "eyes_open": None, "mouth_open": None}
    assert appearance.model_attributes((12.0, -5.0, 1.0))["pitch"] == 12.0
