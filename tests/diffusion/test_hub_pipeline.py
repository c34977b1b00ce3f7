"""models/best of a conditional model as a diffusers pipeline: the shipped FacegenPipeline and
ConditionedUNet2DModel load through DiffusionPipeline.from_pretrained and draw the sample stage's bytes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cond_toy import SIZE, toy_model
from PIL import Image

from facegen.diffusion import pipeline
from facegen.diffusion.model import save_model_dir
from facegen.sample.stage import SampleConfig, image_name, sample_to_dir

SCORES = {"epoch": 3, "metric": "fid", "value": 80.5, "kid": 0.05, "precision": 0.5, "recall": 0.25, "run_id": "r1"}


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    from diffusers import DDPMScheduler

    unet, config, _ = toy_model()
    out = tmp_path_factory.mktemp("cond") / "best"
    return save_model_dir(out, unet, DDPMScheduler.from_config(config), {"model": "tiny", "epochs": 4}, best=SCORES)


def _stage_images(toy_dir, out, **cfg):
    cfg = SampleConfig(num_images=3, sampler="dpm++", steps=5, batch_size=3, device="cpu", grid_images=1, **cfg)
    sample_to_dir(cfg, toy_dir, out)
    return np.stack([np.asarray(Image.open(out / image_name(i))) for i in range(3)])


def _pipe_images(pipe, **kw):
    gens = [torch.Generator().manual_seed(s) for s in (0, 1, 2)]
    images = pipe(batch_size=3, generator=gens, num_inference_steps=5, **kw).images
    return np.stack([np.asarray(im) for im in images])


def test_diffusers_samples_the_conditional_model_like_the_sample_stage(toy_dir, tmp_path):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(toy_dir, trust_remote_code=True)
    assert type(pipe).__name__ == "FacegenPipeline" and type(pipe.unet).__name__ == "ConditionedUNet2DModel"
    own = toy_model()[0].state_dict()
    loaded = pipe.unet.state_dict()
    assert set(loaded) == set(own) and all(torch.equal(loaded[k], own[k]) for k in own)  # embedding loaded
    plain = _pipe_images(pipe)
    assert plain.shape == (3, SIZE, SIZE, 3)
    assert np.array_equal(plain, _stage_images(toy_dir, tmp_path / "a"))
    bright = _pipe_images(pipe, condition={"brightness": 180.0}, guidance_scale=2.0)
    stage = _stage_images(toy_dir, tmp_path / "b", condition={"brightness": 180.0}, guidance=2.0)
    assert np.array_equal(bright, stage) and not np.array_equal(bright, plain)
    dark = _pipe_images(pipe, condition={"brightness": 60.0}, guidance_scale=2.0)
    assert dark.mean() < bright.mean()
    with pytest.raises(ValueError, match="guidance_scale must be a finite"):
        pipe(batch_size=1, guidance_scale=float("nan"))
    with pytest.raises(ValueError, match="unknown attribute 'yaw'"):
        pipe(batch_size=1, condition={"yaw": 3.0})


def test_folder_names_its_custom_code_and_the_card_says_conditional(toy_dir):
    from huggingface_hub import ModelCard

    index = json.loads((toy_dir / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_facegen", "FacegenPipeline"]
    assert index["unet"] == ["unet_facegen", "ConditionedUNet2DModel"]
    assert (toy_dir / "pipeline_facegen.py").is_file() and (toy_dir / "unet" / "unet_facegen.py").is_file()
    card = ModelCard.load(toy_dir / "README.md")
    assert card.data.library_name == "diffusers" and "conditional-image-generation" in card.data.tags
    lo, hi = (
        json.loads((toy_dir / "unet" / "config.json").read_text())[k][0] for k in ("condition_min", "condition_max")
    )
    assert (
        "A conditional DDPM" in card.text and f"| brightness | mean luma, 0-255 | [{lo:.4g}, {hi:.4g}] |" in card.text
    )
    for row in ("| fid | 80.5000 |", "| kid | 0.0500 |", "| precision | 0.5000 |", "| recall | 0.2500 |"):
        assert row in card.text
    assert "trust_remote_code=True" in card.text


def test_export_samples_the_copy_through_diffusers(toy_dir, tmp_path):
    result = pipeline.export_model(toy_dir, tmp_path / "out")
    assert result == {"folder": str(tmp_path / "out"), "pipeline": "FacegenPipeline", "url": None}
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(toy_dir, broken)
    (broken / "unet" / "unet_facegen.py").unlink()  # diffusers can no longer build the UNet
    with pytest.raises(Exception):  # noqa: B017 - diffusers' own error; export must not report success
        pipeline.export_model(broken)


def test_push_without_token_or_network_is_one_line_naming_hf_token(toy_dir, monkeypatch, capsys):
    from facegen import cli

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(toy_dir.parent / "hf_home"))  # no cached login
    code = cli.main(["export", "--model", str(toy_dir), "--push-to-hub", "me/faces"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "HF_TOKEN" in err and "network" in err and "Traceback" not in err


def test_pyfunc_model_takes_optional_condition_columns(toy_dir):
    import pandas as pd

    from facegen.diffusion.sampling import SampleSpec, generate

    model = pipeline.FaceSampler()
    model.load_context(type("Context", (), {"artifacts": {"pipeline": str(toy_dir)}})())
    rows = pd.DataFrame({"seed": [0, 1], "brightness": [180.0, float("nan")]})
    images = model.predict(None, rows, params={"steps": 5, "guidance": 2.0})
    spec = SampleSpec(steps=5, batch_size=2, guidance=2.0)
    requests = [{"brightness": 180.0}, {}]
    want = generate(model.unet, model.noise_config, spec, [0, 1], conditions=requests, progress=False)
    assert np.array_equal(images, want)
    plain = model.predict(None, pd.DataFrame({"seed": [0, 1]}), params={"steps": 5})
    spec = SampleSpec(steps=5, batch_size=2)
    assert np.array_equal(plain, generate(model.unet, model.noise_config, spec, [0, 1], progress=False))
    assert not np.array_equal(plain[0], images[0])
