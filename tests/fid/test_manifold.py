"""facegen.fid.manifold: precision, recall, density, coverage against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.fid.manifold import knn_radii, prdc

REAL = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # unit square: every 1-NN radius is 1


def test_prdc_on_a_unit_square_by_hand():
    fake = np.array([[0.5, 0.0], [3.0, 3.0], [0.0, 0.2]])
    # real balls (radius 1): (0.5, 0) is in 2 of them ((0,0), (1,0)), (3, 3) in none, (0, 0.2) in 2 ((0,0), (0,1))
    # fake 1-NN radii: 0.5385 ((0.5,0)-(0,0.2)), 3.905 ((3,3)'s nearest), 0.5385;
    # (0,0), (1,0) lie in (0.5,0)'s ball, (0,1) and (1,1) in the outlier (3,3)'s huge ball: recall 1
    # nearest fake of each real: 0.2, 0.5, 0.8, 1.118 -> 3 of 4 within their radius 1
    assert prdc(REAL, fake, k=1) == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "density": 4 / 3, "coverage": 3 / 4}, abs=1e-12
    )


def test_radius_bounds_are_strict_and_k_counts_other_points():
    np.testing.assert_array_equal(knn_radii(REAL, 1), [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(knn_radii(REAL, 3), [2**0.5] * 4)  # the 3rd other point is the opposite corner
    # (2, 0) is exactly 1 from (1, 0), on the ball's edge: outside (strict <), as in prdc
    scores = prdc(REAL, np.array([[2.0, 0.0], [5.0, 5.0]]), k=1)
    assert scores["precision"] == 0.0 and scores["density"] == 0.0 and scores["coverage"] == 0.0


def test_a_set_against_itself_and_shifted_away():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4))
    same = prdc(real, real, k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(real, real + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_too_few_points_for_k_is_a_clear_error():
    with pytest.raises(ValueError, match=r"fid.pr_k = 3.*got 3 samples, 4 test faces"):
        prdc(REAL, REAL[:3], k=3)
