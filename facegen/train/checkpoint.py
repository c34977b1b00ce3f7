"""Training checkpoints: typed state, atomic save, verified safe load with fallback, a folder lock.

A checkpoint ``<root>/<run_key>/epoch_NNNNN/`` (root: :func:`facegen.train.config.checkpoint_root`)
is ``accelerator.save_state`` (model as safetensors; optimizer, LR scheduler and per-process RNG
as torch pickles) plus ``ema.pt`` and ``state.json``, written last: the epoch, step, history,
best, MLflow run id, config, the weights' checksum and a manifest (size and sha256 of every
other file). The folder is written as ``.tmp_epoch_NNNNN`` and renamed when complete, so a kill
never leaves a half checkpoint under a real name.

Loading never runs code from the folder: each pickle is first read with torch's
``weights_only`` unpickler (tensors, numbers, numpy arrays only), the model comes from
safetensors, and the manifest and checksum are verified. A damaged newest checkpoint is
skipped with a warning naming it, and the newest good one is used; when none is good the
error names every folder and the way out. One trainer at a time holds ``train.lock`` of a
run folder.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_json
from facegen.common.config import to_dict

STATE_FILE = "state.json"
EMA_FILE = "ema.pt"
LOCK_FILE = "train.lock"
PICKLE_SUFFIXES = (".bin", ".pkl", ".pt")


class CheckpointError(RuntimeError):
    """A checkpoint folder that cannot be used (damaged, unsafe, or none left to resume from)."""


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped in favour of an older one."""


class DiskFullError(OSError):
    """A checkpoint could not be written for lack of space; the earlier checkpoints are intact."""


@dataclass
class TrainState:
    """What a resumed run needs besides the tensors: progress, history, best epoch, MLflow run.

    ``history`` holds one row per finished epoch (epoch, step, loss, lr, seconds, images_per_s
    and the metric when evaluated); ``best`` is {epoch, metric, value, run_id} or None.
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    run_id: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        """The state part of a ``state.json`` (extra keys such as config and manifest are ignored)."""
        return cls(
            epoch=int(data["epoch"]),
            step=int(data["step"]),
            history=list(data["history"]),
            best=data["best"],
            run_id=data["run_id"],
        )


def checkpoint_name(epoch: int) -> str:
    """Folder name of the checkpoint after ``epoch``: epoch_00005."""
    return f"epoch_{epoch:05d}"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint folders under ``run_dir`` that have ``state.json``, oldest first."""
    return sorted(p.parent for p in Path(run_dir).glob(f"epoch_*/{STATE_FILE}"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (has ``state.json``) under ``run_dir``, unverified."""
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def param_checksum(model: Any) -> float:
    """Sum of all parameters in float64: a cheap fingerprint of the weights (same on every process)."""
    import torch

    return float(torch.stack([p.detach().double().sum() for p in model.parameters()]).sum())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(folder: Path) -> dict[str, dict[str, Any]]:
    """{relative path: {bytes, sha256}} of every file in ``folder`` except ``state.json``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != STATE_FILE)
    return {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}


# ---------------------------------------------------------------------------------------------- save


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)  # torch's zip writer and safetensors report a full disk in their own words
    return any(s in text for s in ("unexpected pos", "No space left", "StorageFull", "file write failed"))


def _free_space(path: Path) -> str:
    for p in (path, *path.parents):
        if p.exists():
            return f"{shutil.disk_usage(p).free / 2**20:.1f} MiB"
    return "unknown"


def save_checkpoint(accelerator: Any, cfg: Any, state: TrainState, run_dir: Path, *, ema: Any, raw_unet: Any) -> Path:
    """Save a complete checkpoint of ``state.epoch`` (EMA and prepared weights) on all processes; return its folder.

    Written under a temp name and renamed when complete; then only the newest
    ``cfg.keep_checkpoints`` are kept. A full disk raises :class:`DiskFullError` naming the folder
    and the free space, after removing the partial temp folder (earlier checkpoints stay intact).
    """
    import torch

    run_dir = Path(run_dir)
    final = run_dir / checkpoint_name(state.epoch)
    tmp = run_dir / f".tmp_{final.name}"
    local = torch.tensor([param_checksum(raw_unet)], dtype=torch.float64, device=accelerator.device)
    sums = accelerator.gather(local).cpu()
    if not torch.allclose(sums, sums[0], rtol=1e-9, atol=0):
        raise RuntimeError(f"processes hold different weights at epoch {state.epoch} ({sums.tolist()}): DDP is broken")
    main = accelerator.is_main_process
    if main and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp))
        accelerator.wait_for_everyone()
        if main:
            torch.save(ema.state_dict(), tmp / EMA_FILE)
            record = {
                **asdict(state),
                "config": to_dict(cfg),
                "num_processes": accelerator.num_processes,
                "param_checksum": float(sums[0]),
                "files": manifest(tmp),
            }
            write_json(tmp / STATE_FILE, record, sort_keys=False)
    except Exception as err:
        if not _is_disk_full(err):
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [p.name for p in complete_checkpoints(run_dir)]
        raise DiskFullError(
            errno.ENOSPC,
            f"disk full while writing checkpoint {final} ({_free_space(run_dir)} free there; {type(err).__name__}: "
            f"{str(err)[:200]}). The partial folder was removed and the earlier checkpoints are intact "
            f"({', '.join(kept) or 'none yet'}): free space (or lower train.keep_checkpoints, or move the "
            f"checkpoints to a larger disk with --checkpoints DIR or $FACEGEN_CHECKPOINTS) and rerun to resume.",
        ) from err
    if main:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in complete_checkpoints(run_dir)[: -cfg.keep_checkpoints]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------------------------------------- load


