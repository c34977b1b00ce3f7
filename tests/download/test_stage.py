"""facegen.download.stage end to end against a local HTTP server: real photos plus hostile cases.

Every link's exact status, exactly which images are kept, resume after a crash without a
second download, re-filtering from the cache without network or detector, and the stage's
real entry point.
"""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from config_bounds import assert_named_in_one_line, bad_numbers, numeric_keys
from localserver import LocalServer, Route
from PIL import Image

from facegen.common.images import read_image, sha256_hex
from facegen.download.cache import Analysis, FetchRecord
from facegen.download.stage import STATUSES, DownloadConfig, decide, run_download
from facegen.faces.detect import Detection, FacesConfig

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.network

WILD = {
    "face": "deepface__img20.jpg",  # one sharp face, 900x900, face ~14% of the image
    "busy": "facerec__obama_small.jpg",  # 320x240, one sharp face
    "exif": "insightface__inspireface_bulk_image_T1.jpeg",  # EXIF orientation 6
    "webp": "insightface__inspireface_RD_d3.jpeg",
    "blur": "insightface__inspireface_bulk_blur.jpg",  # deliberately blurred face
    "far": "opencvsamples__messi5.jpg",  # one face covering 0.6% of the image
}


def bomb_png(side: int = 30_000) -> bytes:
    """A valid side x side 1-bit gray PNG of one colour: ~100 kB on disk, 900 Mpx decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def no_face_picture() -> bytes:
    """A synthetic 400x300 'landscape': sky gradient, ground, a sun. No face anywhere."""
    y = np.linspace(0, 1, 300)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - y) + np.array([200, 220, 255]) * y).repeat(400, axis=1)
    sky[200:] = [60, 140, 60]
    yy, xx = np.mgrid[:300, :400]
    sky[(yy - 60) ** 2 + (xx - 320) ** 2 < 30**2] = [255, 220, 80]
    return encode(Image.fromarray(sky.astype(np.uint8)), "JPEG", quality=90)


@pytest.fixture(scope="module")
def site(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The server, its routes, the links table and the expected status of every link."""
    wild = faces_dir / "wild"
    raw = {k: (wild / v).read_bytes() for k, v in WILD.items()}
    face_im = Image.open(io.BytesIO(raw["face"]))
    gif_frames = [face_im.convert("P"), Image.new("P", face_im.size, 0)]
    gif = io.BytesIO()
    gif_frames[0].save(gif, "GIF", save_all=True, append_images=gif_frames[1:], duration=100, loop=0)
    webp = encode(Image.open(io.BytesIO(raw["webp"])), "WEBP", quality=90)
    tiny = encode(face_im.resize((48, 48)), "PNG")
    removed = encode(Image.new("RGB", (161, 81), (240, 240, 240)), "PNG")
    routes = {
        "/face.jpg": Route(raw["face"]),
        "/face-again.jpg": Route(raw["face"]),  # same bytes, other URL
        "/busy.jpg": Route(raw["busy"], busy_first=1),  # 429 + Retry-After: 1, then 200
        "/exif.jpg": Route(raw["exif"]),
        "/anim.gif": Route(gif.getvalue(), "image/gif"),
        "/photo.webp": Route(webp, "image/webp"),
        "/blur.jpg": Route(raw["blur"]),
        "/far.jpg": Route(raw["far"]),
        "/landscape.jpg": Route(no_face_picture()),
        "/tiny.png": Route(tiny, "image/png"),
        "/page.jpg": Route(b"<!DOCTYPE html><html><body>Removed</body></html>", "text/html"),
        "/truncated.jpg": Route(raw["face"][: len(raw["face"]) // 2]),
        "/bomb.png": Route(bomb_png(), "image/png"),
        "/empty.jpg": Route(b""),
        "/slow.jpg": Route(raw["face"], delay_s=1.5),
        "/broken.jpg": Route(b"oops", "text/plain", status=500),
        "/gone.jpg": Route(location="/removed.png"),
        "/removed.png": Route(removed, "image/png"),
        "/stub.png": Route(removed, "image/png"),  # same picture served directly: placeholder by size
    }
    expected = {  # path -> status, in links order
        "/face.jpg": "ok",
        "/missing.jpg": "http_404",
        "/face-again.jpg": "duplicate",
        "/exif.jpg": "ok",
        "/anim.gif": "ok",
        "/photo.webp": "ok",
        "/blur.jpg": "blurry",
        "/far.jpg": "face_too_small",
        "/landscape.jpg": "no_face",
        "/tiny.png": "too_small",
        "/page.jpg": "not_an_image",
        "/truncated.jpg": "corrupt",
        "/bomb.png": "too_large",
        "/empty.jpg": "not_an_image",
        "/slow.jpg": "timeout",
        "/broken.jpg": "http_error",
        "/gone.jpg": "placeholder",
        "/stub.png": "placeholder",
        "/busy.jpg": "ok",  # last: its 429 slows the whole host down (HostGate.feedback)
    }
    with LocalServer(routes) as srv:
        urls = [srv.url(p) for p in expected]
        extra = {"ftp://example.com/a.jpg": "invalid_url", "http://127.0.0.1:1/refused.jpg": "connection_error"}
        links = pd.DataFrame(
            {
                "post_id": [f"M.{1704040000 + i}.A.{i:03X}" for i in range(len(urls) + 3)],
                "url": [*urls, *extra, urls[0]],  # the first URL again, in another post
                "source": "body",
            }
        )
        statuses = [*expected.values(), *extra.values(), "duplicate"]
        yield srv, links, statuses, raw


@pytest.fixture(scope="module")
def faces_cfg(scrfd_model: Path) -> FacesConfig:
    return FacesConfig(model=str(scrfd_model), det_size=640, min_score=0.5)


# fast network settings for tests: one retry, short timeout, no politeness delay; the local
# server (and the refused port 1) are on loopback, which the SSRF guard refuses unless listed
CFG = DownloadConfig(
    timeout_s=0.5,
    retries=1,
    backoff_s=0.01,
    host_delay_s=0.0,
    workers=8,
    per_host=8,
    placeholder_urls=("/removed.png",),
    allow_private_hosts=("127.0.0.1",),
)


@pytest.fixture(scope="module")
def full_run(site, faces_cfg, tmp_path_factory):
    srv, links, _, _ = site
    root = tmp_path_factory.mktemp("full")
    before = srv.hits
    table = run_download(links, CFG, faces_cfg, root / "raw", cache_dir=root / "cache", progress=False)
    return table, root, srv.hits - before


def test_every_link_gets_its_exact_status(site, full_run):
    _, links, statuses, _ = site
    table, _, _ = full_run
    assert table["url"].tolist() == links["url"].tolist()
    assert table["post_id"].tolist() == links["post_id"].tolist()
    assert table["source"].tolist() == links["source"].tolist()
    got = dict(zip(range(len(table)), table["status"], strict=False))
    assert [got[i] for i in range(len(table))] == statuses
    assert set(table["status"]) <= set(STATUSES)


def test_kept_images_are_exactly_the_good_ones(site, full_run):
    _, _, _, raw = site
    table, root, _ = full_run
    ok = table[table.status == "ok"]
    assert [u.rsplit("/", 1)[1] for u in ok.url] == ["face.jpg", "exif.jpg", "anim.gif", "photo.webp", "busy.jpg"]
    names = [f"{sha}.{ext}" for sha, ext in zip(ok.sha256, ["jpg", "jpg", "gif", "webp", "jpg"], strict=False)]
    assert sorted(p.name for p in (root / "raw").iterdir()) == sorted(names)
    assert ok["path"].tolist() == [(root / "raw" / n).as_posix() for n in names]
    assert (root / "raw" / f"{sha256_hex(raw['face'])}.jpg").read_bytes() == raw["face"]  # original bytes
    assert table.loc[table.status != "ok", "path"].isna().all()


def test_duplicates_point_to_the_first_link(site, full_run):
    table, _, _ = full_run
    first = table.url[0]
    dups = table[table.status == "duplicate"]
    assert dups["duplicate_of"].tolist() == [first, first]
    assert (dups["sha256"] == table.sha256[0]).all()
    # the same "removed" picture under /gone.jpg (redirect) and /stub.png: same fate, linked
    stub = table[table.url.str.endswith("/stub.png")].iloc[0]
    assert stub.duplicate_of.endswith("/gone.jpg") and stub.status == "placeholder"


def test_rows_carry_facts_errors_and_detections(site, full_run):
    table, _, _ = full_run
    first = table.iloc[:-1]  # the last link repeats the first URL
    row = first.set_index(first.url.str.rsplit("/", n=1).str[1])
    assert (row.loc["face.jpg", "width"], row.loc["face.jpg", "height"]) == (900, 900)
    assert (row.loc["exif.jpg", "width"], row.loc["exif.jpg", "height"]) == (480, 640)  # rotated by EXIF
    assert row.loc["anim.gif", "format"] == "GIF" and row.loc["photo.webp", "format"] == "WEBP"
    assert row.loc["missing.jpg", "http_status"] == 404 and "404" in row.loc["missing.jpg", "error"]
    assert row.loc["broken.jpg", "http_status"] == 500
    assert "truncated" in row.loc["truncated.jpg", "error"]
    assert "max_pixels" in row.loc["bomb.png", "error"]
    assert row.loc["blur.jpg", "sharpness"] < CFG.blur_threshold <= row.loc["face.jpg", "sharpness"]
    assert row.loc["far.jpg", "face_area"] < CFG.min_face_area <= row.loc["face.jpg", "face_area"]
    assert row.loc["landscape.jpg", "n_faces"] == 0 and json.loads(row.loc["landscape.jpg", "detections"]) == []
    assert pd.isna(row.loc["page.jpg", "detections"]) and pd.isna(row.loc["missing.jpg", "sha256"])
    # detections are in read_image() coordinates, largest first, and round-trip to Detection
    exif = row.loc["exif.jpg"]
    dets = [Detection.from_record(d) for d in json.loads(exif.detections)]
    assert len(dets) == exif.n_faces >= 1 and dets == sorted(dets, key=lambda d: -d.area)
    x1, y1, x2, y2 = dets[0].bbox
    h, w = read_image(exif.path).shape[:2]
    assert (h, w) == (640, 480)
    assert 0 <= x1 < x2 <= w + 1 and 0 <= y1 < y2 <= h + 1
    assert (table.status == "ok").sum() == 5 and table.error[table.status == "ok"].isna().all()


def test_kept_file_decodes_to_the_detected_geometry(full_run):
    table, _, _ = full_run
    for r in table[table.status == "ok"].itertuples():
        assert read_image(r.path).shape[:2] == (r.height, r.width)


def test_requests_made_once_except_retries(full_run):
    _, _, hits = full_run
    # /face.jpg is linked twice but fetched once; 429, timeout and 500 were each retried once
    assert hits["/face.jpg"] == 1 and hits["/face-again.jpg"] == 1
    assert hits["/busy.jpg"] == 2 and hits["/slow.jpg"] == 2 and hits["/broken.jpg"] == 2
    assert hits["/gone.jpg"] == 1 and hits["/removed.png"] == 1


def test_rerun_refilters_from_cache_without_network_or_detector(site, faces_cfg, full_run):
    srv, links, _statuses, _ = site
    table, root, _ = full_run

    class NoDetector:
        def detect(self, bgr):  # pragma: no cover - must not run
            raise AssertionError("detector used on a cached image")

    before = srv.hits
    lenient = replace(CFG, blur_threshold=1.0, min_face_area=0.001)
    again = run_download(
        links, lenient, faces_cfg, root / "raw", cache_dir=root / "cache", detector=NoDetector(), progress=False
    )
    assert srv.hits == before  # no request at all
    changed = {
        u.rsplit("/", 1)[1]: s for u, s, old in zip(again.url, again.status, table.status, strict=False) if s != old
    }
    assert changed == {"blur.jpg": "ok", "far.jpg": "ok"}
    assert len(list((root / "raw").iterdir())) == 7
    # and back: the same thresholds give the same table and files as the first run
    same = run_download(
        links, CFG, faces_cfg, root / "raw", cache_dir=root / "cache", detector=NoDetector(), progress=False
    )
    pd.testing.assert_frame_equal(same, table)
    assert len(list((root / "raw").iterdir())) == 5


def test_a_direct_rerun_rewrites_a_raw_file_whose_bytes_are_not_its_hash(site, faces_cfg, full_run):
    import hashlib

    srv, links, _, _ = site
    table, root, _ = full_run
    kept = sorted((root / "raw").iterdir())
    damaged, other = kept[0], kept[1]
    good = damaged.read_bytes()
    wrong = bytearray(good)
    wrong[len(wrong) // 2] ^= 0xFF  # same size, other bytes: a size check alone keeps it
    damaged.write_bytes(bytes(wrong))
    other.unlink()
    before = srv.hits
    again = run_download(links, CFG, faces_cfg, root / "raw", cache_dir=root / "cache", progress=False)
    assert srv.hits == before  # repaired from the fetch cache, no request
    pd.testing.assert_frame_equal(again, table)
    assert damaged.read_bytes() == good and other.is_file()
    for f in (root / "raw").iterdir():
        assert hashlib.sha256(f.read_bytes()).hexdigest() == f.name.split(".")[0]


def test_retry_failed_refetches_only_transient_failures(site, faces_cfg, full_run):
    srv, links, statuses, _ = site
    _table, root, _ = full_run
    before = srv.hits
    again = run_download(
        links, replace(CFG, retry_failed=True), faces_cfg, root / "raw", cache_dir=root / "cache", progress=False
    )
    fetched_again = srv.hits - before
    # timeout and http_error links are asked again (each with its one retry); 404s and images are not
    assert fetched_again == {"/slow.jpg": 2, "/broken.jpg": 2}
    assert again.status.tolist() == statuses  # the server still fails them


class Interrupt(Exception):
    pass


def test_crash_and_restart_gives_the_same_table_without_refetching(site, faces_cfg, full_run, tmp_path):
    srv, links, _, _ = site
    table, _, first_hits = full_run
    fetched: list[str] = []
    analysed_before: set[str] = set()

    def crash_after_six(kind: str, key: str) -> None:
        if kind == "analysis":
            analysed_before.add(key)
        else:
            fetched.append(key)
            if len(fetched) == 6:
                raise Interrupt

    with pytest.raises(Interrupt):
        run_download(
            links,
            CFG,
            faces_cfg,
            tmp_path / "raw",
            cache_dir=tmp_path / "cache",
            after_persist=crash_after_six,
            progress=False,
        )
    time.sleep(1.2)  # let requests that were in flight at the crash reach the server
    mid = srv.hits
    analysed_after: set[str] = set()
    resumed = run_download(
        links,
        CFG,
        faces_cfg,
        tmp_path / "raw",
        cache_dir=tmp_path / "cache",
        progress=False,
        after_persist=lambda kind, key: analysed_after.add(key) if kind == "analysis" else None,
    )
    restart_hits = srv.hits - mid
    for url in fetched:
        path = "/" + url.split("/", 3)[3]
        assert restart_hits[path] == 0, f"{path} fetched again after the restart"
    assert set(restart_hits) | {"/" + u.split("/", 3)[3] for u in fetched} >= set(first_hits)  # nothing left out
    assert not analysed_before & analysed_after  # no image decoded + detected twice
    assert analysed_before | analysed_after == set(table.sha256.dropna())
    cols = [c for c in table.columns if c != "path"]
    pd.testing.assert_frame_equal(resumed[cols], table[cols])
    assert [Path(p).name for p in resumed.path.dropna()] == [Path(p).name for p in table.path.dropna()]


SOFT_PORTRAIT = "facemaskdet__1_0_aidai_0017.jpg"  # 160x151 upscaled crop: soft at native size, fine at 64 px


def test_sharpness_at_the_training_size_keeps_soft_portraits_and_rejects_the_blurred_photo(faces_dir, faces_cfg):
    """At the defaults (face shrunk to align.size) an upscaled portrait is kept and the deliberately
    blurred photo is not; at the old scale (256 px, threshold 60) the portrait was blurry."""
    from facegen.download.stage import analyse
    from facegen.faces.detect import FaceDetector

    detector = FaceDetector(faces_cfg)
    fetch = FetchRecord("http://h/a.jpg", "fetched", 200, "image/jpeg", "http://h/a.jpg", "ab" * 32, 10, None)
    old = DownloadConfig(sharpness_size=256, blur_threshold=60.0)
    portrait = (faces_dir / "portraits" / SOFT_PORTRAIT).read_bytes()
    blurred = (faces_dir / "wild" / WILD["blur"]).read_bytes()
    now = {
        name: analyse(data, detector, DownloadConfig(), "k")
        for name, data in (("portrait", portrait), ("blurred", blurred))
    }
    assert (DownloadConfig().sharpness_size, DownloadConfig().blur_threshold) == (64, 130.0)
    assert decide(fetch, now["portrait"], DownloadConfig()) == ("ok", None)
    assert decide(fetch, now["blurred"], DownloadConfig())[0] == "blurry"
    assert (
        now["blurred"].sharpness < DownloadConfig().blur_threshold / 1.5 < now["portrait"].sharpness / 2
    )  # margins both ways
    assert decide(fetch, analyse(portrait, detector, old, "k"), old)[0] == "blurry"
    assert decide(fetch, analyse(blurred, detector, old, "k"), old)[0] == "blurry"


def test_decide_orders_the_filters():
    ok_fetch = FetchRecord("http://h/a.jpg", "fetched", 200, "image/jpeg", "http://h/a.jpg", "ab" * 32, 10, None)
    det = {"bbox": [0, 0, 30, 30], "kps": [[0, 0]] * 5, "score": 0.9, "gender": None, "age": None, "pose": None}

    def an(w=100, h=100, dets=(det,), sharp=100.0, status="decoded"):
        return Analysis("ab" * 32, "k", status, None, "JPEG", "jpg", w, h, 1, json.dumps(list(dets)), sharp)

    cfg = DownloadConfig(min_face_area=0.05, blur_threshold=60, min_side=64)
    assert decide(ok_fetch, an(), cfg) == ("ok", None)
    assert decide(ok_fetch, an(sharp=59.9), cfg)[0] == "blurry"
    assert decide(ok_fetch, an(w=1000, sharp=10), cfg)[0] == "face_too_small"  # area before blur
    assert decide(ok_fetch, an(dets=()), cfg)[0] == "no_face"
    assert decide(ok_fetch, an(w=63, dets=()), cfg)[0] == "too_small"
    assert decide(ok_fetch, an(w=161, h=81), cfg)[0] == "placeholder"
    assert decide(ok_fetch, an(status="corrupt"), cfg)[0] == "corrupt"
    assert decide(replace(ok_fetch, status="timeout", sha256=None), None, cfg)[0] == "timeout"
    assert decide(replace(ok_fetch, final_url="https://i.imgur.com/removed.png"), an(), cfg)[0] == "placeholder"
    assert decide(ok_fetch, an(), replace(cfg, placeholder_sha256=("ab" * 32,)))[0] == "placeholder"


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match=r"download\.workers"):
        DownloadConfig(workers=0)
    with pytest.raises(ValueError, match="placeholder_sizes"):
        DownloadConfig(placeholder_sizes=("161,81",))


def test_missing_urls_and_empty_links_need_no_network(tmp_path):
    faces = FacesConfig(model=str(tmp_path / "absent.onnx"))  # never loaded: nothing to detect
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("not ours")
    (tmp_path / "raw" / f"{'0' * 64}.jpg").write_bytes(b"stale")
    links = pd.DataFrame({"post_id": ["a", "b", "c"], "url": [None, "", "javascript:alert(1)"]})
    table = run_download(links, CFG, faces, tmp_path / "raw", cache_dir=tmp_path / "cache", progress=False)
    assert table.status.tolist() == ["invalid_url"] * 3 and table.url.tolist() == ["", "", "javascript:alert(1)"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["notes.txt"]  # stale kept file removed, others left
    empty = run_download(links.iloc[:0], CFG, faces, tmp_path / "raw", cache_dir=tmp_path / "cache", progress=False)
    assert len(empty) == 0 and "detections" in empty.columns


def test_links_without_contract_columns_are_refused(faces_cfg, tmp_path):
    with pytest.raises(ValueError, match="post_id"):
        run_download(
            pd.DataFrame({"url": ["http://x/a.jpg"]}), CFG, faces_cfg, tmp_path / "raw", cache_dir=tmp_path / "cache"
        )


@pytest.mark.slow
def test_stage_entry_point(site, scrfd_model, download_stage, tmp_path):
    srv, links, _statuses, _ = site
    sub = links.iloc[[0, 1, 2, 6, 10]].reset_index(drop=True)  # face, 404, duplicate, blurry, html
    proc = download_stage(tmp_path, sub, srv.url("").split("//")[1])  # 127.0.0.1:<port>
    assert proc.returncode == 0, proc.stderr
    out = pd.read_parquet(tmp_path / "data" / "downloads.parquet")
    assert out.status.tolist() == ["ok", "http_404", "duplicate", "blurry", "not_an_image"]
    assert out.path[0] == f"data/raw/{out.sha256[0]}.jpg"
    assert sorted(p.name for p in (tmp_path / "data" / "raw").iterdir()) == [f"{out.sha256[0]}.jpg"]
    assert (tmp_path / "cache" / "download" / "cache.sqlite").is_file()
    resolved = json.loads((tmp_path / "data" / "downloads_config.json").read_text())
    assert resolved["faces"]["model"] == str(scrfd_model) and resolved["download"]["min_face_area"] == 0.015
    assert "ok" in proc.stdout and "links" in proc.stdout
    metrics = json.loads((tmp_path / "metrics" / "download.json").read_text())
    assert {k: metrics[k] for k in ("links", "kept", "status")} == {
        "links": 5,
        "kept": 1,
        "status": {"blurry": 1, "duplicate": 1, "http_404": 1, "not_an_image": 1, "ok": 1},
    }
    got = metrics["yield"]
    assert (got["photos"], got["photos_with_face"], got["kept"], got["kept_share"]) == (2, 2, 1, 0.5)
    assert got["rejected"] == {
        s: int(s in ("blurry", "duplicate", "http_404", "not_an_image")) for s in STATUSES if s != "ok"
    }


@pytest.mark.parametrize(("key", "value"), bad_numbers(DownloadConfig))
def test_every_number_is_finite_and_bounded(key, value):
    assert_named_in_one_line(DownloadConfig, "download", key, value)


def test_every_number_has_a_range():
    from facegen.download.stage import DOWNLOAD_RANGES

    assert set(DOWNLOAD_RANGES) == numeric_keys(DownloadConfig)


def test_the_scheduler_plans_only_what_the_cache_lacks(tmp_path):
    """Unknown and blocked_host URLs are fetched; bodies without an analysis (or analysed without
    detection at a larger min_side) are analysed; nothing else."""
    from facegen.download.cache import FetchCache
    from facegen.download.config import analysis_key
    from facegen.download.fetch import FetchResult
    from facegen.download.scheduler import FetchAnalyse

    faces = FacesConfig()
    key = analysis_key(CFG, faces)
    with FetchCache(tmp_path) as cache:
        done, small, raw = (cache.put_fetch(FetchResult(f"http://h/{n}", "fetched", body=n.encode())) for n in "abc")
        cache.put_fetch(FetchResult("http://h/blocked", "blocked_host"))
        cache.put_fetch(FetchResult("http://h/404", "http_404"))
        cache.put_analysis(Analysis(done.sha256, key, "decoded", None, "PNG", "png", 100, 100, 1, "[]", None))
        cache.put_analysis(Analysis(small.sha256, key, "decoded", None, "PNG", "png", 40, 40, 1, None, None))
        urls = ["http://h/a", "http://h/b", "http://h/c", "http://h/blocked", "http://h/404", "http://h/new"]
        todo, to_analyse = FetchAnalyse(CFG, faces, cache).plan(urls)
        assert todo == ["http://h/blocked", "http://h/new"] and to_analyse == [raw.sha256]
        _, again = FetchAnalyse(replace(CFG, min_side=32), faces, cache).plan(urls)  # the 40x40 now needs detection
        assert again == sorted([raw.sha256, small.sha256])


def test_documented_modules_and_limits_exist():
    from facegen.download import analysis, config, table  # noqa: F401  (docs/download.md)
    from facegen.download.scheduler import BODIES_PER_DETECTOR

    assert BODIES_PER_DETECTOR == 4  # the limit the stage was tuned with (docs/download.md)
