"""The align stage's work: kept images -> aligned faces, reasons, near-duplicates, split.

Reads the ``ok`` rows of downloads.parquet and reuses their stored detections (never
detects again). Every candidate face (the largest per image, or all, per
``align.faces_per_image``) becomes one row of faces.parquet with ``status`` ``ok`` or the
first failed check, in this order:

    unreadable, size_mismatch, no_face            (per image: no candidate face to align)
    kps_outside_image, face_too_small, eyes_too_close, extreme_yaw,
    crop_outside_image, eyes_occluded, blurry     (per face, thresholds in align.*)
    near_duplicate                                (across the set, with duplicate_of)

Images are processed in parallel (``align.workers`` processes, results in input order), so
the output does not depend on the number of workers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facegen import attributes
from facegen.align import AlignConfig, align_face, crop_outside_fraction
from facegen.faces import Detection

REQUIRED_DOWNLOAD_COLUMNS = ("post_id", "status", "sha256", "path", "detections")
NO_FACE_INDEX = -1


@dataclass(frozen=True)
class ImageTask:
    """One kept image to align: where it is and what download found in it."""

    sha256: str
    post_id: str
    source: str  # absolute path of the raw image
    detections: str | None  # JSON list of Detection.to_record()
    width: int | None  # as recorded by download (None: not recorded)
    height: int | None


def face_id(sha256: str, index: int) -> str:
    """Stable id of the ``index``-th (largest first) face of an image; -1: the image itself."""
    return f"{sha256[:16]}_{'none' if index == NO_FACE_INDEX else f'{index:02d}'}"


def save_png(image: np.ndarray, path: Path) -> None:
    """Write an RGB PNG with fixed encoder settings (no timestamps: same pixels, same bytes)."""
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(image).save(tmp, format="PNG", compress_level=6)
    tmp.replace(path)


def _base_row(task: ImageTask, index: int, status: str) -> dict[str, Any]:
    return {"face_id": face_id(task.sha256, index), "sha256": task.sha256, "post_id": task.post_id,
            "face_index": index, "status": status}  # fmt: skip


def _detections(task: ImageTask) -> list[Detection]:
    if task.detections is None:
        return []
    records = json.loads(task.detections)
    if not isinstance(records, list):
        raise ValueError(f"detections of image {task.sha256} is not a JSON list: {task.detections[:80]!r}")
    return [Detection.from_record(r) for r in records]


def _face_status(det: Detection, row: dict[str, Any], outside: float, image_size: tuple[int, int],
                 cfg: AlignConfig) -> str:  # fmt: skip
    """The first failed per-face check, or ``ok``."""
    width, height = image_size
    checks = (
        ("kps_outside_image", not attributes.keypoints_inside(det.kps, width, height)),
        ("face_too_small", attributes.face_min_side(det.bbox) < cfg.min_face_size),
        ("eyes_too_close", row["eye_distance"] < cfg.min_eye_distance),
        ("extreme_yaw", abs(row["yaw"]) > cfg.max_abs_yaw),
        ("crop_outside_image", outside > cfg.max_crop_outside),
        ("eyes_occluded", row["eye_brightness"] < cfg.min_eye_brightness),
        ("blurry", row["sharpness"] < cfg.min_sharpness),
    )
    return next((reason for reason, failed in checks if failed), "ok")


def measure_face(image: np.ndarray, gray: np.ndarray, det: Detection, cfg: AlignConfig) -> tuple[dict[str, Any], Any]:
    """Attributes of one detected face and its alignment (``Aligned``), before any check."""
    from facegen.quality import laplacian_variance

    aligned = align_face(image, np.asarray(det.kps), cfg, feather=False)
    row = {
        "det_score": det.score,
        "bbox": [float(v) for v in det.bbox],
        "kps": [[float(x), float(y)] for x, y in det.kps],
        "roll": aligned.roll,
        "yaw": attributes.yaw(det.kps, det.pose),
        "eye_distance": attributes.eye_distance(det.kps),
        "eye_brightness": attributes.eye_brightness(gray, det.kps, cfg.eye_patch),
        "sharpness": laplacian_variance(aligned.image),  # before the feather mask adds an edge
        "face_area": attributes.face_area(det.bbox),
        "gender": det.gender,
        "age": det.age,
    }
    return row, aligned


def process_image(task: ImageTask, cfg: AlignConfig, faces_dir: str) -> list[dict[str, Any]]:
    """Rows for every candidate face of one image; writes the PNGs of faces passing all checks.

    Runs in a worker process: everything it needs comes in its arguments.
    """
    import cv2

    from facegen.dedupe import phash_hex
    from facegen.imageio import read_image

    try:
        image = read_image(task.source)  # decoded exactly as download decoded it (EXIF applied)
    except (OSError, ValueError) as exc:  # missing, truncated or undecodable file (ImageRejected)
        return [{**_base_row(task, NO_FACE_INDEX, "unreadable"), "error": f"{type(exc).__name__}: {exc}"}]
    height, width = image.shape[:2]
    if task.width is not None and task.height is not None and (width, height) != (task.width, task.height):
        error = f"image is {width}x{height} but download recorded {task.width}x{task.height}: detections do not fit"
        return [{**_base_row(task, NO_FACE_INDEX, "size_mismatch"), "error": error}]
    dets = _detections(task)
    if not dets:
        return [_base_row(task, NO_FACE_INDEX, "no_face")]
    if cfg.faces_per_image == "largest":
        dets = dets[:1]
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rows = []
    for index, det in enumerate(dets):
        measured, aligned = measure_face(image, gray, det, cfg)
        outside = crop_outside_fraction(aligned.matrix, cfg.size, width, height)
        row = {**_base_row(task, index, "ok"), **measured}
        row["status"] = _face_status(det, row, outside, (width, height), cfg)
        if row["status"] == "ok":
            face = align_face(image, np.asarray(det.kps), cfg).image if cfg.feather else aligned.image
            save_png(face, Path(faces_dir) / f"{row['face_id']}.png")
            row["phash"] = phash_hex(face, cfg.dedupe_hash_size)
        rows.append(row)
    return rows


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one image per process: no nested thread pools on a small machine


def _call(args: tuple[ImageTask, AlignConfig, str]) -> list[dict[str, Any]]:
    return process_image(*args)


def run_tasks(tasks: list[ImageTask], cfg: AlignConfig, faces_dir: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Process every image (in ``cfg.workers`` processes) and return all rows in task order."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    jobs = [(task, cfg, str(faces_dir)) for task in tasks]
    bar = tqdm(total=len(jobs), desc="align", unit="img", disable=not progress)
    rows: list[dict[str, Any]] = []

    def collect(results: Iterator[list[dict[str, Any]]]) -> None:
        for result in results:
            rows.extend(result)
            bar.update()

    if cfg.workers == 1 or len(jobs) <= 1:
        collect(map(_call, jobs))
    else:
        import multiprocessing

        # spawn, not fork: a parent holding onnxruntime/OpenCV thread pools (a notebook, the
        # benchmark) deadlocks forked children
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=context, initializer=_worker_init) as pool:
            collect(pool.map(_call, jobs, chunksize=max(1, min(16, len(jobs) // (4 * cfg.workers)))))
    bar.close()
    return rows


def _optional_int(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def tasks_from_downloads(downloads: pd.DataFrame, root: Path) -> tuple[list[ImageTask], list[list[str]]]:
    """The kept images (one task per distinct sha256, sorted) and the sets of posts sharing an image.

    Every row with a sha256 counts for the links (a ``duplicate`` row is the same file in
    another post), so the split can keep those posts together.
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
    tasks = []
    for row in kept.itertuples(index=False):
        if not isinstance(row.path, str) or not row.path:
            raise ValueError(f"downloads row of post {row.post_id} has status ok but no image path (sha256 {row.sha256})")
        tasks.append(
            ImageTask(
                sha256=str(row.sha256),
                post_id=str(row.post_id),
                source=str((root / row.path).resolve()),
                detections=row.detections if isinstance(row.detections, str) else None,
                width=_optional_int(getattr(row, "width", None)),
                height=_optional_int(getattr(row, "height", None)),
            )
        )
    return tasks, links


