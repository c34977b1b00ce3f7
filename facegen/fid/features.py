"""Fréchet distance between image sets, with an injectable feature extractor.

- ``inception`` (default): clean-fid's Inception-V3 (``inception-2015-12-05.pt``, 2048-d pool
  features, "clean" PIL-bicubic resize to 299 px). Its score is FID.
- ``offline``: a seeded, randomly initialised small conv net (no download, deterministic).
  Its score is logged as ``fd_offline`` and is never called FID: it ranks checkpoints of one
  run, it is not comparable with published numbers.

Reference statistics of the test split are cached on disk keyed by the split's content hash
and the extractor name, so they are computed once and reused across epochs and runs.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from facegen.common.images import load_images

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
INCEPTION_DIR_ENV = "FACEGEN_INCEPTION_DIR"  # where the weights file lives; clean-fid's default is /tmp
EXTRACTORS = ("inception", "offline")


class InceptionWeightsMissingError(FileNotFoundError):
    """clean-fid's Inception weights are not on this machine and could not be downloaded."""


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


def _check_images(images: np.ndarray) -> np.ndarray:
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
        for cin, cout in zip(widths[:-1], widths[1:]):
            w = torch.randn(cout, cin, 3, 3, generator=gen) * (2.0 / (cin * 9)) ** 0.5
            b = torch.randn(cout, generator=gen) * 0.1
            self.weights.append((w.to(device), b.to(device)))
        self.device = torch.device(device)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(_check_images(images))).to(self.device)
        x = x.permute(0, 3, 1, 2).float() / 127.5 - 1.0
        if x.shape[-2:] != (64, 64):
            x = F.interpolate(x, size=(64, 64), mode="bilinear", antialias=True, align_corners=False)
        with torch.no_grad():
            for w, b in self.weights:
                x = F.relu(F.conv2d(x, w, b, stride=2, padding=1))
        return x.mean(dim=(2, 3)).double().cpu().numpy()


class InceptionExtractor:
    """clean-fid's Inception-V3 in "clean" mode: (N, H, W, 3) uint8 -> (N, 2048) float64."""

    name = "inception"
    dim = 2048

    def __init__(self, device: Any = "cpu", weights_dir: str | Path | None = None, allow_download: bool = True) -> None:
        import torch

        weights_dir = Path(weights_dir or os.environ.get(INCEPTION_DIR_ENV) or "/tmp")
        path = weights_dir / INCEPTION_FILE
        if not path.is_file():
            if allow_download:
                self._download(path)
            if not path.is_file():
                raise InceptionWeightsMissingError(self._missing_message(path))
        self.device = torch.device(device)
        self.model = torch.jit.load(str(path), map_location=self.device).eval()
        from cleanfid.resize import build_resizer

        self.resize = build_resizer("clean")

    @staticmethod
    def _missing_message(path: Path) -> str:
        return (
            f"clean-fid Inception weights {INCEPTION_FILE} not found at {path} and could not be downloaded. "
            f"Two ways out: (1) download {INCEPTION_URL} on a connected machine and put it at {path} "
            f"(or in the folder named by ${INCEPTION_DIR_ENV}); (2) use the offline extractor "
            f"(params.yaml train.fid_extractor: offline), whose score is logged as fd_offline, not fid."
        )

    def _download(self, path: Path) -> None:
        import shutil
        import urllib.error
        import urllib.request

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part")
        try:
            with urllib.request.urlopen(INCEPTION_URL, timeout=30) as response, open(tmp, "wb") as fh:
                shutil.copyfileobj(response, fh)
        except (urllib.error.URLError, OSError) as err:
            tmp.unlink(missing_ok=True)
            raise InceptionWeightsMissingError(self._missing_message(path) + f" (download failed: {err})") from err
        tmp.replace(path)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        images = _check_images(images)
        batch = np.stack([self.resize(img) for img in images])  # (N, 299, 299, 3) float in [0, 255]
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        with torch.no_grad():
            feats = self.model.layers.forward((x - 128) / 128).view(len(images), self.dim)
        return feats.double().cpu().numpy()


def get_extractor(name: str, device: Any = "cpu", **kwargs: Any) -> FeatureExtractor:
    """Build the extractor ``name`` (``inception`` or ``offline``) on ``device``."""
    if name == "inception":
        return InceptionExtractor(device, **kwargs)
    if name == "offline":
        return OfflineExtractor(device, **kwargs)
    raise ValueError(f"unknown feature extractor {name!r}; choose one of {list(EXTRACTORS)}")


def extract_features(images: np.ndarray, extractor: FeatureExtractor, batch_size: int = 64) -> np.ndarray:
    """Features (N, D) float64 of uint8 images (N, H, W, 3), ``batch_size`` at a time."""
    images = _check_images(images)
    if len(images) == 0:
        raise ValueError("no images to extract features from (empty image set)")
    return np.concatenate([extractor(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def image_stats(images: np.ndarray, extractor: FeatureExtractor, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(mu (D,), sigma (D, D)) of the extractor's features of uint8 images (N, H, W, 3)."""
    feats = extract_features(images, extractor, batch_size)
    if len(feats) < 2:
        raise ValueError(f"need at least 2 images for a covariance, got {len(feats)}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians (Dowson & Landau 1982; FID, Heusel et al. 2017, eq. 6).

        d^2 = ||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    A near-singular product gets ``eps`` added to both diagonals (as pytorch-fid and clean-fid do).
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1), np.atleast_1d(mu2)
    sigma1, sigma2 = np.atleast_2d(sigma1), np.atleast_2d(sigma2)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"stats of different extractors: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}")
    with warnings.catch_warnings():  # small sets give singular covariances: expected, handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            offset = np.eye(sigma1.shape[0]) * eps
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(max(0.0, diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)))


def content_hash(images: np.ndarray) -> str:
    """sha256 of a uint8 image array's shape and bytes (order matters): names a dataset version."""
    images = np.ascontiguousarray(images)
    digest = hashlib.sha256(f"{images.dtype}{images.shape}".encode())
    digest.update(images.tobytes())
    return digest.hexdigest()


def reference_stats(
    images: np.ndarray | Sequence[str | Path],
    extractor: FeatureExtractor,
    cache_dir: str | Path,
    batch_size: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of a reference set (the test split), cached by content hash + extractor.

    ``images`` is uint8 (N, H, W, 3) or a list of image paths (sorted before hashing, so the
    same files give the same key). The cache file is ``<cache_dir>/<extractor>-<hash16>.npz``.
    """
    if not isinstance(images, np.ndarray):
        images = load_images(sorted(str(p) for p in images))
    images = _check_images(images)
    path = Path(cache_dir) / f"{extractor.name}-{content_hash(images)[:16]}.npz"
    if path.is_file():
        with np.load(path) as cached:
            return cached["mu"], cached["sigma"]
    mu, sigma = image_stats(images, extractor, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma)
    tmp.replace(path)
    return mu, sigma
