"""facegen.train.loop on a tiny UNet (channels (8, 16), 32 px): learning, exact resume, NaN guard, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_faces import TINY_TRAIN, portrait_faces, random_faces, write_faceset

from facegen.diffusion.model import load_model_dir
from facegen.train import loop as train_mod
from facegen.train.checkpoint import latest_checkpoint, resume
from facegen.train.config import TrainConfig, TrainPaths
from facegen.train.loop import train

REPO = Path(__file__).resolve().parents[2]
TINY = TINY_TRAIN


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One MLflow SQLite store for the module (creating its tables takes seconds)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def _paths(root: Path, table: Path, store: str) -> TrainPaths:
    return TrainPaths(
        faces=table,
        root=root,
        models=root / "models",
        metrics=root / "metrics",
        fid_cache=root / "cache",
        tracking_uri=store,
        artifact_root=root / "mlruns",
    )


def _run(root: Path, cfg: TrainConfig, store: str, stop_at: int | None = None) -> dict[int, float]:
    """Train; return {step: loss}. ``stop_at`` raises KeyboardInterrupt after that step (a kill)."""
    losses: dict[int, float] = {}

    def on_step(epoch: int, step: int, loss: float) -> None:
        losses[step] = loss
        if step == stop_at:
            raise KeyboardInterrupt

    table = root / "data" / "faces.parquet"
    if not table.exists():
        write_faceset(root, random_faces(32, 32, 0), random_faces(8, 32, 1))
    train(cfg, _paths(root, table, store), on_step=on_step)
    return losses


@pytest.mark.slow
def test_loss_decreases_on_real_faces(tmp_path, faces_dir, store):
    images = portrait_faces(faces_dir, 40, 32)
    table = write_faceset(tmp_path, images[:32], images[32:])
    losses: list[float] = []
    cfg = TrainConfig(**{**TINY, "epochs": 6, "checkpoint_every": 6})
    summary = train(cfg, _paths(tmp_path, table, store), on_step=lambda e, s, loss: losses.append(loss))
    assert len(losses) == 24 and summary["steps"] == 24
    first, last = sum(losses[:6]) / 6, sum(losses[-6:]) / 6
    assert last < 0.7 * first, (first, last)


@pytest.mark.slow
@pytest.mark.parametrize("sigma_rel", [0.0, 0.1], ids=["exponential_ema", "power_ema"])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, store, sigma_rel):
    cfg = TrainConfig(**{**TINY, "epochs": 3, "ema_sigma_rel": sigma_rel})  # 4 steps per epoch
    full = _run(tmp_path / "full", cfg, store)
    assert sorted(full) == list(range(1, 13))

    killed_root = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        _run(killed_root, cfg, store, stop_at=6)  # killed mid epoch 2; epoch 1 was checkpointed
    run_dir = next((killed_root / "cache" / "checkpoints").iterdir())
    assert latest_checkpoint(run_dir).name == "epoch_00001"
    run_id = json.loads((run_dir / "epoch_00001" / "state.json").read_text())["run_id"]
    resumed = _run(killed_root, cfg, store)
    assert (
        json.loads((killed_root / "models" / "best" / "best.json").read_text())["run_id"] == run_id
    )  # same MLflow run
    assert sorted(resumed) == list(range(5, 13))  # continues at epoch 2, step 5
    assert [resumed[s] for s in range(5, 13)] == [full[s] for s in range(5, 13)]  # bit-exact
    a = torch.load(run_dir / "epoch_00003" / "ema.pt", weights_only=True)["shadow_params"]
    b = torch.load(next((tmp_path / "full/cache/checkpoints").iterdir()) / "epoch_00003" / "ema.pt", weights_only=True)[
        "shadow_params"
    ]
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=False))
    state = json.loads((run_dir / "epoch_00003" / "state.json").read_text())
    assert state["epoch"] == 3 and state["step"] == 12 and [r["epoch"] for r in state["history"]] == [1, 2, 3]
    assert sorted(p.name for p in run_dir.glob("epoch_*")) == ["epoch_00002", "epoch_00003"]  # keep_checkpoints=2


def test_other_objectives_accumulation_and_augmentations_train(tmp_path, store, monkeypatch):
    seen: dict[str, list] = {"t": [], "loss": []}
    real_weights, real_loss = train_mod.min_snr_weights, train_mod.diffusion_loss

    def weights(sched, t, gamma):
        seen["t"].append((sched, t.clone(), gamma))
        return real_weights(sched, t, gamma)

    def loss(pred, target, kind, *, l1_weight, weights):
        out = real_loss(pred, target, kind, l1_weight=l1_weight, weights=weights)
        seen["loss"].append((pred.detach().clone(), target.clone(), kind, l1_weight, out.item()))
        return out

    monkeypatch.setattr(train_mod, "min_snr_weights", weights)
    monkeypatch.setattr(train_mod, "diffusion_loss", loss)
    cfg = TrainConfig(
        **{
            **TINY,
            "epochs": 1,
            "batch_size": 4,
            "grad_accum": 2,
            "schedule": "cosine",
            "prediction": "v_prediction",
            "loss": "l1_l2",
            "min_snr_gamma": 5.0,
            "rotate_deg": 10.0,
            "color_jitter": 0.1,
            "ema_warmup": True,
        }
    )
    losses = _run(tmp_path, cfg, store)
    assert sorted(losses) == [1, 2, 3, 4]  # 32 faces / (4 x 2 accumulated) per optimizer step
    assert all(0 < v < 10 for v in losses.values())
    micro = [entry[-1] for entry in seen["loss"]]  # each step's loss is the mean of its 2 micro-batches'
    for step, value in losses.items():
        assert value == pytest.approx((micro[2 * step - 2] + micro[2 * step - 1]) / 2, rel=1e-6), step
    _, sched, saved = load_model_dir(tmp_path / "models" / "best")
    assert sched.config.prediction_type == "v_prediction" and sched.config.beta_schedule == "squaredcos_cap_v2"
    assert saved["grad_accum"] == 2
    # the first micro-batch's loss, by hand: v-prediction min-SNR-5 weights min(SNR, 5) / (SNR + 1),
    # SNR = abar / (1 - abar), times the per-sample mean of 0.25 |d| + 0.75 d^2 (d = pred - target)
    sched, t, gamma = seen["t"][0]
    pred, target, kind, l1_weight, got = seen["loss"][0]
    assert (kind, l1_weight, gamma, len(seen["loss"])) == ("l1_l2", 0.25, 5.0, 8)  # 4 steps x 2 micro-batches
    abar = sched.alphas_cumprod[t].double()
    snr = abar / (1 - abar)
    w = torch.minimum(snr, torch.full_like(snr, 5.0)) / (snr + 1)
    d = (pred - target).double()
    per_sample = (0.25 * d.abs() + 0.75 * d * d).flatten(1).mean(1)
    assert got == pytest.approx((w * per_sample).mean().item(), rel=1e-5)


def test_nan_loss_names_epoch_and_step(tmp_path, store, monkeypatch):
    calls = {"n": 0}
    real = train_mod.diffusion_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 6 else loss

    monkeypatch.setattr(train_mod, "diffusion_loss", poisoned)
    with pytest.raises(FloatingPointError, match=r"loss is nan at epoch 2, step 6"):
        _run(tmp_path, TrainConfig(**{**TINY, "epochs": 2}), store)
    assert not (tmp_path / "models" / "best").exists()
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    latest = client.search_runs(
        [client.get_experiment_by_name("test").experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )[0]
    assert latest.info.status == "FAILED"  # a divergence is a failure, not a (resumable) kill


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"train.precision = 'fp8'"):
        TrainConfig(precision="fp8")
    with pytest.raises(ValueError, match=r"train.fid_extractor = 'clip'"):
        TrainConfig(fid_extractor="clip")
    with pytest.raises(ValueError, match=r"train.epochs = 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"train.resume = 'latest'"):
        resume(None, "latest", Path("."), ema=None, raw_unet=None)


def _stage_params(root: Path, **overrides) -> None:
    train = {
        **TINY,
        "channels": [8, 16],
        "epochs": 2,
        "fid_every": 1,
        "fid_num_samples": 8,
        "fid_batch_size": 8,
        "fid_extractor": "offline",
        "eval_steps": 2,
        "grid_size": 4,
        "log_checkpoints": True,
        **overrides,
    }
    (root / "params.yaml").write_text(yaml.safe_dump({"train": train}))


def test_a_misspelled_choice_fails_at_load_before_any_mlflow_run(tmp_path):
    write_faceset(tmp_path, random_faces(16, 32, 0), random_faces(8, 32, 1))
    _stage_params(tmp_path, loss="msee")
    store = tmp_path / "mlflow.db"
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert "train.loss: 'msee' is not one of ['mse', 'l1_l2']" in proc.stderr
    assert not store.exists() and not (tmp_path / "models").exists()  # no MLflow store, run or checkpoint


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    """`python stages/train.py` in a tmp repo with 2 epochs and an offline FD every epoch."""
    root = tmp_path_factory.mktemp("stage")
    write_faceset(root, random_faces(16, 32, 0), random_faces(8, 32, 1))
    _stage_params(root)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages" / "train.py")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.slow
def test_stage_writes_the_contract_outputs(stage_run):
    root = stage_run
    best = root / "models" / "best"
    assert (best / "unet" / "config.json").is_file() and (best / "scheduler" / "scheduler_config.json").is_file()
    assert json.loads((best / "train_config.json").read_text())["fid_extractor"] == "offline"
    summary = json.loads((root / "metrics" / "train.json").read_text())
    assert "metric" not in summary and summary["epochs"] == 2 and summary["steps"] == 4  # numbers only
    assert summary["best_epoch"] in (1, 2) and summary["best_fd_offline"] > 0 and "best_fid" not in summary
    assert json.loads((best / "best.json").read_text())["epoch"] == summary["best_epoch"]
    rows = (root / "metrics" / "train_epochs.csv").read_text().splitlines()
    assert rows[0] == (
        "epoch,step,loss,lr,images_per_s,seconds,fid,kid,kid_std,fd_offline,kid_offline,kid_offline_std,"
        "precision,recall,density,coverage,memorized_fraction,memorized_count"
    )
    assert len(rows) == 3
    assert len(list((root / "cache" / "fid").glob("offline-*.npz"))) == 2  # test + train features computed once


@pytest.mark.slow
def test_stage_mlflow_run_has_epochs_best_and_artifacts(stage_run, monkeypatch):
    import mlflow

    monkeypatch.chdir(stage_run)  # the store's artifact paths are relative to its workspace, where users start MLflow
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{stage_run / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("test").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["metric"] == "fd_offline"
    for name in (
        "loss",
        "lr",
        "fd_offline",
        "kid_offline",
        "kid_offline_std",
        "precision",
        "recall",
        "memorized_fraction",
    ):
        assert [m.step for m in client.get_metric_history(run.info.run_id, name)] == [1, 2]
    assert "fid" not in run.data.metrics
    assert run.data.metrics["best_epoch"] in (1, 2) and "best_fd_offline" in run.data.metrics
    assert run.data.params["model"] == "tiny" and len(run.data.params["data_hash"]) == 64
    assert run.data.params["git_commit"]
    top = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"best", "checkpoints", "samples"} <= top
    assert {a.path for a in client.list_artifacts(run.info.run_id, "samples")} == {
        "samples/epoch_00001.png",
        "samples/epoch_00002.png",
    }
    assert {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")} == {
        "checkpoints/epoch_00001",
        "checkpoints/epoch_00002",
    }
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images")]
    steps = sorted({int(p.split("+step+")[1].split("+")[0]) for p in images})
    assert steps == [0, 1, 2]  # each scored epoch, and the last one again at step 0 where the UI opens


@pytest.mark.slow
def test_ddp_two_cpu_processes_save_one_consistent_checkpoint(tmp_path):
    write_faceset(tmp_path, random_faces(32, 32, 0), random_faces(8, 32, 1))
    _stage_params(tmp_path, fid_every=0, epochs=1, log_checkpoints=False)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "OMP_NUM_THREADS": "1",
        "ACCELERATE_USE_CPU": "true",
    }  # gloo DDP on CPU: accelerate launch --multi_gpu + this flag
    one = subprocess.run([sys.executable, str(REPO / "stages" / "train.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert one.returncode == 0 and "train: 1 process(es), device cpu" in one.stderr, one.stderr[-3000:]
    (one_dir,) = (tmp_path / "cache" / "checkpoints").iterdir()
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(REPO / "stages" / "train.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "train: 2 process(es), device cpu:0, precision no, effective batch 16" in proc.stderr
    assert "resumed from" not in proc.stderr  # the 1-process checkpoint of the same params is another run
    (run_dir,) = {*(tmp_path / "cache" / "checkpoints").iterdir()} - {one_dir}  # outside DVC outs
    (ckpt,) = run_dir.glob("epoch_*")
    state = json.loads((ckpt / "state.json").read_text())
    assert state["num_processes"] == 2
    assert state["step"] == 2  # 32 faces / 2 processes / batch 8
    assert {p.name for p in ckpt.glob("random_states_*.pkl")} == {"random_states_0.pkl", "random_states_1.pkl"}
    assert (tmp_path / "models" / "best" / "unet" / "diffusion_pytorch_model.safetensors").is_file()


def test_the_later_model_and_optimizer_keys_reach_the_trained_model(tmp_path, store):
    cfg = TrainConfig(
        **{
            **TINY,
            "epochs": 3,
            "warmup_steps": 1,
            "layers_per_block": 2,
            "dropout": 0.1,
            "lr_schedule": "constant",
            "adam_betas": (0.9, 0.99),
        }
    )
    _run(tmp_path, cfg, store)  # 4 optimizer steps per epoch
    unet, _, saved = load_model_dir(tmp_path / "models" / "best")
    assert (unet.config.layers_per_block, unet.config.dropout) == (2, 0.1)
    assert len(unet.down_blocks[0].resnets) == 2 and unet.down_blocks[0].resnets[0].dropout.p == 0.1
    assert not unet.training  # loaded for sampling: dropout off
    assert (saved["lr_schedule"], saved["adam_betas"]) == ("constant", [0.9, 0.99])
    rows = (tmp_path / "metrics" / "train_epochs.csv").read_text().splitlines()[1:]
    assert [float(r.split(",")[3]) for r in rows] == [2e-3] * 3  # no decay after the 1-step warmup
    (run_dir,) = (tmp_path / "cache" / "checkpoints").iterdir()
    opt = torch.load(run_dir / "epoch_00003" / "optimizer.bin", weights_only=True)
    assert opt["param_groups"][0]["betas"] == (0.9, 0.99)
