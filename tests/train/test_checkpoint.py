"""facegen.train.checkpoint: safe loading, verified fallback, the run lock, disk-full errors, resume keys."""

from __future__ import annotations

import dataclasses
import errno
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_faces import TINY_TRAIN, random_faces, write_faceset

from facegen.train import checkpoint as ckpt_mod
from facegen.train.checkpoint import CheckpointError, CheckpointWarning, DiskFullError, read_state, run_lock
from facegen.train.config import TrainConfig, TrainPaths
from facegen.train.loop import train

CFG = TrainConfig(**{**TINY_TRAIN, "epochs": 2, "image_size": 16})  # 32 faces: 4 steps per epoch; 16 px: cheap


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _paths(root: Path, store: str) -> TrainPaths:
    return TrainPaths(
        faces=root / "data" / "faces.parquet",
        root=root,
        models=root / "models",
        metrics=root / "metrics",
        fid_cache=root / "cache",
        tracking_uri=store,
        artifact_root=root / "mlruns",
    )


def _run(root: Path, store: str, cfg: TrainConfig = CFG) -> dict[int, float]:
    losses: dict[int, float] = {}
    train(cfg, _paths(root, store), on_step=lambda epoch, step, loss: losses.__setitem__(step, loss))
    return losses


@pytest.fixture(scope="module")
def trained(tmp_path_factory, store):
    """A finished 2-epoch run with checkpoints epoch_00001 and epoch_00002, and its per-step losses."""
    root = tmp_path_factory.mktemp("trained")
    write_faceset(root, random_faces(32, CFG.image_size, 0), random_faces(8, CFG.image_size, 1))
    losses = _run(root, store)
    assert sorted(losses) == list(range(1, 9))
    return root, losses


def _copy(trained, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "run"
    shutil.copytree(trained[0], root)
    (run_dir,) = (root / "cache" / "checkpoints").iterdir()
    return root, run_dir


def _flip_byte(path: Path, offset: int, mask: int = 0x40) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(trained, tmp_path, store):
    root, run_dir = _copy(trained, tmp_path)
    model = run_dir / "epoch_00002" / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    with pytest.warns(
        CheckpointWarning,
        match=r"skipping damaged checkpoint .*epoch_00002: .*model\.safetensors has "
        r"\d+ bytes, \d+ were written",
    ):
        losses = _run(root, store)
    assert sorted(losses) == [5, 6, 7, 8]  # epoch 2 replayed from epoch 1's checkpoint
    assert [losses[s] for s in range(5, 9)] == [trained[1][s] for s in range(5, 9)]  # bit-exact
    assert read_state(run_dir / "epoch_00002")["step"] == 8  # rewritten, good again


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.bin", "ema.pt", "random_states_0.pkl"])
def test_a_bit_flip_in_the_newest_checkpoint_falls_back(trained, tmp_path, store, name):
    root, run_dir = _copy(trained, tmp_path)
    path = run_dir / "epoch_00002" / name
    _flip_byte(path, path.stat().st_size - 3)  # same size, different content
    with pytest.warns(CheckpointWarning, match=rf"epoch_00002: {name} differs from what was written"):
        losses = _run(root, store)
    assert sorted(losses) == [5, 6, 7, 8]


def test_the_stored_weight_checksum_is_verified(trained, tmp_path, store):
    """A checkpoint without a manifest (written before it existed) is still checked by param_checksum."""
    root, run_dir = _copy(trained, tmp_path)
    state_path = run_dir / "epoch_00002" / "state.json"
    state = json.loads(state_path.read_text())
    del state["files"]
    state_path.write_text(json.dumps(state))
    model = run_dir / "epoch_00002" / "model.safetensors"
    _flip_byte(model, model.stat().st_size - 1)  # the last float's high byte: its exponent changes
    with pytest.warns(CheckpointWarning, match=r"epoch_00002: the loaded weights' checksum .* differs"):
        losses = _run(root, store)
    assert sorted(losses) == [5, 6, 7, 8]


def test_no_good_checkpoint_is_an_error_naming_each_folder(trained, tmp_path, store):
    root, run_dir = _copy(trained, tmp_path)
    for epoch in ("epoch_00001", "epoch_00002"):
        (run_dir / epoch / "state.json").write_text("{trunc", encoding="utf-8")
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError) as err:
        _run(root, store)
    text = str(err.value)
    assert "epoch_00001: unreadable state.json" in text and "epoch_00002: unreadable state.json" in text
    assert "train.resume: never" in text
    explicit = dataclasses.replace(CFG, resume=str(run_dir / "epoch_00001"))
    with pytest.raises(CheckpointError, match=r"epoch_00001: unreadable state.json"):
        _run(root, store, explicit)