def _schema() -> Any:
    import pyarrow as pa

    floats = pa.list_(pa.float64())
    return pa.schema([
        ("face_id", pa.string()), ("path", pa.string()), ("sha256", pa.string()), ("post_id", pa.string()),
        ("face_index", pa.int32()), ("status", pa.string()), ("split", pa.string()), ("det_score", pa.float64()),
        ("bbox", floats), ("kps", pa.list_(floats)), ("roll", pa.float64()), ("yaw", pa.float64()),
        ("eye_distance", pa.float64()), ("eye_brightness", pa.float64()), ("sharpness", pa.float64()),
        ("face_area", pa.float64()), ("gender", pa.int8()), ("age", pa.int16()), ("phash", pa.string()),
        ("duplicate_of", pa.string()), ("error", pa.string()),
    ])  # fmt: skip


COLUMNS = tuple(_schema().names)


def build_faceset(
    downloads: pd.DataFrame, root: Path, faces_dir: Path, cfg: AlignConfig, progress: bool = True
) -> pd.DataFrame:
    """Align every candidate face, remove near-duplicates, split by post; one row per candidate.

    Writes the accepted faces to ``faces_dir/<face_id>.png`` and deletes any other PNG
    there (near-duplicates, faces of an earlier run), so the folder holds exactly the ok faces.
    """
    from facegen.dedupe import near_duplicate_groups
    from facegen.split import assign_split

    faces_dir.mkdir(parents=True, exist_ok=True)
    tasks, links = tasks_from_downloads(downloads, root)
    rows = run_tasks(tasks, cfg, faces_dir, progress)
    table = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values("face_id", kind="stable").reset_index(drop=True)
    table = table.astype({"status": object, "duplicate_of": object, "split": object, "path": object})

    ok = table["status"] == "ok"
    removed = near_duplicate_groups(
        table.loc[ok, "face_id"].tolist(), table.loc[ok, "phash"].tolist(), table.loc[ok, "face_area"].tolist(),
        cfg.dedupe_max_distance,
    )
    post_of = dict(zip(table["face_id"], table["post_id"]))
    is_dup = table["face_id"].isin(list(removed))
    table.loc[is_dup, "status"] = "near_duplicate"
    table.loc[is_dup, "duplicate_of"] = table.loc[is_dup, "face_id"].map(removed)
    links = links + [[post_of[dup], post_of[keep]] for dup, keep in removed.items()]

    ok = table["status"] == "ok"
    split = assign_split(dict(zip(table.loc[ok, "face_id"], table.loc[ok, "post_id"])), links, cfg.test_fraction, cfg.seed)
    table.loc[ok, "split"] = table.loc[ok, "face_id"].map(split)
    rel = faces_dir.resolve().relative_to(root.resolve()) if faces_dir.resolve().is_relative_to(root.resolve()) else faces_dir
    table.loc[ok, "path"] = [(Path(rel) / f"{fid}.png").as_posix() for fid in table.loc[ok, "face_id"]]
    keep_files = {f"{fid}.png" for fid in table.loc[ok, "face_id"]}
    for png in faces_dir.glob("*.png"):
        if png.name not in keep_files:
            png.unlink()
    return table


