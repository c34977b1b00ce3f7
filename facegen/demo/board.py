"""A local PTT-format board server, for tests and the offline demo.

It serves a board in the exact markup of PTT's web front end (index pages with paging,
20 entries per page, the newest page with its separator and pinned posts, deleted
entries, announcements, article pages with header lines, body and push links and
richcontent previews, the over-18 gate) and is also the image host. The board is built
deterministically from ``BoardSpec`` (seed) and a folder of images, or from procedurally
drawn faces when no folder is given. The crawler cannot tell it from www.ptt.cc.

Python API::

    with serve(BoardSpec(images_dir="../shared/faces", posts=60)) as server:
        server.url            # 'http://127.0.0.1:<port>', use as crawl.base_url
        server.board.dates    # (first, last) Taipei dates holding posts
        server.hits           # Counter of request paths
        server.add_fault("/bbs/Beauty/index.html", Fault(status=429, retry_after_s=1))

CLI: ``python -m facegen.demo.board --images-dir DIR --posts 60 --port 8000``.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from facegen.demo.content import Board, BoardSpec, build_board, render_article, render_gate, render_index

__all__ = ["Board", "BoardServer", "BoardSpec", "Fault", "build_board", "main", "serve"]

_CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".gif": "image/gif",
    ".bmp": "image/bmp",
}


@dataclass
class Fault:
    """One injected misbehaviour for the next request to a path: sleep ``delay_s`` first,
    then answer ``status`` (with ``Retry-After`` when ``retry_after_s`` is set) instead of
    the page. ``status=None`` with a delay only slows the real answer (for timeouts)."""

    status: int | None = None
    retry_after_s: int | None = None
    delay_s: float = 0.0


class BoardServer(ThreadingHTTPServer):
    """The running server: ``url``, ``board``, request ``hits`` and injected ``faults``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, board: Board, host: str, port: int) -> None:
        super().__init__((host, port), _Handler)
        self.board = board
        self.hits: collections.Counter[str] = collections.Counter()
        self.faults: dict[str, collections.deque[Fault]] = collections.defaultdict(collections.deque)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def add_fault(self, path: str, *faults: Fault) -> None:
        """Queue faults for ``path`` (e.g. '/bbs/Beauty/index.html'); each is used once."""
        with self._lock:
            self.faults[path].extend(faults)

    def _take(self, path: str) -> Fault | None:
        with self._lock:
            self.hits[path] += 1
            queue = self.faults.get(path)
            return queue.popleft() if queue else None

    def requests_to(self, prefix: str) -> int:
        """How many requests were made to paths starting with ``prefix``."""
        with self._lock:
            return sum(n for p, n in self.hits.items() if p.startswith(prefix))

    def reset_hits(self) -> None:
        with self._lock:
            self.hits.clear()

    def start(self) -> BoardServer:
        self._thread = threading.Thread(target=self.serve_forever, name="ptt-board", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> BoardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server: BoardServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(
        self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", headers: dict | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self) -> None:
        self._send(404, b"<html><body><h1>404 - Not Found.</h1></body></html>")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        fault = self.server._take(path)
        if fault is not None:
            if fault.delay_s:
                time.sleep(fault.delay_s)
            if fault.status is not None:
                headers = {} if fault.retry_after_s is None else {"Retry-After": str(fault.retry_after_s)}
                self._send(fault.status, f"<html><body>{fault.status}</body></html>".encode(), headers=headers)
                return
        board = self.server.board
        base = self.server.url
        if path.startswith(("/img/", "/mirror/", "/preview/")):
            self._image(path)
        elif path == "/ask/over18":
            self._send(200, render_gate(board, parts.query).encode())
        elif path.startswith(f"/bbs/{board.spec.board}/"):
            if "over18=1" not in (self.headers.get("Cookie") or "").replace(" ", ""):
                self._send(302, b"", headers={"Location": f"/ask/over18?from={quote(path, safe='')}"})
                return
            name = path.rsplit("/", 1)[1]
            html = render_index(board, name, base) if name.startswith("index") else render_article(board, name, base)
            self._send(200, html.encode()) if html is not None else self._not_found()
        else:
            self._not_found()

    def _image(self, path: str) -> None:
        name = path.rsplit("/", 1)[1]
        if name.startswith("page-"):  # a link that looks like an image but is a web page
            self._send(200, b"<html><body>this image was moved</body></html>")
            return
        data = self.server.board.image_bytes(name)
        if data is None:
            self._not_found()
            return
        ext = "." + name.rsplit(".", 1)[-1].lower()
        self._send(200, data, _CONTENT_TYPES.get(ext, "application/octet-stream"))


def serve(spec: BoardSpec, host: str = "127.0.0.1", port: int = 0) -> BoardServer:
    """Build the board of ``spec`` and serve it in a background thread (port 0: any free
    port). Use as a context manager or call ``stop()``."""
    return BoardServer(build_board(spec), host, port).start()


def main(argv: list[str] | None = None) -> None:
    """``python -m facegen.demo.board``: serve a board until interrupted."""
    d = BoardSpec()
    ap = argparse.ArgumentParser(prog="python -m facegen.demo.board", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--images-dir", default=None, help="folder of images to post (searched recursively); default: drawn faces"
    )
    ap.add_argument("--max-images", type=int, default=d.max_images, help="use at most this many images")
    ap.add_argument(
        "--posts", type=int, default=d.posts, help="index entries on the board (deleted and announcements included)"
    )
    ap.add_argument("--images-per-post", type=int, default=d.images_per_post)
    ap.add_argument("--start-date", default=d.start_date, help="Taipei date of the first post (YYYY-MM-DD)")
    ap.add_argument("--posts-per-day", type=int, default=d.posts_per_day)
    ap.add_argument("--board", default=d.board)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument(
        "--no-extras", action="store_true", help="no dead/duplicate/non-image links, deleted posts or announcements"
    )
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args(argv)
    spec = BoardSpec(
        board=args.board,
        images_dir=args.images_dir,
        max_images=args.max_images,
        posts=args.posts,
        images_per_post=args.images_per_post,
        start_date=args.start_date,
        posts_per_day=args.posts_per_day,
        seed=args.seed,
        extras=not args.no_extras,
    )
    server = serve(spec, args.host, args.port)
    first, last = server.board.dates
    print(
        f"board {spec.board}: {len(server.board.slots)} entries on {server.board.pages} pages, "
        f"{len(server.board.images)} images, posts {first}..{last}"
    )
    print(
        f"serving at {server.url}  (params: crawl.base_url={server.url} crawl.board={spec.board} "
        f"crawl.start_date={first} crawl.end_date={last})",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
