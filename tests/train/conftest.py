"""Fixtures of the train tests."""

from __future__ import annotations

import pytest

BUSY_TIMEOUT_MS = 200  # instead of MLflow's 20000: the lock is real, the wait for it short


@pytest.fixture()
def short_sqlite_busy_timeout():
    """MLflow's sqlite store waits 20 s for a lock at every call (``PRAGMA busy_timeout = 20000``).

    A test that locks the store on purpose would sleep that long per retry; this sets the
    pragma to ``BUSY_TIMEOUT_MS`` on every engine while the test runs, so the call still meets
    the real lock and fails the same way (``database is locked``), just sooner."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def shorten(conn, cursor, statement, parameters, context, executemany):
        if statement.strip().lower().startswith("pragma busy_timeout"):
            statement = f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
        return statement, parameters

    event.listen(Engine, "before_cursor_execute", shorten, retval=True)
    yield
    event.remove(Engine, "before_cursor_execute", shorten)
