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
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from facegen.common.atomic import atomic_path, is_temp_name
from facegen.common.config import FRACTION, Range, to_dict, validate
from facegen.common.http import DestinationPolicy, HttpConfig, allowed_hosts, make_session
from facegen.common.images import ImageRejected, decode_image, sha256_file, sha256_hex
from facegen.common.tables import Schema, write_parquet
from facegen.download.cache import Analysis, FetchCache, FetchRecord
from facegen.download.fetch import FETCHED, TRANSIENT_FAILURES, FetchResult, HostGate, fetch_url
from facegen.faces.detect import STATUSES as DETECTOR_STATUSES
from facegen.faces.detect import Detection, DetectionFailed, FacesConfig, box_area
from facegen.faces.quality import region_sharpness

log = logging.getLogger(__name__)

# Every link ends with exactly one of these (docs/download.md explains each).
STATUSES = (
    "ok",
    "duplicate",
    "invalid_url",
    "http_404",
    "http_error",
    "timeout",
    "connection_error",
    "too_large",
    "blocked_host",
    "not_an_image",
    "corrupt",
    "placeholder",
    "too_small",
    "bad_shape",
    "detector_error",
    "no_face",
    "face_too_small",
    "blurry",
)
_SIZE_RE = re.compile(r"[1-9][0-9]*x[1-9][0-9]*")
_KEPT_NAME = re.compile(r"[0-9a-f]{64}\.[a-z]+")
_ANALYSIS_VERSION = 2  # bump when analyse() changes meaning, so cached analyses are redone


HOUR_S, DAY_S = 3600.0, 86400.0
# every number of params.yaml ``download``: finite, and within what the machine and a server can use
DOWNLOAD_RANGES = {
    "min_face_area": FRACTION,
    "blur_threshold": Range(0, 1e7),  # above any 8-bit Laplacian variance (at most (8 x 255)^2 = 4.2e6)
    "sharpness_size": Range(0, 4096),
    "min_side": Range(1, 100_000),
    "max_pixels": Range(1, 1_000_000_000),  # 3 GB as RGB: the decode cap must fit in memory
    "max_bytes": Range(1, 1_000_000_000),  # a body is held in memory while it is analysed
    "workers": Range(1, 256),
    "per_host": Range(1, 256),
    "host_delay_s": Range(0, HOUR_S),
    "detect_workers": Range(1, 64),  # one detector's buffers each
    "timeout_s": Range(0, HOUR_S, lo_open=True),
    "body_deadline_s": Range(0, DAY_S, lo_open=True),
    "retries": Range(0, 100),
    "backoff_s": Range(0, HOUR_S),
    "backoff_max_s": Range(0, DAY_S),
}


@dataclass(frozen=True)
class DownloadConfig:
    """params.yaml ``download``: politeness, safety caps and the face filter thresholds."""

    min_face_area: float = 0.015  # largest face box area / image area, to keep
    blur_threshold: float = 130.0  # Laplacian variance of the largest face region (at sharpness_size), to keep
    sharpness_size: int = 64  # face crops larger than this (px, long side) are shrunk before measuring: align.size
    min_side: int = 64  # shorter image side (px) below which an image is too_small
    max_pixels: int = 50_000_000  # decode cap (decompression bombs): width * height
    max_bytes: int = 20_000_000  # body size cap
    workers: int = 16  # requests in flight
    per_host: int = 8  # requests in flight per host
    host_delay_s: float = 0.1  # minimum gap between request starts to one host
    detect_workers: int = 2  # threads decoding + detecting (decode of one overlaps detection of another)
    timeout_s: float = 20.0  # connect / read timeout per attempt
    body_deadline_s: float = 120.0  # a body still arriving this long after the response began is a timeout
    retries: int = 5  # urllib3 retries (connect/read errors, 5xx, 429 with Retry-After)
    backoff_s: float = 1.0  # exponential backoff factor between retries
    backoff_max_s: float = 60.0
    user_agent: str = HttpConfig.user_agent
    retry_failed: bool = False  # refetch cached timeout / connection_error / http_error links
    placeholder_sha256: tuple[str, ...] = ()  # bodies known to be "image removed" pictures
    placeholder_sizes: tuple[str, ...] = ("161x81",)  # "WIDTHxHEIGHT" of such pictures (imgur's)
    placeholder_urls: tuple[str, ...] = ("//i.imgur.com/removed.png",)  # final URL (after redirects) containing
    allow_private_hosts: tuple[str, ...] = ()  # "host" or "host:port" that may resolve to private/loopback addresses

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "allow_private_hosts", allowed_hosts(self.allow_private_hosts))
        except ValueError as err:
            raise ValueError(f"download.{err}") from None
        for size in self.placeholder_sizes:
            if not _SIZE_RE.fullmatch(size):
                raise ValueError(f"download.placeholder_sizes: {size!r} is not WIDTHxHEIGHT (e.g. '161x81')")
        validate(self, "download", DOWNLOAD_RANGES)

    def http(self) -> HttpConfig:
        return HttpConfig(
            user_agent=self.user_agent,
            timeout_s=self.timeout_s,
            retries=self.retries,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
            pool_size=self.workers,
        )

    def policy(self) -> DestinationPolicy:
        """Links come from strangers' posts: no private, loopback or link-local destinations (SSRF)."""
        return DestinationPolicy(allow_private_hosts=self.allow_private_hosts)


