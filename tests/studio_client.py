"""A TestClient that talks to the studio as its own page does (tests of facegen.studio)."""

from __future__ import annotations

import dataclasses

from fastapi.testclient import TestClient

from facegen.studio.app import StudioConfig, create_app

PAGE_HEADERS = {"X-Facegen-Studio": "1"}  # what the page's api() adds to every request
TEST_HOST = "testserver"  # TestClient's Host header


def page_client(cfg: StudioConfig) -> TestClient:
    """A client of ``create_app(cfg)`` that TestClient's Host is allowed for, sending the page's header."""
    cfg = dataclasses.replace(cfg, allow_hosts=(*cfg.allow_hosts, TEST_HOST))
    return TestClient(create_app(cfg), headers=PAGE_HEADERS)
