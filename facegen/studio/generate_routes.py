"""The Create tab's API: the page, the loaded model, generate, interpolate and variations.

Generation is the sample stage's own code path (:func:`facegen.diffusion.sampling.iter_batches`
with params.yaml ``sample.batch_size`` and ``timestep_spacing``), so image ``i`` of seed ``s``
is the sample stage's image of seed ``s + i``, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse

from facegen.diffusion.sampling import SAMPLERS, SampleSpec, generate_from_noise, iter_batches
from facegen.studio import editing
from facegen.studio.jobs import Job
from facegen.studio.models import LoadedModel
from facegen.studio.state import (
    STATIC,
    GenerateRequest,
    InterpolateRequest,
    ModelRequest,
    SampleSettings,
    State,
    VariationsRequest,
    get_state,
    job_key,
)

router = APIRouter()
StateDep = Annotated[State, Depends(get_state)]


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/api/model")
async def get_model(state: StateDep) -> dict[str, Any]:
    """The loaded model, the limits and the sample stage's defaults."""
    cfg = state.cfg
    return {
        **state.model.describe(),
        "samplers": list(SAMPLERS),
        "defaults": {
            "sampler": state.sample.sampler,
            "steps": state.sample.steps,
            "batch_size": state.sample.batch_size,
            "seed": state.sample.seed,
        },
        "limits": {
            "max_images": cfg.max_images,
            "max_steps": cfg.max_steps,
            "max_cost": cfg.max_cost,
            "max_upload_bytes": cfg.max_upload_bytes,
            "queue_size": cfg.queue_size,
        },
    }


@router.post("/api/model")
async def set_model(req: ModelRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Switch the generator to another checkpoint (404 when unknown)."""

    def work(job: Job) -> dict[str, Any]:
        state.model = state.catalog.load(req.id, state.device)
        return state.model.describe()

    return await state.run_job(request, work, f"load {req.id}")


@router.post("/api/generate")
async def generate(req: GenerateRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """``n`` images from seeds ``seed .. seed+n-1``: the sample stage's images of those seeds."""
    state.limit(req.n, "n")
    model = state.model
    sampler, steps = state.settings(req, model, conditional=True)
    state.cost(req.n, steps, "generate")
    seeds = [req.seed + i for i in range(req.n)]
    guidance = state.sample.guidance if req.guidance is None else req.guidance

    def work(job: Job) -> list[np.ndarray]:  # the spec's checks run here: a refused value is a 422
        spec = SampleSpec(
            sampler=sampler,
            steps=steps,
            timestep_spacing=state.sample.timestep_spacing,
            batch_size=state.sample.batch_size,
            precision=state.sample.precision,
            guidance=guidance,
            device=state.device,
        )
        out: list[np.ndarray] = []
        batches = iter_batches(
            model.unet,
            model.scheduler_config,
            spec,
            seeds,
            conditions=req.condition or None,
            progress=False,
            on_step=job.step,
        )
        for _, images in batches:
            out.extend(images)
            job.check()
        return out

    images = await state.run_job(request, work, "generate", job_key("generate", model, req))
    return {
        "images": [editing.png_b64(im) for im in images],
        "seeds": seeds,
        **state.echo(model, sampler, steps),
        "condition": dict(req.condition or {}),
        "guidance": guidance if req.condition else None,
        "reproduce": state.reproduce(model, req, sampler=sampler, steps=steps, guidance=guidance),
    }


async def _from_noise(
    state: State,
    request: Request,
    make_noise: Callable[[LoadedModel], Any],
    *,
    seeds: list[int],
    req: SampleSettings,
    name: str,
) -> dict[str, Any]:
    """Images from the noise ``make_noise`` builds (interpolation, variations), one per seed."""
    model = state.model
    sampler, steps = state.settings(req, model)
    state.cost(len(seeds), steps, name)

    def work(job: Job) -> np.ndarray:
        noise = make_noise(model)
        job.check()
        spec = SampleSpec(
            sampler=sampler,
            steps=steps,
            timestep_spacing=state.sample.timestep_spacing,
            batch_size=len(seeds),
            precision=state.sample.precision,
            device=state.device,
        )
        return generate_from_noise(model.unet, model.scheduler_config, spec, noise, seeds=seeds, on_step=job.step)

    images = await state.run_job(request, work, name, job_key(name, model, req))
    return {"images": [editing.png_b64(im) for im in images], **state.echo(model, sampler, steps)}


@router.post("/api/interpolate")
async def interpolate(req: InterpolateRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Frames of the slerp from seed_a's initial noise to seed_b's (both ends included)."""
    state.limit(req.frames, "frames")
    out = await _from_noise(
        state,
        request,
        lambda m: editing.interpolation_noise(m.unet, req.seed_a, req.seed_b, req.frames, device=state.device),
        seeds=[req.seed_a] * req.frames,
        req=req,
        name="interpolate",
    )
    return {**out, "t": np.linspace(0.0, 1.0, req.frames).round(6).tolist()}


@router.post("/api/variations")
async def variations(req: VariationsRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """Faces near seed's: its noise moved ``amount`` towards seeds seed+1..seed+n."""
    state.limit(req.n, "n")
    return await _from_noise(
        state,
        request,
        lambda m: editing.variation_noise(m.unet, req.seed, req.n, req.amount, device=state.device),
        seeds=[req.seed] * req.n,
        req=req,
        name="variations",
    )