def analysis_key(cfg: DownloadConfig, faces: FacesConfig) -> str:
    """What an analysis depends on (detector, decode cap, sharpness scale): cached analyses are per key."""
    basis = {
        "v": _ANALYSIS_VERSION,
        "faces": to_dict(faces),
        "max_pixels": cfg.max_pixels,
        "sharpness_size": cfg.sharpness_size,
    }
    return sha256_hex(json.dumps(basis, sort_keys=True).encode())[:16]


class Detector(Protocol):
    """What the stage needs from a face detector (``facegen.faces.detect.FaceDetector``, or a stand-in)."""

    def detect(self, image_bgr: np.ndarray) -> list[Detection]: ...


def analyse(data: bytes, detector: Detector, cfg: DownloadConfig, key: str) -> Analysis:
    """Decode ``data`` safely, detect faces (largest first) and measure the largest face's sharpness.

    An image whose shorter side is below ``min_side`` is too_small whatever it holds: it never
    reaches the detector (``detections`` None: not measured). A photo the detector refuses or
    fails on keeps :class:`DetectionFailed`'s status (``bad_shape``, ``detector_error``).
    """
    sha = sha256_hex(data)
    try:
        img = decode_image(data, max_pixels=cfg.max_pixels, max_bytes=cfg.max_bytes)
    except ImageRejected as rej:
        return Analysis(sha, key, rej.status, rej.reason, None, None, None, None, None, None, None)
    facts = (img.format, img.ext, img.width, img.height, img.n_frames)
    if min(img.width, img.height) < cfg.min_side:
        return Analysis(sha, key, "decoded", None, *facts, None, None)
    try:
        dets = detector.detect(np.ascontiguousarray(img.rgb[:, :, ::-1]))  # BGR, as insightface expects
    except DetectionFailed as exc:
        return Analysis(sha, key, exc.status, exc.reason, *facts, None, None)
    sharp = region_sharpness(img.rgb, dets[0].bbox, cfg.sharpness_size) if dets else None
    return Analysis(sha, key, "decoded", None, *facts, json.dumps([d.to_record() for d in dets]), sharp)


def stale(an: Analysis, cfg: DownloadConfig) -> bool:
    """Whether a cached analysis must be redone: detection skipped at a larger ``min_side`` than now."""
    return (
        an.status == "decoded"
        and an.detections is None
        and an.width is not None
        and an.height is not None
        and min(an.width, an.height) >= cfg.min_side
    )


def decide(fetch: FetchRecord | None, an: Analysis | None, cfg: DownloadConfig) -> tuple[str, str | None]:
    """(status, error) of one link from its cached fetch and analysis and the thresholds."""
    if fetch is None:
        return "connection_error", "not fetched (run interrupted before this link)"
    if fetch.status != FETCHED:
        return fetch.status, fetch.error
    if fetch.final_url and any(p in fetch.final_url for p in cfg.placeholder_urls):
        return "placeholder", f"redirected to placeholder {fetch.final_url}"
    if an is None:
        return "corrupt", "not analysed (run interrupted before this image)"
    if an.status != "decoded" and an.status not in DETECTOR_STATUSES:
        return an.status, an.error
    assert an.width is not None and an.height is not None
    if an.sha256 in cfg.placeholder_sha256 or f"{an.width}x{an.height}" in cfg.placeholder_sizes:
        return "placeholder", f"known placeholder picture ({an.width}x{an.height}, sha256 {an.sha256[:12]})"
    if min(an.width, an.height) < cfg.min_side:
        return "too_small", f"{an.width}x{an.height}: shorter side < min_side={cfg.min_side}"
    if an.status in DETECTOR_STATUSES:
        return an.status, an.error
    if an.detections is None:
        return "corrupt", "not analysed at this min_side (run interrupted before this image)"
    dets = json.loads(an.detections)
    if not dets:
        return "no_face", None
    area = _face_fraction(dets[0], an.width, an.height)
    if area < cfg.min_face_area:
        return "face_too_small", f"largest face covers {area:.4f} < min_face_area={cfg.min_face_area}"
    if an.sharpness is None or an.sharpness < cfg.blur_threshold:
        return "blurry", f"face sharpness {an.sharpness:.1f} < blur_threshold={cfg.blur_threshold}"
    return "ok", None