def write_table(table: pd.DataFrame, path: Path) -> None:
    """faces.parquet with a fixed schema (same rows, same bytes; typed even when empty)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    clean = table.astype(object).where(table.notna(), None)
    arrow = pa.Table.from_pandas(clean[list(COLUMNS)], schema=_schema(), preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(arrow, tmp)
    tmp.replace(path)


def summary(table: pd.DataFrame) -> dict[str, Any]:
    """Counts per status and split, for metrics/align.json."""
    return {
        "candidates": int(len(table)),
        "ok": int((table["status"] == "ok").sum()),
        "train": int((table["split"] == "train").sum()),
        "test": int((table["split"] == "test").sum()),
        "status": {k: int(v) for k, v in sorted(table["status"].value_counts().items())},
    }


def _tile(row: pd.Series, sources: dict[str, str], root: Path, cfg: AlignConfig) -> np.ndarray:
    """The face as the dataset has it (ok), re-aligned from its source (rejected), or the source image."""
    from facegen.imageio import read_image

    if row["status"] == "ok":
        return read_image(root / row["path"])
    try:
        image = read_image(sources[row["sha256"]])
    except (OSError, ValueError):
        return np.full((cfg.size, cfg.size, 3), 128, np.uint8)
    if int(row["face_index"]) == NO_FACE_INDEX:
        return image
    return align_face(image, np.array([list(p) for p in row["kps"]], dtype=np.float64), cfg).image


def write_preview(table: pd.DataFrame, downloads: pd.DataFrame, root: Path, path: Path, cfg: AlignConfig) -> Path:
    """data/faces_preview.png: accepted faces (captioned with split) above rejected ones (with reasons)."""
    from facegen.contact_sheet import caption, pick_accepted, pick_rejected, save_preview

    sources = {t.sha256: t.source for t in tasks_from_downloads(downloads, root)[0]}
    accepted = pick_accepted(table, cfg.preview_max)
    rejected = pick_rejected(table, cfg.preview_max)
    n_ok = int((table["status"] == "ok").sum())
    return save_preview(
        [(_tile(r, sources, root, cfg), f"{r['split']} {r['face_id'][:6]}") for _, r in accepted.iterrows()],
        [(_tile(r, sources, root, cfg), caption(r)) for _, r in rejected.iterrows()],
        path,
        accepted_title=f"accepted: {len(accepted)} of {n_ok} faces",
        rejected_title=f"rejected: {len(rejected)} of {len(table) - n_ok} candidates",
    )


def run_align(
    downloads_path: Path,
    root: Path,
    faces_dir: Path,
    table_path: Path,
    preview_path: Path,
    metrics_path: Path,
    cfg: AlignConfig,
    progress: bool = True,
) -> pd.DataFrame:
    """The whole stage: faces/*.png, faces.parquet, the preview, counts and the resolved config."""
    from facegen.config import save_config

    if not downloads_path.is_file():
        raise FileNotFoundError(f"{downloads_path} not found: run the download stage first (dvc repro download)")
    downloads = pd.read_parquet(downloads_path)
    table = build_faceset(downloads, root, faces_dir, cfg, progress)
    write_table(table, table_path)
    write_preview(table, downloads, root, preview_path, cfg)
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary(table), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    save_config(cfg, table_path.with_name(table_path.stem + "_config.json"))
    return table
