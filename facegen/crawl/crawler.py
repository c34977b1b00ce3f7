"""Crawl one PTT board for a date range into post and image-link tables.

How (and why): the index pages of the range are found by a binary search on the page
number, keyed on the post time encoded in each article URL (page numbers drift, so they
are never hard-coded), then only those pages are walked. Each article in range is fetched
once and kept in a persistent on-disk cache (outside DVC outs), so a re-run or an
interrupted crawl fetches no article twice. Index requests are about log2(pages) plus the
pages in range; article requests equal the posts in range not yet cached.

Bounded like the downloader: every page is streamed with a cap on its decoded size
(``crawl.max_bytes``, so a gzip bomb stops there) and a deadline on its body
(``crawl.body_deadline_s``); an article over either fails its post (``too_large`` / ``timeout``,
a row of posts.parquet with that status) and is not cached. The session connects to
``crawl.base_url``'s host and port only, redirects included.
"""

from __future__ import annotations

import gzip
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from facegen.common.atomic import write_bytes_atomic
from facegen.common.config import Range, validate
from facegen.common.http import (
    BlockedHostError,
    BodyLimitError,
    DestinationPolicy,
    HttpConfig,
    host_port,
    is_timeout,
    make_session,
    read_body,
)
from facegen.common.tables import Schema, write_parquet
from facegen.crawl import ptt

log = logging.getLogger(__name__)


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


class CrawlError(RuntimeError):
    """An index page could not be fetched: the crawl cannot know which posts exist."""


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


class BoardIndex:
    """The board's index pages, fetched at most once each per crawl."""

    def __init__(self, fetcher: Fetcher, board: str) -> None:
        self.fetcher, self.board = fetcher, board
        self.pages: dict[int, ptt.IndexPage] = {}
        newest = self._fetch("index.html")
        self.newest = newest.number or 1
        self.pages[self.newest] = newest

    def _fetch(self, name: str) -> ptt.IndexPage:
        path = f"/bbs/{self.board}/{name}"
        try:
            resp = self.fetcher.get(path, "index")
        except FetchFailed as exc:
            raise CrawlError(
                f"index page {path} failed ({exc.reason}: {exc}); re-run to resume (fetched articles are cached)"
            ) from exc
        if resp.status_code != 200:
            raise CrawlError(
                f"index page {resp.url} answered HTTP {resp.status_code}: check crawl.base_url "
                f"and crawl.board={self.board!r}"
            )
        return ptt.parse_index(resp.text)

    def page(self, n: int) -> ptt.IndexPage:
        if n not in self.pages:
            self.pages[n] = self._fetch(f"index{n}.html")
        return self.pages[n]

    def latest_ts(self, n: int) -> float:
        """Latest post time listed on page n, or on the next page that lists one (+inf past the end)."""
        while n <= self.newest:
            stamps = [e.timestamp for e in self.page(n).listed if e.timestamp is not None]
            if stamps:
                return max(stamps)
            n += 1
        return float("inf")

    def first_page(self, start_ts: int) -> int:
        """Binary search: the lowest page whose latest post is at or after ``start_ts``."""
        lo, hi = 1, self.newest
        if self.latest_ts(hi) < start_ts:
            return hi + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.latest_ts(mid) >= start_ts:
                hi = mid
            else:
                lo = mid + 1
        return lo


