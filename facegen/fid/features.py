"""Fréchet distance (FID) and kernel distance (KID) between image sets, with an injectable extractor.

- ``inception`` (default): clean-fid's Inception-V3 (facegen.fid.inception: found offline and
  verified; 2048-d pool features after clean-fid's "clean" resize to 299 px). Scores: ``fid``, ``kid``.
- ``offline``: a seeded, randomly initialised small conv net (no weights file, deterministic,
  fast: for unit tests). Scores: ``fd_offline``, ``kid_offline``; never called FID/KID, not
  comparable with published numbers.

Reference features of the test split are cached on disk keyed by extractor, resolution and the
split's content hash, so they are computed once and reused across epochs, runs and stages.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from facegen.common.atomic import atomic_path
from facegen.common.images import load_images
from facegen.fid.inception import (  # noqa: F401  (re-exported: the public names of the extractor)
    INCEPTION_DIR_ENV,
    INCEPTION_FILE,
    InceptionExtractor,
    InceptionWeightsMissingError,
    InceptionWeightsRefusedError,
)

EXTRACTORS = ("inception", "offline")
KID_SEED = 0  # the subsets KID averages over are drawn from RandomState(KID_SEED): same features, same KID


class FeatureExtractor(Protocol):
    """Maps a uint8 image batch (N, H, W, 3) to float features (N, D)."""

    name: str
    dim: int

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


def metric_name(extractor_name: str) -> str:
    """The metric a score is logged under: ``fid`` for Inception, ``fd_<name>`` otherwise."""
    if extractor_name not in EXTRACTORS:
        raise ValueError(f"unknown feature extractor {extractor_name!r}; choose one of {list(EXTRACTORS)}")
    return "fid" if extractor_name == "inception" else f"fd_{extractor_name}"


def kid_name(extractor_name: str) -> str:
    """The KID metric's name: ``kid`` for Inception, ``kid_<name>`` otherwise (its std: + ``_std``)."""
    metric_name(extractor_name)  # validates the name
    return "kid" if extractor_name == "inception" else f"kid_{extractor_name}"


def kid_of(metric: str) -> str:
    """The KID name beside an FD metric name: ``fid`` -> ``kid``, ``fd_<name>`` -> ``kid_<name>``."""
    return "kid" if metric == "fid" else metric.replace("fd_", "kid_", 1)


def check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 images of shape (N, H, W, 3), got {images.dtype} {images.shape}")
    return images


class OfflineExtractor:
    """A fixed random conv net: (N, H, W, 3) uint8 -> (N, 64) float64 features.

    Weights come from a seeded generator, so every machine gets the same network. Images are
    resized (antialiased bilinear) to 64 px and scaled to [-1, 1]; three stride-2 conv+ReLU
    layers are global-average-pooled. Deterministic on CPU.
    """

    name = "offline"
    dim = 64

    def __init__(self, device: Any = "cpu", seed: int = 0) -> None:
        import torch

        gen = torch.Generator().manual_seed(seed)
        widths = (3, 32, 48, self.dim)
        self.weights = []
        for cin, cout in itertools.pairwise(widths):
            w = torch.randn(cout, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5
            b = torch.randn(cout, generator=gen) * 0.1
            self.weights.append((w.to(device), b.to(device)))
        self.device = torch.device(device)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        # a writable contiguous copy only when needed (a PIL image's array is read-only: torch warns)
        x = torch.from_numpy(np.require(check_images(images), requirements=("C", "W"))).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-2:] != (64, 64):
            x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            for w, b in self.weights:
                x = F.relu(F.conv2d(x, w, b, stride=2, padding=1))
        return x.mean(dim=(2, 3)).double().cpu().numpy()


@functools.lru_cache(maxsize=4)
def _shared_inception(device: str) -> InceptionExtractor:
    return InceptionExtractor(device)


def get_extractor(name: str, device: Any = "cpu", **kwargs: Any) -> FeatureExtractor:
    """The extractor ``name`` (``inception`` or ``offline``) on ``device``.

    Without ``kwargs`` the Inception network is loaded and verified once per process and device,
    so per-epoch evaluation and the fid stage never reload it.
    """
    if name == "inception":
        return InceptionExtractor(device, **kwargs) if kwargs else _shared_inception(str(device))
    if name == "offline":
        return OfflineExtractor(device, **kwargs)
    raise ValueError(f"unknown feature extractor {name!r}; choose one of {list(EXTRACTORS)}")


