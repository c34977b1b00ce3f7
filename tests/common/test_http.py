"""facegen.common.http: retries with backoff, Retry-After on 429, final response returned, no Referer."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from facegen.common.http import HttpConfig, make_session


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, list[tuple[float, dict]]]] = {}

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


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("::ffff:127.0.0.1", "loopback"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_destination_policy_refuses_every_non_public_address(address, kind):
    from facegen.common.http import BlockedHostError, DestinationPolicy

    policy = DestinationPolicy()
    if kind is None:
        assert policy.addresses(address, 443) == [address]
        return
    with pytest.raises(BlockedHostError, match=rf"\({kind}\).*download.allow_private_hosts"):
        policy.addresses(address, 443)
    assert DestinationPolicy((address,)).addresses(address, 443) == [address]  # listed: allowed
    assert DestinationPolicy(block_private=False).addresses(address, 443) == [address]


def test_only_policy_and_allow_list_parsing():
    from facegen.common.http import BlockedHostError, DestinationPolicy, allowed_hosts

    only = DestinationPolicy(block_private=False, only="127.0.0.1:8765", setting="crawl.base_url")
    assert only.addresses("127.0.0.1", 8765) == ["127.0.0.1"]
    with pytest.raises(BlockedHostError, match=r"fetches only 127\.0\.0\.1:8765"):
        only.addresses("127.0.0.1", 8766)
    assert DestinationPolicy(("127.0.0.1:8765",)).addresses("127.0.0.1", 8765) == ["127.0.0.1"]
    with pytest.raises(BlockedHostError):
        DestinationPolicy(("127.0.0.1:8765",)).addresses("127.0.0.1", 8766)  # another port of a listed host:port
    parsed = allowed_hosts(["LocalHost", "127.0.0.1:8765", "[::1]:80", "::1"])
    assert parsed == ("localhost", "127.0.0.1:8765", "[::1]:80", "::1")
    for bad in ["", "host:", "host:http", "http://host", "[::1]x"]:
        with pytest.raises(ValueError, match="is not 'host' or 'host:port'"):
            allowed_hosts([bad])


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch, server):
    """DNS rebinding: a name resolved once for the check must not be resolved again to connect."""
    import socket

    from facegen.common.http import DestinationPolicy

    real = socket.getaddrinfo
    asked: list[str] = []

    def rebinding(host, port, *args, **kw):  # first answer loopback, then nothing at all
        if host == "rebind.invalid":
            asked.append(host)
            if len(asked) > 1:
                raise socket.gaierror(socket.EAI_NONAME, "rebound")
            return real("127.0.0.1", port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    port = server[0].rsplit(":", 1)[1]
    session = make_session(HttpConfig(retries=0), policy=DestinationPolicy(("rebind.invalid",)))
    resp = session.get(f"http://rebind.invalid:{port}/ok", timeout=5)
    assert resp.status_code == 200 and resp.content == b"ok"
    assert asked == ["rebind.invalid"]  # one lookup, and the connection went to its answer


def _self_signed(tmp_path) -> tuple[str, str]:
    """A certificate for DNS name ``localhost`` only (not 127.0.0.1), and its key, as PEM files."""
    pytest.importorskip("cryptography")
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem, key_pem = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_pem), str(key_pem)


def test_https_through_the_guard_still_verifies_the_host_name(tmp_path):
    """The guard connects to the checked IP, but TLS (SNI, certificate match) keeps the host name."""
    import ssl

    from facegen.common.http import DestinationPolicy

    cert, key = _self_signed(tmp_path)
    _Handler.hits = {}
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        port = srv.server_address[1]
        session = make_session(HttpConfig(retries=0), policy=DestinationPolicy(("localhost",)))
        resp = session.get(f"https://localhost:{port}/ok", verify=cert, timeout=5)
        assert resp.status_code == 200 and resp.content == b"ok"
    finally:
        srv.shutdown()
        srv.server_close()
