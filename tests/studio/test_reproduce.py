"""The studio's ``reproduce`` command is true: run for real in a git + DVC workspace with the
repository's sample stage, it writes the very PNG bytes the page shows (issue 24 item 3)."""

from __future__ import annotations

import base64
import shlex

import pytest
from dvc_workspace import dvc_workspace, run
from studio_client import page_client
from studio_models import TRAIN_CONFIG, cond_unet

from facegen.diffusion.model import save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.studio.app import StudioConfig

REQUESTS = {
    "unconditional": {"seed": 3, "n": 5, "condition": None},
    "conditional": {"seed": 3, "n": 5, "condition": {"brightness": 160}, "guidance": 2.5},
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(REQUESTS))
def test_the_reproduce_command_writes_the_pages_images(repo, kind: str) -> None:
    if kind == "conditional":
        save_model_dir(repo / "models" / "best", cond_unet(0), make_noise_scheduler(), TRAIN_CONFIG)
    with page_client(StudioConfig(root=repo)) as c:
        answer = c.post("/api/generate", json=REQUESTS[kind])
    assert answer.status_code == 200, answer.text
    images = [base64.b64decode(b) for b in answer.json()["images"]]
    command = answer.json()["reproduce"]  # the page shows this string as is (tests/studio/test_browser.py)
    assert command, "models/best's generation must say how to reproduce it"
    dvc_workspace(repo, ["sample"])
    argv = shlex.split(command)
    assert argv[:3] == ["dvc", "exp", "run"], command
    run(repo, *argv)
    written = sorted((repo / "data" / "samples").glob("*.png"))
    assert [p.name for p in written] == [f"{i:05d}.png" for i in range(1, 6)]
    for i, path in enumerate(written):
        assert path.read_bytes() == images[i], f"{kind}: {path.name} differs from the page's image {i} ({command})"