def extract_features(images: np.ndarray, extractor: FeatureExtractor, batch_size: int = 64) -> np.ndarray:
    """Features (N, D) float64 of uint8 images (N, H, W, 3), ``batch_size`` at a time."""
    images = check_images(images)
    if len(images) == 0:
        raise ValueError("no images to extract features from (empty image set)")
    return np.concatenate([extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) of features (N, D), as clean-fid (``np.cov(rowvar=False)``)."""
    if len(feats) < 2:
        raise ValueError(f"need at least 2 images for a covariance, got {len(feats)}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def image_stats(images: np.ndarray, extractor: FeatureExtractor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) of the extractor's features of uint8 images (N, H, W, 3)."""
    return feature_stats(extract_features(images, extractor, batch_size))


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, *, eps: float = 1e-6
) -> float:
    """Fréchet distance of two Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017, eq. 6).

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    A near-singular product gets ``eps`` added to both diagonals (as pytorch-fid and clean-fid do).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(
            f"stats of different extractors: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    with warnings.catch_warnings():  # small sets give singular covariances: expected, handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)))


def frechet_distance_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID of two feature sets (N1, D), (N2, D): ``frechet_distance`` of their stats, computed exactly.

    With A_i = (F_i - mean) / sqrt(N_i - 1), sigma_i = A_i^T A_i, the nonzero eigenvalues of
    sigma1 sigma2 are the squared singular values of A1 A2^T (N1 x N2), so
    Tr (sigma1 sigma2)^(1/2) = ||A1 A2^T||_* (nuclear norm). This is the same number clean-fid's
    2048 x 2048 ``sqrtm`` approximates (agreement ~1e-7 relative), in milliseconds instead of
    seconds to minutes on a CPU. Sets larger than D fall back to ``frechet_distance``.
    """
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if f1.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise ValueError(f"features of different extractors: {f1.shape} vs {f2.shape}")
    if min(len(f1), len(f2)) > f1.shape[1]:
        return frechet_distance(*feature_stats(f1), *feature_stats(f2))
    for f in (f1, f2):
        if len(f) < 2:
            raise ValueError(f"need at least 2 images for a covariance, got {len(f)}")
    a1 = (f1 - f1.mean(axis=0)) / np.sqrt(len(f1) - 1)
    a2 = (f2 - f2.mean(axis=0)) / np.sqrt(len(f2) - 1)
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    diff = f1.mean(axis=0) - f2.mean(axis=0)
    return float(max(0.0, diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2.0 * tr_covmean))


def kernel_distance(
    feats1: np.ndarray,
    feats2: np.ndarray,
    *,
    num_subsets: int = 100,
    max_subset_size: int = 1000,
    seed: int = KID_SEED,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): (mean, std) over ``num_subsets`` unbiased MMD^2 estimates.

    Cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 on subsets of m = min(N1, N2,
    ``max_subset_size``) features drawn without replacement, as ``cleanfid.fid.kernel_distance``
    computes it (same draws, in the same order, when numpy's global seed equals ``seed``); the
    mean is clean-fid's KID, the std is over the subsets.
    """
    feats1, feats2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if feats1.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"features of different extractors: {feats1.shape} vs {feats2.shape}")
    n, m = feats1.shape[1], min(len(feats1), len(feats2), max_subset_size)
    if m < 2 or num_subsets < 1:
        raise ValueError(f"KID needs subsets of at least 2 features and >= 1 subset, got m={m}, subsets={num_subsets}")
    rng = np.random.RandomState(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        x = feats2[rng.choice(len(feats2), m, replace=False)]
        y = feats1[rng.choice(len(feats1), m, replace=False)]
        a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
        b = (x @ y.T / n + 1) ** 3
        values[i] = ((a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m) / m
    return float(values.mean()), float(values.std())


def content_hash(images: np.ndarray) -> str:
    """sha256 of a uint8 image array's shape and bytes (order matters): names a dataset version."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.dtype}{images.shape}".encode())
    digest.update(images.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Reference:
    """Features of a reference set (the test split): ``feats`` (N, D), ``mu`` (D,), ``sigma`` (D, D)."""

    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    key: str


def reference_features(
    images: np.ndarray | Sequence[str | Path],
    extractor: FeatureExtractor,
    cache_dir: str | Path,
    batch_size: int = 64,
) -> Reference:
    """Features and stats of a reference set, cached by extractor + resolution + content hash.

    ``images`` is uint8 (N, H, W, 3) or a list of image paths (sorted before hashing, so the
    same files give the same key). The cache file is ``<cache_dir>/<key>.npz`` with
    key ``<extractor>-<H>px-<hash16>``: the same split at another size is another entry.
    """
    if not isinstance(images, np.ndarray):
        images = load_images(sorted(str(p) for p in images))
    images = check_images(images)
    key = f"{extractor.name}-{images.shape[1]}px-{content_hash(images)[:16]}"
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return Reference(cached["feats"], cached["mu"], cached["sigma"], key)
    feats = extract_features(images, extractor, batch_size)
    mu, sigma = feature_stats(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, feats=feats, mu=mu, sigma=sigma)
    return Reference(feats, mu, sigma, key)


def reference_stats(
    images: np.ndarray | Sequence[str | Path],
    extractor: FeatureExtractor,
    cache_dir: str | Path,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a reference set: ``reference_features`` without the features."""
    ref = reference_features(images, extractor, cache_dir, batch_size)
    return ref.mu, ref.sigma
