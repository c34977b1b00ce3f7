"""DVC stage ``align``: kept images + their detections -> aligned faces, faces.parquet, preview.

Run from the repository root: ``python stages/align.py`` (params: ``align``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facegen.align.curation import CURATION_FILE, read_curation
from facegen.align.geometry import AlignConfig
from facegen.align.stage import AlignOutputs, run_align
from facegen.common.config import load_section


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--downloads", type=Path, default=Path("data/downloads.parquet"))
    parser.add_argument("--root", type=Path, default=Path("."), help="base of the repo-relative paths in the tables")
    parser.add_argument("--faces", type=Path, default=Path("data/faces"))
    parser.add_argument("--table", type=Path, default=Path("data/faces.parquet"))
    parser.add_argument("--preview", type=Path, default=Path("data/faces_preview.png"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/align.json"))
    parser.add_argument("--curation", type=Path, default=CURATION_FILE, help="manual decisions (none when absent)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:  # every value named before any work: one line, no traceback
        cfg = load_section(AlignConfig, "align", args.params)
        curation = read_curation(args.curation)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"align: error: {err}") from None
    out = AlignOutputs(args.faces, args.table, args.preview, args.metrics)
    table = run_align(args.downloads, args.root, out, cfg, curation=curation, progress=not args.no_progress)
    counts = table["status"].value_counts().to_dict()
    print(f"align: {counts.get('ok', 0)} faces of {len(table)} candidates; {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
