"""facegen.fid.features: Fréchet distance identities, the offline extractor, cached reference stats."""

from __future__ import annotations

import numpy as np
import pytest

from facegen.fid import features as fid


def _images(n: int, seed: int, size: int = 32) -> np.ndarray:
    """Smooth random colour fields, uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(n, 4, 4, 3))
    return np.kron(low, np.ones((1, size // 4, size // 4, 1))).astype(np.uint8)


def test_metric_names_never_call_the_offline_score_fid():
    assert fid.metric_name("inception") == "fid"
    assert fid.metric_name("offline") == "fd_offline"
    with pytest.raises(ValueError, match="'resnet'"):
        fid.metric_name("resnet")


def test_offline_extractor_is_deterministic_and_shaped():
    images = _images(5, 0)
    a = fid.get_extractor("offline")(images)
    b = fid.get_extractor("offline")(images)
    assert a.shape == (5, fid.OfflineExtractor.dim) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)


def test_fd_of_a_set_with_itself_is_zero_and_grows_with_noise():
    ext = fid.get_extractor("offline")
    clean = _images(200, 1)
    mu, sigma = fid.image_stats(clean, ext)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(2)
    scores = []
    for std in (5, 20, 60):
        noisy = np.clip(clean + rng.normal(0, std, clean.shape), 0, 255).astype(np.uint8)
        scores.append(fid.frechet_distance(mu, sigma, *fid.image_stats(noisy, ext)))
    assert 0 < scores[0] < scores[1] < scores[2]


def test_frechet_distance_of_known_gaussians():
    # 1-D: (m1-m2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 4 + 4 + 1 - 2*2 = 5
    assert fid.frechet_distance(
        np.array([0.0]), np.array([[4.0]]), np.array([2.0]), np.array([[1.0]])
    ) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="different extractors"):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_image_stats_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        fid.image_stats(np.zeros((4, 8, 8, 3), np.float32), fid.get_extractor("offline"))


class _Counting:
    """Wraps an extractor and counts calls, to prove the cache is hit."""

    def __init__(self) -> None:
        self.inner = fid.OfflineExtractor()
        self.name, self.dim, self.calls = self.inner.name, self.inner.dim, 0

    def __call__(self, images):
        self.calls += 1
        return self.inner(images)


def test_reference_stats_are_computed_once_and_reused(tmp_path):
    ext = _Counting()
    images = _images(10, 3)
    mu, sigma = fid.reference_stats(images, ext, tmp_path, batch_size=4)
    assert ext.calls == 3
    cached = list(tmp_path.glob("offline-*.npz"))
    assert [p.name for p in cached] == [f"offline-32px-{fid.content_hash(images)[:16]}.npz"]
    mu2, sigma2 = fid.reference_stats(images, ext, tmp_path, batch_size=4)
    assert ext.calls == 3  # served from the cache file
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)
    fid.reference_stats(images[:-1], ext, tmp_path, batch_size=4)  # another split -> another key
    assert ext.calls == 6 and len(list(tmp_path.glob("offline-*.npz"))) == 2


def test_reference_stats_from_paths_match_the_array(tmp_path):
    from PIL import Image

    images = _images(6, 4)
    paths = []
    for i, img in enumerate(images):
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(img).save(paths[-1])
    ext = fid.OfflineExtractor()
    mu_p, _ = fid.reference_stats(list(reversed(paths)), ext, tmp_path / "cache")
    mu_a, _ = fid.image_stats(images, ext)
    np.testing.assert_allclose(mu_p, mu_a)


def test_reference_key_names_extractor_resolution_and_content(tmp_path):
    ext = fid.OfflineExtractor()
    images = _images(4, 5, size=16)
    ref = fid.reference_features(images, ext, tmp_path)
    assert ref.key == f"offline-16px-{fid.content_hash(images)[:16]}" and ref.feats.shape == (4, 64)
    np.testing.assert_array_equal(ref.mu, ref.feats.mean(axis=0))
    cached = fid.reference_features(images, ext, tmp_path)  # read back: features too (KID needs them)
    np.testing.assert_array_equal(cached.feats, ref.feats)


def test_kid_matches_clean_fid_and_is_about_zero_for_a_set_with_itself():
    from cleanfid.fid import kernel_distance as clean_kid

    rng = np.random.default_rng(0)  # non-negative features, like Inception's pool features
    a, b = rng.uniform(0, 1, size=(200, 64)), rng.uniform(0.1, 1.1, size=(150, 64))
    mean, std = fid.kernel_distance(a, b, num_subsets=10, max_subset_size=100, seed=3)
    np.random.seed(3)  # clean-fid draws from numpy's global generator, in the same order
    assert mean == pytest.approx(clean_kid(a, b, num_subsets=10, max_subset_size=100), rel=1e-12)
    assert std > 0 and fid.kernel_distance(a, b, num_subsets=10, max_subset_size=100, seed=3) == (mean, std)
    same, same_std = fid.kernel_distance(a, a, num_subsets=10)
    # every subset is all of a: 2 (mean off-diagonal k - mean diagonal k) / m, about 0 at m = 200
    assert abs(same) < 0.06 * mean and same_std == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="m=1"):
        fid.kernel_distance(a[:1], b)


@pytest.mark.parametrize("n1, n2", [(20, 30), (5, 5), (90, 80)])  # fewer and more features than D = 64
def test_fid_from_features_equals_clean_fids_sqrtm_formula(n1, n2):
    from cleanfid.fid import frechet_distance as clean_fd

    rng = np.random.default_rng(n1)
    a, b = rng.gamma(1.0, 0.3, (n1, 64)), rng.gamma(1.0, 0.3, (n2, 64)) + 0.05
    mu1, s1 = fid.feature_stats(a)
    mu2, s2 = fid.feature_stats(b)
    expected = float(clean_fd(mu1, s1, mu2, s2))
    assert fid.frechet_distance_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    assert fid.frechet_distance_features(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kid_names_follow_the_fd_names():
    assert (fid.kid_name("inception"), fid.kid_name("offline")) == ("kid", "kid_offline")
    assert (fid.kid_of("fid"), fid.kid_of("fd_offline")) == ("kid", "kid_offline")


def test_unknown_extractor_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'clip'.*inception"):
        fid.get_extractor("clip")


def test_a_read_only_image_array_is_scored_without_a_torch_warning() -> None:
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from facegen.fid.features import OfflineExtractor\n"
        "a = np.full((2, 16, 16, 3), 100, np.uint8); a.setflags(write=False)  # as np.asarray(PIL image)\n"
        "b = a.copy()\n"
        "assert (OfflineExtractor('cpu')(a) == OfflineExtractor('cpu')(b)).all()\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-1500:]
