"""One configured HTTP session for the crawler and the downloader.

Retries are urllib3's: exponential backoff on connection errors, timeouts and 5xx, and
429/503 answered by sleeping for the server's ``Retry-After``. After the last retry the
final response is returned (not raised), so callers record the status instead of dying.
:func:`is_timeout` tells a timeout from a refused or reset connection for both stages.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ReadTimeoutError
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


def make_session(cfg: HttpConfig, cookies: dict[str, str] | None = None) -> requests.Session:
    """A ``requests.Session`` with retries, backoff, Retry-After and a connection pool.

    ``cookies`` are sent on every request (e.g. ``{"over18": "1"}`` for PTT's age gate).
    No Referer is ever set: image hosts such as imgur refuse a ptt.cc Referer.
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
    adapter = HTTPAdapter(max_retries=retry, pool_connections=cfg.pool_size, pool_maxsize=cfg.pool_size)
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