def _face_fraction(det: dict, width: int, height: int) -> float:
    """The share of the image that a detection record's box covers."""
    return box_area(det["bbox"]) / float(width * height)


Hook = Callable[[str, str], None]  # (kind "fetch" | "analysis", url or sha256), after each record is persisted


def _progress_bar(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="download", unit="link", disable=not enabled, dynamic_ncols=True)


def fetch_and_analyse(
    urls: list[str],
    cfg: DownloadConfig,
    faces: FacesConfig,
    cache: FetchCache,
    *,
    detector: Detector | None = None,
    after_persist: Hook | None = None,
    progress: bool = True,
) -> None:
    """Fetch every URL not yet in ``cache`` and analyse every fetched body not yet analysed.

    The progress bar counts links fetched, with live counts of each link's (provisional) status.
    Fetch outcomes and analyses are written to ``cache`` as each completes (main thread only),
    so an interruption loses at most the requests in flight. ``detector`` (anything with
    ``detect(bgr) -> list[Detection]``) is built from ``faces`` only if some image needs it.
    """
    key = analysis_key(cfg, faces)
    known = cache.fetches(urls)
    # blocked_host is asked again each run (one DNS lookup): allow_private_hosts may have changed
    todo = [
        u
        for u in dict.fromkeys(urls)
        if u not in known
        or known[u].status == "blocked_host"
        or (cfg.retry_failed and known[u].status in TRANSIENT_FAILURES)
    ]
    have = {r.sha256 for r in known.values() if r.sha256}
    analysed = {sha for sha, an in cache.analyses(have, key).items() if not stale(an, cfg)}
    to_analyse = sorted(have - analysed)
    if not todo and not to_analyse:
        return
    gate = HostGate(cfg.per_host, cfg.host_delay_s, cfg.backoff_max_s)
    session = make_session(cfg.http(), policy=cfg.policy())
    counts: Counter[str] = Counter()
    detector_lock = threading.Lock()
    holder: list[Detector | None] = [detector]
    scheduled = set(to_analyse) | analysed
    first_fetch: dict[str, FetchRecord] = {}  # new bodies awaiting analysis, for live status counts

    def run_analysis(data: bytes | None, sha: str) -> Analysis:
        with detector_lock:  # built lazily, once: a re-filter from a full cache never loads it
            if holder[0] is None:
                from facegen.faces.detect import FaceDetector

                holder[0] = FaceDetector(faces)
            det = holder[0]
        assert det is not None
        return analyse(cache.read_blob(sha) if data is None else data, det, cfg, key)

    pending: dict[Future, str] = {}
    next_cached, next_url = iter(to_analyse), iter(todo)
    bar = _progress_bar(len(todo), progress)
    fetch_pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="fetch")
    analyse_pool = ThreadPoolExecutor(cfg.detect_workers, thread_name_prefix="detect")
    try:
        exhausted = False
        while True:
            n_fetch = sum(1 for k in pending.values() if k == "fetch")
            n_analyse = len(pending) - n_fetch
            # cached bodies not analysed under this key (resume, or a changed detector): a few at a time
            while n_analyse < 2 * cfg.detect_workers + 2 and (sha := next(next_cached, None)) is not None:
                pending[analyse_pool.submit(run_analysis, None, sha)] = "analysis"
                n_analyse += 1
            # keep the fetch pool busy, but stop fetching while detection lags (bounded memory)
            while not exhausted and n_fetch < 2 * cfg.workers and n_analyse < 4 * cfg.detect_workers + cfg.workers:
                url = next(next_url, None)
                if url is None:
                    exhausted = True
                    break
                pending[
                    fetch_pool.submit(fetch_url, session, url, gate, cfg.timeout_s, cfg.max_bytes, cfg.body_deadline_s)
                ] = "fetch"
                n_fetch += 1
            if not pending:
                break
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                kind = pending.pop(fut)
                if kind == "fetch":
                    res: FetchResult = fut.result()
                    rec = cache.put_fetch(res)
                    bar.update(1)
                    if rec.sha256 is None:
                        counts[rec.status] += 1  # a final status already
                    elif rec.sha256 in scheduled:
                        counts["same_bytes"] += 1  # duplicate or sharing the first copy's fate
                    else:
                        scheduled.add(rec.sha256)
                        first_fetch[rec.sha256] = rec
                        pending[analyse_pool.submit(run_analysis, res.body, rec.sha256)] = "analysis"
                    bar.set_postfix(dict(counts), refresh=False)
                    if after_persist:
                        after_persist("fetch", rec.url)
                else:
                    an: Analysis = fut.result()
                    cache.put_analysis(an)
                    fetch_rec = first_fetch.pop(an.sha256, None)  # None: a cached body re-analysed
                    counts[decide(fetch_rec, an, cfg)[0] if fetch_rec else "reanalysed"] += 1
                    bar.set_postfix(dict(counts), refresh=False)
                    if after_persist:
                        after_persist("analysis", an.sha256)
    finally:
        bar.close()
        fetch_pool.shutdown(wait=False, cancel_futures=True)
        analyse_pool.shutdown(wait=False, cancel_futures=True)
        session.close()


