"""Fetching one image URL politely and classifying every way it can fail.

Retries, exponential backoff and 429/503 ``Retry-After`` are urllib3's (configured by
:func:`facegen.common.http.make_session`); this module adds what a thread pool of downloads needs on
top: a per-host concurrency limit and minimum delay between request starts
(:class:`HostGate`), a streamed body with a size cap, and a status for each outcome.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

from facegen.common.http import BlockedHostError, BodyLimitError, is_timeout, read_body

# "fetched": a 2xx body read in full; any other outcome is a final status (see fetch_url).
FETCHED = "fetched"
# Failures worth another try on a later run (with download.retry_failed); 404 and too_large are not.
TRANSIENT_FAILURES = frozenset({"http_error", "timeout", "connection_error"})


@dataclass(frozen=True)
class FetchResult:
    """What happened to one URL. ``body`` is set only when ``status == "fetched"``."""

    url: str
    status: str
    http_status: int | None = None
    content_type: str | None = None
    final_url: str | None = None
    body: bytes | None = None
    error: str | None = None
    elapsed_s: float = 0.0


class HostGate:
    """At most ``per_host`` requests in flight per host, and request starts ``delay_s`` apart.

    Start times are reserved under a lock (each caller takes the next free slot), so N threads
    hitting one host are spread out instead of bursting after each delay. The gap adapts per
    host: a rate-limit answer (429/503) doubles it, to at least ``throttle_floor_s`` and at most
    ``max_delay_s``, so every thread slows down, not just the one that was told; each answer
    without one shrinks it by 10 % back towards ``delay_s``.
    """

    throttle_floor_s = 1.0

    def __init__(self, per_host: int, delay_s: float, max_delay_s: float = 60.0) -> None:
        if per_host < 1:
            raise ValueError(f"per_host must be >= 1, got {per_host}")
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, got {delay_s}")
        self.per_host = per_host
        self.delay_s = delay_s
        self.max_delay_s = max(max_delay_s, delay_s)
        self._lock = threading.Lock()
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._next: dict[str, float] = {}
        self._delay: dict[str, float] = {}

    def delay(self, host: str) -> float:
        """The current gap between request starts to ``host``."""
        with self._lock:
            return self._delay.get(host, self.delay_s)

    def feedback(self, host: str, throttled: bool) -> None:
        """Tell the gate how ``host`` answered: throttled (429/503 seen) or not."""
        with self._lock:
            cur = self._delay.get(host, self.delay_s)
            if throttled:
                new = min(self.max_delay_s, max(2 * cur, self.throttle_floor_s, self.delay_s))
            else:
                new = max(self.delay_s, 0.9 * cur)
            self._delay[host] = new

    @contextmanager
    def slot(self, host: str) -> Iterator[None]:
        """Hold one of ``host``'s request slots for the duration of the block."""
        with self._lock:
            sem = self._sems.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with sem:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next.get(host, now))
                self._next[host] = start + self._delay.get(host, self.delay_s)
            if start > now:
                time.sleep(start - now)
            yield


def _throttled(resp: requests.Response) -> bool:
    """True when the server said "slow down" (429/503) on this response or a retried attempt."""
    if resp.status_code in (429, 503):
        return True
    retries = getattr(resp.raw, "retries", None)
    return any(h.status in (429, 503) for h in getattr(retries, "history", ()) or ())


def url_host(url: str) -> str | None:
    """The lower-cased host of an http(s) URL, or None when the URL cannot be fetched."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    return host


def classify_exception(exc: requests.RequestException | urllib3.exceptions.HTTPError) -> str:
    """Map a requests or urllib3 exception to a fetch status."""
    if isinstance(
        exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)
    ):
        return "invalid_url"
    if is_timeout(exc):
        return "timeout"
    if isinstance(exc, (requests.exceptions.TooManyRedirects, requests.exceptions.RetryError)):
        return "http_error"
    return "connection_error"


def fetch_url(
    session: requests.Session,
    url: str,
    gate: HostGate,
    *,
    timeout_s: float,
    max_bytes: int,
    body_deadline_s: float | None = None,
) -> FetchResult:
    """GET ``url`` (streamed, at most ``max_bytes``) through ``gate``; never raises for network trouble.

    Status: ``fetched`` (2xx, full body), ``invalid_url``, ``http_404`` (404/410),
    ``http_error`` (other non-2xx after retries, redirect loops), ``timeout`` (connect/read
    timeout, or the body still arriving ``body_deadline_s`` after the response began: a server
    dripping bytes never trips the per-read timeout), ``connection_error`` (refused, reset,
    truncated transfer), ``too_large`` (body over the cap, decoded), ``blocked_host`` (the URL or
    a redirect hop leads to a destination the session's DestinationPolicy refuses: private,
    loopback, link-local, ... addresses; checked before connecting, nothing is sent there).
    """
    t0 = time.monotonic()
    host = url_host(url)
    if host is None:
        return FetchResult(url, "invalid_url", error=f"not an http(s) URL with a host: {url!r}")

    def done(status: str, **kw: object) -> FetchResult:
        return FetchResult(url, status, elapsed_s=time.monotonic() - t0, **kw)  # type: ignore[arg-type]

    with gate.slot(host):
        try:
            with session.get(url, stream=True, timeout=timeout_s) as resp:
                gate.feedback(host, _throttled(resp))
                meta = {
                    "http_status": resp.status_code,
                    "content_type": resp.headers.get("Content-Type"),
                    "final_url": resp.url,
                }
                if resp.status_code in (404, 410):
                    return done("http_404", error=f"HTTP {resp.status_code} {resp.reason}", **meta)
                if not 200 <= resp.status_code < 300:
                    return done("http_error", error=f"HTTP {resp.status_code} {resp.reason}", **meta)
                try:
                    body = read_body(resp, max_bytes, body_deadline_s)
                except BodyLimitError as exc:
                    return done(exc.status, error=str(exc), **meta)
                return done(FETCHED, body=body, **meta)
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # urllib3's: from the raw body read
            return done(classify_exception(exc), error=f"{type(exc).__name__}: {exc}"[:500])
        except BlockedHostError as exc:
            return done("blocked_host", error=str(exc)[:500])
