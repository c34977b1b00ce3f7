"""Reading the board's pages: one polite, capped GET at a time, and the on-disk article cache.

Every page is streamed with a cap on its decoded size (``crawl.max_bytes``) and a deadline
(``crawl.body_deadline_s``); a page that fails either is a :class:`FetchFailed` with its status.
"""

from __future__ import annotations

import gzip
import time
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from facegen.common.atomic import write_bytes_atomic
from facegen.common.http import BlockedHostError, BodyLimitError, is_timeout, make_session, read_body
from facegen.crawl.config import CrawlConfig


class FetchFailed(Exception):
    """A page that could not be read; ``reason`` is its status (timeout, too_large, http_503, ...)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Page:
    """A fully read response: status, final URL and decoded text ('' unless status 200)."""

    status_code: int
    url: str
    text: str


class ArticleCache:
    """Article pages on disk: ``<root>/<host>/<board>/<post_id>.html.gz``, or ``.404`` for
    articles that answered 404. Writes are atomic, so an interrupted crawl leaves no
    half-written page and resumes from what is there. A stored page that inflates past
    ``max_bytes`` or is damaged is dropped (and fetched again), never inflated whole."""

    def __init__(self, root: str | Path, base_url: str, board: str, max_bytes: int = CrawlConfig.max_bytes) -> None:
        host = (urlsplit(base_url).netloc or "local").replace(":", "_")
        self.dir = Path(root) / host / board
        self.max_bytes = max_bytes

    def get(self, post_id: str) -> tuple[int, str | None] | None:
        page = self.dir / f"{post_id}.html.gz"
        if page.is_file():
            inflate = zlib.decompressobj(wbits=31)  # gzip container
            try:
                html = inflate.decompress(page.read_bytes(), self.max_bytes + 1)
            except zlib.error:
                html = b""
            if inflate.eof and len(html) <= self.max_bytes:
                return 200, html.decode("utf-8")
            page.unlink()
            return None
        if (self.dir / f"{post_id}.404").is_file():
            return 404, None
        return None

    def put(self, post_id: str, status: int, html: str | None) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        name, data = (
            (f"{post_id}.html.gz", gzip.compress((html or "").encode("utf-8"), 6))
            if status == 200
            else (f"{post_id}.404", b"")
        )
        write_bytes_atomic(self.dir / name, data)


class Fetcher:
    """GETs paths of the board with the over-18 cookie, a politeness delay between network
    requests and urllib3's retries (429 Retry-After, backoff on 5xx and timeouts)."""

    def __init__(self, cfg: CrawlConfig, session: requests.Session | None = None) -> None:
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.session = session or make_session(cfg.http(), cookies={"over18": "1"}, policy=cfg.policy())
        self.requests: Counter[str] = Counter()
        self._last = 0.0

    def get(self, path: str, kind: str) -> Page:
        """One GET of ``base_url + path``, the body streamed within the caps; raises
        :class:`FetchFailed` when it fails after the retries or breaks a cap."""
        wait = self.cfg.delay_s - (time.monotonic() - self._last)
        if wait > 0 and self._last:
            time.sleep(wait)
        self.requests[kind] += 1
        try:
            with self.session.get(self.base + path, timeout=self.cfg.timeout_s, stream=True) as resp:
                body = read_body(resp, self.cfg.max_bytes, self.cfg.body_deadline_s) if resp.status_code == 200 else b""
                return Page(resp.status_code, resp.url, body.decode(resp.encoding or "utf-8", errors="replace"))
        except BodyLimitError as exc:
            raise FetchFailed(exc.status, str(exc)) from exc
        except BlockedHostError as exc:
            raise FetchFailed("blocked_host", str(exc)) from exc
        except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:  # urllib3's: from the body read
            raise FetchFailed(failure_reason(exc), f"{type(exc).__name__}: {exc}"[:500]) from exc
        finally:
            self._last = time.monotonic()


def failure_reason(exc: requests.RequestException | urllib3.exceptions.HTTPError) -> str:
    """'timeout' or 'connection_error' for a request that failed after its retries."""
    return "timeout" if is_timeout(exc) else "connection_error"
