"""The face dataset of the align stage: candidates -> near-duplicates -> split -> outputs, and the yield.

Reads the ``ok`` rows of downloads.parquet and reuses their stored detections (never
detects again). Every candidate face (the largest per image, or all, per
``align.faces_per_image``) becomes one row of faces.parquet with ``status`` ``ok`` or the
reason it was rejected (facegen.align.candidates lists the per-image and per-face checks; here
``near_duplicate`` is added across the set). Images are processed in parallel with results
in input order, so the output does not depend on the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facegen.align.candidates import NO_FACE_INDEX, STATUSES, ImageTask, run_tasks
from facegen.align.curation import MANUAL, Curation
from facegen.align.geometry import AlignConfig, align_face
from facegen.common.atomic import write_json
from facegen.common.images import sha256_file
from facegen.common.tables import Schema, write_parquet

REQUIRED_DOWNLOAD_COLUMNS = ("post_id", "status", "sha256", "path", "detections")


def _optional_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def tasks_from_downloads(
    downloads: pd.DataFrame, root: Path, restored: frozenset[str] = frozenset()
) -> tuple[list[ImageTask], list[list[str]]]:
    """The kept images (one task per distinct sha256, sorted) and the sets of posts sharing an image.

    Every row with a sha256 counts for the links (a ``duplicate`` row is the same file in
    another post), so the split can keep those posts together. ``restored``: face ids that
    curation.csv restores, handed to their image's task.
    """
    missing = [c for c in REQUIRED_DOWNLOAD_COLUMNS if c not in downloads.columns]
    if missing:
        raise ValueError(
            f"downloads table lacks column(s) {missing}: align needs {list(REQUIRED_DOWNLOAD_COLUMNS)} "
            "(re-run the download stage)"
        )
    hashed = downloads[downloads["sha256"].notna()]
    links = [sorted(set(g)) for _, g in hashed.groupby("sha256", sort=True)["post_id"] if g.nunique() > 1]
    sort_cols = ["sha256", "post_id"] + (["url"] if "url" in downloads.columns else [])
    kept = downloads[downloads["status"] == "ok"].sort_values(sort_cols, kind="stable")
    kept = kept.drop_duplicates("sha256", keep="first")
    by_image: dict[str, list[str]] = {}  # a face id starts with its image's sha256[:16]
    for face in restored:
        by_image.setdefault(face.split("_", 1)[0], []).append(face)
    tasks = []
    for row in kept.itertuples(index=False):
        if not isinstance(row.path, str) or not row.path:
            raise ValueError(
                f"downloads row of post {row.post_id} has status ok but no image path (sha256 {row.sha256})"
            )
        tasks.append(
            ImageTask(
                sha256=str(row.sha256),
                post_id=str(row.post_id),
                source=str((root / row.path).resolve()),
                detections=row.detections if isinstance(row.detections, str) else None,
                width=_optional_int(getattr(row, "width", None)),
                height=_optional_int(getattr(row, "height", None)),
                restored=tuple(sorted(by_image.get(str(row.sha256)[:16], ()))),
            )
        )
    return tasks, links


def check_sources(tasks: list[ImageTask]) -> None:
    """Every raw image listed ``ok`` is on disk and still holds its bytes (it is named by its sha256).

    A missing or altered file is the download stage's output damaged since it ran, not a bad
    photo: align stops, naming the files and the fix, rather than recording faces ``unreadable``.
    """
    bad = []
    for task in tasks:
        try:
            if sha256_file(task.source) != task.sha256:
                bad.append(f"{task.source} (content changed since download)")
        except FileNotFoundError:
            bad.append(f"{task.source} (missing)")
        except OSError as exc:
            bad.append(f"{task.source} (unreadable: {exc.strerror or exc})")
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise FileNotFoundError(
            f"{len(bad)} raw image(s) listed ok in downloads.parquet are missing or damaged: "
            f"{'; '.join(bad[:5])}{more}. Rerun the download stage to restore them "
            "(`python stages/download.py`, or `dvc repro -f download`), then align"
        )


# faces.parquet columns and their Arrow types (facegen.common.tables)
SCHEMA: Schema = {
    "face_id": "string",
    "path": "string",
    "sha256": "string",
    "post_id": "string",
    "face_index": "int32",
    "status": "string",
    "split": "string",
    "det_score": "float64",
    "bbox": "list<float64>",
    "kps": "list<list<float64>>",
    "roll": "float64",
    "yaw": "float64",
    "eye_distance": "float64",
    "eye_brightness": "float64",
    "sharpness": "float64",
    "face_area": "float64",
    "crop_outside": "float64",
    "gender": "int8",
    "age": "int16",
    "phash": "string",
    "duplicate_of": "string",
    "error": "string",
    # facegen.faces.appearance: measured on the stored face (ok rows), and the face model's (null without it)
    "brightness": "float64",
    "top_brightness": "float64",
    "background_brightness": "float64",
    "colourfulness": "float64",
    "pitch": "float64",
    "eyes_open": "float64",
    "mouth_open": "float64",
}
COLUMNS = tuple(SCHEMA)


def build_faceset(
    downloads: pd.DataFrame,
    root: Path,
    faces_dir: Path,
    cfg: AlignConfig,
    *,
    progress: bool = True,
    curation: Curation | None = None,
) -> pd.DataFrame:
    """Align every candidate face, apply curation.csv, remove near-duplicates, split by post;
    one row per candidate.

    Writes the accepted faces to ``faces_dir/<face_id>.png`` and deletes any other PNG
    there (near-duplicates, faces of an earlier run), so the folder holds exactly the ok faces.
    A face rejected in ``curation`` gets the status ``manual`` before near-duplicates are
    grouped; a restored one passes the checks and is never marked a near-duplicate.
    """
    from facegen.align.dedupe import near_duplicate_groups
    from facegen.align.split import assign_split

    faces_dir.mkdir(parents=True, exist_ok=True)
    curation = curation or Curation()
    tasks, links = tasks_from_downloads(downloads, root, curation.restored)
    check_sources(tasks)
    rows = run_tasks(tasks, cfg, faces_dir, progress)
    table = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("face_id", kind="stable").reset_index(drop=True)
    table = table.astype({"status": object, "duplicate_of": object, "split": object, "path": object})

    table.loc[table["face_id"].isin(list(curation.rejected)), "status"] = MANUAL
    ok = table["status"] == "ok"
    removed = near_duplicate_groups(
        table.loc[ok, "face_id"].tolist(),
        table.loc[ok, "phash"].tolist(),
        table.loc[ok, "face_area"].tolist(),
        cfg.dedupe_max_distance,
    )
    removed = {dup: keep for dup, keep in removed.items() if dup not in curation.restored}
    post_of = dict(zip(table["face_id"], table["post_id"], strict=False))
    is_dup = table["face_id"].isin(list(removed))
    table.loc[is_dup, "status"] = "near_duplicate"
    table.loc[is_dup, "duplicate_of"] = table.loc[is_dup, "face_id"].map(removed)
    links = links + [[post_of[dup], post_of[keep]] for dup, keep in removed.items()]

    ok = table["status"] == "ok"
    split = assign_split(
        dict(zip(table.loc[ok, "face_id"], table.loc[ok, "post_id"], strict=False)), links, cfg.test_fraction, cfg.seed
    )
    table.loc[ok, "split"] = table.loc[ok, "face_id"].map(split)
    rel = (
        faces_dir.resolve().relative_to(root.resolve())
        if faces_dir.resolve().is_relative_to(root.resolve())
        else faces_dir
    )
    table.loc[ok, "path"] = [(Path(rel) / f"{fid}.png").as_posix() for fid in table.loc[ok, "face_id"]]
    keep_files = {f"{fid}.png" for fid in table.loc[ok, "face_id"]}
    for png in faces_dir.glob("*.png"):
        if png.name not in keep_files:
            png.unlink()
    return table


def write_table(table: pd.DataFrame, path: Path) -> None:
    """faces.parquet with the declared :data:`SCHEMA` (same rows, same bytes; typed even when empty)."""
    write_parquet(table.astype(object).where(table.notna(), None), SCHEMA, path)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Counts per status and split plus the yield, for metrics/align.json (stable numeric keys).

    ``yield``: ``photos`` aligned, ``photos_with_face`` (a detection to align),
    ``photos_with_accepted_face``, ``faces_accepted``, ``faces_accepted_per_photo``,
    ``accepted_outside`` (accepted faces whose crop reaches past the photo, filled) and their
    mean ``accepted_outside_mean`` fraction, and ``rejected`` candidates by reason (every
    reason, zero when absent).
    """
    ok = table["status"] == "ok"
    counts = {k: int(v) for k, v in sorted(table["status"].value_counts().items())}
    photos = int(table["sha256"].nunique())
    outside = pd.to_numeric(table.loc[ok, "crop_outside"], errors="coerce").fillna(0.0)
    return {
        "candidates": len(table),
        "ok": int(ok.sum()),
        "train": int((table["split"] == "train").sum()),
        "test": int((table["split"] == "test").sum()),
        "status": counts,
        "yield": {
            "photos": photos,
            "photos_with_face": int(table.loc[table["face_index"] != NO_FACE_INDEX, "sha256"].nunique()),
            "photos_with_accepted_face": int(table.loc[ok, "sha256"].nunique()),
            "faces_accepted": int(ok.sum()),
            "faces_accepted_per_photo": round(int(ok.sum()) / photos, 4) if photos else 0.0,
            "accepted_outside": int((outside > 0).sum()),
            "accepted_outside_mean": round(float(outside.mean()), 4) if len(outside) else 0.0,
            "rejected": {s: counts.get(s, 0) for s in STATUSES if s != "ok"},
        },
    }


