"""DVC stage `download`: data/links.parquet -> data/raw/<sha256>.<ext> + data/downloads.parquet.

Reads params.yaml `download` and `faces`. Fetched bytes and per-link results persist in
cache/download/ (not a DVC out), so an interrupted run resumes and a threshold change
re-filters without the network. See docs/download.md.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from facegen.common.atomic import write_json
from facegen.common.config import load_section, to_dict
from facegen.download.stage import DownloadConfig, metrics, run_download, summary, write_table
from facegen.faces.detect import FacesConfig


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--links", default="data/links.parquet")
    ap.add_argument("--out-dir", default="data/raw", help="kept images, named <sha256>.<ext>")
    ap.add_argument("--table", default="data/downloads.parquet", help="one row per link with its status")
    ap.add_argument("--config-out", default="data/downloads_config.json", help="the resolved download + faces config")
    ap.add_argument("--summary", default="metrics/download.json", help="links per status, kept images (DVC metric)")
    ap.add_argument("--cache-dir", default="cache/download", help="persistent fetch cache (not a DVC out)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:  # every value named before any work: one line, no traceback
        cfg = load_section(DownloadConfig, "download", args.params)
        faces = load_section(FacesConfig, "faces", args.params)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"download: error: {err}") from None
    links = pd.read_parquet(args.links)
    table = run_download(
        links, cfg, faces, Path(args.out_dir), cache_dir=Path(args.cache_dir), progress=not args.no_progress
    )
    write_table(table, Path(args.table))
    Path(args.config_out).parent.mkdir(parents=True, exist_ok=True)
    resolved = {"download": to_dict(cfg), "faces": to_dict(faces)}
    write_json(args.config_out, resolved)
    Path(args.summary).parent.mkdir(parents=True, exist_ok=True)
    write_json(args.summary, metrics(table), sort_keys=False)
    print(summary(table))


if __name__ == "__main__":
    main()
