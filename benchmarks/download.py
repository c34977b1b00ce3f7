"""Benchmark the download stage: links/s end to end and face-filter images/s.

1. ``network``: the full pipeline (fetch, persist, decode, decide, export) against a local
   server that answers every image after ``--latency`` seconds, with a detector stub that finds
   no face instantly: what the fetching machinery sustains with ``--workers`` in flight.
2. ``end_to_end``: the same with the real SCRFD detector, for 1 and 2 detect workers, and the
   time spent in fetch / decode / detect.
3. ``refilter``: a re-run on the warm cache (new thresholds, no network, no detector).
4. ``face_filter``: decode + detect + sharpness per image on ../shared/faces/wild at two
   detector input sizes.
5. ``padding`` (issue 13): end to end, ``detect_workers: 2``, the detector without the padded
   second pass (``faces.pad: 0``, before) and with it (params.yaml ``faces``, after), runs
   alternating before/after back to back; ``--padding-only`` runs just this section and writes
   benchmarks/results/download_padding.json.
6. ``shapes`` (issue 22): the stage's peak memory (``stages/download.py`` in a subprocess, its
   ``ru_maxrss``) on a board of wild photos, alone and with a 1x641, a 100x50000 and a 64x16000
   PNG among them; also with ``faces.max_aspect: 640`` (only the canvas bound stands between
   the thin PNGs and the padded pass) and with the canvas bound lifted to 1e9 pixels for the
   64x16000 alone (about the unguarded canvas of before). ``--shapes-only`` runs just this and
   writes benchmarks/results/download_shapes.json.

Writes benchmarks/results/download.json. Run: ``.venv/bin/python benchmarks/download.py``.
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

from facegen.common.images import decode_image  # noqa: E402
from facegen.download.stage import DownloadConfig, run_download  # noqa: E402
from facegen.faces.detect import FaceDetector, FacesConfig  # noqa: E402
from facegen.faces.quality import region_sharpness  # noqa: E402


class Timed:
    """Wraps a detector and adds up the seconds spent in detect()."""

    def __init__(self, inner: object) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def detect(self, bgr: np.ndarray) -> list:
        t = time.perf_counter()
        out = self.inner.detect(bgr)  # type: ignore[attr-defined]
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return out


class NoFace:
    def detect(self, bgr: np.ndarray) -> list:
        return []


def pipeline(
    routes: dict[str, Route], latency: float, cfg: DownloadConfig, faces: FacesConfig, *, detector: object
) -> dict:
    with LocalServer(routes, latency_s=latency) as srv, tempfile.TemporaryDirectory() as tmp:
        links = pd.DataFrame(
            {"post_id": [f"M.{i}.A.000" for i in range(len(routes))], "url": [srv.url(p) for p in routes]}
        )
        cfg = replace(cfg, allow_private_hosts=(srv.url("").split("//")[1],))  # the local server, past the SSRF guard
        t = time.perf_counter()
        table = run_download(
            links, cfg, faces, Path(tmp) / "raw", cache_dir=Path(tmp) / "cache", detector=detector, progress=False
        )
        wall = time.perf_counter() - t
        t = time.perf_counter()
        again = run_download(
            links,
            replace(cfg, blur_threshold=cfg.blur_threshold + 1),
            faces,
            Path(tmp) / "raw",
            cache_dir=Path(tmp) / "cache",
            detector=NoFace(),
            progress=False,
        )
        refilter = time.perf_counter() - t
        assert len(again) == len(links) and sum(srv.hits.values()) == len(links)
    return {
        "links": len(links),
        "seconds": round(wall, 3),
        "links_per_s": round(len(links) / wall, 1),
        "statuses": table.status.value_counts().to_dict(),
        "refilter_seconds": round(refilter, 3),
        "refilter_links_per_s": round(len(links) / refilter, 1),
    }


_CHILD = (
    "import resource, runpy, sys; sys.argv = ['stages/download.py', '--no-progress']\n"
    "try:\n    runpy.run_path({stage!r}, run_name='__main__')\n"
    "finally:\n    print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def stage_peak(routes: dict[str, Route], faces: dict, work: Path) -> dict:
    """Run stages/download.py on ``routes`` with params.yaml's defaults but ``faces``: exit code,
    statuses, peak RSS (MB) of the stage process and its wall time."""
    import subprocess

    import yaml

    work.mkdir(parents=True)
    with LocalServer(routes) as srv:
        (work / "data").mkdir()
        links = pd.DataFrame(
            {"post_id": [f"M.{i}.A.000" for i in range(len(routes))], "url": [srv.url(p) for p in routes]}
        )
        links.to_parquet(work / "data" / "links.parquet")
        params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params["faces"].update(faces)
        params["download"].update(host_delay_s=0.0, allow_private_hosts=[srv.url("").split("//")[1]])
        (work / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        t = time.perf_counter()
        code = _CHILD.format(stage=str(REPO / "stages" / "download.py"))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
    kb = int(proc.stderr.rsplit("MAXRSS_KB", 1)[1].split()[0])
    table = pd.read_parquet(work / "data" / "downloads.parquet") if proc.returncode == 0 else None
    return {
        "exit_code": proc.returncode,
        "peak_rss_mb": round(kb / 1024, 1),
        "seconds": round(wall, 2),
        "statuses": None if table is None else table.status.value_counts().to_dict(),
    }


def shapes(shared: Path, model: str, n_photos: int = 20) -> dict:
    """Peak memory of the stage with and without the crafted PNGs of issue 22 (see the module doc)."""
    from PIL import Image

    def png(width: int, height: int) -> bytes:
        import io

        buf = io.BytesIO()
        Image.new("L", (width, height), 180).save(buf, "PNG", optimize=True)
        return buf.getvalue()

    photos = sorted((shared / "faces" / "wild").glob("*.jp*g"))[:n_photos]
    good = {f"/{i:03d}.jpg": Route(p.read_bytes()) for i, p in enumerate(photos)}
    crafted = {"/thin.png": png(1, 641), "/long.png": png(100, 50000), "/strip.png": png(64, 16000)}
    crafted_routes = {k: Route(v, "image/png") for k, v in crafted.items()}
    runs = {
        "good_only": (good, {}),
        "with_crafted": ({**good, **crafted_routes}, {}),
        "with_crafted_max_aspect_640": ({**good, **crafted_routes}, {"max_aspect": 640.0}),
        "strip_max_aspect_640_canvas_1e9": (
            {**good, "/strip.png": crafted_routes["/strip.png"]},
            {"max_aspect": 640.0, "max_canvas_pixels": 1_000_000_000},
        ),
    }
    out: dict = {
        "board": f"{len(good)} shared/faces/wild JPEGs",
        "crafted_bytes": {k: len(v) for k, v in crafted.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, (routes, faces) in runs.items():
            out[name] = stage_peak(routes, {"model": model, **faces}, Path(tmp) / name)
            print(f"shapes {name}:", out[name])
    out["with_crafted_over_good_only"] = round(out["with_crafted"]["peak_rss_mb"] / out["good_only"]["peak_rss_mb"], 3)
    return out


def face_filter(wild: Path, faces: FacesConfig, cfg: DownloadConfig) -> dict:
    det = FaceDetector(faces)
    files = sorted(p for p in wild.iterdir() if p.is_file())
    det.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up
    t_dec = t_det = t_sharp = 0.0
    n_face = 0
    t0 = time.perf_counter()
    for p in files:
        data = p.read_bytes()
        t = time.perf_counter()
        img = decode_image(data, max_pixels=cfg.max_pixels)
        t_dec += time.perf_counter() - t
        t = time.perf_counter()
        dets = det.detect(np.ascontiguousarray(img.rgb[:, :, ::-1]))
        t_det += time.perf_counter() - t
        t = time.perf_counter()
        if dets:
            n_face += 1
            region_sharpness(img.rgb, dets[0].bbox, cfg.sharpness_size)
        t_sharp += time.perf_counter() - t
    wall = time.perf_counter() - t0
    n = len(files)
    return {
        "det_size": faces.det_size,
        "images": n,
        "with_face": n_face,
        "images_per_s": round(n / wall, 1),
        "ms_per_image": {
            "decode": round(1000 * t_dec / n, 1),
            "detect": round(1000 * t_det / n, 1),
            "sharpness": round(1000 * t_sharp / n, 2),
        },
    }


def padding(routes: dict[str, Route], latency: float, cfg: DownloadConfig, faces: FacesConfig, *, repeats: int) -> dict:
    """End-to-end links/s without (before) and with (after) the padded pass, alternating runs."""
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(repeats):
        for name, f in (("before", replace(faces, pad=0.0)), ("after", faces)):
            timed = Timed(FaceDetector(f))
            r = pipeline(routes, latency, cfg, f, detector=timed)
            r["detect_ms_per_image"] = round(1000 * timed.seconds / max(1, timed.calls), 1)
            r["padded_pass_share"] = round(timed.inner.padded / max(1, timed.inner.images), 3)  # type: ignore[attr-defined]
            runs[name].append(r)
            print(f"end to end, {name} (pad={f.pad}):", r)
    out: dict = {"faces_after": {"pad": faces.pad, "pad_always": faces.pad_always}}
    for name, rs in runs.items():
        mid = sorted(rs, key=lambda r: r["links_per_s"])[len(rs) // 2]
        out[name] = {**mid, "links_per_s_runs": [r["links_per_s"] for r in rs]}
    out["after_over_before"] = round(out["after"]["links_per_s"] / out["before"]["links_per_s"], 3)
    return out


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=os.environ.get("FACEGEN_SHARED", str(REPO.parent / "shared")))
    ap.add_argument("--links", type=int, default=400, help="links in the network run (small portraits)")
    ap.add_argument("--e2e-links", type=int, default=154, help="links in the end-to-end runs (wild photos)")
    ap.add_argument("--latency", type=float, default=0.05, help="server delay per request, s")
    ap.add_argument("--workers", type=int, default=16, help="requests in flight")
    ap.add_argument("--repeats", type=int, default=3, help="end-to-end runs per setting (median reported)")
    ap.add_argument(
        "--out",
        default=None,
        help="default benchmarks/results/download.json (download_padding.json with --padding-only, "
        "download_shapes.json with --shapes-only)",
    )
    ap.add_argument("--padding-only", action="store_true", help="only the before/after padded-pass comparison")
    ap.add_argument("--shapes-only", action="store_true", help="only the crafted-shapes peak memory (issue 22)")
    return ap.parse_args()


def _write(results: dict, out: str | Path) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("wrote", out)


def end_to_end(
    routes: dict[str, Route], latency: float, cfg: DownloadConfig, faces: FacesConfig, *, repeats: int
) -> dict:
    """Median end-to-end run for 1 and 2 detect workers; the machine is shared (other jobs load
    it), so the two settings alternate and the median counts."""
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for _ in range(repeats):
        for dw in (1, 2):
            timed = Timed(FaceDetector(faces))
            r = pipeline(routes, latency, replace(cfg, detect_workers=dw), faces, detector=timed)
            r["detect_s_total"] = round(timed.seconds, 2)
            runs[dw].append(r)
            print(f"end to end, detect_workers={dw}:", r)
    return {
        f"detect_workers_{dw}": {
            **sorted(rs, key=lambda r: r["links_per_s"])[len(rs) // 2],
            "links_per_s_runs": [r["links_per_s"] for r in rs],
        }
        for dw, rs in runs.items()
    }


def main() -> None:
    args = _args()
    shared = Path(args.shared)
    results_dir = REPO / "benchmarks" / "results"
    if args.shapes_only:
        model = str(shared / "models" / "scrfd_500m_bnkps.onnx")
        result = {"machine": {"cpus": os.cpu_count(), "gpu": None}, "shapes": shapes(shared, model)}
        _write(result, args.out or results_dir / "download_shapes.json")
        return
    args.out = args.out or str(results_dir / ("download_padding.json" if args.padding_only else "download.json"))
    from facegen.common.config import load_section

    params_faces = load_section(FacesConfig, "faces", REPO / "params.yaml")
    faces = replace(params_faces, model=str(shared / "models" / "scrfd_500m_bnkps.onnx"), det_size=640, min_score=0.5)
    # network: small real JPEGs (portraits, ~150 px) so decode stays negligible
    portraits = sorted((shared / "faces" / "portraits").glob("*.jpg"))[: args.links]
    small = {f"/{i:05d}.jpg": Route(p.read_bytes()) for i, p in enumerate(portraits)}
    # end to end: real photos from wild/ (JPEG, 240 px to 2.5k px), cycled; a unique trailer after
    # the JPEG end marker makes every body distinct (so each is analysed) with the same pixels
    photos = [p.read_bytes() for p in sorted((shared / "faces" / "wild").glob("*.jp*g"))]
    routes = {f"/{i:05d}.jpg": Route(photos[i % len(photos)] + f"#{i}".encode()) for i in range(args.e2e_links)}
    cfg = DownloadConfig(workers=args.workers, per_host=args.workers, host_delay_s=0.0, timeout_s=10.0, retries=0)
    results: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": None,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "setup": {
            "latency_s": args.latency,
            "workers": args.workers,
            "network_served": f"{len(small)} shared/faces/portraits JPEGs (~150 px)",
            "end_to_end_served": f"{len(routes)} links: shared/faces/wild JPEGs ({len(photos)}) cycled, distinct bytes",
        },
        "loadavg_before": os.getloadavg(),
    }
    dw2 = replace(cfg, detect_workers=2)
    if not args.padding_only:
        results["network"] = pipeline(small, args.latency, cfg, faces, detector=NoFace())
        results["network"]["ideal_links_per_s"] = round(args.workers / args.latency, 1)
        print("network (no detector):", results["network"])
        results["end_to_end"] = end_to_end(routes, args.latency, cfg, faces, repeats=args.repeats)
    results["padding"] = padding(routes, args.latency, dw2, faces, repeats=args.repeats)
    if not args.padding_only:
        wild = shared / "faces" / "wild"
        results["face_filter_wild"] = [face_filter(wild, replace(faces, det_size=s), cfg) for s in (640, 320, 640, 320)]
        for r in results["face_filter_wild"]:
            print("face filter on wild/:", r)
    results["loadavg_after"] = os.getloadavg()
    _write(results, args.out)


if __name__ == "__main__":
    main()
