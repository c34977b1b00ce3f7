"""facegen.demo.board: the local PTT-format board server (markup, gate, paging, images, faults, CLI)."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from PIL import Image

from facegen.crawl import ptt
from facegen.demo.board import BoardSpec, Fault, build_board, serve

pytestmark = pytest.mark.network
OVER18 = {"over18": "1"}


@pytest.fixture(scope="module")
def server() -> Iterator:
    with serve(BoardSpec(posts=60, images_per_post=2, seed=3)) as srv:
        yield srv


def _get(server, path: str, **kw) -> requests.Response:
    return requests.get(server.url + path, cookies=OVER18, timeout=5, **kw)


def test_board_is_deterministic() -> None:
    spec = BoardSpec(posts=45, seed=7)
    a, b = build_board(spec), build_board(spec)
    assert a.slots == b.slots and a.pinned == b.pinned
    assert [s.post_id for s in build_board(BoardSpec(posts=45, seed=8)).slots] != [s.post_id for s in a.slots]
    # 45 entries, 10 a day from 2024-01-01: the fifth day holds the last five
    assert (a.pages, a.dates) == (3, ("2024-01-01", "2024-01-05"))
    assert [s.kind for s in a.slots].count("deleted") == 3  # entries 5, 22, 39
    assert [(s.index, s.kind) for s in a.slots if s.kind in ("announcement", "missing")] == [
        (11, "announcement"),
        (23, "missing"),
    ]
    times = [s.ts for s in a.slots]
    assert times == sorted(times)


def test_over18_gate_without_cookie(server) -> None:
    r = requests.get(server.url + "/bbs/Beauty/index.html", allow_redirects=False, timeout=5)
    assert r.status_code == 302 and r.headers["Location"] == "/ask/over18?from=%2Fbbs%2FBeauty%2Findex.html"
    gate = requests.get(server.url + "/bbs/Beauty/index.html", timeout=5)
    assert gate.url.startswith(server.url + "/ask/over18") and ptt.is_over18_gate(gate.text)


def test_index_paging_and_newest_page(server) -> None:
    board = server.board
    first = ptt.parse_index(_get(server, "/bbs/Beauty/index1.html").text)
    assert (first.prev_page, first.next_page) == (None, 2)
    assert [e.post_id for e in first.entries] == [None if s.kind == "deleted" else s.post_id for s in board.slots[:20]]
    newest = ptt.parse_index(_get(server, "/bbs/Beauty/index.html").text)
    assert (newest.number, newest.next_page) == (3, None)
    assert [e.post_id for e in newest.listed] == [None if s.kind == "deleted" else s.post_id for s in board.slots[40:]]
    pinned = [e for e in newest.entries if e.pinned]
    assert [e.post_id for e in pinned] == [s.post_id for s in board.pinned]
    assert ptt.is_announcement(pinned[0].title) and pinned[1].post_id == board.slots[0].post_id
    deleted = [e for e in first.entries if e.deleted]
    assert [e.title for e in deleted] == [board.slots[5].title] == ["(本文已被刪除) [user308]"]
    for path in (
        "/bbs/Beauty/index0.html",
        "/bbs/Beauty/index4.html",
        "/bbs/Beauty/index01.html",
        "/bbs/Other/index.html",
    ):
        assert _get(server, path).status_code == 404, path


def test_push_counts_match_the_board(server) -> None:
    board = server.board
    entries = [e for n in (1, 2, 3) for e in ptt.parse_index(_get(server, f"/bbs/Beauty/index{n}.html").text).listed]

    def shown(score: int) -> int:  # what PTT shows: 爆 >= 100, XX <= -100, Xn for -10n, nothing for -1..-9
        if score >= 100 or score <= -100:
            return 100 if score > 0 else -100
        return -10 * (-score // 10) if score < 0 else score

    assert [e.push_count for e in entries] == [shown(s.score) for s in board.slots]
    assert "爆" in {e.push for e in entries} and any(e.push.startswith("X") for e in entries)


def test_article_links_previews_and_404(server) -> None:
    board = server.board
    post = board.live_posts()[4]  # k=4: an Instagram link and a push repeating the first image
    a = ptt.parse_article(_get(server, f"/bbs/Beauty/{post.post_id}.html").text)
    assert (a.author_id, a.title, a.board) == (post.author, post.title, "Beauty")
    assert a.header_time.timestamp() == post.ts
    names = [board.images[(post.first_image + j) % len(board.images)].name for j in range(2)]
    assert a.body_links == (*tuple(f"{server.url}/img/{n}" for n in names), "https://www.instagram.com/p/B00004/")
    assert ptt.image_links(a) == [(f"{server.url}/img/{n}", "body", f"{server.url}/img/{n}") for n in names]
    assert "/preview/" in _get(server, f"/bbs/Beauty/{post.post_id}.html").text  # previews exist but are no links
    missing = next(s for s in board.slots if s.kind == "missing")
    assert _get(server, f"/bbs/Beauty/{missing.post_id}.html").status_code == 404
    assert _get(server, "/bbs/Beauty/M.1.A.000.html").status_code == 404


def test_extras_dead_non_image_and_mirrored_links(server) -> None:
    board = server.board
    by_k = {s.live: s for s in board.live_posts()}
    assert [link.href for link in board.links(by_k[1]) if "gone" in link.href] == ["/img/gone-00001.jpg"]
    assert _get(server, "/img/gone-00001.jpg").status_code == 404
    page = _get(server, "/img/page-00002.jpg")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    mirror = [link.href for link in board.links(by_k[3]) if link.href.startswith("/mirror/")]
    assert len(mirror) == 1
    original = "/img/" + mirror[0].rsplit("/", 1)[1]
    assert _get(server, mirror[0]).content == _get(server, original).content
    assert board.links(by_k[5])[-1].href == "https://imgur.com/a/Ab00005" and not board.links(by_k[5])[-1].image_like


def test_drawn_faces_are_jpegs(server) -> None:
    r = _get(server, "/img/0000.jpg")
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(r.content)).size == (256, 256)
    assert r.content == build_board(BoardSpec(posts=60, images_per_post=2, seed=3)).image_bytes("0000.jpg")
    assert r.content != _get(server, "/img/0001.jpg").content


def test_images_from_a_folder(tmp_path: Path) -> None:
    for i, color in enumerate(("red", "green", "blue")):
        Image.new("RGB", (40, 30), color).save(tmp_path / f"p{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    board = build_board(BoardSpec(images_dir=str(tmp_path), max_images=2, posts=5, images_per_post=1, extras=False))
    assert [a.name for a in board.images] == ["0000.png", "0001.png"]
    sources = {p.read_bytes() for p in tmp_path.glob("*.png")}
    assert all(board.image_bytes(a.name) in sources for a in board.images)
    with pytest.raises(ValueError, match="images_dir='/no/such/dir' is not a directory"):
        build_board(BoardSpec(images_dir="/no/such/dir"))
    with pytest.raises(ValueError, match="posts=0 must be >= 1"):
        BoardSpec(posts=0)


def test_shared_faces_folder(faces_dir: Path) -> None:
    board = build_board(BoardSpec(images_dir=str(faces_dir), max_images=5, posts=3))
    assert len(board.images) == 5
    assert all(a.path is not None and a.path.is_relative_to(faces_dir) for a in board.images)
    assert board.image_bytes(board.images[0].name) == board.images[0].path.read_bytes()


def test_faults_and_hits(server) -> None:
    path = "/bbs/Beauty/index2.html"
    server.add_fault(path, Fault(status=429, retry_after_s=3), Fault(status=503))
    assert [_get(server, path).status_code for _ in range(3)] == [429, 503, 200]
    assert server.hits[path] >= 3


def test_cli_serves_until_stopped() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "facegen.demo.board", "--posts", "25", "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert lines[0].startswith("board Beauty: 25 entries on 2 pages, 48 images, posts 2024-01-01..2024-01-03")
        url = lines[1].split("serving at ", 1)[1].split()[0]
        page = ptt.parse_index(requests.get(url + "/bbs/Beauty/index.html", cookies=OVER18, timeout=5).text)
        assert page.number == 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)
