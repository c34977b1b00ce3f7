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

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from facegen.common.tables import Schema, write_parquet
from facegen.crawl import ptt
from facegen.crawl.config import CRAWL_RANGES, CrawlConfig
from facegen.crawl.fetch import ArticleCache, Fetcher, FetchFailed, Page, failure_reason

__all__ = [
    "CRAWL_RANGES",
    "ArticleCache",
    "BoardIndex",
    "CrawlConfig",
    "CrawlError",
    "CrawlResult",
    "FetchFailed",
    "Fetcher",
    "Page",
    "crawl",
    "failure_reason",
    "write_outputs",
]

log = logging.getLogger(__name__)


class CrawlError(RuntimeError):
    """An index page could not be fetched: the crawl cannot know which posts exist."""


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
    fetcher: Fetcher, cache: ArticleCache, cfg: CrawlConfig, *, post_id: str, result: CrawlResult
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


def _parsed(got: tuple[int, str | None] | FetchFailed, url: str) -> tuple[ptt.Article | None, str | None, str | None]:
    """(article, failure reason, error text) of one article's fetch outcome: exactly one of article / reason is set."""
    if isinstance(got, FetchFailed):
        return None, got.reason, str(got)
    if got[0] != 200:
        return None, f"http_{got[0]}", f"HTTP {got[0]}"
    try:
        return ptt.parse_article(got[1] or ""), None, None
    except ValueError as exc:
        log.warning("%s: %s", url, exc)
        return None, "parse_error", str(exc)


def post_row(
    cfg: CrawlConfig,
    entry: ptt.IndexEntry,
    page_no: int,
    url: str,
    *,
    article: ptt.Article | None = None,
    links: Sequence[tuple[str, str, str]] = (),
) -> dict[str, Any]:
    """One posts.parquet row (without status / error): from the index entry, and the article when read.

    ``links`` are the article's :func:`ptt.image_links`. A post whose article failed keeps what the
    index knows; ``n_pushes`` and ``n_links`` are null.
    """
    post_id = entry.post_id
    assert post_id is not None, "only entries with an article link are crawled"
    return {
        "post_id": post_id,
        "board": cfg.board,
        "url": url,
        "title": entry.title,
        "category": ptt.category(entry.title),
        "author": entry.author if article is None else (entry.author or article.author_id),
        "posted_at": ptt.post_time(post_id),
        "push_count": entry.push_count,
        "n_pushes": None if article is None else len(article.pushes),
        "n_links": None if article is None else len(links),
        "index_page": page_no,
    }


def link_rows(post_id: str, links: Sequence[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """links.parquet rows of one post: each (url, source, raw url) of :func:`ptt.image_links`, in order."""
    return [
        {
            "post_id": post_id,
            "url": link,
            "source": source,
            "raw_url": raw,
            "host": urlsplit(link).netloc,
            "position": i,
        }
        for i, (link, source, raw) in enumerate(links)
    ]


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
    for entry, page_no in tqdm(todo, desc="articles", unit="post", disable=not progress, leave=False):
        post_id = entry.post_id
        assert post_id is not None
        url = f"{fetcher.base}/bbs/{cfg.board}/{post_id}.html"
        article, reason, error = _parsed(_article(fetcher, cache, cfg, post_id=post_id, result=result), url)
        if (
            article is not None
            and keywords
            and not any(k in f"{entry.title}\n{article.body}".casefold() for k in keywords)
        ):
            result.skipped["keyword"] += 1
            article = None
        if reason is not None:
            result.skipped[reason] += 1
            result.failed.append({"post_id": post_id, "url": url, "reason": reason})
            row = post_row(cfg, entry, page_no, url)
            result.failed_rows.append({**row, "status": reason, "error": (error or "")[:500]})
        if article is not None:
            links = ptt.image_links(article, base_url=url)
            result.posts.append(post_row(cfg, entry, page_no, url, article=article, links=links))
            result.links.extend(link_rows(post_id, links))
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
