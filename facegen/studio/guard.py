"""Only the studio's own page may drive the studio: Host, Origin and header checks, body caps.

Why: the studio binds to loopback, yet any web page the user visits can send it requests (a
multipart or form post needs no CORS preflight), and a DNS-rebinding page (attacker.example
resolving to 127.0.0.1) can also read its answers. So, before any route runs:

- a request whose ``Host`` is not the bound host:port (or one of ``--allow-host``) gets 400:
  a rebinding page's requests carry its own host name;
- a state-changing request (anything but GET/HEAD/OPTIONS) needs the header
  ``X-Facegen-Studio: 1`` (a cross-origin page cannot set it without a CORS preflight, which
  the studio never grants; a plain HTML form cannot set it at all) and, when it has an
  ``Origin``, that origin must be the studio's own; else 403 with a message;
- a body whose ``Content-Length`` passes the route's cap gets 413 before a byte is read
  (bodies without a length are counted while streaming by FastAPI's ``max_body_size``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

HEADER = "x-facegen-studio"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to bind) is this machine only."""
    return host in LOOPBACK_NAMES or host.startswith("127.")


def split_host(value: str) -> tuple[str, int | None]:
    """``'127.0.0.1:8765'`` -> ``('127.0.0.1', 8765)``; ``'[::1]:80'`` -> ``('[::1]', 80)``; no port -> None."""
    value = value.strip().lower()
    if value.startswith("["):  # bracketed IPv6
        name, _, rest = value.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:  # a name without a port, or a bare IPv6 address
        return value, None
    return (name, int(port)) if port.isdigit() else (name, None)


class HostPolicy:
    """Which ``Host`` values are the studio's own: the bound host (all loopback names when it
    is loopback) at the bound port (any port when ``port`` is None), plus ``allow`` entries
    (``name`` for any port, ``name:port`` for one)."""

    def __init__(self, host: str, port: int | None, allow: Iterable[str] = ()) -> None:
        names = set(LOOPBACK_NAMES) if is_loopback(host) else {host.lower()}
        self.own: set[tuple[str, int | None]] = {(n, port) for n in names}
        for entry in allow:
            self.own.add(split_host(entry))

    def accepts(self, host_header: str) -> bool:
        """Whether a request with this ``Host`` header is addressed to the studio itself."""
        name, port = split_host(host_header)
        return (name, port) in self.own or (name, None) in self.own


class OriginGuard:
    """ASGI middleware applying the module's rules; ``body_limit(path)`` is a route's byte cap."""

    def __init__(self, app: ASGIApp, *, hosts: HostPolicy, body_limit: Callable[[str], int]) -> None:
        self.app = app
        self.hosts = hosts
        self.body_limit = body_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def refusal(self, scope: Scope) -> tuple[int, str] | None:
        """(status, message) when the request must not reach a route, else None."""
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not self.hosts.accepts(host):
            return 400, (
                f"Host {host!r} is not this studio's address: open it by the address it printed, "
                "or start it with --allow-host NAME"
            )
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
                return 403, f"Origin {origin!r} is not this studio's page: only the studio's own page may change it"
            if headers.get(HEADER) != "1":
                return 403, (
                    f"a {scope['method']} needs the header 'X-Facegen-Studio: 1' "
                    "(the studio's page sends it; other pages cannot)"
                )
        length = headers.get("content-length")
        limit = self.body_limit(scope["path"])
        if length is not None and length.isdigit() and int(length) > limit:
            return 413, f"request body of {int(length)} bytes exceeds this route's limit of {limit} bytes"
        return None
