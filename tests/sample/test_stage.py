"""facegen.sample.stage and stages/sample.py: per-image seeds, the three samplers, the stage's files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facegen.common import images as image_utils
from facegen.diffusion import sampling
from facegen.diffusion.model import build_unet, save_model_dir
from facegen.diffusion.noise import make_noise_scheduler
from facegen.sample import stage as sample

REPO = Path(__file__).resolve().parents[2]
FAST = {"ddpm": 8, "ddim": 5, "dpm++": 5}  # few steps: these tests are about seeds, not quality


@pytest.fixture(scope="module")
def tiny():
    """A randomly initialised tiny UNet (channels (8, 16), 16 px) and its DDPM config."""
    torch.manual_seed(0)
    return build_unet("tiny", 16, channels=(8, 16)), dict(make_noise_scheduler().config)


@pytest.fixture()
def model_dir(tmp_path, tiny):
    unet, _ = tiny
    return save_model_dir(tmp_path / "models" / "best", unet, make_noise_scheduler(), {"model": "tiny"})


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++"])
def test_same_seed_same_image_and_more_images_keep_the_first(tiny, sampler):
    unet, cfg = tiny
    three = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler=sampler, steps=FAST[sampler], batch_size=2), [10, 11, 12], progress=False
    )
    five = sampling.generate(
        unet,
        cfg,
        sampling.SampleSpec(sampler=sampler, steps=FAST[sampler], batch_size=2),
        [10, 11, 12, 13, 14],
        progress=False,
    )
    assert three.shape == (3, 16, 16, 3) and three.dtype == np.uint8
    np.testing.assert_array_equal(three, five[:3])
    # the same seed in another position of another request is the same image
    shifted = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler=sampler, steps=FAST[sampler], batch_size=2), [12, 13], progress=False
    )
    np.testing.assert_array_equal(shifted, five[2:4])
    # different seeds differ
    assert not np.array_equal(five[0], five[1])


def test_ddpm_is_ancestral_other_samplers_are_deterministic_given_the_start(tiny):
    """DDPM draws fresh noise per step from the image's generator; DDIM(eta 0)/DPM++ only the start."""
    _unet, cfg = tiny
    sched = sampling.make_scheduler(cfg, "ddpm", None)
    assert len(sched.timesteps) == 1000 and int(sched.timesteps[0]) == 999
    assert len(sampling.make_scheduler(cfg, "dpm++", 25).timesteps) == 25
    # trailing spacing starts the fast samplers at the last training step
    assert int(sampling.make_scheduler(cfg, "ddim", 10).timesteps[0]) == 999
    assert int(sampling.make_scheduler(cfg, "ddim", 10, "leading").timesteps[0]) == 900


def test_sampler_inherits_prediction_type_and_schedule(tiny):
    cfg = dict(make_noise_scheduler("cosine", prediction="v_prediction").config)
    for name in ("ddpm", "ddim", "dpm++"):
        sched = sampling.make_scheduler(cfg, name, 10)
        assert sched.config.prediction_type == "v_prediction"
        assert sched.config.beta_schedule == "squaredcos_cap_v2"


def test_bad_sampler_and_steps_are_clear_errors(tiny):
    _, cfg = tiny
    with pytest.raises(ValueError, match=r"sample.sampler='euler'"):
        sampling.make_scheduler(cfg, "euler", 10)
    with pytest.raises(ValueError, match=r"sample.steps=2000 .* num_train_timesteps=1000"):
        sampling.make_scheduler(cfg, "ddim", 2000)
    with pytest.raises(ValueError, match=r"sample.steps must be >= 1"):
        sample.SampleConfig(steps=0)
    with pytest.raises(ValueError, match=r"sample.num_images must be >= 1"):
        sample.SampleConfig(num_images=0)


def test_make_grid_places_each_image():
    images = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (10, 20, 30)])
    grid = image_utils.make_grid(images, pad=1)
    assert grid.shape == (1 + 2 * 5, 1 + 2 * 5, 3)  # 3 images -> 2x2
    assert grid[1, 1, 0] == 10 and grid[1, 6, 0] == 20 and grid[6, 1, 0] == 30
    assert grid[6, 6, 0] == 255 and grid[0, 0, 0] == 255  # empty cell and padding stay white
    with pytest.raises(ValueError, match="uint8"):
        image_utils.make_grid(images.astype(np.float32))


def _run_stage(cwd: Path, params: str) -> str:
    (cwd / "params.yaml").write_text(params, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "sample.py")], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.slow
