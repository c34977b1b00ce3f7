"""facegen.download.fetch: per-host gate, URL checks, and each fetch outcome against a local server."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
import requests
from localserver import LocalServer, Route

from facegen.common.http import HttpConfig, make_session
from facegen.download.fetch import HostGate, classify_exception, fetch_url, url_host


def test_host_gate_limits_concurrency_and_spaces_starts():
    gate = HostGate(per_host=2, delay_s=0.05)
    lock = threading.Lock()
    active, peak, starts = [0], [0], []

    def job(host: str) -> None:
        with gate.slot(host):
            with lock:
                starts.append((host, time.monotonic()))
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.03)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=job, args=("a",)) for _ in range(6)] + [
        threading.Thread(target=job, args=("b",))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a = sorted(t for h, t in starts if h == "a")
    assert len(a) == 6 and len(starts) == 7
    assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(a))  # 50 ms apart per host
    b = next(t for h, t in starts if h == "b")
    # another host is not queued behind host a: b starts before a's last slot (a needs >= 5 x 50 ms),
    # a bound that holds on a loaded machine, where thread start-up can take tens of ms
    assert b < a[-1]
    assert peak[0] <= 3  # two for host a, one for host b


def test_host_gate_rejects_bad_settings():
    with pytest.raises(ValueError, match="per_host"):
        HostGate(0, 0.1)
    with pytest.raises(ValueError, match="delay_s"):
        HostGate(1, -1)


def test_url_host():
    assert url_host("https://I.Imgur.com/abc.jpg") == "i.imgur.com"
    assert url_host("ftp://example.com/a.jpg") is None
    assert url_host("http:///nohost.jpg") is None
    assert url_host("http://[::1/bad") is None
    assert url_host("imgur.com/abc.jpg") is None


def test_classify_exception():
    assert classify_exception(requests.exceptions.ReadTimeout("x")) == "timeout"
    assert classify_exception(requests.exceptions.TooManyRedirects("x")) == "http_error"
    assert classify_exception(requests.exceptions.InvalidURL("x")) == "invalid_url"
    assert classify_exception(requests.exceptions.ChunkedEncodingError("x")) == "connection_error"


@pytest.mark.network
def test_fetch_outcomes():
    routes = {
        "/a.jpg": Route(b"\xff\xd8abc"),
        "/big.jpg": Route(b"x" * 1000),
        "/forbidden.jpg": Route(b"no", status=403),
        "/gone.jpg": Route(b"", status=410),
        "/loop.jpg": Route(location="/loop.jpg"),
        "/drip.jpg": Route(b"0123456789" * 3, drip_s=0.05),  # each read is quick, the body never ends in time
        "/cut.jpg": Route(b"\xff\xd8" + b"x" * 100, cut=50),  # connection closed 50 bytes early
    }
    session = make_session(HttpConfig(timeout_s=1.0, retries=0, backoff_s=0.0))
    gate = HostGate(4, 0.0)
    with LocalServer(routes) as srv:
        ok = fetch_url(session, srv.url("/a.jpg"), gate, timeout_s=1.0, max_bytes=100)
        assert (ok.status, ok.body, ok.http_status, ok.content_type) == ("fetched", b"\xff\xd8abc", 200, "image/jpeg")
        assert ok.final_url == srv.url("/a.jpg") and ok.error is None
        big = fetch_url(session, srv.url("/big.jpg"), gate, timeout_s=1.0, max_bytes=999)
        assert big.status == "too_large" and big.body is None and "Content-Length 1000" in big.error
        assert (
            fetch_url(session, srv.url("/forbidden.jpg"), gate, timeout_s=1.0, max_bytes=100).error
            == "HTTP 403 Forbidden"
        )
        assert fetch_url(session, srv.url("/gone.jpg"), gate, timeout_s=1.0, max_bytes=100).status == "http_404"
        assert fetch_url(session, srv.url("/loop.jpg"), gate, timeout_s=1.0, max_bytes=100).status == "http_error"
        assert (
            fetch_url(session, "mailto:someone@example.com", gate, timeout_s=1.0, max_bytes=100).status == "invalid_url"
        )
        cut = fetch_url(session, srv.url("/cut.jpg"), gate, timeout_s=1.0, max_bytes=1000)
        assert cut.status == "connection_error" and cut.body is None and "IncompleteRead" in cut.error
        t = time.monotonic()
        drip = fetch_url(session, srv.url("/drip.jpg"), gate, timeout_s=1.0, max_bytes=100, body_deadline_s=0.3)
        assert drip.status == "timeout" and "body_deadline_s=0.3" in drip.error and time.monotonic() - t < 1.0
        slow_but_in_time = fetch_url(
            session, srv.url("/drip.jpg"), gate, timeout_s=1.0, max_bytes=100, body_deadline_s=5.0
        )
        assert slow_but_in_time.status == "fetched" and slow_but_in_time.body == b"0123456789" * 3
    assert srv.hits["/a.jpg"] == 1 and srv.hits["/big.jpg"] == 1


def test_host_gate_slows_a_throttled_host_and_recovers():
    gate = HostGate(per_host=4, delay_s=0.1, max_delay_s=3.0)
    gate.feedback("i.imgur.com", throttled=True)
    assert gate.delay("i.imgur.com") == 1.0  # at least throttle_floor_s
    gate.feedback("i.imgur.com", throttled=True)
    gate.feedback("i.imgur.com", throttled=True)
    assert gate.delay("i.imgur.com") == 3.0  # doubled, capped at max_delay_s
    assert gate.delay("other.host") == 0.1  # other hosts untouched
    for _ in range(60):
        gate.feedback("i.imgur.com", throttled=False)
    assert gate.delay("i.imgur.com") == 0.1  # back to the configured gap, never below


@pytest.mark.network
def test_a_429_slows_down_the_whole_host():
    routes = {"/busy.jpg": Route(b"img", busy_first=1), "/calm.jpg": Route(b"img")}
    session = make_session(HttpConfig(timeout_s=2.0, retries=1, backoff_s=0.0))
    gate = HostGate(4, 0.0)
    with LocalServer(routes) as srv:
        assert fetch_url(session, srv.url("/calm.jpg"), gate, timeout_s=2.0, max_bytes=100).status == "fetched"
        assert gate.delay("127.0.0.1") == 0.0
        busy = fetch_url(
            session, srv.url("/busy.jpg"), gate, timeout_s=2.0, max_bytes=100
        )  # 429 + Retry-After: 1, then 200
        assert busy.status == "fetched" and busy.elapsed_s >= 1.0
        assert gate.delay("127.0.0.1") == HostGate.throttle_floor_s


@pytest.mark.network
def test_a_redirect_to_an_unlisted_loopback_port_is_blocked_before_connecting():
    from facegen.common.http import DestinationPolicy

    with LocalServer({"/internal/admin-secret.jpg": Route(b"\xff\xd8secret")}) as inner:
        secret = inner.url("/internal/admin-secret.jpg")
        with LocalServer({"/a.jpg": Route(location=secret), "/b.jpg": Route(b"\xff\xd8img")}) as outer:
            listed = outer.url("").split("//")[1]  # 127.0.0.1:<outer port>

            def fetch(allow: tuple[str, ...], path: str):
                http = HttpConfig(timeout_s=1.0, retries=2, backoff_s=0.0)
                session = make_session(http, policy=DestinationPolicy(allow))
                return fetch_url(session, outer.url(path), HostGate(4, 0.0), timeout_s=1.0, max_bytes=100)

            assert fetch((listed,), "/b.jpg").body == b"\xff\xd8img"  # the listed host:port passes
            hop = fetch((listed,), "/a.jpg")  # ... but its redirect to another loopback port does not
            assert hop.status == "blocked_host" and hop.body is None
            assert f"127.0.0.1:{secret.split(':')[2].split('/')[0]} resolves to 127.0.0.1 (loopback)" in hop.error
            assert "download.allow_private_hosts" in hop.error
            direct = fetch((), "/b.jpg")  # nothing listed: loopback refused outright, never retried
            assert direct.status == "blocked_host" and direct.elapsed_s < 0.5
            assert inner.hits == {} and outer.hits["/b.jpg"] == 1  # not one request reached a refused host
            followed = fetch(("127.0.0.1",), "/a.jpg")  # the host listed without a port: every port
            assert followed.status == "fetched" and followed.body == b"\xff\xd8secret" and followed.final_url == secret
