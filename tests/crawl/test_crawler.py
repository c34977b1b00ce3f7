"""facegen.crawl.crawler and stages/crawl.py against the local board server (offline, real HTTP)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml

from facegen.common.config import from_dict
from facegen.crawl import ptt
from facegen.crawl.crawler import CrawlConfig, CrawlError, crawl, write_outputs
from facegen.demo.board import Board, BoardSpec, Fault, serve

pytestmark = pytest.mark.network
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def small() -> Iterator:
    """60 entries, 10 a day, 2024-01-01..2024-01-06, with every kind of extra."""
    with serve(BoardSpec(posts=60, seed=0)) as srv:
        yield srv


def _cfg(server, start: str, end: str, **kw) -> CrawlConfig:
    return CrawlConfig(
        **{
            "base_url": server.url,
            "start_date": start,
            "end_date": end,
            "delay_s": 0,
            "backoff_s": 0.01,
            "retries": 2,
            **kw,
        }
    )


def expected(board: Board, base: str, cfg: CrawlConfig) -> tuple[list[str], list[tuple[str, str, str]]]:
    """Post ids and (post_id, url, source) the crawl must return, from the board's own model
    (no keyword filter: a board body holds its category word only)."""
    start, end = cfg.window
    posts = [s for s in board.slots if s.kind == "post" and start <= s.ts < end]
    if cfg.categories:
        posts = [s for s in posts if s.category in cfg.categories]
    links = []
    for s in posts:
        seen = set()
        for link in board.links(s):
            url = link.href if link.href.startswith("http") else base + link.href
            if link.image_like and url not in seen:
                seen.add(url)
                links.append((s.post_id, url, link.source))
    return [s.post_id for s in posts], links


def _rows(result) -> tuple[list[str], list[tuple[str, str, str]]]:
    return [p["post_id"] for p in result.posts], [(x["post_id"], x["url"], x["source"]) for x in result.links]


def test_two_days_exact_posts_links_and_counts(small, tmp_path: Path) -> None:
    cfg = _cfg(small, "2024-01-02", "2024-01-03")
    small.reset_hits()
    result = crawl(cfg, tmp_path, progress=False)
    assert _rows(result) == expected(small.board, small.url, cfg)
    # entries 10..29: announcement (11), deleted (22) and a 404 article (23) are not kept
    assert (len(result.posts), dict(result.skipped)) == (17, {"announcement": 1, "deleted": 1, "http_404": 1})
    missing = small.board.slots[23]
    assert result.failed == [
        {"post_id": missing.post_id, "url": f"{small.url}/bbs/Beauty/{missing.post_id}.html", "reason": "http_404"}
    ]
    assert result.summary()["links_by_source"] == {"body": 57, "push": 6}
    first = result.posts[0]
    slot = small.board.slots[10]
    assert first == {
        "post_id": slot.post_id,
        "board": "Beauty",
        "url": f"{small.url}/bbs/Beauty/{slot.post_id}.html",
        "title": slot.title,
        "category": slot.category,
        "author": slot.author,
        "posted_at": ptt.post_time(slot.post_id),
        "push_count": 0,
        "n_pushes": first["n_pushes"],
        "n_links": 4,
        "index_page": 1,
    }
    assert first["posted_at"].isoformat() == "2024-01-02T00:59:59+08:00"
    # one request per article (the 404 one included), index pages: newest + search + walk
    assert result.requests["article"] == 18 == small.requests_to("/bbs/Beauty/M.")
    assert result.requests["index"] == 3 == small.requests_to("/bbs/Beauty/index")
    again = crawl(cfg, tmp_path, progress=False)
    assert (again.requests["article"], again.cache_hits) == (0, 18)
    assert _rows(again) == _rows(result) and again.summary() == result.summary()


def test_newest_page_pinned_posts_are_not_crawled_twice(small, tmp_path: Path) -> None:
    cfg = _cfg(small, "2023-12-01", "2024-12-31")
    result = crawl(cfg, tmp_path, progress=False)
    ids, _ = expected(small.board, small.url, cfg)
    assert [p["post_id"] for p in result.posts] == ids and len(ids) == len(set(ids)) == 54
    assert result.pinned_ignored == 2 and result.pages == (1, 3)
    assert small.board.pinned[0].post_id not in ids  # the pinned announcement, dated before the board


def test_keyword_and_category_filters(small, tmp_path: Path) -> None:
    by_kw = crawl(_cfg(small, "2024-01-01", "2024-01-06", keywords=("神人",)), tmp_path, progress=False)
    kept = [p["post_id"] for p in by_kw.posts]
    assert kept == [s.post_id for s in small.board.live_posts() if s.category == "神人"] and kept
    assert by_kw.skipped["keyword"] == len(small.board.live_posts()) - len(kept)
    by_cat = crawl(_cfg(small, "2024-01-01", "2024-01-06", categories=("帥哥",)), tmp_path, progress=False)
    assert {p["category"] for p in by_cat.posts} == {"帥哥"}
    assert by_cat.skipped["category"] == sum(
        1 for s in small.board.slots if s.kind in ("post", "missing") and s.category != "帥哥"
    )
    assert by_cat.requests["article"] == 0  # every article was cached by the keyword crawl


def test_binary_search_on_a_2000_page_board(tmp_path: Path) -> None:
    with serve(BoardSpec(posts=40_000, posts_per_day=17, images_per_post=1, seed=5)) as big:
        assert big.board.pages == 2000
        for day in ("2024-01-01", "2026-03-15", "2030-06-10"):  # first day, a day, the newest day
            big.reset_hits()
            cfg = _cfg(big, day, day)
            result = crawl(cfg, tmp_path / day, progress=False)
            ids, links = expected(big.board, big.url, cfg)
            assert _rows(result) == (ids, links) and 13 <= len(ids) <= 17
            start, end = cfg.window
            holding = {s.index // 20 + 1 for s in big.board.slots if start <= s.ts < end}
            walked = set(range(result.pages[0], result.pages[1] + 1))
            # the walk covers the pages holding the day, plus at most the next one (to see the day end)
            assert holding <= walked and len(walked) <= len(holding) + 1
            # newest page + a binary search + the walk (whose first page the search already fetched)
            assert result.requests["index"] <= 1 + math.ceil(math.log2(2000)) + len(walked)
            assert result.requests["index"] == big.requests_to("/bbs/Beauty/index")
            assert (
                result.requests["article"] == big.requests_to("/bbs/Beauty/M.") == len(ids) + result.skipped["http_404"]
            )


def test_429_with_retry_after_then_200(small, tmp_path: Path) -> None:
    path = "/bbs/Beauty/index.html"
    small.reset_hits()
    small.add_fault(path, Fault(status=429, retry_after_s=1))
    t0 = time.monotonic()
    result = crawl(_cfg(small, "2024-01-06", "2024-01-06"), tmp_path, progress=False)
    assert time.monotonic() - t0 >= 1.0  # waited as told
    assert small.hits[path] == 2 and len(result.posts) == 9


def test_5xx_backoff_timeout_and_404_are_recorded_not_fatal(small, tmp_path: Path) -> None:
    cfg = _cfg(small, "2024-01-05", "2024-01-05", timeout_s=0.4, retries=1)
    live = [s for s in small.board.live_posts() if cfg.window[0] <= s.ts < cfg.window[1]]
    flaky, dead, slow = live[0], live[1], live[2]
    small.add_fault(f"/bbs/Beauty/{flaky.post_id}.html", Fault(status=500))  # once, then fine
    small.add_fault(f"/bbs/Beauty/{dead.post_id}.html", Fault(status=503), Fault(status=503))
    small.add_fault(f"/bbs/Beauty/{slow.post_id}.html", Fault(delay_s=1.0), Fault(delay_s=1.0))
    result = crawl(cfg, tmp_path, progress=False)
    kept = [p["post_id"] for p in result.posts]
    assert flaky.post_id in kept and dead.post_id not in kept and slow.post_id not in kept
    assert {(f["post_id"], f["reason"]) for f in result.failed} == {
        (dead.post_id, "http_503"),
        (slow.post_id, "timeout"),
    }
    assert len(kept) == len(live) - 2
    # failures are not cached: the next run fetches exactly those two again and keeps them
    again = crawl(cfg, tmp_path, progress=False)
    assert again.requests["article"] == 2 and [p["post_id"] for p in again.posts] == [s.post_id for s in live]


def test_interrupted_crawl_resumes(small, tmp_path: Path) -> None:
    cfg = _cfg(small, "2024-01-01", "2024-01-06")
    handled: list[str] = []

    def stop_after_five(post_id: str) -> None:
        handled.append(post_id)
        if len(handled) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        crawl(cfg, tmp_path / "cache", progress=False, on_post=stop_after_five)
    resumed = crawl(cfg, tmp_path / "cache", progress=False)
    clean = crawl(cfg, tmp_path / "clean", progress=False)
    assert resumed.cache_hits == 5 and resumed.requests["article"] == clean.requests["article"] - 5
    assert _rows(resumed) == _rows(clean) and resumed.summary() == clean.summary()


def test_no_cookie_means_the_gate_and_a_clear_error(small, tmp_path: Path) -> None:
    with pytest.raises(ptt.Over18GateError, match="over18=1"):
        crawl(_cfg(small, "2024-01-01", "2024-01-01"), tmp_path, session=requests.Session(), progress=False)


def test_wrong_board_is_a_clear_error(small, tmp_path: Path) -> None:
    with pytest.raises(CrawlError, match=r"HTTP 404: check crawl.base_url and crawl.board='Nope'"):
        crawl(_cfg(small, "2024-01-01", "2024-01-01", board="Nope"), tmp_path, progress=False)


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"crawl.start_date='2024-13-01' is not a date"):
        CrawlConfig(start_date="2024-13-01")
    with pytest.raises(ValueError, match=r"crawl.end_date='20241231' is not a date: write it as YYYY-MM-DD"):
        CrawlConfig(end_date="20241231")
    with pytest.raises(ValueError, match=r"crawl.start_date=2024-02-01 is after crawl.end_date=2024-01-31"):
        CrawlConfig(start_date="2024-02-01", end_date="2024-01-31")
    with pytest.raises(ValueError, match=r"crawl.base_url='www.ptt.cc'"):
        CrawlConfig(base_url="www.ptt.cc")
    with pytest.raises(ValueError, match=r"unknown key.*keyword\b"):
        from_dict(CrawlConfig, {"keyword": ["正妹"]}, "crawl")
    cfg = from_dict(CrawlConfig, yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))["crawl"], "crawl")
    assert cfg.window == (1704038400, 1735660800)  # 2024-01-01 00:00 .. 2025-01-01 00:00 Taipei


def test_empty_range_writes_typed_empty_tables(small, tmp_path: Path) -> None:
    result = crawl(_cfg(small, "2025-01-01", "2025-01-31"), tmp_path / "cache", progress=False)
    assert result.posts == [] and result.pages == (0, 0)
    write_outputs(result, tmp_path / "posts.parquet", tmp_path / "links.parquet")
    posts = pd.read_parquet(tmp_path / "posts.parquet")
    assert len(posts) == 0 and str(posts["posted_at"].dtype).endswith("Asia/Taipei]")


def test_stage_end_to_end(small, tmp_path: Path) -> None:
    params = {
        "crawl": {
            "base_url": small.url,
            "board": "Beauty",
            "start_date": "2024-01-04",
            "end_date": "2024-01-04",
            "keywords": [],
            "delay_s": 0.0,
        }
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, allow_unicode=True), encoding="utf-8")
    small.reset_hits()

    def run() -> str:
        proc = subprocess.run(
            [sys.executable, str(REPO / "stages" / "crawl.py")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = run()
    cfg = from_dict(CrawlConfig, params["crawl"], "crawl")
    ids, links = expected(small.board, small.url, cfg)
    posts = pd.read_parquet(tmp_path / "data" / "posts.parquet")
    link_df = pd.read_parquet(tmp_path / "data" / "links.parquet")
    assert posts["post_id"].tolist() == ids and len(ids) == 9  # entries 30..39, 39 deleted
    assert list(link_df[["post_id", "url", "source"]].itertuples(index=False, name=None)) == links
    assert not posts["post_id"].duplicated().any() and not link_df.duplicated(["post_id", "url"]).any()
    assert str(posts["posted_at"].dtype) == "datetime64[s, Asia/Taipei]" or posts["posted_at"].dt.tz is not None
    assert (posts["posted_at"].dt.strftime("%Y-%m-%d") == "2024-01-04").all()
    assert set(link_df["source"]) == {"body", "push"} and link_df["url"].str.contains("/img/gone-").any()
    summary = json.loads((tmp_path / "metrics" / "crawl.json").read_text(encoding="utf-8"))
    assert (summary["posts_kept"], summary["skipped"], summary["links"]) == (9, {"deleted": 1}, len(links))
    assert json.loads((tmp_path / "data" / "crawl_config.json").read_text())["start_date"] == "2024-01-04"
    assert out.startswith(
        "crawl Beauty 2024-01-04..2024-01-04: pages 2-3 of 3; posts kept 9 of 10 (skipped: deleted=1)"
    )
    articles = small.requests_to("/bbs/Beauty/M.")
    assert articles == 9
    assert "requests index=" in run() and small.requests_to("/bbs/Beauty/M.") == articles  # second run: cache only


def test_refused_connection_is_connection_error_not_timeout() -> None:
    # urllib3's NewConnectionError subclasses ConnectTimeoutError: a refused port must not read as a timeout
    import socket

    import requests

    from facegen.common.http import HttpConfig, make_session
    from facegen.crawl.crawler import failure_reason

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(requests.ConnectionError) as info:
        make_session(HttpConfig(retries=0)).get(f"http://127.0.0.1:{port}/", timeout=2)
    assert failure_reason(info.value) == "connection_error"
    assert failure_reason(requests.exceptions.ReadTimeout("slow")) == "timeout"
