"""Every sample value and every tampered model file named in one line before any sample is touched."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facegen.diffusion.model import ModelFileError, build_unet, load_model_dir, save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.sample import stage as sample

REPO = Path(__file__).resolve().parents[2]
KEYS = {"num_images": "2", "sampler": "ddim", "steps": "2", "batch_size": "2", "device": "cpu", "grid_images": "2"}


def _params(extra: str = "") -> str:
    """params.yaml text: KEYS overridden by ``extra`` lines ("  key: value")."""
    keys = dict(KEYS)
    for line in extra.strip("\n").splitlines():
        key, value = line.strip().split(": ", 1)
        keys[key] = value
    return "sample:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items())


BASE = _params()


@pytest.fixture(scope="module")
def drawn(tmp_path_factory):
    """A workspace with models/best and two drawn samples."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("ws")
    save_model_dir(root / "models" / "best", build_unet("tiny", 16, (8, 16)), make_noise_scheduler(), {})
    assert _stage(root, BASE).returncode == 0
    return root


def _stage(cwd: Path, params: str, model: str = "models/best") -> subprocess.CompletedProcess:
    (cwd / "params.yaml").write_text(params, encoding="utf-8")
    script = str(REPO / "stages" / "sample.py")
    return subprocess.run(
        [sys.executable, script, "--model-dir", model], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("  guidance: .nan\n", "sample.guidance"),
        ("  guidance: .inf\n", "sample.guidance"),
        ("  guidance: 1.0e+308\n", "sample.guidance"),
        ("  condition: 5\n", "sample.condition"),
        ("  seed: 18446744073709551616\n", "sample.seed"),
        ("  seed: 4294967295\n", "sample.seed"),
        ("  device: abc\n", "sample.device"),
        ("  steps: 5000\n", "sample.steps"),
        ("  batch_size: 100000000000\n  num_images: 1000000000\n", "sample.batch_size"),
        ("  num_images: 100000000000\n", "sample.num_images"),
    ],
)
def test_bad_value_is_one_named_line_and_the_samples_survive(drawn, line, named):
    samples = drawn / "data" / "samples"
    before = {p.name: p.read_bytes() for p in samples.glob("*.png")}
    proc = _stage(drawn, _params(line))
    assert proc.returncode == 1 and proc.stderr.startswith(f"sample: error: {named}"), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in samples.glob("*.png")} == before and len(before) == 2


def _tampered(drawn: Path, tmp_path: Path, edit) -> Path:
    import shutil

    best = tmp_path / "best"
    shutil.copytree(drawn / "models" / "best", best)
    edit(best)
    return best


def _edit_config(best: Path, **changes) -> None:
    path = best / "unet" / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def _drop_tensor(best: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = best / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    del state["conv_out.weight"]
    save_file(state, path)


def _reshape_tensor(best: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = best / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    state["conv_out.bias"] = torch.zeros(5)
    save_file(state, path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: _edit_config(b, sample_size=1 << 20), r"unet/config.json: sample_size = 1048576 needs ~"),
        (lambda b: _edit_config(b, sample_size="big"), r"unet/config.json: sample_size = 'big' must be"),
        (_drop_tensor, r"diffusion_pytorch_model.safetensors: tensor conv_out.weight is missing"),
        (_reshape_tensor, r"safetensors: tensor conv_out.bias has shape \(5,\), .*needs \(3,\)"),
        (lambda b: (b / "unet" / "config.json").write_text("{garbage"), r"unet/config.json is not valid JSON"),
        (lambda b: (b / "best.json").write_text("[1, "), r"best.json is not valid JSON"),
        (lambda b: (b / "noise_scheduler" / "scheduler_config.json").write_text("7"), r"scheduler_config.json holds"),
        (
            lambda b: _edit_config(b, condition_names=["brightness"], condition_std=[1.0], condition_min=[0.0]),
            r"a conditional model without condition_mean, condition_max, condition_margin",
        ),
    ],
)
def test_tampered_model_file_is_named(drawn, tmp_path, edit, message):
    best = _tampered(drawn, tmp_path, edit)
    with pytest.raises(ModelFileError, match=message):
        load_model_dir(best)


def test_stage_names_a_tampered_model_in_one_line(drawn, tmp_path):
    best = _tampered(drawn, tmp_path, _drop_tensor)
    proc = _stage(drawn, BASE, model=str(best))
    assert proc.returncode == 1 and proc.stderr.startswith("sample: error: ") and "conv_out.weight" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_full_disk_is_one_line_naming_the_folder_and_the_space(drawn, tmp_path, monkeypatch):
    def full(image, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sample, "_save_png", full)
    cfg = sample.SampleConfig(num_images=3, sampler="ddim", steps=2, batch_size=2, device="cpu", grid_images=1)
    with pytest.raises(sample.DiskFullError) as err:
        sample.sample_to_dir(cfg, drawn / "models" / "best", tmp_path / "out")
    text = err.value.strerror
    assert f"no space left on the device of {tmp_path / 'out'}:" in text and "MiB more needed for 3 images" in text
