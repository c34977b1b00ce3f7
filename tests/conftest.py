"""Shared fixtures: where the shared photos, PTT pages and the SCRFD detector live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The tests' models are tiny: one torch thread runs their convolutions faster than two, and two
# OpenMP threads spin on a shared machine (the fast lane: ~4x less CPU on the sampling tests).
# Set before anything imports torch; stage scripts run as subprocesses inherit it. A variable
# already set (to measure with more threads) wins.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEGEN_SHARED", REPO.parent / "shared"))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        pytest.skip(
            f"{what} not found at {path}: tests that need real data read it from ../shared (set FACEGEN_SHARED)"
        )
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder beside the checkout (CI always has it)."""
    return _need(SHARED, "../shared")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """Real photos: wild/ and portraits/."""
    return _need(SHARED / "faces", "shared face photos")


@pytest.fixture(scope="session")
def ptt_pages_dir() -> Path:
    """Real PTT index and article pages (2016-2024 markup)."""
    return _need(SHARED / "ptt-pages", "saved PTT pages")


@pytest.fixture(scope="session")
def scrfd_model() -> Path:
    """The real insightface SCRFD detector with 5 keypoints."""
    return _need(SHARED / "models" / "scrfd_500m_bnkps.onnx", "SCRFD detector")


@pytest.fixture(autouse=True)
def _isolated_tracking_uri():
    """Each test starts without MLFLOW_TRACKING_URI and leaves none behind.

    ``mlflow.set_tracking_uri`` also exports the variable, so without this a store of one test
    would become the store of every later subprocess (stage scripts) of another.
    """
    saved = os.environ.pop("MLFLOW_TRACKING_URI", None)
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    if saved is not None:
        os.environ["MLFLOW_TRACKING_URI"] = saved