def build_table(
    links: pd.DataFrame, cfg: DownloadConfig, faces: FacesConfig, cache: FetchCache, out_dir: Path
) -> pd.DataFrame:
    """One row per link (in ``links`` order) from the cache alone: status, image facts, detections.

    Content dedupe: the first link (in order) with a given sha256 decides that content's fate;
    a later link with the same bytes is ``duplicate`` when the first was kept (``ok``), and
    otherwise shares the first's status; either way ``duplicate_of`` names the first URL.
    """
    urls = links["url"].tolist()
    fetches = cache.fetches(urls)
    shas = [r.sha256 for r in fetches.values() if r.sha256]
    analyses = cache.analyses(shas, analysis_key(cfg, faces))
    first_url: dict[str, str] = {}
    first_status: dict[str, tuple[str, str | None]] = {}
    rows = []
    for rec_in in links.itertuples(index=False):
        url = rec_in.url
        f = fetches.get(url)
        an = analyses.get(f.sha256) if f is not None and f.sha256 else None
        status, error = decide(f, an, cfg)
        sha = f.sha256 if f is not None else None
        dup_of = None
        if sha is not None:
            if sha in first_url:
                dup_of = first_url[sha]
                first, first_err = first_status[sha]
                status, error = ("duplicate", None) if first == "ok" else (first, first_err)
            else:
                first_url[sha], first_status[sha] = url, (status, error)
        rows.append(_row(rec_in, f=f, an=an, fate=(status, error), sha=sha, dup_of=dup_of, out_dir=out_dir))
    df = pd.DataFrame(rows, columns=list(_COLUMNS))
    return df.astype(_COLUMNS)


def _row(
    link: tuple,
    *,
    f: FetchRecord | None,
    an: Analysis | None,
    fate: tuple[str, str | None],
    sha: str | None,
    dup_of: str | None,
    out_dir: Path,
) -> dict:
    """One downloads.parquet row: the link, its fate, the image's facts (any decoded image, a
    refused shape included) and its detections (None where the detector did not run)."""
    status, error = fate
    facts = an if an is not None and an.width is not None else None
    measured = facts if facts is not None and facts.detections is not None else None
    dets = json.loads(measured.detections) if measured is not None and measured.detections else []
    return {
        "post_id": link.post_id,  # type: ignore[attr-defined]
        "url": link.url,  # type: ignore[attr-defined]
        "source": getattr(link, "source", None),
        "status": status,
        "sha256": sha,
        "path": (out_dir / f"{sha}.{an.ext}").as_posix() if status == "ok" and an else None,
        "format": facts.format if facts else None,
        "width": facts.width if facts else None,
        "height": facts.height if facts else None,
        "bytes": f.size if f is not None else None,
        "sharpness": measured.sharpness if measured else None,
        "n_faces": len(dets) if measured else None,
        "face_area": _face_fraction(dets[0], int(measured.width), int(measured.height))  # type: ignore[arg-type]
        if measured is not None and dets
        else None,
        "error": error,
        "duplicate_of": dup_of,
        "detections": measured.detections if measured else None,
        "http_status": f.http_status if f is not None else None,
        "final_url": f.final_url if f is not None else None,
        "content_type": f.content_type if f is not None else None,
    }


