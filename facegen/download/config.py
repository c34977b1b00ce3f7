"""params.yaml ``download``: politeness, safety caps and the face filter thresholds.

:func:`analysis_key` names what a cached analysis depends on, so a changed detector or decode
cap re-analyses cached bytes while a changed threshold only re-decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from facegen.common.config import FRACTION, Range, to_dict, validate
from facegen.common.http import DestinationPolicy, HttpConfig, allowed_hosts
from facegen.common.images import sha256_hex
from facegen.faces.detect import FacesConfig

_SIZE_RE = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")
_ANALYSIS_VERSION = 2  # bump when analyse() changes meaning, so cached analyses are redone


HOUR_S, DAY_S = 3600.0, 86400.0
# every number of params.yaml ``download``: finite, and within what the machine and a server can use
DOWNLOAD_RANGES = {
    "min_face_area": FRACTION,
    "blur_threshold": Range(0, 1e7),  # above any 8-bit Laplacian variance (at most (8 x 255)^2 = 4.2e6)
    "sharpness_size": Range(0, 4096),
    "min_side": Range(1, 100_000),
    "max_pixels": Range(1, 1_000_000_000),  # 3 GB as RGB: the decode cap must fit in memory
    "max_bytes": Range(1, 1_000_000_000),  # a body is held in memory while it is analysed
    "workers": Range(1, 256),
    "per_host": Range(1, 256),
    "host_delay_s": Range(0, HOUR_S),
    "detect_workers": Range(1, 64),  # one detector's buffers each
    "timeout_s": Range(0, HOUR_S, lo_open=True),
    "body_deadline_s": Range(0, DAY_S, lo_open=True),
    "retries": Range(0, 100),
    "backoff_s": Range(0, HOUR_S),
    "backoff_max_s": Range(0, DAY_S),
}


@dataclass(frozen=True)
class DownloadConfig:
    """params.yaml ``download``: politeness, safety caps and the face filter thresholds."""

    min_face_area: float = 0.015  # largest face box area / image area, to keep
    blur_threshold: float = 130.0  # Laplacian variance of the largest face region (at sharpness_size), to keep
    sharpness_size: int = 64  # face crops larger than this (px, long side) are shrunk before measuring: align.size
    min_side: int = 64  # shorter image side (px) below which an image is too_small
    max_pixels: int = 50_000_000  # decode cap (decompression bombs): width * height
    max_bytes: int = 20_000_000  # body size cap
    workers: int = 16  # requests in flight
    per_host: int = 8  # requests in flight per host
    host_delay_s: float = 0.1  # minimum gap between request starts to one host
    detect_workers: int = 2  # threads decoding + detecting (decode of one overlaps detection of another)
    timeout_s: float = 20.0  # connect / read timeout per attempt
    body_deadline_s: float = 120.0  # a body still arriving this long after the response began is a timeout
    retries: int = 5  # urllib3 retries (connect/read errors, 5xx, 429 with Retry-After)
    backoff_s: float = 1.0  # exponential backoff factor between retries
    backoff_max_s: float = 60.0
    user_agent: str = HttpConfig.user_agent
    retry_failed: bool = False  # refetch cached timeout / connection_error / http_error links
    placeholder_sha256: tuple[str, ...] = ()  # bodies known to be "image removed" pictures
    placeholder_sizes: tuple[str, ...] = ("161x81",)  # "WIDTHxHEIGHT" of such pictures (imgur's)
    placeholder_urls: tuple[str, ...] = ("//i.imgur.com/removed.png",)  # final URL (after redirects) containing
    allow_private_hosts: tuple[str, ...] = ()  # "host" or "host:port" that may resolve to private/loopback addresses

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "allow_private_hosts", allowed_hosts(self.allow_private_hosts))
        except ValueError as err:
            raise ValueError(f"download.{err}") from None
        for size in self.placeholder_sizes:
            if not _SIZE_RE.fullmatch(size):
                raise ValueError(f"download.placeholder_sizes: {size!r} is not WIDTHxHEIGHT (e.g. '161x81')")
        validate(self, "download", DOWNLOAD_RANGES)

    def http(self) -> HttpConfig:
        return HttpConfig(
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
            pool_size=self.workers,
        )

    def policy(self) -> DestinationPolicy:
        """Links come from strangers' posts: no private, loopback or link-local destinations (SSRF)."""
        return DestinationPolicy(allow_private_hosts=self.allow_private_hosts)


def analysis_key(cfg: DownloadConfig, faces: FacesConfig) -> str:
    """What an analysis depends on (detector, decode cap, sharpness scale): cached analyses are per key."""
    basis = {
        "v": _ANALYSIS_VERSION,
        "faces": to_dict(faces),
        "max_pixels": cfg.max_pixels,
        "sharpness_size": cfg.sharpness_size,
    }
    return sha256_hex(json.dumps(basis, sort_keys=True).encode())[:16]