@dataclass
class CrawlResult:
    """Rows of the two output tables plus the summary counts."""

    posts: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    failed: list[dict[str, str]] = field(default_factory=list)
    failed_rows: list[dict[str, Any]] = field(default_factory=list)  # posts.parquet rows of the failed posts
    pages: tuple[int, int] = (0, 0)
    newest_page: int = 0
    pinned_ignored: int = 0
    requests: Counter[str] = field(default_factory=Counter)
    cache_hits: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Deterministic counts (what was kept and why the rest was not) for metrics/crawl.json."""
        hosts = Counter(link["host"] for link in self.links)
        return {
            "pages": list(self.pages),
            "newest_page": self.newest_page,
            "posts_in_range": len(self.posts) + sum(self.skipped.values()),
            "posts_kept": len(self.posts),
            "skipped": dict(sorted(self.skipped.items())),
            "pinned_ignored": self.pinned_ignored,
            "links": len(self.links),
            "links_by_source": dict(sorted(Counter(link["source"] for link in self.links).items())),
            "links_by_host": dict(sorted(hosts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "failed": self.failed,
        }

    def line(self, cfg: CrawlConfig) -> str:
        """The one-line summary printed at the end of a crawl."""
        s = self.summary()
        skipped = " ".join(f"{k}={v}" for k, v in s["skipped"].items()) or "none"
        hosts = " ".join(f"{k}={v}" for k, v in list(s["links_by_host"].items())[:5]) or "none"
        return (
            f"crawl {cfg.board} {cfg.start_date}..{cfg.end_date}: pages {s['pages'][0]}-{s['pages'][1]} of "
            f"{s['newest_page']}; posts kept {s['posts_kept']} of {s['posts_in_range']} (skipped: {skipped}); "
            f"links {s['links']} {s['links_by_source']} by host: {hosts}; requests index="
            f"{self.requests['index']} article={self.requests['article']} (cached {self.cache_hits}); "
            f"{self.seconds:.1f}s"
        )


def _walk(index: BoardIndex, cfg: CrawlConfig, result: CrawlResult, progress: bool) -> list[tuple[ptt.IndexEntry, int]]:
    """Entries to fetch (in range, not deleted/announcement/out of category) with their page."""
    from tqdm import tqdm

    start_ts, end_ts = cfg.window
    first = index.first_page(start_ts)
    todo: list[tuple[ptt.IndexEntry, int]] = []
    seen: set[str] = set()
    deleted: list[int | None] = []  # time of the previous listed post, per deleted entry
    last_ts: int | None = None
    n = first
    bar = tqdm(total=None, desc="index pages", unit="page", disable=not progress, leave=False)
    while n <= index.newest:
        page = index.page(n)
        bar.update(1)
        result.pinned_ignored += len(page.entries) - len(page.listed)
        for entry in page.listed:
            if entry.deleted:
                deleted.append(last_ts)
                continue
            ts = entry.timestamp
            if ts is None or entry.post_id is None:  # a live entry without an article link: nothing to fetch
                continue
            last_ts = ts
            if not start_ts <= ts < end_ts or entry.post_id in seen:
                continue
            seen.add(entry.post_id)
            if ptt.is_announcement(entry.title, cfg.skip_title_prefixes):
                result.skipped["announcement"] += 1
            elif cfg.categories and ptt.category(entry.title) not in cfg.categories:
                result.skipped["category"] += 1
            else:
                todo.append((entry, n))
        if index.latest_ts(n) >= end_ts:
            break
        n += 1
    bar.close()
    # a deleted entry has no time: count it when the post listed before it is in range
    result.skipped["deleted"] += sum(1 for ts in deleted if ts is not None and start_ts <= ts < end_ts)
    result.skipped += Counter()  # drop zero counts
    result.pages = (first, min(n, index.newest)) if first <= index.newest else (0, 0)
    result.newest_page = index.newest
    return todo


def _article(
    fetcher: Fetcher, cache: ArticleCache, cfg: CrawlConfig, post_id: str, result: CrawlResult
) -> tuple[int, str | None] | FetchFailed:
    """(status, html) of an article, from the cache or the board; the failure when the
    request failed (not cached: the next run tries again)."""
    hit = cache.get(post_id)
    if hit is not None:
        result.cache_hits += 1
        return hit
    try:
        resp = fetcher.get(f"/bbs/{cfg.board}/{post_id}.html", "article")
    except FetchFailed as exc:
        return exc
    if resp.status_code == 200:
        if ptt.is_over18_gate(resp.text):
            raise ptt.Over18GateError(
                f"{resp.url} answered with the over-18 gate although the cookie over18=1 was sent"
            )
        cache.put(post_id, 200, resp.text)
        return 200, resp.text
    if resp.status_code == 404:
        cache.put(post_id, 404, None)
        return 404, None
    return FetchFailed(f"http_{resp.status_code}", f"HTTP {resp.status_code}")


def crawl(
    cfg: CrawlConfig,
    cache_dir: str | Path,
    *,
    session: requests.Session | None = None,
    progress: bool = True,
    on_post: Callable[[str], None] | None = None,
) -> CrawlResult:
    """Crawl ``cfg.board`` between ``cfg.start_date`` and ``cfg.end_date`` (Taipei, inclusive).

    Returns rows for posts.parquet (one per kept post) and links.parquet (one per
    (post, image URL)), ordered by post time then post id, plus skip counts by reason:
    deleted, announcement, category, keyword, http_404 / http_<code>, timeout,
    connection_error, parse_error. ``on_post`` is called with each post id after its
    article is handled (tests use it to interrupt a crawl).
    """
    from tqdm import tqdm

    t0 = time.monotonic()
    result = CrawlResult()
    fetcher = Fetcher(cfg, session)
    cache = ArticleCache(cache_dir, cfg.base_url, cfg.board, cfg.max_bytes)
    todo = _walk(BoardIndex(fetcher, cfg.board), cfg, result, progress)
    todo.sort(key=lambda item: (item[0].timestamp, item[0].post_id))
    keywords = [k.casefold() for k in cfg.keywords]
    base = fetcher.base
    for entry, page_no in tqdm(todo, desc="articles", unit="post", disable=not progress, leave=False):
        post_id = entry.post_id
        url = f"{base}/bbs/{cfg.board}/{post_id}.html"
        got = _article(fetcher, cache, cfg, post_id, result)
        reason: str | None = None
        error: str | None = None
        html: str | None = None
        if isinstance(got, FetchFailed):
            reason, error = got.reason, str(got)
        elif got[0] != 200:
            reason, error = f"http_{got[0]}", f"HTTP {got[0]}"
        else:
            html = got[1]
        article = None
        if reason is None:
            try:
                article = ptt.parse_article(html or "")
            except ValueError as exc:
                reason, error = "parse_error", str(exc)
                log.warning("%s: %s", url, exc)
        if article is not None and keywords:
            text = f"{entry.title}\n{article.body}".casefold()
            if not any(k in text for k in keywords):
                result.skipped["keyword"] += 1
                article = None
        if reason is not None:
            result.skipped[reason] += 1
            result.failed.append({"post_id": post_id, "url": url, "reason": reason})
            result.failed_rows.append(
                {
                    "post_id": post_id,
                    "board": cfg.board,
                    "url": url,
                    "title": entry.title,
                    "category": ptt.category(entry.title),
                    "author": entry.author,
                    "posted_at": ptt.post_time(post_id),
                    "push_count": entry.push_count,
                    "n_pushes": None,
                    "n_links": None,
                    "index_page": page_no,
                    "status": reason,
                    "error": (error or "")[:500],
                }
            )
        if article is not None:
            links = ptt.image_links(article, base_url=url)
            result.posts.append(
                {
                    "post_id": post_id,
                    "board": cfg.board,
                    "url": url,
                    "title": entry.title,
                    "category": ptt.category(entry.title),
                    "author": entry.author or article.author_id,
                    "posted_at": ptt.post_time(post_id),
                    "push_count": entry.push_count,
                    "n_pushes": len(article.pushes),
                    "n_links": len(links),
                    "index_page": page_no,
                }
            )
            result.links.extend(
                {
                    "post_id": post_id,
                    "url": link,
                    "source": source,
                    "raw_url": raw,
                    "host": urlsplit(link).netloc,
                    "position": i,
                }
                for i, (link, source, raw) in enumerate(links)
            )
        if on_post is not None:
            on_post(post_id)
    result.requests = fetcher.requests
    result.seconds = time.monotonic() - t0
    return result


# posts.parquet and links.parquet columns (facegen.common.tables)
POSTS_SCHEMA: Schema = {
    "post_id": "string",
    "board": "string",
    "url": "string",
    "title": "string",
    "category": "string",
    "author": "string",
    "posted_at": "timestamp[s, Asia/Taipei]",
    "push_count": "int32",
    "n_pushes": "int32",
    "n_links": "int32",
    "index_page": "int32",
    "status": "string",
    "error": "string",
}
LINKS_SCHEMA: Schema = {
    "post_id": "string",
    "url": "string",
    "source": "string",
    "raw_url": "string",
    "host": "string",
    "position": "int32",
}


def write_outputs(result: CrawlResult, posts_path: str | Path, links_path: str | Path) -> None:
    """posts.parquet (kept posts with status ``ok``, failed posts with their reason) and links.parquet."""
    rows = [{**post, "status": "ok", "error": None} for post in result.posts] + result.failed_rows
    rows.sort(key=lambda r: (r["posted_at"], r["post_id"]))
    write_parquet(rows, POSTS_SCHEMA, posts_path)
    write_parquet(result.links, LINKS_SCHEMA, links_path)