def safe_torch_load(path: Path, map_location: Any = "cpu") -> Any:
    """``torch.load`` with the ``weights_only`` unpickler: tensors, containers, numbers, numpy arrays.

    A pickle that names any other callable (the way a crafted file runs code) is refused with
    ``pickle.UnpicklingError`` before anything in it runs.
    """
    import torch

    try:
        from accelerate.utils.other import TORCH_SAFE_GLOBALS  # numpy arrays and dtypes in RNG states
    except ImportError:  # pragma: no cover - older accelerate
        TORCH_SAFE_GLOBALS = []
    with torch.serialization.safe_globals(list(TORCH_SAFE_GLOBALS)):
        return torch.load(path, map_location=map_location, weights_only=True)


def read_state(ckpt: Path) -> dict[str, Any]:
    """``state.json`` of ``ckpt``, its manifest verified (sizes and sha256). Raises CheckpointError."""
    try:
        record = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
        TrainState.from_json(record)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{ckpt}: unreadable {STATE_FILE} ({type(err).__name__}: {err})") from err
    for name, want in (record.get("files") or {}).items():  # checkpoints before the manifest have none
        path = ckpt / name
        if not path.is_file():
            raise CheckpointError(f"{ckpt}: {name} is missing")
        size = path.stat().st_size
        if size != want["bytes"]:
            raise CheckpointError(f"{ckpt}: {name} has {size} bytes, {want['bytes']} were written (truncated?)")
        if _sha256(path) != want["sha256"]:
            raise CheckpointError(f"{ckpt}: {name} differs from what was written (sha256 mismatch: damaged)")
    return record


def _load_one(accelerator: Any, ckpt: Path, ema: Any, raw_unet: Any) -> TrainState:
    """Load ``ckpt`` into the prepared objects, verifying it; raises CheckpointError when it is bad."""
    import pickle

    from safetensors import SafetensorError

    record = read_state(ckpt)
    try:
        for path in sorted(ckpt.iterdir()):  # refuse code in any pickle before accelerate touches one
            if path.suffix in PICKLE_SUFFIXES:
                safe_torch_load(path)
        accelerator.load_state(str(ckpt), load_kwargs={"weights_only": True})
        if ema is not None:
            ema.load_state_dict(safe_torch_load(ckpt / EMA_FILE))
            ema.to(accelerator.device)
    except (pickle.UnpicklingError, SafetensorError, OSError, RuntimeError, EOFError, KeyError, ValueError) as err:
        raise CheckpointError(f"{ckpt}: cannot be loaded safely ({type(err).__name__}: {str(err)[:300]})") from err
    stored, actual = record.get("param_checksum"), param_checksum(raw_unet)
    if stored is not None and not math.isclose(actual, stored, rel_tol=1e-9, abs_tol=1e-9):
        raise CheckpointError(
            f"{ckpt}: the loaded weights' checksum {actual!r} differs from the stored {stored!r} (damaged model file)"
        )
    return TrainState.from_json(record)


def resume(accelerator: Any, resume: str, run_dir: Path, *, ema: Any, raw_unet: Any) -> tuple[TrainState, Path | None]:
    """Load the checkpoint that ``train.resume`` asks for; return its state and folder (None: fresh start).

    ``auto`` tries the complete checkpoints of ``run_dir`` newest first: a bad one is skipped with a
    :class:`CheckpointWarning` naming it, and when every one is bad a CheckpointError lists them.
    A folder given by path must itself be good. All processes agree on the outcome of each try.
    """
    import torch

    if resume == "never":
        return TrainState(), None
    if resume == "auto":
        candidates = complete_checkpoints(run_dir)[::-1]
        if not candidates:
            return TrainState(), None
    else:
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise ValueError(
                f"train.resume = {resume!r}: not a checkpoint folder with {STATE_FILE} "
                "(use 'auto', 'never' or a cache/checkpoints/<run_key>/epoch_NNNNN path)"
            )
        candidates = [path]
    problems: list[str] = []
    for ckpt in candidates:
        try:
            state, reason = _load_one(accelerator, ckpt, ema, raw_unet), ""
        except CheckpointError as err:
            state, reason = None, str(err)
        ok = torch.tensor([0.0 if reason else 1.0], device=accelerator.device)
        if accelerator.gather(ok).min().item() == 1.0 and state is not None:
            return state, ckpt
        problems.append(reason or f"{ckpt}: failed to load on another process")
        if resume == "auto":
            warnings.warn(f"skipping damaged checkpoint {ckpt}: {problems[-1]}", CheckpointWarning, stacklevel=2)
    raise CheckpointError(
        "no usable checkpoint to resume from:\n  " + "\n  ".join(problems) + "\nDelete the damaged folder(s) "
        "(or set train.resume: never to start over, or a good folder path) and rerun."
    )


# ---------------------------------------------------------------------------------------------- lock


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir/train.lock`` for a training; a second trainer of the same run refuses at once.

    The OS lock dies with its process, so a killed run never leaves a stale lock behind.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CheckpointError(
            f"another training is running on {run_dir} (it holds {run_dir / LOCK_FILE}): two trainings of the "
            "same config and data would overwrite each other's checkpoints. Wait for it to finish or stop it, "
            "or train into another folder (--checkpoints DIR or $FACEGEN_CHECKPOINTS)."
        ) from None
    try:
        yield
    finally:
        lock.release()
