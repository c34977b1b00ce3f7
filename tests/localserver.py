"""A tiny threaded HTTP server for download tests and benchmarks (127.0.0.1, a free port).

Routes map a path to a :class:`Route`: bytes with a content type, a status code, a redirect,
"429 with Retry-After the first N times", a delay before answering, a body dripped a byte at a
time, a body sent with ``Content-Encoding`` (e.g. a gzip bomb), or an endless body. Every
request's path is logged so tests can assert what was (not) fetched again.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "image/jpeg"
    status: int = 200
    location: str | None = None  # redirect target (status 302)
    busy_first: int = 0  # answer 429 (Retry-After: retry_after) to the first N requests
    retry_after: int = 1
    delay_s: float = 0.0  # sleep before answering (timeouts, latency)
    drip_s: float = 0.0  # send the body one byte at a time, this long apart
    cut: int = 0  # declare this many bytes more than sent, then close (a transfer cut short)
    encoding: str | None = None  # Content-Encoding header: ``body`` is already encoded (gzip bomb)
    endless: bool = False  # no Content-Length: send ``body`` again and again until the client hangs up


class LocalServer:
    """``with LocalServer(routes) as srv: srv.url("/a.jpg")``; ``srv.hits`` counts requests per path."""

    def __init__(self, routes: dict[str, Route], latency_s: float = 0.0) -> None:
        self.routes = routes
        self.latency_s = latency_s
        self.log: list[str] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.log.append(self.path)
                    n = server.log.count(self.path)
                route = server.routes.get(self.path)
                if server.latency_s:
                    time.sleep(server.latency_s)
                if route is None:
                    self._answer(404, b"not found", "text/plain")
                    return
                if route.delay_s:
                    time.sleep(route.delay_s)
                if n <= route.busy_first:
                    self._answer(429, b"slow down", "text/plain", {"Retry-After": str(route.retry_after)})
                elif route.location is not None:
                    self._answer(302, b"", "text/plain", {"Location": route.location})
                else:
                    extra = {"Content-Encoding": route.encoding} if route.encoding else {}
                    if route.endless:
                        self._endless(route.body or b"x" * 65536, route.content_type)
                    else:
                        self._answer(
                            route.status, route.body, route.content_type, extra, drip_s=route.drip_s, cut=route.cut
                        )

            def _endless(self, chunk: bytes, ctype: str) -> None:
                self.close_connection = True  # the body ends when the connection does (never, here)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    while True:
                        self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up
                    pass

            def _answer(
                self,
                status: int,
                body: bytes,
                ctype: str,
                headers: dict[str, str] | None = None,
                drip_s: float = 0.0,
                cut: int = 0,
            ) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body) + cut))
                    self.close_connection = self.close_connection or bool(cut)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    if not drip_s:
                        self.wfile.write(body)
                    for i in range(len(body) if drip_s else 0):
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                        time.sleep(drip_s)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def hits(self) -> Counter[str]:
        with self._lock:
            return Counter(self.log)

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
