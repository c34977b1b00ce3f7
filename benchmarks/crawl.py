"""Benchmark the crawl: requests and seconds for one day and one month of a 7,000-page board.

A synthetic PTT board (``facegen.demo.board``, 140,000 entries, 20 a day from 2006-01-01, with
deleted entries, announcements and 404 articles) is served on 127.0.0.1 and crawled with
``delay_s=0``:
1. one day, cold cache;
2. one month, cold cache;
3. the same month again: article requests must be 0 (all from the on-disk cache).

The expected minimum of index requests is ``ceil(log2(pages))`` for the search plus the pages
holding the range (and the newest page, fetched first to learn the page count).
Writes benchmarks/results/crawl.json. Run: ``.venv/bin/python benchmarks/crawl.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

from facegen.crawl.crawler import CrawlConfig, crawl
from facegen.demo.board import BoardSpec, serve

REPO = Path(__file__).resolve().parents[1]


def _run(server, cache: Path, start: str, end: str) -> dict:
    cfg = CrawlConfig(base_url=server.url, start_date=start, end_date=end, delay_s=0)
    server.reset_hits()
    t0 = time.perf_counter()
    result = crawl(cfg, cache, progress=False)
    seconds = time.perf_counter() - t0
    lo, hi = cfg.window
    holding = {s.index // 20 + 1 for s in server.board.slots if lo <= s.ts < hi}
    pages = server.board.pages
    row = {
        "range": [start, end],
        "seconds": round(seconds, 3),
        "index_requests": result.requests["index"],
        "article_requests": result.requests["article"],
        "server_requests": sum(server.hits.values()),
        "article_cache_hits": result.cache_hits,
        "pages_holding_range": len(holding),
        "pages_walked": result.pages[1] - result.pages[0] + 1,
        "index_requests_minimum": 1 + math.ceil(math.log2(pages)) + len(holding),
        "posts_in_range": result.summary()["posts_in_range"],
        "posts_kept": len(result.posts),
        "skipped": dict(result.skipped),
        "links": len(result.links),
    }
    print(
        f"{start}..{end}: {row['seconds']}s, index requests {row['index_requests']} "
        f"(minimum ~{row['index_requests_minimum']}), article requests {row['article_requests']} "
        f"(cache hits {row['article_cache_hits']}), posts kept {row['posts_kept']} of {row['posts_in_range']}"
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=7000)
    ap.add_argument("--day", default="2015-06-15")
    ap.add_argument("--month", nargs=2, default=["2015-07-01", "2015-07-31"])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "crawl.json"))
    args = ap.parse_args()

    t0 = time.perf_counter()
    spec = BoardSpec(posts=args.pages * 20, posts_per_day=20, start_date="2006-01-01", images_per_post=3, seed=0)
    server = serve(spec)
    build_s = time.perf_counter() - t0
    print(
        f"board: {server.board.pages} pages, {len(server.board.slots)} entries, {server.board.dates}, "
        f"built in {build_s:.1f}s"
    )
    with server, tempfile.TemporaryDirectory() as tmp:
        day = _run(server, Path(tmp) / "day", args.day, args.day)
        month = _run(server, Path(tmp) / "month", *args.month)
        again = _run(server, Path(tmp) / "month", *args.month)
    assert again["article_requests"] == 0, "second run fetched articles again"
    results = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "note": "2-core CPU, no GPU; board served on 127.0.0.1 by facegen.demo.board in the same process",
        },
        "board": {
            "pages": server.board.pages,
            "entries": len(server.board.slots),
            "posts_per_day": spec.posts_per_day,
            "dates": list(server.board.dates),
            "build_seconds": round(build_s, 2),
        },
        "one_day": day,
        "one_month": month,
        "one_month_second_run": again,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
