"""facegen.diffusion.pipeline: models/best as a diffusers pipeline, an MLflow model and a Hub export."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facegen.diffusion import pipeline
from facegen.diffusion.model import build_unet, load_model_dir, save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.diffusion.sampling import SampleSpec, generate

BEST = {
    "epoch": 7,
    "metric": "fid",
    "value": 41.25,
    "kid": 0.0125,
    "run_id": "abc123",
    "data_hash": "d" * 64,
    "num_train_images": 65,
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    unet = build_unet("tiny", 16, (8, 16))
    sched = make_noise_scheduler("linear", 100, "v_prediction")
    out = tmp_path_factory.mktemp("best") / "best"
    save_model_dir(out, unet, sched, {"model": "tiny", "image_size": 16, "epochs": 9, "lr": 0.002}, best=BEST)
    return out


def test_diffusers_loads_the_folder_and_samples_like_the_sample_stage(model_dir):
    from diffusers import DiffusionPipeline, DPMSolverMultistepScheduler, UNet2DModel

    pipe = DiffusionPipeline.from_pretrained(model_dir, trust_remote_code=True)  # the documented call
    assert type(pipe).__name__ == "FacegenPipeline" and isinstance(pipe.scheduler, DPMSolverMultistepScheduler)
    assert type(pipe.unet) is UNet2DModel  # an unconditional model ships no UNet code
    cfg = pipe.scheduler.config
    assert (cfg.timestep_spacing, cfg.algorithm_type, cfg.solver_order, cfg.thresholding) == (
        "trailing",
        "dpmsolver++",
        2,
        True,
    )
    assert (cfg.num_train_timesteps, cfg.prediction_type) == (100, "v_prediction")
    import torch

    out = pipe(
        batch_size=1, num_inference_steps=5, generator=torch.Generator("cpu").manual_seed(3), output_type="np"
    ).images
    ours = generate(*_loaded(model_dir), SampleSpec(sampler="dpm++", steps=5, batch_size=1), [3], progress=False)
    assert np.array_equal(np.round(out[0] * 255).astype(np.uint8), ours[0])


def _loaded(model_dir):
    unet, noise, _ = load_model_dir(model_dir)
    return unet, dict(noise.config)


def test_training_schedule_kept_apart_and_model_card(model_dir):
    _, noise, config = load_model_dir(model_dir)
    assert type(noise).__name__ == "DDPMScheduler" and noise.config.timestep_spacing == "leading"
    assert noise.config.clip_sample is True and config["lr"] == 0.002
    index = json.loads((model_dir / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_facegen", "FacegenPipeline"]
    assert index["unet"] == ["diffusers", "UNet2DModel"] and not (model_dir / "unet" / "unet_facegen.py").exists()
    card = (model_dir / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: diffusers\n" in card and "An unconditional DDPM" in card
    assert "pipeline_tag: unconditional-image-generation\n" in card and "takes no condition" in card
    assert "| fid | 41.2500 |" in card and "| kid | 0.0125 |" in card and "d" * 64 in card
    assert "Epoch 7 of 9" in card and "| lr | 0.002 |" in card and "65 images" in card


class RecordingHub:
    """Stands in for huggingface_hub.HfApi at the network boundary: records what would be sent."""

    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, **kw):
        from pathlib import Path

        files = sorted(
            p.relative_to(kw["folder_path"]).as_posix() for p in Path(kw["folder_path"]).rglob("*") if p.is_file()
        )
        self.calls.append(("upload_folder", kw["repo_id"], files))
        return "https://huggingface.co/me/faces/commit/1"


def test_export_copies_checks_and_pushes(model_dir, tmp_path):
    hub = RecordingHub()
    result = pipeline.export_model(model_dir, tmp_path / "out", "me/faces", private=True, api=hub)
    assert result == {
        "folder": str(tmp_path / "out"),
        "pipeline": "FacegenPipeline",
        "url": "https://huggingface.co/me/faces/commit/1",
    }
    assert hub.calls[0] == ("create_repo", "me/faces", {"private": True, "exist_ok": True, "repo_type": "model"})
    kind, _repo, files = hub.calls[1]
    assert kind == "upload_folder" and {
        "model_index.json",
        "README.md",
        "unet/config.json",
        "scheduler/scheduler_config.json",
    } <= set(files)
    with pytest.raises(FileExistsError, match="exists; choose a new --out"):
        pipeline.export_model(model_dir, tmp_path / "out")
    (tmp_path / "old").mkdir()
    with pytest.raises(FileNotFoundError, match=r"model_index.json missing"):
        pipeline.export_model(tmp_path / "old")


def test_export_drives_the_real_hub_client_up_to_the_upload(model_dir):
    """huggingface_hub's own HfApi against a local endpoint that refuses (401) the repo creation."""
    import http.server
    import threading

    from huggingface_hub import HfApi

    seen = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen.append((self.path, json.loads(body or b"{}"), self.headers.get("authorization")))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "Invalid credentials"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = HfApi(endpoint=f"http://127.0.0.1:{server.server_port}", token="hf_test")
        with pytest.raises(ValueError, match=r"--push-to-hub me/faces: .*401.*set HF_TOKEN") as err:
            pipeline.export_model(model_dir, repo_id="me/faces", private=True, api=api)
    finally:
        server.shutdown()
    assert "\n" not in str(err.value)  # one line for the CLI
    ((path, body, auth),) = seen
    assert path == "/api/repos/create" and auth == "Bearer hf_test"
    assert (body["name"], body["organization"], body.get("type", "model")) == ("faces", "me", "model")
    assert body.get("private") is True or body.get("visibility") == "private"