class _Payload:
    """Unpickling this runs ``exec``: writes a marker file (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


@pytest.mark.parametrize(
    "name", ["model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl", "ema.pt"]
)
def test_a_crafted_pickle_in_any_checkpoint_file_never_runs(trained, tmp_path, store, name):
    root, run_dir = _copy(trained, tmp_path)
    folder = run_dir / "epoch_00002"
    marker = tmp_path / "marker"
    torch.save({"state": _Payload(marker)}, folder / name)
    control = shutil.copyfile(folder / name, tmp_path / "control.pt")  # torch reads *.safetensors as safetensors
    torch.load(control, weights_only=False)  # the payload is live: an unsafe loader runs it
    assert marker.is_file()
    marker.unlink()
    state = json.loads((folder / "state.json").read_text())
    state["files"] = ckpt_mod.manifest(folder)  # the attacker controls the whole folder
    (folder / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match=r"epoch_00002: cannot be loaded safely"):
        _run(root, store, dataclasses.replace(CFG, resume=str(folder)))
    assert not marker.exists()
    with pytest.warns(CheckpointWarning, match="epoch_00002"):  # auto: skipped for the good epoch 1
        assert sorted(_run(root, store)) == [5, 6, 7, 8]
    assert not marker.exists()


def test_a_second_trainer_on_the_same_folder_refuses(trained, tmp_path, store):
    root, run_dir = _copy(trained, tmp_path)
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire(); "
                "open(sys.argv[2], 'w').close(); time.sleep(120)"
            ),
            str(run_dir / "train.lock"),
            str(ready),
        ]
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with pytest.raises(CheckpointError, match=rf"another training is running on {run_dir}"):
            _run(root, store)
    finally:
        holder.kill()
        holder.wait()
    with run_lock(run_dir):  # the OS lock died with its holder: nothing stale is left
        pass


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4736 vs 4624"),
        OSError(errno.ENOSPC, "No space left on device"),
    ],
)
def test_disk_full_during_a_checkpoint_names_the_folder_and_free_space(trained, tmp_path, store, monkeypatch, error):
    root, run_dir = _copy(trained, tmp_path)
    shutil.rmtree(run_dir / "epoch_00002")

    def full(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(
        DiskFullError,
        match=r"disk full while writing checkpoint .*epoch_00002 \(\d+\.\d MiB free "
        r"there.*earlier checkpoints are intact \(epoch_00001\)",
    ) as err:
        _run(root, store)
    assert err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in run_dir.iterdir() if "epoch" in p.name) == ["epoch_00001"]  # no partial folder
    assert read_state(run_dir / "epoch_00001")["epoch"] == 1


def test_changing_an_operational_key_resumes_instead_of_restarting(trained, tmp_path, store):
    root, run_dir = _copy(trained, tmp_path)
    shutil.rmtree(run_dir / "epoch_00002")
    losses = _run(root, store, dataclasses.replace(CFG, grid_size=4, keep_checkpoints=3, experiment="other"))
    assert sorted(losses) == [5, 6, 7, 8]  # the same run folder: resumed at epoch 2
    assert [p.name for p in (root / "cache" / "checkpoints").iterdir()] == [run_dir.name]