def face_tile(row: pd.Series, sources: dict[str, str], root: Path, cfg: AlignConfig) -> np.ndarray:
    """The face as the dataset has it (ok), re-aligned from its source (rejected), or the source image."""
    from facegen.common.images import read_image

    if row["status"] == "ok":
        return read_image(root / row["path"])
    try:
        image = read_image(sources[row["sha256"]])
    except (OSError, ValueError):
        return np.full((cfg.size, cfg.size, 3), 128, np.uint8)
    if int(row["face_index"]) == NO_FACE_INDEX or not row["eye_distance"] > 0:
        return image  # no face, or coincident eye keypoints: nothing to align (eyes_too_close)
    return align_face(image, np.array([list(p) for p in row["kps"]], dtype=np.float64), cfg).image


def write_preview(table: pd.DataFrame, downloads: pd.DataFrame, root: Path, *, path: Path, cfg: AlignConfig) -> Path:
    """data/faces_preview.png: accepted faces (captioned with split) above rejected ones (with reasons)."""
    from facegen.align.preview import (
        accepted_caption,
        caption,
        pick_accepted,
        pick_rejected,
        save_preview,
        yield_titles,
    )

    sources = {t.sha256: t.source for t in tasks_from_downloads(downloads, root)[0]}
    accepted = pick_accepted(table, cfg.preview_max)
    rejected = pick_rejected(table, cfg.preview_max)
    top, bottom = yield_titles(summary(table), len(accepted), len(rejected))
    return save_preview(
        [(face_tile(r, sources, root, cfg), accepted_caption(r)) for _, r in accepted.iterrows()],
        [(face_tile(r, sources, root, cfg), caption(r)) for _, r in rejected.iterrows()],
        path,
        accepted_title=top,
        rejected_title=bottom,
    )


@dataclass(frozen=True)
class AlignOutputs:
    """Where the align stage writes."""

    faces_dir: Path  # aligned PNGs of the accepted faces
    table: Path  # faces.parquet (and <stem>_config.json beside it)
    preview: Path  # the contact sheet
    metrics: Path  # metrics/align.json


def run_align(
    downloads_path: Path,
    root: Path,
    out: AlignOutputs,
    cfg: AlignConfig,
    *,
    curation: Curation | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The whole stage: faces/*.png, faces.parquet, the preview, counts (with the ``manual``
    decisions of ``curation``) and the resolved config."""
    from facegen.align.curation import counts
    from facegen.common.config import save_config

    if not downloads_path.is_file():
        raise FileNotFoundError(f"{downloads_path} not found: run the download stage first (dvc repro download)")
    downloads = pd.read_parquet(downloads_path)
    curation = curation or Curation()
    table = build_faceset(downloads, root, out.faces_dir, cfg, progress=progress, curation=curation)
    write_table(table, out.table)
    write_preview(table, downloads, root, path=out.preview, cfg=cfg)
    write_json(out.metrics, {**summary(table), "manual": counts(table, curation)})
    save_config(cfg, out.table.with_name(out.table.stem + "_config.json"))
    return table
