"""facegen.studio.guard: only the studio's own page drives the studio; bodies capped at the socket."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from studio_client import PAGE_HEADERS, page_client

from facegen.studio.app import StudioConfig, create_app
from facegen.studio.guard import HostPolicy, split_host


def _png(w: int = 8, h: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (120, 80, 60)).save(buf, format="PNG")
    return buf.getvalue()


def test_split_host_and_policy():
    assert split_host("127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert split_host("[::1]:80") == ("[::1]", 80)
    assert split_host("LOCALHOST") == ("localhost", None)
    policy = HostPolicy("127.0.0.1", 8765, ["studio.lan"])
    assert policy.accepts("127.0.0.1:8765") and policy.accepts("localhost:8765") and policy.accepts("[::1]:8765")
    assert policy.accepts("studio.lan:1234")
    assert not policy.accepts("127.0.0.1:8766")  # another port
    assert not policy.accepts("attacker.example:8765")  # DNS rebinding
    assert not policy.accepts("")
    assert not HostPolicy("10.0.0.5", 80).accepts("localhost:80")  # loopback names only for a loopback bind


def test_the_pages_own_requests_are_served(client):
    assert client.get("/api/model").status_code == 200
    # a same-origin post carries the studio's own Origin
    r = client.post("/api/generate", json={"n": 1}, headers={"Origin": "http://testserver"})
    assert r.status_code == 200


def test_a_rebinding_host_is_refused(client):
    for method in ("get", "post"):
        r = getattr(client, method)("/api/model", headers={"Host": "attacker.example:8765"})
        assert r.status_code == 400 and "attacker.example" in r.json()["detail"]


def test_a_foreign_origin_is_refused(client):
    r = client.post("/api/generate", json={"n": 1}, headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and "attacker.example" in r.json()["detail"]
    assert client.app.state.studio.runner.completed == 0


def test_posts_without_the_header_are_refused(repo):
    with TestClient(create_app(StudioConfig(root=repo, allow_hosts=("testserver",)))) as c:
        form = c.post("/api/judge", data={"token": "x", "answer": "real"})  # a plain HTML form post
        multipart = c.post("/api/upload", files={"file": ("a.png", _png(), "image/png")})
        as_json = c.post("/api/model", json={"id": "best"})
        for r in (form, multipart, as_json):
            assert r.status_code == 403 and "X-Facegen-Studio" in r.json()["detail"]
        assert c.get("/api/model").status_code == 200  # reading needs no header
        assert c.post("/api/model", json={"id": "best"}, headers=PAGE_HEADERS).status_code == 200


def test_a_multipart_post_from_another_origin_is_refused(client):
    r = client.post(
        "/api/upload", files={"file": ("a.png", _png(), "image/png")}, headers={"Origin": "http://evil.test"}
    )
    assert r.status_code == 403


def _drive(app, headers: list[tuple[bytes, bytes]], first: bytes, chunks: int, chunk: bytes) -> tuple[int, int]:
    """POST /api/upload by hand: (status, bytes the app read) for ``first`` + ``chunks`` x ``chunk``."""
    read = 0
    left = [chunks + 1]

    async def receive():
        nonlocal read
        if left[0] == 0:
            return {"type": "http.disconnect"}
        body = first if left[0] == chunks + 1 else chunk
        left[0] -= 1
        read += len(body)
        return {"type": "http.request", "body": body, "more_body": left[0] > 0}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/upload",
        "raw_path": b"/api/upload",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:80"), (b"x-facegen-studio", b"1"), *headers],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], read


@pytest.mark.parametrize("with_length", [True, False])
def test_a_50_mb_upload_is_refused_without_reading_it(repo, tmp_path, monkeypatch, with_length):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    app = create_app(StudioConfig(root=repo, max_upload_bytes=2000))
    chunk = b"x" * 65536
    n = 50 * 2**20 // len(chunk)
    boundary = b"b0undary"
    headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
    if with_length:
        headers.append((b"content-length", str(n * len(chunk)).encode()))
    first = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n'
    )
    status, read = _drive(app, headers, first, n, chunk)
    assert status == 413
    # Content-Length refuses before a byte; a streamed body stops at the first chunk past the cap
    assert read == (0 if with_length else len(first) + 2 * len(chunk))
    assert list((tmp_path / "spool").iterdir()) == []
    app.state.studio.runner.close()


def test_the_413_names_the_limit(repo):
    with page_client(StudioConfig(root=repo, max_upload_bytes=2000)) as c:
        body = json.dumps({"image": "A" * 100_000}).encode()
        r = c.post("/api/edit", content=body, headers={"content-type": "application/json"})
        limit = 3 * 2000 + 64 * 1024  # a base64 image and mask, plus the envelope
        assert r.status_code == 413 and r.json()["detail"].endswith(f"limit of {limit} bytes")


def test_a_public_host_needs_the_flag(repo, capsys, monkeypatch):
    import uvicorn

    from facegen import cli

    served = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    assert cli.main(["studio", "--root", str(repo), "--model", str(repo / "models/best"), "--host", "0.0.0.0"]) == 2
    assert "--public" in capsys.readouterr().err and not served
    argv = ["studio", "--root", str(repo), "--model", str(repo / "models/best"), "--host", "0.0.0.0", "--public"]
    assert cli.main([*argv, "--allow-host", "studio.lan"]) == 0
    assert "warning" in capsys.readouterr().err
    app, kw = served[0]
    assert kw["host"] == "0.0.0.0" and kw["port"] == 8765
    assert app.state.studio.cfg.allow_hosts == ("studio.lan",) and app.state.studio.cfg.port == 8765
    app.state.studio.runner.close()