def test_stage_writes_numbered_pngs_and_resumes(tmp_path, model_dir, tiny):
    params = (
        "sample:\n  seed: 7\n  num_images: {n}\n  sampler: ddim\n  steps: 4\n  batch_size: 2\n"
        "  device: cpu\n  grid_images: 4\n"
    )
    out = _run_stage(tmp_path, params.format(n=3))
    assert "3 images (3 drawn) with ddim 4 steps on cpu" in out
    samples = tmp_path / "data" / "samples"
    assert sorted(p.name for p in samples.glob("*.png")) == ["00001.png", "00002.png", "00003.png"]
    unet, cfg = tiny
    expected = sampling.generate(
        unet, cfg, sampling.SampleSpec(sampler="ddim", steps=4, batch_size=2), [7, 8, 9, 10, 11], progress=False
    )
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(samples / sample.image_name(i))), expected[i])
    record = json.loads((samples / "sample_config.json").read_text())
    assert record["config"]["seed"] == 7 and record["device"] == "cpu"
    assert Image.open(tmp_path / "data" / "samples_grid.png").size == (2 + 2 * 18, 2 + 2 * 18)

    # more images: the complete first batch is kept, the short last batch is redone with the new one
    before = (samples / "00001.png").stat().st_mtime_ns
    out = _run_stage(tmp_path, params.format(n=5))
    assert "5 images (3 drawn)" in out
    assert (samples / "00001.png").stat().st_mtime_ns == before
    for i in range(5):
        np.testing.assert_array_equal(np.asarray(Image.open(samples / sample.image_name(i))), expected[i])

    # fewer images: the extra files go; another seed: everything is redrawn
    _run_stage(tmp_path, params.format(n=2))
    assert sorted(p.name for p in samples.glob("*.png")) == ["00001.png", "00002.png"]
    out = _run_stage(tmp_path, params.format(n=2).replace("seed: 7", "seed: 8"))
    assert "2 images (2 drawn)" in out
    np.testing.assert_array_equal(np.asarray(Image.open(samples / "00001.png")), expected[1])


def test_stage_without_a_model_says_what_to_run(tmp_path):
    (tmp_path / "params.yaml").write_text("sample:\n  device: cpu\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "sample.py")], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "models/best" in proc.stderr and "dvc repro train" in proc.stderr


@pytest.mark.slow
def test_fast_sampler_scores_close_to_1000_step_ddpm():
    """A tiny UNet fitted for 300 steps to a toy distribution: DPM-Solver++ and DDIM at 25
    steps score no worse than the 1000-step ancestral sampler in offline FD (an undertrained
    model's ancestral chain accumulates error, so they often score better), and all score far
    from uniform noise. A sampler that mis-reads the schedule lands near or above noise."""
    from facegen.demo.toydata import fit_toy_unet, gradient_discs
    from facegen.fid.features import frechet_distance, get_extractor, image_stats

    unet, noise_sched = fit_toy_unet(gradient_discs(2048, seed=0), steps=300)
    extractor = get_extractor("offline")
    mu_ref, sigma_ref = image_stats(gradient_discs(256, seed=1), extractor)

    def fd(images: np.ndarray) -> float:
        return frechet_distance(*image_stats(images, extractor), mu_ref, sigma_ref)

    cfg, seeds = dict(noise_sched.config), range(48)
    fd_noise = fd(np.random.default_rng(5).integers(0, 256, (48, 16, 16, 3), dtype=np.uint8))
    fd_ddpm = fd(
        sampling.generate(
            unet, cfg, sampling.SampleSpec(sampler="ddpm", steps=None, batch_size=48), seeds, progress=False
        )
    )
    fd_dpm = fd(
        sampling.generate(
            unet, cfg, sampling.SampleSpec(sampler="dpm++", steps=25, batch_size=48), seeds, progress=False
        )
    )
    fd_ddim = fd(
        sampling.generate(
            unet, cfg, sampling.SampleSpec(sampler="ddim", steps=25, batch_size=48), seeds, progress=False
        )
    )
    assert fd_ddpm < 0.6 * fd_noise, (fd_ddpm, fd_noise)
    for fast in (fd_dpm, fd_ddim):
        assert fast < 0.6 * fd_noise and fast < fd_ddpm + 0.1 * fd_noise, (fast, fd_ddpm, fd_noise)


SMALL = dict(seed=7, num_images=4, sampler="ddim", steps=2, batch_size=2, device="cpu", grid_images=4)


def _pixels(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / sample.image_name(i))) for i in range(4)]


def test_damaged_pngs_are_redrawn_on_resume(tmp_path, model_dir):
    out = tmp_path / "samples"
    cfg = sample.SampleConfig(**SMALL)
    assert sample.sample_to_dir(cfg, model_dir, out)["num_drawn"] == 4
    good = _pixels(out)
    assert sample.sample_to_dir(cfg, model_dir, out)["num_drawn"] == 0  # intact: nothing redrawn
    (out / "00001.png").write_bytes(b"")  # what a full disk left behind
    third = out / "00003.png"
    data = bytearray(third.read_bytes())
    data[data.index(b"IDAT") + 6] ^= 0x01  # a bit flip inside the image data, same size
    third.write_bytes(bytes(data))
    assert not sample.is_good_image(out / "00001.png", 16) and not sample.is_good_image(third, 16)
    assert sample.sample_to_dir(cfg, model_dir, out, tmp_path / "grid.png")["num_drawn"] == 4  # both batches
    for before, after in zip(good, _pixels(out), strict=False):
        np.testing.assert_array_equal(before, after)
    assert not sample.is_good_image(out / "00002.png", 32)  # the wrong size is bad too


def test_a_failed_write_leaves_no_partial_png(tmp_path, model_dir, monkeypatch):
    out = tmp_path / "samples"
    cfg = sample.SampleConfig(**SMALL)
    real_save, calls = Image.Image.save, {"n": 0}

    def full_disk(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(fp).write_bytes(b"\x89PNG partial")
            raise OSError(28, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(sample.DiskFullError, match=r"no space left on the device of .*samples: .* MiB free"):
        sample.sample_to_dir(cfg, model_dir, out)
    assert sorted(p.name for p in out.iterdir()) == [
        "00001.png",
        "00002.png",
        "sample_config.json",
    ]  # no temp, no 00003
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert sample.sample_to_dir(cfg, model_dir, out)["num_drawn"] == 2  # only the unfinished batch
    assert all(sample.is_good_image(out / sample.image_name(i), 16) for i in range(4))
