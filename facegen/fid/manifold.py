"""Precision, recall, density and coverage of samples against real faces, in feature space.

FID folds two failures into one number: samples that do not look real and samples that cover
only part of the data. These scores separate them, from the same features FID uses (the
extractor's, Inception pool features for ``fid``), with the test split as the real set.

k-NN manifolds (Kynkäänniemi et al. 2019, "Improved precision and recall metric"): the real
manifold is the union of balls around each real feature r_i of radius NND_k(r_i), its distance
to its k-th nearest other real feature (Euclidean); the sample manifold likewise.

    precision = 1/M sum_j 1[ exists i: ||f_j - r_i|| < NND_k(r_i) ]     (samples on the real manifold)
    recall    = 1/N sum_i 1[ exists j: ||r_i - f_j|| < NND_k(f_j) ]     (reals on the sample manifold)

Density and coverage (Naeem et al. 2020, "Reliable fidelity and diversity metrics", eq. 3-4)
use only the real balls, so one outlying sample cannot inflate them:

    density  = 1/(k M) sum_j sum_i 1[ ||f_j - r_i|| < NND_k(r_i) ]     (can exceed 1)
    coverage = 1/N sum_i 1[ min_j ||r_i - f_j|| < NND_k(r_i) ]

Strict inequalities and "k-th nearest other point" follow the reference implementation
(clovaai/generative-evaluation-prdc, ``compute_prdc``).
"""

from __future__ import annotations

import numpy as np

SCORES = ("precision", "recall", "density", "coverage")


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between the rows of ``a`` (N, D) and ``b`` (M, D), float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(feats: np.ndarray, k: int) -> np.ndarray:
    """NND_k: each row's distance (N,) to its k-th nearest *other* row of ``feats`` (N, D)."""
    dist = pairwise_distances(feats, feats)
    np.fill_diagonal(dist, 0.0)  # a point's distance to itself is exactly 0 (it is the 0-th neighbour)
    return np.partition(dist, k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 3) -> dict[str, float]:
    """``{precision, recall, density, coverage}`` of ``fake`` (M, D) against ``real`` (N, D), k-NN radii.

    Needs more than ``k`` rows in each set (a k-th nearest other point must exist).
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"features of different extractors: {real.shape} vs {fake.shape}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise ValueError(
            f"fid.pr_k = {k}: precision/recall need k >= 1 and more than k samples and test faces "
            f"(got {len(fake)} samples, {len(real)} test faces): lower fid.pr_k or score more images"
        )
    real_r, fake_r = knn_radii(real, k), knn_radii(fake, k)
    d = pairwise_distances(real, fake)  # (N real, M fake)
    inside_real = d < real_r[:, None]  # fake j inside the ball of real i
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_r[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_r).mean()),
    }
