"""facegen.common.http: retries with backoff, Retry-After on 429, final response returned, no Referer."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from facegen.common.http import HttpConfig, make_session


class _Handler(BaseHTTPRequestHandler):
    hits: dict[str, list[tuple[float, dict]]] = {}

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        seen = self.hits.setdefault(self.path, [])
        seen.append((time.monotonic(), dict(self.headers)))
        if self.path == "/429-once" and len(seen) == 1:
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.end_headers()
            return
        if self.path == "/always-500":
            self.send_response(500)
            self.end_headers()
            return
        if self.path == "/404":
            self.send_response(404)
            self.end_headers()
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def server():
    _Handler.hits = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", _Handler.hits
    srv.shutdown()


@pytest.mark.network
def test_429_waits_for_retry_after_then_succeeds(server):
    base, hits = server
    session = make_session(HttpConfig(retries=3, backoff_s=0.0), cookies={"over18": "1"})
    resp = session.get(f"{base}/429-once", timeout=5)
    assert resp.status_code == 200 and resp.text == "ok"
    (t1, h1), (t2, h2) = hits["/429-once"]
    assert t2 - t1 >= 0.9  # honoured Retry-After: 1
    assert h2["Cookie"] == "over18=1"
    assert "Referer" not in h1 and h2["User-Agent"].startswith("facegen/")


@pytest.mark.network
def test_5xx_retried_then_final_response_returned(server):
    base, hits = server
    session = make_session(HttpConfig(retries=2, backoff_s=0.0))
    resp = session.get(f"{base}/always-500", timeout=5)
    assert resp.status_code == 500
    assert len(hits["/always-500"]) == 3  # first try + 2 retries


@pytest.mark.network
def test_404_is_not_retried(server):
    base, hits = server
    resp = make_session(HttpConfig(retries=3, backoff_s=0.0)).get(f"{base}/404", timeout=5)
    assert resp.status_code == 404 and len(hits["/404"]) == 1
