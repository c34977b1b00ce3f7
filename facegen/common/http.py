"""One configured HTTP session for the crawler and the downloader.

Retries are urllib3's: exponential backoff on connection errors, timeouts and 5xx, and
429/503 answered by sleeping for the server's ``Retry-After``. After the last retry the
final response is returned (not raised), so callers record the status instead of dying.
:func:`is_timeout` tells a timeout from a refused or reset connection for both stages.

Two guards shared by both stages: :func:`read_body` reads a streamed response with a cap on
the decoded size (a gzip bomb stops at the cap) and a deadline on the whole body (a server
dripping bytes never trips the per-read timeout); a :class:`DestinationPolicy` given to
:func:`make_session` checks every connection (first request and every redirect hop) before it
is opened, and connects to the very addresses it checked (no DNS-rebinding gap).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class HttpConfig:
    """How to talk to a server: identity, patience and politeness."""

    user_agent: str = "facegen/0.1 (+https://github.com/facegen/facegen)"
    timeout_s: float = 20.0
    retries: int = 5
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    pool_size: int = 16


def make_session(
    cfg: HttpConfig, cookies: dict[str, str] | None = None, policy: DestinationPolicy | None = None
) -> requests.Session:
    """A ``requests.Session`` with retries, backoff, Retry-After and a connection pool.

    ``cookies`` are sent on every request (e.g. ``{"over18": "1"}`` for PTT's age gate).
    No Referer is ever set: image hosts such as imgur refuse a ptt.cc Referer. With ``policy``
    every new connection is checked first; a refused one raises :class:`BlockedHostError`
    out of ``session.get`` (never retried).
    """
    retry = Retry(
        total=cfg.retries,
        connect=cfg.retries,
        read=cfg.retries,
        status=cfg.retries,
        backoff_factor=cfg.backoff_s,
        backoff_max=cfg.backoff_max_s,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    if policy is None:
        adapter = HTTPAdapter(max_retries=retry, pool_connections=cfg.pool_size, pool_maxsize=cfg.pool_size)
    else:
        adapter = _GuardedAdapter(policy, max_retries=retry, pool_connections=cfg.pool_size, pool_maxsize=cfg.pool_size)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = cfg.user_agent
    for name, value in (cookies or {}).items():
        session.cookies.set(name, value)
    return session


def is_timeout(exc: BaseException) -> bool:
    """True when a requests/urllib3 error was, at its root, a connect or read timeout."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        # urllib3's NewConnectionError (refused, unreachable) subclasses ConnectTimeoutError for history's sake
        if not isinstance(e, NewConnectionError) and isinstance(
            e, (requests.Timeout, ReadTimeoutError, ConnectTimeoutError, socket.timeout, TimeoutError)
        ):
            return True
        stack.extend(a for a in getattr(e, "args", ()) if isinstance(a, BaseException))
        for attr in ("reason", "__cause__", "__context__"):
            nxt = getattr(e, attr, None)
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return False


class BodyLimitError(Exception):
    """A response body over its size cap or past its deadline; ``status`` is ``too_large`` or ``timeout``."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


_CHUNK = 64 * 1024


def read_body(resp: requests.Response, max_bytes: int, deadline_s: float | None = None) -> bytes:
    """The body of a ``stream=True`` response, decoded (gzip/deflate), at most ``max_bytes``.

    Raises :class:`BodyLimitError` when a declared Content-Length or the decoded bytes exceed
    ``max_bytes`` (urllib3 inflates at most one chunk ahead, so a gzip bomb costs ~``max_bytes``
    of memory, not its inflated size), or when the body is still arriving ``deadline_s`` after
    reading began. urllib3's exceptions from the socket propagate.
    """
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise BodyLimitError("too_large", f"Content-Length {declared} exceeds max_bytes={max_bytes}")
    buf = bytearray()
    began = time.monotonic()
    # read1 returns what one socket read brings (unlike iter_content, which waits for a full
    # chunk), so a server dripping bytes is caught by the deadline below
    while chunk := resp.raw.read1(_CHUNK, decode_content=True):
        buf += chunk
        if len(buf) > max_bytes:
            raise BodyLimitError("too_large", f"body exceeds max_bytes={max_bytes} (decoded)")
        if deadline_s is not None and time.monotonic() - began > deadline_s:
            raise BodyLimitError("timeout", f"body not complete after body_deadline_s={deadline_s} ({len(buf)} bytes)")
    return bytes(buf)


class BlockedHostError(ValueError):
    """A destination the session's :class:`DestinationPolicy` refuses.

    Deliberately neither an ``OSError`` nor a urllib3 error: urllib3 does not retry it and
    requests does not wrap it, so it reaches the caller at once.
    """


def _blocked_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``ip`` is not a public unicast address (None when it is)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind in ("unspecified", "loopback", "link_local", "multicast", "reserved", "private"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "non-global"


@dataclass(frozen=True)
class DestinationPolicy:
    """Which hosts a session may connect to, checked on every new connection.

    ``block_private``: refuse any host that resolves to a private, loopback, link-local,
    multicast, reserved or unspecified address (every resolved address is checked), unless the
    host or ``host:port`` is in ``allow_private_hosts``. ``only``: when set (``host:port``), refuse
    every other destination (the crawler talks to ``crawl.base_url``'s host alone).
    """

    allow_private_hosts: tuple[str, ...] = ()
    block_private: bool = True
    only: str | None = None
    setting: str = "download.allow_private_hosts"  # named in the refusal, as the way out

    def addresses(self, host: str, port: int) -> list[str]:
        """The checked addresses to connect to for ``host:port``; raises BlockedHostError.

        ``socket.gaierror`` propagates (the caller reports a name-resolution failure).
        """
        host = host.lower().rstrip(".").strip("[]")
        where = host_port(host, port)
        if self.only is not None and where != self.only.lower():
            raise BlockedHostError(f"{where} refused: this session fetches only {self.only} ({self.setting})")
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        allowed = {h.lower() for h in self.allow_private_hosts}
        if not self.block_private or host in allowed or where in allowed:
            return found
        for addr in found:
            kind = _blocked_kind(ipaddress.ip_address(addr))
            if kind is not None:
                raise BlockedHostError(
                    f"{where} resolves to {addr} ({kind}): private, loopback, link-local, multicast and "
                    f"reserved destinations are refused; list {host!r} or {where!r} in {self.setting} to allow it"
                )
        return found


def allowed_hosts(items: Iterable[str]) -> tuple[str, ...]:
    """``allow_private_hosts`` entries, lower-cased and checked: ``host``, ``host:port`` or ``[v6]:port``."""
    out = []
    for item in items:
        text = str(item).strip().lower()
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            bad, port = not (rest == "" or rest.startswith(":")), rest[1:]
        elif text.count(":") == 1:
            (host, port), bad = text.split(":"), False
        else:  # a name, an IPv4 address or a bare IPv6 address
            host, port, bad = text, "", False
        if bad or not host or any(c in host for c in "/ @[]") or (port and not port.isdigit()) or text.endswith(":"):
            raise ValueError(f"allow_private_hosts entry {item!r} is not 'host' or 'host:port' (e.g. '127.0.0.1:8765')")
        out.append(host_port(host, int(port)) if port else host)
    return tuple(out)


def host_port(host: str, port: int) -> str:
    """``host:port``, or ``[v6]:port`` for an IPv6 address (unambiguous)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _GuardedConnectionMixin:
    """urllib3 connection that asks the policy before connecting, then connects to what it checked."""

    policy: DestinationPolicy

    def _new_conn(self) -> socket.socket:
        try:
            addresses = self.policy.addresses(self.host, self.port)  # type: ignore[attr-defined]
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e  # type: ignore[attr-defined,arg-type]
        dns_host = self._dns_host  # type: ignore[has-type]
        last: Exception | None = None
        try:
            for addr in addresses:
                self._dns_host = addr
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except NewConnectionError as e:  # refused or unreachable: the next checked address
                    last = e
        finally:
            self._dns_host = dns_host
        assert last is not None, "getaddrinfo returns at least one address or raises"
        raise last


class _GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose pools open :class:`_GuardedConnectionMixin` connections."""

    def __init__(self, policy: DestinationPolicy, max_retries: Retry, pool_connections: int, pool_maxsize: int) -> None:
        self.policy = policy
        super().__init__(max_retries=max_retries, pool_connections=pool_connections, pool_maxsize=pool_maxsize)

    def init_poolmanager(self, *args: object, **kw: object) -> None:
        super().init_poolmanager(*args, **kw)  # type: ignore[arg-type]
        classes = {}
        kinds = (("http", HTTPConnectionPool, HTTPConnection), ("https", HTTPSConnectionPool, HTTPSConnection))
        for scheme, pool, conn in kinds:
            guarded = type(f"Guarded{conn.__name__}", (_GuardedConnectionMixin, conn), {"policy": self.policy})
            classes[scheme] = type(f"Guarded{pool.__name__}", (pool,), {"ConnectionCls": guarded})
        self.poolmanager.pool_classes_by_scheme = classes
