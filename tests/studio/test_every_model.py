"""Every studio action on every model the pipeline writes: a conditional run's epoch checkpoints,
its best folder, models/best (issue 24 item 1); SDEdit at strength 1 is generation (item 2)."""

from __future__ import annotations

import base64

import mlflow
import pytest
import torch
from mlflow_runs import log_run
from studio_client import page_client
from studio_models import cond_unet

from facegen.diffusion.model import save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.studio.app import StudioConfig
from facegen.studio.editing import png_b64


@pytest.fixture()
def cond_run(repo, tmp_path):
    """models/best and a run folder of a conditional model, with epoch 1 and 2 EMA checkpoints, in MLflow."""
    from diffusers.training_utils import EMAModel

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sched = make_noise_scheduler()
    config = {"model": "tiny", "condition": ["brightness"]}
    save_model_dir(repo / "models" / "best", cond_unet(0), sched, config)
    run_dir = repo / "models" / "checkpoints" / "cond1"
    save_model_dir(run_dir / "best", cond_unet(0), sched, config)
    for epoch in (1, 2):
        (run_dir / f"epoch_{epoch:05d}").mkdir()
        torch.save(EMAModel(cond_unet(epoch).parameters()).state_dict(), run_dir / f"epoch_{epoch:05d}" / "ema.pt")
    mlflow.set_tracking_uri(uri)
    run_id = log_run(uri, "cond", {1: 3.0, 2: 2.0}, str(run_dir / "best"))
    return uri, run_id


def test_every_action_on_every_checkpoint_of_a_conditional_run(repo, cond_run):
    uri, run_id = cond_run
    face = base64.b64decode(png_b64(torch.full((16, 16, 3), 120, dtype=torch.uint8).numpy()))
    image = base64.b64encode(face).decode()
    mask = png_b64((torch.arange(16)[None, :, None].repeat(16, 1, 3) >= 8).to(torch.uint8).mul(255).numpy())
    ids = ["best", f"run:{run_id}", f"run:{run_id}:epoch:1", f"run:{run_id}:epoch:2"]
    seen = {}
    with page_client(StudioConfig(root=repo, tracking_uri=uri, experiment="exp")) as c:
        assert c.get("/api/runs").json()["runs"][0]["checkpoints"] == ids[1:]
        for model_id in ids:
            m = c.post("/api/model", json={"id": model_id})
            assert m.status_code == 200, m.text
            assert [x["name"] for x in m.json()["conditions"]] == ["brightness"]
            requests = {
                "generate": {"n": 2, "condition": {"brightness": 150}, "guidance": 2},
                "generate ": {"n": 2, "condition": None},
                "interpolate": {"frames": 3},
                "variations": {"n": 2},
                "edit": {"image": image, "mode": "sdedit", "strength": 0.5, "condition": {"brightness": 90}},
                "edit ": {"image": image, "mode": "repaint", "mask": mask},
            }
            for path, body in requests.items():
                r = c.post(f"/api/{path.strip()}", json={**body, "steps": 3})
                assert r.status_code == 200, (model_id, path, r.text)
                out = r.json()
                assert out["model"] == model_id
                seen[(model_id, path)] = out.get("images") or [out["image"]]
    # each checkpoint is its own weights: epoch 1 and 2 differ from each other and from best
    for path in ("generate", "interpolate"):
        assert seen[("best", path)] == seen[(f"run:{run_id}", path)]
        assert len({str(seen[(i, path)]) for i in ids[1:]}) == 3


def test_sdedit_at_strength_1_is_generation_of_the_seed(client):
    face = png_b64(torch.full((16, 16, 3), 200, dtype=torch.uint8).numpy())
    for seed in (0, 5):
        gen = client.post("/api/generate", json={"seed": seed, "n": 1, "sampler": "ddim", "steps": 4}).json()
        edit = client.post(
            "/api/edit", json={"image": face, "mode": "sdedit", "strength": 1.0, "seed": seed, "steps": 4}
        ).json()
        assert edit["image"] == gen["images"][0]
    kept = client.post("/api/edit", json={"image": face, "mode": "sdedit", "strength": 0.0, "steps": 4}).json()
    assert kept["image"] == face  # strength 0 keeps the face


def test_generate_without_a_condition_says_how_to_reproduce_it(client, repo):
    r = client.post("/api/generate", json={"seed": 2, "n": 3, "condition": None})
    assert r.status_code == 200, r.text
    cmd = r.json()["reproduce"]
    assert cmd.startswith("dvc exp run sample -S sample.seed=2 -S sample.num_images=3 -S sample.sampler=ddim")
    assert "-S '++sample.condition={}'" in cmd and "-S sample.batch_size=4" in cmd
    assert client.post("/api/generate", json={"n": 1, "condition": {}}).status_code == 200
