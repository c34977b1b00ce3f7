"""The Runs tab's API and the job queue: MLflow runs and their grids, progress, cancel, status."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from facegen.studio.models import UnknownCheckpoint
from facegen.studio.state import State, clear, get_state

router = APIRouter()
StateDep = Annotated[State, Depends(get_state)]


@router.get("/api/runs")
async def runs(state: StateDep) -> dict[str, Any]:
    """The experiment's runs from MLflow: curves, best epoch, sample grids, loadable checkpoints."""
    return {
        "experiment": state.catalog.experiment,
        "tracking_uri": state.cfg.tracking_uri,
        "runs": await asyncio.to_thread(state.catalog.runs),
        "current": state.model.id,
    }


@router.get("/api/runs/{run_id}/grid/{epoch}")
async def grid(run_id: str, epoch: int, state: StateDep) -> Response:
    """The sample grid a run logged at ``epoch`` (PNG)."""
    try:
        png = await asyncio.to_thread(state.catalog.grid_png, run_id, epoch)
    except UnknownCheckpoint as exc:
        raise HTTPException(404, clear(exc)) from exc
    return Response(png, media_type="image/png")


@router.get("/api/progress")
async def progress(state: StateDep) -> dict[str, Any]:
    """The running job: its name and denoising steps done of total, and how many wait."""
    return state.runner.progress()


@router.post("/api/cancel")
async def cancel(state: StateDep) -> dict[str, bool]:
    """Cancel the running job (its request answers 409 ``cancelled``)."""
    return {"cancelled": state.runner.cancel_running()}


@router.get("/api/status")
async def status(state: StateDep) -> dict[str, Any]:
    """The model job queue."""
    r = state.runner
    return {
        "running": r.running.name if r.running else None,
        "waiting": r.waiting,
        "completed": r.completed,
        "cancelled": r.cancelled,
        "queue_size": r.queue_size,
    }
