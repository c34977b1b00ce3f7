"""The crawler under hostile articles: an endless body, a gzip bomb and a dripping body each fail
their own post (too_large / timeout), bounded in time and memory; the other posts are intact
and nothing bad is cached. The board's real markup (facegen.demo.content) is served by
tests/localserver.py, which can misbehave per path."""

from __future__ import annotations

import gzip
import time
import tracemalloc
import zlib
from pathlib import Path

import pandas as pd
import pytest
from config_bounds import assert_named_in_one_line, bad_numbers, numeric_keys
from localserver import LocalServer, Route

from facegen.crawl.crawler import ArticleCache, CrawlConfig, crawl, write_outputs
from facegen.demo.content import BoardSpec, build_board, render_article, render_index

pytestmark = pytest.mark.network

MAX_BYTES = 1_000_000
BOMB_INFLATED = 200_000_000  # 200 MB of zeros in ~200 KB of gzip


def _gzip_bomb(size: int) -> bytes:
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    zeros = bytes(1 << 20)
    return b"".join(deflate.compress(zeros) for _ in range(size >> 20)) + deflate.flush()


def _board_routes(srv: LocalServer) -> tuple[list[str], dict[str, Route]]:
    """Every index page and article of a small board as routes; returns the live post ids too."""
    board = build_board(BoardSpec(posts=12, seed=0, extras=False))
    base = srv.url("")
    html = {
        f"/bbs/Beauty/{name}": render_index(board, name, base)
        for name in ["index.html", *(f"index{n}.html" for n in range(1, board.pages + 1))]
    }
    posts = [s.post_id for s in board.live_posts()]
    html |= {f"/bbs/Beauty/{pid}.html": render_article(board, f"{pid}.html", base) for pid in posts}
    return posts, {path: Route(text.encode(), "text/html; charset=utf-8") for path, text in html.items() if text}


@pytest.mark.timeout(90)
def test_endless_bomb_and_dripping_articles_fail_alone_bounded(tmp_path: Path) -> None:
    with LocalServer({}) as srv:
        posts, routes = _board_routes(srv)
        endless, bomb, drip = posts[1], posts[3], posts[5]
        routes[f"/bbs/Beauty/{endless}.html"] = Route(b"<div>" * 16384, "text/html", endless=True)
        routes[f"/bbs/Beauty/{bomb}.html"] = Route(_gzip_bomb(BOMB_INFLATED), "text/html", encoding="gzip")
        routes[f"/bbs/Beauty/{drip}.html"] = Route(b"<html>" + b" " * 600, "text/html", drip_s=0.05)
        srv.routes.update(routes)
        cfg = CrawlConfig(
            base_url=srv.url(""),
            start_date="2024-01-01",
            end_date="2024-12-31",
            delay_s=0.0,
            retries=0,
            timeout_s=5.0,
            max_bytes=MAX_BYTES,
            body_deadline_s=1.0,
        )
        tracemalloc.start()
        t0 = time.monotonic()
        result = crawl(cfg, tmp_path / "cache", progress=False)
        seconds = time.monotonic() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()

        # unbounded, the bomb alone inflates to 200 MB and the endless body never ends
        assert seconds < 30 and peak < 40 * MAX_BYTES, (seconds, peak)
        bad = {endless: "too_large", bomb: "too_large", drip: "timeout"}
        assert [p["post_id"] for p in result.posts] == [p for p in posts if p not in bad]
        assert {f["post_id"]: f["reason"] for f in result.failed} == bad
        assert all(p["n_links"] > 0 for p in result.posts)  # the good posts are parsed in full

        write_outputs(result, tmp_path / "posts.parquet", tmp_path / "links.parquet")
        table = pd.read_parquet(tmp_path / "posts.parquet")
        assert table["post_id"].tolist() == posts  # every post has its row, failed ones too
        status = dict(zip(table["post_id"], table["status"], strict=True))
        assert {p: status[p] for p in bad} == bad and {status[p] for p in posts if p not in bad} == {"ok"}
        errors = dict(zip(table["post_id"], table["error"], strict=True))
        assert f"max_bytes={MAX_BYTES}" in errors[bomb] and "body_deadline_s=1.0" in errors[drip]
        assert set(pd.read_parquet(tmp_path / "links.parquet")["post_id"]).isdisjoint(bad)

        # nothing of the failed posts was cached: the next run asks for exactly them again
        cached = {p.name.split(".html")[0] for p in (tmp_path / "cache").rglob("*.html.gz")}
        assert cached == set(posts) - set(bad)
        before = srv.hits
        again = crawl(cfg, tmp_path / "cache", progress=False)
        refetched = {path.rsplit("/", 1)[1][:-5] for path, n in (srv.hits - before).items() if "/M." in path}
        assert refetched == set(bad) and again.cache_hits == len(posts) - len(bad)


def test_a_cached_page_that_inflates_past_the_cap_is_dropped_not_inflated(tmp_path: Path) -> None:
    cache = ArticleCache(tmp_path, "http://127.0.0.1:1", "Beauty", max_bytes=MAX_BYTES)
    cache.put("M.1.A.1", 200, "<html>ok</html>")
    assert cache.get("M.1.A.1") == (200, "<html>ok</html>")
    page = cache.dir / "M.1.A.2.html.gz"
    page.write_bytes(_gzip_bomb(50_000_000))  # left by an older, unbounded crawl
    assert cache.get("M.1.A.2") is None and not page.exists()
    (cache.dir / "M.1.A.3.html.gz").write_bytes(gzip.compress(b"<html>cut short")[:-6])
    assert cache.get("M.1.A.3") is None


@pytest.mark.parametrize(("key", "value"), bad_numbers(CrawlConfig))
def test_every_number_is_finite_and_bounded(key, value):
    assert_named_in_one_line(CrawlConfig, "crawl", key, value)


def test_every_number_has_a_range():
    from facegen.crawl.crawler import CRAWL_RANGES

    assert set(CRAWL_RANGES) == numeric_keys(CrawlConfig)