# downloads.parquet columns: pandas nullable dtypes in memory, their Arrow types on disk
_COLUMNS = {
    "post_id": "string",
    "url": "string",
    "source": "string",
    "status": "string",
    "sha256": "string",
    "path": "string",
    "format": "string",
    "width": "Int64",
    "height": "Int64",
    "bytes": "Int64",
    "sharpness": "Float64",
    "n_faces": "Int64",
    "face_area": "Float64",
    "error": "string",
    "duplicate_of": "string",
    "detections": "string",
    "http_status": "Int64",
    "final_url": "string",
    "content_type": "string",
}


_ARROW = {"string": "string", "Int64": "int64", "Float64": "float64"}
SCHEMA: Schema = {name: _ARROW[kind] for name, kind in _COLUMNS.items()}


def export_kept(table: pd.DataFrame, cache: FetchCache, out_dir: Path) -> None:
    """Copy each kept image's original bytes to its ``path``; remove files no longer kept.

    An existing file is kept only when its content hash is its name (a direct rerun repairs a
    file damaged or replaced since); the cached blob is checked before it is copied.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    keep = {
        Path(p).name: s
        for p, s in zip(
            table.loc[table.status == "ok", "path"], table.loc[table.status == "ok", "sha256"], strict=False
        )
    }
    for old in out_dir.iterdir():  # only files this stage names (<sha256>.<ext>) or left half-written
        if old.is_file() and old.name not in keep and (_KEPT_NAME.fullmatch(old.name) or is_temp_name(old.name)):
            old.unlink()
    for name, sha in keep.items():
        dest = out_dir / name
        src = cache.blob_path(sha)
        if dest.is_file() and dest.stat().st_size == src.stat().st_size and sha256_file(dest) == sha:
            continue
        if sha256_file(src) != sha:
            raise RuntimeError(
                f"download cache blob {src} does not hold the bytes of sha256 {sha}: the cache "
                f"{cache.root} is damaged; delete that folder and rerun the download stage "
                "(everything is fetched again)"
            )
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)


def write_table(table: pd.DataFrame, path: Path) -> None:
    """downloads.parquet with the declared :data:`SCHEMA`, atomically (a crash never leaves half a Parquet)."""
    write_parquet(table, SCHEMA, path)


def run_download(
    links: pd.DataFrame,
    cfg: DownloadConfig,
    faces: FacesConfig,
    out_dir: Path,
    cache_dir: Path,
    *,
    detector: Detector | None = None,
    after_persist: Hook | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Fetch, analyse, decide and export: the whole stage except reading params and writing Parquet."""
    missing = [c for c in ("post_id", "url") if c not in links.columns]
    if missing:
        raise ValueError(f"links table lacks column(s) {missing}; expected the crawl contract (post_id, url, source)")
    links = links.reset_index(drop=True)
    links["url"] = links["url"].map(lambda u: u if isinstance(u, str) else "")  # a missing URL is invalid_url
    with FetchCache(cache_dir) as cache:
        fetch_and_analyse(
            links["url"].tolist(), cfg, faces, cache, detector=detector, after_persist=after_persist, progress=progress
        )
        table = build_table(links, cfg, faces, cache, out_dir)
        export_kept(table, cache, out_dir)
    return table


def summary(table: pd.DataFrame) -> str:
    """One line per status with its count, most frequent first."""
    counts = table["status"].value_counts()
    return "\n".join(f"{status:>16} {n}" for status, n in counts.items()) + f"\n{'links':>16} {len(table)}"


def metrics(table: pd.DataFrame) -> dict:
    """metrics/download.json: links per status plus the yield, with stable numeric keys.

    ``yield`` counts distinct photos (by sha256, each decoded once): ``photos`` decoded,
    ``photos_with_face`` (at least one detection), ``faces_detected``, ``kept`` (status ok),
    ``kept_share`` of the decoded photos, and ``rejected`` links by reason (every status but
    ok, zero when absent, so DVC can compare runs key by key).
    """
    counts = {str(k): int(v) for k, v in table["status"].value_counts().sort_index().items()}
    first = table[table["sha256"].notna() & table["format"].notna()].drop_duplicates("sha256")
    n_faces = first["n_faces"].fillna(0).astype(int)
    photos = len(first)
    kept = counts.get("ok", 0)
    return {
        "links": len(table),
        "kept": kept,
        "status": counts,
        "yield": {
            "photos": photos,
            "photos_with_face": int((n_faces > 0).sum()),
            "faces_detected": int(n_faces.sum()),
            "kept": kept,
            "kept_share": round(kept / photos, 4) if photos else 0.0,
            "rejected": {s: counts.get(s, 0) for s in STATUSES if s != "ok"},
        },
    }
