"""downloads.parquet: one row per link from the cache alone, the kept files, the summary and metrics."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd

from facegen.common.atomic import atomic_path, is_temp_name
from facegen.common.images import sha256_file
from facegen.common.tables import Schema, write_parquet
from facegen.download.analysis import STATUSES, decide, face_fraction
from facegen.download.cache import Analysis, FetchCache, FetchRecord
from facegen.download.config import DownloadConfig, analysis_key
from facegen.faces.detect import FacesConfig

_KEPT_NAME = re.compile(r"[0-9a-f]{64}\.[a-z]+")


def build_table(
    links: pd.DataFrame, cfg: DownloadConfig, faces: FacesConfig, cache: FetchCache, *, out_dir: Path
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
        "face_area": face_fraction(dets[0], int(measured.width), int(measured.height))  # type: ignore[arg-type]
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
