"""The Runs tab in a copied workspace whose original is gone (issue 24 item 6): every epoch's grid
and every saved checkpoint is found through the store's relative paths, wherever the studio runs."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from studio_client import page_client

from facegen.diffusion.model import save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.studio.app import StudioConfig
from facegen.train import tracking


def grid(value: int) -> Image.Image:
    return Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8))


def test_a_copied_workspace_shows_every_grid_and_loads_every_checkpoint(
    repo: Path, tiny_unet, tmp_path_factory
) -> None:
    from diffusers.training_utils import EMAModel

    run_dir = repo / "cache" / "checkpoints" / "k1"
    save_model_dir(run_dir / "best", tiny_unet, make_noise_scheduler(), {"model": "tiny"})
    for epoch in (1, 2):
        (run_dir / f"epoch_{epoch:05d}").mkdir()
        torch.save(EMAModel(tiny_unet.parameters()).state_dict(), run_dir / f"epoch_{epoch:05d}" / "ema.pt")
    (repo / ".git").mkdir()  # the workspace root (repo_root looks for it)
    with contextlib.chdir(repo):  # the trainer runs in the workspace root: relative artifact roots
        t = tracking.Tracker("sqlite:///mlflow.db", "studio-test", "r", artifact_root=repo / "mlruns")
        t.set_tags({"metric": "fd_offline", "best_checkpoint": "cache/checkpoints/k1/best"})
        for epoch in (1, 2):
            t.log_metrics({"fd_offline": 3.0 - epoch, "best_fd_offline": 3.0 - epoch, "best_epoch": epoch}, epoch)
            t.log_grid(grid(40 * epoch), epoch)
        t.end()
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    copy = elsewhere / "copy"
    shutil.copytree(repo, copy, symlinks=True)
    shutil.rmtree(repo)
    with (
        contextlib.chdir(elsewhere),
        page_client(StudioConfig(root=copy, tracking_uri=f"sqlite:///{copy / 'mlflow.db'}")) as c,
    ):
        (run,) = c.get("/api/runs").json()["runs"]
        assert run["grids"] == [1, 2]
        for epoch in (1, 2):
            png = c.get(f"/api/runs/{t.run_id}/grid/{epoch}")
            assert png.status_code == 200, png.text
            assert np.asarray(Image.open(io.BytesIO(png.content)))[0, 0, 0] == 40 * epoch
        missing = c.get(f"/api/runs/{t.run_id}/grid/3")
        assert missing.status_code == 404 and "no sample grid for epoch 3" in missing.text
        assert run["checkpoints"] == [f"run:{t.run_id}", f"run:{t.run_id}:epoch:1", f"run:{t.run_id}:epoch:2"]
        for model_id in run["checkpoints"]:
            assert c.post("/api/model", json={"id": model_id}).status_code == 200
            r = c.post("/api/generate", json={"n": 1, "steps": 2})
            assert r.status_code == 200 and r.json()["model"] == model_id, r.text
