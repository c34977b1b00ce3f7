"""The download stage: every crawled image link -> kept, sharp face images + one row per link.

Pipeline per link (``links.parquet`` row order is kept):

1. fetch: a thread pool of ``download.workers`` requests in flight, at most ``download.per_host``
   per host, request starts ``download.host_delay_s`` apart per host (:mod:`facegen.download.fetch`);
   each outcome is persisted at once in the fetch cache (:mod:`facegen.download.cache`);
2. analyse each new body once (by sha256): safe decode (:mod:`facegen.common.images`), insightface
   detection (:mod:`facegen.faces.detect`), sharpness of the largest face (:mod:`facegen.faces.quality`),
   on ``download.detect_workers`` threads, overlapping the fetches; persisted at once;
3. decide each link's status from the cached records and the thresholds (pure, no network,
   no detector), dedupe by content hash, copy kept images to ``<out_dir>/<sha256>.<ext>``.

An interrupted run resumes: finished URLs and analysed images are read from the cache, never
fetched or detected again. Changing a threshold (min_face_area, blur_threshold, min_side,
placeholders) re-decides from the cache without network or detector.

The stage's parts, one module each: :mod:`facegen.download.config` (params), :mod:`.analysis`
(analyse one body, decide one link), :mod:`.scheduler` (fetch and analyse, overlapped, with
bounded memory), :mod:`.table` (downloads.parquet, kept files, metrics). Their public names are
re-exported here, the stage's one entry point.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from facegen.download.analysis import STATUSES, Detector, analyse, decide, face_fraction, stale
from facegen.download.cache import FetchCache
from facegen.download.config import DOWNLOAD_RANGES, DownloadConfig, analysis_key
from facegen.download.scheduler import FetchAnalyse, Hook
from facegen.download.table import SCHEMA, build_table, export_kept, metrics, summary, write_table
from facegen.faces.detect import FacesConfig

__all__ = [
    "DOWNLOAD_RANGES",
    "SCHEMA",
    "STATUSES",
    "Detector",
    "DownloadConfig",
    "FetchAnalyse",
    "Hook",
    "analyse",
    "analysis_key",
    "build_table",
    "decide",
    "export_kept",
    "face_fraction",
    "metrics",
    "run_download",
    "stale",
    "summary",
    "write_table",
]


def run_download(
    links: pd.DataFrame,
    cfg: DownloadConfig,
    faces: FacesConfig,
    out_dir: Path,
    *,
    cache_dir: Path,
    detector: Detector | None = None,
    after_persist: Hook | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fetch, analyse, decide and export: the whole stage except reading params and writing Parquet.

    ``out_dir`` receives the kept images; ``cache_dir`` is the persistent fetch cache.
    """
    missing = [c for c in ("post_id", "url") if c not in links.columns]
    if missing:
        raise ValueError(f"links table lacks column(s) {missing}; expected the crawl contract (post_id, url, source)")
    links = links.reset_index(drop=True)
    links["url"] = links["url"].map(lambda u: u if isinstance(u, str) else "")  # a missing URL is invalid_url
    with FetchCache(cache_dir) as cache:
        run = FetchAnalyse(cfg, faces, cache, detector=detector, after_persist=after_persist, progress=progress)
        run.run(links["url"].tolist())
        table = build_table(links, cfg, faces, cache, out_dir=out_dir)
        export_kept(table, cache, out_dir)
    return table
