"""Fixtures for the studio: a tiny saved UNet in a repository-like folder, and an app over it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from studio_client import page_client

from facegen.diffusion.model import build_unet, save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.studio.app import StudioConfig

# params.yaml of the tiny repository: few steps and a small batch keep every request fast,
# and batch_size 4 < the requests' n makes generation span several padded batches
PARAMS = """\
sample:
  seed: 0
  num_images: 8
  sampler: ddim
  steps: 4
  timestep_spacing: trailing
  batch_size: 4
  device: cpu
  grid_images: 4
train:
  experiment: studio-test
align:
  size: 32
"""


@pytest.fixture(scope="session")
def tiny_unet():
    """A randomly initialised tiny UNet (channels (8, 16), 16 px)."""
    torch.manual_seed(0)
    return build_unet("tiny", 16, channels=(8, 16))


@pytest.fixture()
def repo(tmp_path: Path, tiny_unet) -> Path:
    """tmp_path laid out like the repository: params.yaml and models/best/."""
    (tmp_path / "params.yaml").write_text(PARAMS, encoding="utf-8")
    save_model_dir(tmp_path / "models" / "best", tiny_unet, make_noise_scheduler(), {"model": "tiny"})
    return tmp_path


@pytest.fixture()
def client(repo: Path):
    with page_client(StudioConfig(root=repo)) as c:
        yield c
