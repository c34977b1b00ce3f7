"""The Judge tab's API: real-vs-fake judging of the loaded model, saved and logged to MLflow."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request

from facegen.common.images import read_image
from facegen.diffusion.sampling import SampleSpec
from facegen.diffusion.sampling import generate as generate_images
from facegen.studio import editing
from facegen.studio.jobs import Job
from facegen.studio.judge import log_to_mlflow
from facegen.studio.models import LoadedModel
from facegen.studio.state import JUDGE_SEED_BASE, JudgeRequest, SampleSettings, State, clear, get_state
from facegen.train.data import face_paths

router = APIRouter()
StateDep = Annotated[State, Depends(get_state)]
PENDING_MAX = 256  # faces shown but not yet answered that are remembered (oldest forgotten first)


def _real_faces(state: State) -> list[Path]:
    """The test split's aligned faces (none when the faces table is missing or has no test split)."""
    root = Path(state.cfg.root)
    table = root / state.cfg.faces
    try:
        return face_paths(table, "test", root) if table.is_file() else []
    except ValueError:
        return []


async def _fake_face(state: State, request: Request, model: LoadedModel) -> tuple[np.ndarray, str]:
    """One generated face of a fresh judge seed (clear of sample seeds), and its item name."""
    seed = JUDGE_SEED_BASE + state.rng.randrange(1_000_000)
    sampler, steps = state.settings(SampleSettings.model_validate({}), model)

    def work(job: Job) -> np.ndarray:
        spec = SampleSpec(
            sampler=sampler,
            steps=steps,
            timestep_spacing=state.sample.timestep_spacing,
            batch_size=1,
            precision=state.sample.precision,
            device=state.device,
        )
        return generate_images(model.unet, model.scheduler_config, spec, [seed], progress=False)[0]

    return await state.run_job(request, work, "judge sample"), f"sample:{seed}"


@router.get("/api/judge/next")
async def judge_next(request: Request, state: StateDep) -> dict[str, Any]:
    """One face to judge, real (test split) or fake (the model), 50/50; the truth stays here."""
    model = state.model
    real = _real_faces(state) if state.rng.random() < 0.5 else []
    if real:
        path = state.rng.choice(real)
        image, item, truth = editing.resize_face(read_image(path), model.size), f"face:{path.stem}", "real"
    else:
        (image, item), truth = await _fake_face(state, request, model), "fake"
    token = f"{state.rng.getrandbits(64):016x}"
    with state.lock:
        state.pending[token] = {
            "item": item,
            "truth": truth,
            "model_id": model.id,
            "run_id": model.run_id,
            "epoch": model.epoch,
        }
        while len(state.pending) > PENDING_MAX:
            state.pending.popitem(last=False)
    return {"token": token, "image": editing.png_b64(image), "size": model.size}


def saved_to(state: State) -> str:
    """Where the answers are saved, as the user finds it: relative to the repository when inside it."""
    path, root = state.store.path.resolve(), Path(state.cfg.root).resolve()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def _save(state: State, token: str, item: dict[str, Any], answer: str) -> None:
    """Write one answer; a full disk is 507 and the token stays answerable (nothing was saved)."""
    try:
        state.store.add(
            item["model_id"], item["run_id"], item["epoch"], item=item["item"], truth=item["truth"], answer=answer
        )
    except OSError as exc:
        with state.lock:  # not saved: the same token may answer again once there is room
            state.pending[token] = item
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HTTPException(
                507, f"judgement not saved: no space left for {state.store.path} (free some disk and answer again)"
            ) from exc
        raise HTTPException(500, f"judgement not saved to {state.store.path}: {clear(exc)}") from exc


@router.post("/api/judge")
async def judge(req: JudgeRequest, state: StateDep) -> dict[str, Any]:
    """Record a real/fake answer; returns the truth and the model's error rate with its 95% CI."""
    with state.lock:
        item = state.pending.pop(req.token, None)
    if item is None:
        raise HTTPException(
            404, f"judge token {req.token!r} is unknown or already answered; GET /api/judge/next for a new face"
        )
    _save(state, req.token, item, req.answer)
    summary = state.store.summary_of(item["model_id"], item["run_id"], item["epoch"])
    logged = False
    uri = state.cfg.tracking_uri
    if item["run_id"] and uri:
        try:  # the answer is saved: an MLflow failure is reported, never an error
            await asyncio.to_thread(log_to_mlflow, uri, item["run_id"], summary, item["epoch"])
            logged = True
        except Exception as exc:
            summary["mlflow_error"] = f"{type(exc).__name__}: {clear(exc)}"
    return {
        "correct": item["truth"] == req.answer,
        "truth": item["truth"],
        "item": item["item"],
        "summary": summary,
        "logged_to_mlflow": logged,
        "saved_to": saved_to(state),
    }


@router.get("/api/judge/summary")
async def judge_summary(state: StateDep) -> dict[str, Any]:
    """The loaded model's error rate so far, over all judgements, and the file that holds them."""
    m = state.model
    return {
        "model": state.store.summary_of(m.id, m.run_id, m.epoch),
        "all": state.store.summary(),
        "saved_to": saved_to(state),
    }
