"""facegen.diffusion.edit: SDEdit keeps the face at strength 0, moves the attribute toward the request."""

from __future__ import annotations

import numpy as np
import pytest
from cond_toy import toy_images, toy_model

from facegen.diffusion.edit import SDEditSpec, sdedit, structure_distance
from facegen.diffusion.sampling import SampleSpec
from facegen.faces.appearance import brightness


def test_structure_distance_ignores_brightness_not_structure():
    rng = np.random.default_rng(0)
    face = rng.integers(40, 200, (16, 16, 3)).astype(np.uint8)
    assert structure_distance(face, face) == pytest.approx(0.0, abs=1e-12)
    brighter = np.clip(face.astype(int) + 40, 0, 255).astype(np.uint8)
    other = rng.integers(40, 200, (16, 16, 3)).astype(np.uint8)
    assert structure_distance(face, brighter) < 0.01 < 0.5 < structure_distance(face, other)


def test_sdedit_relights_a_dark_face_and_reports_the_trade():
    unet, config, _ = toy_model()
    dark = toy_images(40, seed=3)
    dark = dark[np.argmin([brightness(d) for d in dark])]
    spec = SampleSpec(sampler="ddim", steps=10, batch_size=1)
    same, report = sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 190.0}, strength=0.0))
    np.testing.assert_array_equal(same, dark)
    assert report["steps_run"] == 0 and report["structure_distance"] == pytest.approx(0.0, abs=1e-12)
    moved = {}
    for strength in (0.3, 0.8):
        edited, report = sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 190.0}, strength, seed=1))
        moved[strength] = report["attributes"]["brightness"]["moved"]
        assert report["attributes"]["brightness"]["before"] == pytest.approx(brightness(dark))
        assert report["attributes"]["brightness"]["after"] == pytest.approx(brightness(edited))
    assert moved[0.8] > moved[0.3] and moved[0.8] > 40
    with pytest.raises(ValueError, match=r"strength = 1.5"):
        SDEditSpec({"brightness": 190.0}, strength=1.5)
    with pytest.raises(ValueError, match="far outside the training range"):
        sdedit(unet, config, spec, dark, edit=SDEditSpec({"brightness": 900.0}, strength=0.5))
    with pytest.raises(ValueError, match="sdedit denoises with DDIM"):
        sdedit(unet, config, SampleSpec(sampler="dpm++"), dark, edit=SDEditSpec({"brightness": 190.0}, strength=0.5))
