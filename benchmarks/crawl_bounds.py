"""Time and memory of a crawl when one article is hostile: endless, a gzip bomb, or dripping.

    python benchmarks/crawl_bounds.py [--bomb-mb 500] [--limit-s 30] [--out benchmarks/results/crawl_bounds.json]

Each case runs in a child process (``--child``) against tests/localserver.py serving a 10-post
board in the real markup, with a wall-clock limit; the parent reports wall seconds, the child's
peak RSS and the failed posts. Run it with ``PYTHONPATH`` on an older checkout to measure the
code before the bounds (its CrawlConfig lacks ``max_bytes``/``body_deadline_s``: the case then
runs with that checkout's behaviour and is killed at the limit if it never ends).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES = ("endless", "bomb", "drip")


def _child(case: str, bomb_mb: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from localserver import LocalServer, Route

    from facegen.crawl.crawler import CrawlConfig, crawl
    from facegen.demo.content import BoardSpec, build_board, render_article, render_index

    board = build_board(BoardSpec(posts=12, seed=0, extras=False))
    with LocalServer({}) as srv:
        base = srv.url("")
        pages = ["index.html", *(f"index{n}.html" for n in range(1, board.pages + 1))]
        html = {f"/bbs/Beauty/{name}": render_index(board, name, base) for name in pages}
        posts = [s.post_id for s in board.live_posts()]
        html |= {f"/bbs/Beauty/{p}.html": render_article(board, f"{p}.html", base) for p in posts}
        srv.routes.update({k: Route(v.encode(), "text/html; charset=utf-8") for k, v in html.items() if v})
        target = f"/bbs/Beauty/{posts[3]}.html"
        if case == "endless":
            srv.routes[target] = Route(b"<div>" * 16384, "text/html", endless=True)
        elif case == "bomb":
            deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
            zeros = bytes(1 << 20)
            body = b"".join(deflate.compress(zeros) for _ in range(bomb_mb)) + deflate.flush()
            srv.routes[target] = Route(body, "text/html", encoding="gzip")
        else:
            srv.routes[target] = Route(b"<html>" + b" " * 600, "text/html", drip_s=1.0)
        kw = {
            "base_url": base,
            "start_date": "2024-01-01",
            "end_date": "2024-12-31",
            "delay_s": 0.0,
            "retries": 0,
            "timeout_s": 5.0,
        }
        fields = {f.name for f in dataclasses.fields(CrawlConfig)}
        kw |= {k: v for k, v in {"max_bytes": 10_000_000, "body_deadline_s": 5.0}.items() if k in fields}
        with tempfile.TemporaryDirectory() as cache:
            t0 = time.monotonic()
            result = crawl(CrawlConfig(**kw), cache, progress=False)
            seconds = time.monotonic() - t0
        print(
            json.dumps(
                {
                    "seconds": round(seconds, 2),
                    "posts_kept": len(result.posts),
                    "failed": sorted(f["reason"] for f in result.failed),
                    "bounded": "max_bytes" in fields,
                }
            )
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bomb-mb", type=int, default=500, help="inflated size of the gzip bomb, MB of zeros")
    ap.add_argument("--limit-s", type=float, default=30.0, help="kill a case after this long")
    ap.add_argument("--cases", nargs="*", default=list(CASES), choices=CASES)
    ap.add_argument("--out", default=None, help="write the results here as JSON")
    ap.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.bomb_mb)
        return
    results = {}
    for case in args.cases:
        t0 = time.monotonic()
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.Popen(
                [sys.executable, __file__, "--child", case, "--bomb-mb", str(args.bomb_mb)],
                stdout=out,
                text=True,
                env=os.environ,
            )
            killed = False
            while True:  # wait4: this child's own peak RSS, also when it has to be killed
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() - t0 > args.limit_s and not killed:
                    proc.kill()
                    killed = True
                time.sleep(0.05)
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            lines = out.read().strip().splitlines()
        if killed:
            row = {"killed_after_s": args.limit_s}
        else:
            row = json.loads(lines[-1]) if proc.returncode == 0 and lines else {"error": f"exit {proc.returncode}"}
        row["wall_s"] = round(time.monotonic() - t0, 2)
        row["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
        results[case] = row
        print(case, row, flush=True)
    if args.out:
        record = {"bomb_mb": args.bomb_mb, "limit_s": args.limit_s, **results}
        Path(args.out).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
