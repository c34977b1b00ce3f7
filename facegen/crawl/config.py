"""params.yaml ``crawl``: which board, which dates, what to keep, and how politely to ask."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import urlsplit

from facegen.common.config import Range, validate
from facegen.common.http import DestinationPolicy, HttpConfig, host_port
from facegen.crawl import ptt

# every number of params.yaml ``crawl``: finite, and within what a polite crawl can use
CRAWL_RANGES = {
    "delay_s": Range(0, 3600),
    "timeout_s": Range(0, 3600, lo_open=True),
    "backoff_s": Range(0, 3600),
    "retries": Range(0, 100),
    "max_bytes": Range(1, 1_000_000_000),  # a page is held in memory while it is parsed
    "body_deadline_s": Range(0, 86400, lo_open=True),
}


@dataclass(frozen=True)
class CrawlConfig:
    """params.yaml ``crawl``. Dates are inclusive calendar dates in Asia/Taipei."""

    base_url: str = "https://www.ptt.cc"
    board: str = "Beauty"
    start_date: str = "2024-01-01"
    end_date: str = "2024-12-31"
    keywords: tuple[str, ...] = ()  # empty keeps every post; else one must be in title or body
    skip_title_prefixes: tuple[str, ...] = ptt.ANNOUNCEMENT_PREFIXES
    categories: tuple[str, ...] = ()  # title category allow-list ('正妹', '神人'); empty keeps all
    delay_s: float = 0.5
    timeout_s: float = 20.0
    max_bytes: int = 10_000_000  # a page larger than this (decoded) fails with too_large
    body_deadline_s: float = 60.0  # a page still arriving this long after its response began fails with timeout
    retries: int = 5
    backoff_s: float = 1.0
    user_agent: str = HttpConfig.user_agent

    def __post_init__(self) -> None:
        for key in ("start_date", "end_date"):
            value = getattr(self, key)
            try:
                # fromisoformat alone also takes '20240101'; the string comparison below needs YYYY-MM-DD
                if date.fromisoformat(value).isoformat() != value:
                    raise ValueError
            except (TypeError, ValueError):
                raise ValueError(f"crawl.{key}={value!r} is not a date: write it as YYYY-MM-DD") from None
        if self.start_date > self.end_date:
            raise ValueError(f"crawl.start_date={self.start_date} is after crawl.end_date={self.end_date}")
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise ValueError(f"crawl.base_url={self.base_url!r} must start with http:// or https://")
        validate(self, "crawl", CRAWL_RANGES)

    @property
    def window(self) -> tuple[int, int]:
        """[start, end) in Unix seconds: start_date 00:00 to the day after end_date, Taipei."""
        day = lambda s: int(datetime.combine(date.fromisoformat(s), datetime.min.time(), ptt.TAIPEI).timestamp())  # noqa: E731
        return day(self.start_date), day(self.end_date) + 86400

    def http(self) -> HttpConfig:
        return HttpConfig(
            user_agent=self.user_agent, timeout_s=self.timeout_s, retries=self.retries, backoff_s=self.backoff_s
        )

    def policy(self) -> DestinationPolicy:
        """base_url is the user's choice (a loopback board is fine); nothing else is ever contacted."""
        parts = urlsplit(self.base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        only = host_port(parts.hostname or "", port)
        return DestinationPolicy(block_private=False, only=only, setting="crawl.base_url")