class _Records(__import__("logging").Handler):
    """MLflow's log records (its loggers do not propagate to pytest's caplog)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list = []

    def emit(self, record) -> None:
        self.records.append(record)


@pytest.mark.slow
def test_mlflow_pyfunc_model_signature_and_registry(model_dir, tmp_path, recwarn, capfd):
    """Logged from code with a built signature and an input example: MLflow warns nothing (no
    CloudPickle, type-hint, integer-column or input-example warning) and draws no download bar
    off a terminal, and the model serves."""
    import logging

    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("m", artifact_location=(tmp_path / "mlruns").as_uri())
    run = client.create_run(exp)
    handler, mlflow_logger = _Records(), logging.getLogger("mlflow")
    mlflow_logger.addHandler(handler)
    recwarn.clear()
    try:
        info = pipeline.log_mlflow_model(uri, run.info.run_id, model_dir)
    finally:
        mlflow_logger.removeHandler(handler)
    warned = [f"{w.category.__name__}: {w.message}" for w in recwarn if not issubclass(w.category, DeprecationWarning)]
    logged = [r.getMessage() for r in handler.records if r.levelno >= logging.WARNING]
    assert warned == [] and logged == [], (warned, logged)
    assert "Downloading artifacts" not in capfd.readouterr().err  # no progress bar off a terminal
    assert info.signature.params.to_dict()[0] == {"name": "steps", "type": "long", "default": 25, "shape": None}
    (output,) = info.signature.outputs.to_dict()
    assert output["tensor-spec"]["dtype"] == "uint8" and tuple(output["tensor-spec"]["shape"]) == (-1, 16, 16, 3)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # the trainer closes it, not log_model
    inputs = info.signature.inputs.to_dict()
    assert inputs == [{"type": "long", "name": "seed", "required": True}]
    model = mlflow.pyfunc.load_model(info.model_uri)
    import pandas as pd

    images = model.predict(pd.DataFrame({"seed": np.array([3], dtype=np.int64)}), params={"steps": 5})
    assert images.shape == (1, 16, 16, 3) and images.dtype == np.uint8
    assert np.array_equal(
        images, generate(*_loaded(model_dir), SampleSpec(sampler="dpm++", steps=5, batch_size=1), [3], progress=False)
    )
    version = pipeline.register_model(run.info.run_id, "facegen-faces", uri)
    assert (version.name, str(version.version)) == ("facegen-faces", "1")
    with pytest.raises(ValueError, match="has no logged model"):
        pipeline.register_model(client.create_run(exp).info.run_id, "x", uri)
