"""Benchmark the yield: what the download and align stages keep of all 1,801 shared photos, before/after.

Every photo of ../shared/faces/{wild,portraits} is served by a local HTTP server (``--latency``
s per request) and run through the real download stage (``run_download``: fetch, decode,
SCRFD, sharpness, decide) and then the real align stage (``build_faceset``), twice, back to
back on the same machine:

- ``before``: one detector pass on the photo (``faces.pad: 0``), ``align.max_crop_outside: 0.1``,
  face sharpness at ``download.sharpness_size: 256`` against ``blur_threshold: 60`` (the settings
  before issue 13);
- ``after``: the params.yaml defaults (padded second pass, FFHQ-style fill, the chosen
  ``max_crop_outside``).

Reported per setting: links kept and statuses (download), faces accepted and rejections by
reason (align), per folder; end-to-end download links/s; detector ms per image and the share
of images that needed the padded pass; accepted faces at several ``max_crop_outside`` values
(the measurement the default was chosen from); whether every wild photo accepted before is
still accepted; the deliberately blurred wild photo's download status; the largest face's
sharpness at several ``download.sharpness_size`` values (what ``blur_threshold`` was chosen
from, after only); false positives on non-face images (synthetic patterns and face-free crops
of the wild photos) for both detector settings.

Writes benchmarks/results/yield.json. Run: ``nice -n 10 .venv/bin/python benchmarks/yield.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the local test server

from localserver import LocalServer, Route  # noqa: E402

from facegen.align.geometry import AlignConfig  # noqa: E402
from facegen.align.stage import build_faceset  # noqa: E402
from facegen.common.config import load_section  # noqa: E402
from facegen.common.images import read_image  # noqa: E402
from facegen.download.stage import DownloadConfig, run_download  # noqa: E402
from facegen.faces.detect import FaceDetector, FacesConfig  # noqa: E402

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
BLURRED = "insightface__inspireface_bulk_blur.jpg"  # wild/: deliberately blurred (SOURCES.md), must stay out


class Timed:
    """Wraps a FaceDetector and adds up the seconds spent in detect()."""

    def __init__(self, inner: FaceDetector) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def detect(self, bgr: np.ndarray) -> list:
        t = time.perf_counter()
        out = self.inner.detect(bgr)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


def photos(shared: Path) -> list[tuple[str, Path]]:
    return [(folder, p) for folder in ("wild", "portraits") for p in sorted((shared / "faces" / folder).iterdir())]


def non_face_images(shared: Path, detector: FaceDetector) -> list[np.ndarray]:
    """Synthetic patterns and crops of wild photos that hold no detected face (BGR)."""
    rng = np.random.default_rng(0)
    images: list[np.ndarray] = []
    for size in ((300, 400), (640, 480), (150, 150)):
        h, w = size
        y = np.linspace(0, 1, h)[:, None, None]
        images.append(
            ((np.array([90, 150, 230]) * (1 - y) + np.array([200, 220, 255]) * y) * np.ones((1, w, 1))).astype(np.uint8)
        )
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        yy, xx = np.mgrid[:h, :w]
        images.append(np.repeat((((yy // 16 + xx // 16) % 2) * 255).astype(np.uint8)[:, :, None], 3, axis=2))
        images.append(np.full((h, w, 3), 127, np.uint8))
    for p in sorted((shared / "faces" / "wild").iterdir()):
        bgr = np.ascontiguousarray(read_image(p)[:, :, ::-1])
        h, w = bgr.shape[:2]
        boxes = [d.bbox for d in replace_detector(detector, 0.0).detect(bgr)] + [d.bbox for d in detector.detect(bgr)]
        # the four quarters and the half-strips without any part of a face box (with a margin)
        for x1, y1, x2, y2 in (
            (0, 0, w // 2, h // 2),
            (w // 2, 0, w, h // 2),
            (0, h // 2, w // 2, h),
            (w // 2, h // 2, w, h),
            (0, 0, w // 3, h),
            (2 * w // 3, 0, w, h),
            (0, 2 * h // 3, w, h),
        ):
            if min(x2 - x1, y2 - y1) < 64:
                continue
            clear = all(
                bx2 + 0.2 * (bx2 - bx1) < x1
                or bx1 - 0.2 * (bx2 - bx1) > x2
                or by2 + 0.2 * (by2 - by1) < y1
                or by1 - 0.2 * (by2 - by1) > y2
                for bx1, by1, bx2, by2 in boxes
            )
            if clear:
                images.append(np.ascontiguousarray(bgr[y1:y2, x1:x2]))
    return images


_DETECTORS: dict[tuple, FaceDetector] = {}


def replace_detector(detector: FaceDetector, pad: float) -> FaceDetector:
    key = (detector.cfg.model, pad)
    if key not in _DETECTORS:
        _DETECTORS[key] = FaceDetector(replace(detector.cfg, pad=pad))
    return _DETECTORS[key]


SWEEP_SIZES = (0, 48, 64, 80, 96, 128, 256)  # download.sharpness_size candidates (0: native)


def sharpness_by_size(table: pd.DataFrame) -> dict:
    """The largest face's sharpness at each candidate ``sharpness_size``: the blurred photo, the other
    wild faces and the portraits (what ``blur_threshold`` must separate), from the stored detections."""
    from facegen.faces.quality import region_sharpness

    scores: dict[int, dict[str, list[float]]] = {s: {"blurred": [], "wild": [], "portraits": []} for s in SWEEP_SIZES}
    for _, row in table[table["n_faces"].fillna(0) > 0].iterrows():
        image = read_image(row["source"])
        bbox = json.loads(row["detections"])[0]["bbox"]
        group = "blurred" if row["source"].endswith(BLURRED) else row["folder"]
        for size in SWEEP_SIZES:
            scores[size][group].append(region_sharpness(image, bbox, size))
    out = {}
    for size, s in scores.items():
        b, w, p = s["blurred"][0] if s["blurred"] else None, np.array(s["wild"]), np.array(s["portraits"])
        out[str(size)] = {
            "blurred": round(b, 1) if b is not None else None,
            "wild_min": round(float(w.min()), 1),
            "wild_p5": round(float(np.percentile(w, 5)), 1),
            "portraits_p1_p5_p50": [round(float(np.percentile(p, q)), 1) for q in (1, 5, 50)],
            "portraits_at_or_below_blurred": int((p <= b).sum()) if b is not None else None,
        }
    return out


def run_setting(
    items: list[tuple[str, Path]],
    faces: FacesConfig,
    align: AlignConfig,
    cfg: DownloadConfig,
    latency: float,
    sweep: bool = False,
) -> dict:
    """Download then align every photo; counts, speeds, and the ok face ids per photo."""
    routes = {f"/{i:05d}{p.suffix.lower()}": Route(p.read_bytes()) for i, (_, p) in enumerate(items)}
    folder_of = {}
    with LocalServer(routes, latency_s=latency) as srv, tempfile.TemporaryDirectory() as tmp:
        urls = [srv.url(path) for path in routes]
        folder_of = dict(zip(urls, (f for f, _ in items), strict=False))
        links = pd.DataFrame(
            {
                "post_id": [f"M.{1700000000 + i}.A.{i:04X}" for i in range(len(urls))],
                "url": urls,
                "source": [str(p) for _, p in items],
            }
        )
        cfg = replace(cfg, allow_private_hosts=(srv.url("").split("//")[1],))  # the local server, past the SSRF guard
        timed = Timed(FaceDetector(faces))
        timed.inner.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up
        timed.inner.images = timed.inner.padded = 0
        root = Path(tmp)
        t = time.perf_counter()
        table = run_download(
            links, cfg, faces, root / "data" / "raw", cache_dir=root / "cache", detector=timed, progress=False
        )
        wall = time.perf_counter() - t
        table["folder"] = table["url"].map(folder_of)
        open_ = replace(align, max_crop_outside=1.0)
        t = time.perf_counter()
        faces_open = build_faceset(table, root, root / "data" / "faces_open", open_, progress=False)
        faces_tab = build_faceset(table, root, root / "data" / "faces", align, progress=False)
        align_s = time.perf_counter() - t
    sha_folder = dict(zip(table["sha256"], table["folder"], strict=False))
    sha_source = dict(zip(table["sha256"], table["source"], strict=False))
    out: dict = {
        "faces": {"pad": faces.pad, "pad_always": faces.pad_always, "det_size": faces.det_size},
        "sharpness": {"sharpness_size": cfg.sharpness_size, "blur_threshold": cfg.blur_threshold},
        "align": {"max_crop_outside": align.max_crop_outside},
        "download": {
            "links": len(table),
            "seconds": round(wall, 2),
            "links_per_s": round(len(table) / wall, 2),
            "detect_ms_per_image": round(1000 * timed.seconds / max(1, timed.calls), 1),
            "images_detected": timed.calls,
            "padded_pass_share": round(timed.inner.padded / max(1, timed.inner.images), 3),
        },
        "align_seconds_two_runs": round(align_s, 2),
        "by_folder": {},
    }
    for folder in ("wild", "portraits"):
        t = table[table["folder"] == folder]
        f = faces_tab[faces_tab["sha256"].map(sha_folder) == folder]
        o = faces_open[faces_open["sha256"].map(sha_folder) == folder]
        ok = f[f["status"] == "ok"]
        out["by_folder"][folder] = {
            "photos": len(t),
            "with_face": int((t["n_faces"].fillna(0) > 0).sum()),
            "kept": int((t["status"] == "ok").sum()),
            "download_status": {k: int(v) for k, v in sorted(t["status"].value_counts().items())},
            "faces_accepted": len(ok),
            "accepted_per_photo": round(len(ok) / max(1, len(t)), 3),
            "align_status": {k: int(v) for k, v in sorted(f["status"].value_counts().items())},
            "accepted_outside_fraction_mean": round(float(ok["crop_outside"].mean()), 4) if len(ok) else None,
            "accepted_with_outside": int((ok["crop_outside"] > 0).sum()),
            "level_eyes": int(sum(abs(k[1][1] - k[0][1]) < 1.0 for k in _aligned_kps(ok, align))),
            "accepted_at_max_crop_outside": {
                str(th): int(((o["status"] == "ok") & (o["crop_outside"] <= th)).sum()) for th in THRESHOLDS
            },
        }
    blurred = table[
        table["source"].str.endswith(BLURRED)
    ]  # the deliberately blurred wild photo (absent in a --limit subset)
    out["blurred_photo"] = (
        {
            "file": BLURRED,
            "status": blurred["status"].iloc[0],
            "sharpness": round(float(blurred["sharpness"].iloc[0]), 1),
        }
        if len(blurred)
        else None
    )
    if sweep:
        out["sharpness_by_size"] = sharpness_by_size(table)
    out["_ok_sources"] = sorted({sha_source[s] for s in faces_tab.loc[faces_tab["status"] == "ok", "sha256"]})
    return out


def _aligned_kps(ok: pd.DataFrame, cfg: AlignConfig) -> list[np.ndarray]:
    """The eye keypoints of each accepted face, mapped into the aligned crop."""
    from facegen.align.geometry import crop_geometry

    out = []
    for kps in ok["kps"]:
        pts = np.array([list(p) for p in kps], dtype=np.float64)
        center, side, angle, _ = crop_geometry(pts, cfg)
        a = np.radians(-angle)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        out.append((pts - center) @ rot.T * (cfg.size / side))
    return out


def plot(results: dict, path: Path) -> None:
    """yield.png: accepted faces per max_crop_outside (after), and before/after bars per folder."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for folder in ("portraits", "wild"):
        at = results["after"]["by_folder"][folder]["accepted_at_max_crop_outside"]
        left.plot([float(k) for k in at], list(at.values()), marker="o", label=folder)
    left.axvline(results["after"]["align"]["max_crop_outside"], color="gray", linestyle="--", label="chosen")
    target = 0.85 * results["after"]["by_folder"]["portraits"]["photos"]
    left.axhline(target, color="tab:red", linestyle=":", label="85% of portraits (issue 13)")
    left.set(xlabel="align.max_crop_outside", ylabel="faces accepted", title="accepted vs crop past the edge")
    left.legend()
    labels, x = [], 0
    for folder in ("portraits", "wild"):
        for key in ("with_face", "kept", "faces_accepted"):
            b = results["before"]["by_folder"][folder][key]
            a = results["after"]["by_folder"][folder][key]
            right.bar([x - 0.2, x + 0.2], [b, a], width=0.4, color=["tab:gray", "tab:blue"])
            labels.append(f"{folder}\n{key}")
            x += 1
    right.set_xticks(range(len(labels)), labels, fontsize=7)
    right.set(title="before (gray) / after (blue)", ylabel="photos or faces")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.environ.get("FACEGEN_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=0, help="every n-th photo only (0: all), for a quick look")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "yield.json"))
    ap.add_argument("--plot-only", action="store_true", help="redraw yield.png from the JSON at --out")
    args = ap.parse_args()
    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.out).with_suffix(".png"))
        return
    shared = Path(args.shared)
    items = photos(shared)[:: args.limit or 1]
    model = str(shared / "models" / "scrfd_500m_bnkps.onnx")
    faces_after = replace(load_section(FacesConfig, "faces", REPO / "params.yaml"), model=model)
    align_after = replace(load_section(AlignConfig, "align", REPO / "params.yaml"), workers=2)
    download = replace(
        load_section(DownloadConfig, "download", REPO / "params.yaml"), host_delay_s=0.0, timeout_s=10.0, retries=0
    )
    settings = {
        "before": (
            replace(faces_after, pad=0.0),
            replace(align_after, max_crop_outside=0.1),
            replace(download, sharpness_size=256, blur_threshold=60.0),
        ),
        "after": (faces_after, align_after, download),
    }
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": None,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(v, 2) for v in os.getloadavg()],
        },
        "setup": {
            "photos": len(items),
            "latency_s": args.latency,
            "download_workers": download.workers,
            "detect_workers": download.detect_workers,
            "note": "before and after run back to back on the same shared 2-core machine",
        },
    }
    for name, (faces, align, dl) in settings.items():
        res = run_setting(items, faces, align, dl, args.latency, sweep=name == "after")
        results[name] = res
        print(name, json.dumps({k: v for k, v in res.items() if not k.startswith("_")}, indent=1))
    before_ok = set(results["before"].pop("_ok_sources"))
    after_ok = set(results["after"].pop("_ok_sources"))
    wild_before = {s for s in before_ok if "/wild/" in s}
    results["wild_accepted_before_kept_after"] = {
        "before": len(wild_before),
        "kept": len(wild_before & after_ok),
        "lost": sorted(Path(s).name for s in wild_before - after_ok),
    }
    det_after = FaceDetector(faces_after)
    nonface = non_face_images(shared, det_after)
    results["non_face_images"] = {
        "images": len(nonface),
        "with_detection_before": sum(bool(replace_detector(det_after, 0.0).detect(im)) for im in nonface),
        "with_detection_after": sum(bool(det_after.detect(im)) for im in nonface),
    }
    p = results["after"]["by_folder"]["portraits"]
    results["done_when"] = {
        "portraits_detected": round(p["with_face"] / p["photos"], 4),
        "portraits_accepted": round(p["faces_accepted"] / p["photos"], 4),
        "download_rate_after_over_before": round(
            results["after"]["download"]["links_per_s"] / results["before"]["download"]["links_per_s"], 3
        ),
    }
    results["machine"]["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    print(
        json.dumps(
            {k: results[k] for k in ("wild_accepted_before_kept_after", "non_face_images", "done_when")}, indent=1
        )
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, Path(args.out).with_suffix(".png"))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
