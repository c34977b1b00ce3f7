"""DVC stage `crawl`: params `crawl.*` -> data/posts.parquet, data/links.parquet, metrics/crawl.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from facegen.common.atomic import write_json
from facegen.common.config import load_section, save_config
from facegen.crawl.crawler import CrawlConfig, crawl, write_outputs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--posts", default="data/posts.parquet")
    ap.add_argument("--links", default="data/links.parquet")
    ap.add_argument("--summary", default="metrics/crawl.json", help="counts kept/skipped by reason, links by host")
    ap.add_argument("--config-out", default="data/crawl_config.json", help="the resolved crawl config")
    ap.add_argument("--cache-dir", default="cache/crawl", help="persistent article cache (not a DVC out)")
    args = ap.parse_args(argv)

    try:  # every value named before any work: one line, no traceback
        cfg = load_section(CrawlConfig, "crawl", args.params)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"crawl: error: {err}") from None
    result = crawl(cfg, args.cache_dir)
    write_outputs(result, args.posts, args.links)
    save_config(cfg, args.config_out)
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.summary, result.summary(), sort_keys=False)
    print(result.line(cfg))


if __name__ == "__main__":
    main()
