"""Safe decoding of untrusted image bytes into RGB arrays.

Everything from the network is hostile until decoded: empty bodies, HTML error pages served
as ``.jpg``, truncated transfers, decompression bombs (a 30,000 x 30,000 PNG of one colour is
a few kB on the wire and 2.7 GB in memory), animated GIFs, EXIF-rotated phone photos, and
CMYK / grayscale / palette / 16-bit / alpha images. :func:`decode_image` turns bytes into an
(H, W, 3) uint8 RGB array or raises :class:`ImageRejected` carrying the download status
(``not_an_image``, ``too_large``, ``corrupt``) and a human-readable reason.

The kept file on disk is the original bytes; :func:`read_image` re-applies the same decode, so
detections stored by the download stage are in the coordinates of ``read_image(path)``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Formats we accept and the extension a kept file gets (never taken from the URL).
# MPO is how Pillow names multi-picture JPEGs from phones and cameras.
FORMAT_EXT: dict[str, str] = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "GIF": "gif",
    "WEBP": "webp",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}

# We enforce our own ``max_pixels`` from the header (below); Pillow's warning between its
# MAX_IMAGE_PIXELS and twice that would only add noise (above twice, it raises: too_large).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_HTML_PREFIXES = (b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<svg", b"<")


class ImageRejected(ValueError):
    """Bytes that are not a usable image; ``status`` is the download status to record."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class DecodedImage:
    """A decoded picture: ``rgb`` is (H, W, 3) uint8 in [0, 255], EXIF orientation applied."""

    rgb: np.ndarray
    format: str  # Pillow format name, e.g. "JPEG"
    ext: str  # file extension for the kept copy, e.g. "jpg"
    n_frames: int  # > 1 for animated GIF/WebP/APNG (only the first frame is used)

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of raw bytes: the content address of a fetched body."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks: checks that a file still holds its content address."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def looks_like_html(data: bytes) -> bool:
    """True when a body starts like markup (an error or login page served instead of an image)."""
    head = data[:512].lstrip().lower()
    return head.startswith(_HTML_PREFIXES)


def _open_formats() -> list[str]:
    """Accepted formats that this Pillow build can open (MPO comes through the JPEG opener)."""
    Image.init()
    return [f for f in FORMAT_EXT if f in Image.OPEN]


def _to_rgb(im: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from any Pillow mode; transparency is composited over white."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit gray: Pillow's convert("L") clips at 255; scale the real range instead
        arr = np.asarray(im, dtype=np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        top = 65535.0 if mode.startswith("I;16") or (mode == "I" and peak <= 65535) else max(peak, 1.0)
        gray = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(im.convert("RGB"))  # L, P, CMYK (Adobe inversion handled by Pillow), YCbCr, 1


def decode_image(data: bytes, max_pixels: int, max_bytes: int | None = None) -> DecodedImage:
    """Decode untrusted bytes into RGB, refusing anything unsafe or unusable.

    Raises :class:`ImageRejected` with status
    - ``not_an_image``: empty body, HTML/markup, or no supported image format recognised;
    - ``too_large``: more than ``max_bytes`` bytes, or width*height > ``max_pixels`` (checked
      from the header, before any pixel is decoded);
    - ``corrupt``: recognised as an image but the pixel data fails to decode (truncated, damaged).
    Animated images keep their first frame; EXIF orientation is applied.
    """
    if max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    if not data:
        raise ImageRejected("not_an_image", "empty body (0 bytes)")
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageRejected("too_large", f"body of {len(data)} bytes exceeds max_bytes={max_bytes}")
    if looks_like_html(data):
        raise ImageRejected("not_an_image", f"markup (HTML/XML) instead of an image: {data[:60]!r}")
    try:
        im = Image.open(io.BytesIO(data), formats=_open_formats())
    except Image.DecompressionBombError as exc:
        raise ImageRejected(
            "too_large", f"decompression bomb refused from the header: {exc} (max_pixels={max_pixels})"
        ) from exc
    except Image.UnidentifiedImageError as exc:
        raise ImageRejected(
            "not_an_image", f"not a supported image format ({', '.join(FORMAT_EXT)}): {data[:16]!r}"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a header Pillow recognised but cannot parse
        raise ImageRejected("corrupt", f"unreadable image header: {type(exc).__name__}: {exc}") from exc
    with im:
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageRejected("corrupt", f"image header declares size {width}x{height}")
        if width * height > max_pixels:
            raise ImageRejected(
                "too_large", f"{width}x{height} = {width * height} pixels exceeds max_pixels={max_pixels}"
            )
        fmt = str(im.format)
        n_frames = int(getattr(im, "n_frames", 1))
        try:
            im.seek(0)
            im.load()  # raises on truncated data (ImageFile.LOAD_TRUNCATED_IMAGES stays False)
            oriented = ImageOps.exif_transpose(im)
            rgb = _to_rgb(oriented)
        # Pillow's decoders raise many types on hostile bytes; each is recorded with its
        # type and message in the link's ``error`` so nothing is hidden, and one bad image
        # cannot stop (or, on resume, re-stop) a 80k-link run.
        except Exception as exc:
            raise ImageRejected("corrupt", f"{type(exc).__name__}: {exc}") from exc
    return DecodedImage(rgb=np.ascontiguousarray(rgb), format=fmt, ext=FORMAT_EXT[fmt], n_frames=n_frames)


def read_image(path: str | Path, max_pixels: int = 1 << 31) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a kept file, decoded exactly as the download stage decoded it.

    Use this (not ``cv2.imread``) in later stages: detections in ``downloads.parquet`` are in
    these coordinates (EXIF orientation applied, first frame of animations).
    """
    return decode_image(Path(path).read_bytes(), max_pixels=max_pixels).rgb


def load_images(paths: Sequence[str | Path]) -> np.ndarray:
    """Decode image files (all the same size) into uint8 (N, H, W, 3), in the given order."""
    from PIL import Image

    arrays = []
    for p in paths:
        with Image.open(p) as im:
            arrays.append(np.asarray(im.convert("RGB")))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise ValueError(f"images differ in size ({sorted(sizes)}); resize them to one size first")
    return np.stack(arrays) if arrays else np.zeros((0, 1, 1, 3), np.uint8)


def make_grid(images: np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """Tile (N, H, W, 3) uint8 images into one (rows*(H+pad)+pad, cols*(W+pad)+pad, 3) uint8 grid."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"make_grid expects (N, H, W, 3) uint8, got {images.shape} {images.dtype}")
    n, h, w, _ = images.shape
    cols = nrow or max(1, int(np.ceil(np.sqrt(n))))
    rows = int(np.ceil(n / cols))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid
