"""The download stage's real entry point, run on a local board with the repository's params."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def download_stage(scrfd_model: Path) -> Callable[..., subprocess.CompletedProcess]:
    """``download_stage(cwd, links, host)``: ``stages/download.py`` in ``cwd`` on ``links``.

    params.yaml holds the real defaults but the offline detector, no politeness delay and the
    local server's ``host`` (``127.0.0.1:<port>``) allowed past the SSRF guard.
    """

    def run(cwd: Path, links: pd.DataFrame, host: str) -> subprocess.CompletedProcess:
        (cwd / "data").mkdir(exist_ok=True)
        links.to_parquet(cwd / "data" / "links.parquet")
        params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
        params["faces"]["model"] = str(scrfd_model)
        params["download"]["host_delay_s"] = 0.0
        params["download"]["allow_private_hosts"] = [host]
        (cwd / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
        return subprocess.run(
            [sys.executable, str(REPO / "stages" / "download.py"), "--no-progress"],
            cwd=cwd,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run
