"""The Edit tab's API: upload (detect and align a photo's face) and edit (SDEdit, RePaint).

Upload has its own router: its body cap is the upload's (``StudioConfig.upload_body_bytes``),
every other body's is ``json_body_bytes``.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Request, UploadFile

from facegen.common.images import ImageRejected, decode_image
from facegen.diffusion.edit import SDEditSpec, sdedit
from facegen.diffusion.sampling import SampleSpec
from facegen.studio import editing
from facegen.studio.jobs import Job
from facegen.studio.models import LoadedModel
from facegen.studio.state import UPLOAD_PATH, EditRequest, State, StudioConfig, get_state, image_from_b64, job_key

upload_router = APIRouter()
router = APIRouter()
StateDep = Annotated[State, Depends(get_state)]


@upload_router.post(UPLOAD_PATH)
async def upload(request: Request, file: Annotated[UploadFile, File()], state: StateDep) -> dict[str, Any]:
    """A photo -> its largest face, detected and aligned as the pipeline does, at the model's size."""
    cfg = state.cfg
    data = await file.read(cfg.max_upload_bytes + 1)
    if len(data) > cfg.max_upload_bytes:
        raise HTTPException(413, f"upload is larger than max_upload_bytes={cfg.max_upload_bytes}")
    try:  # the pipeline's decode first: a non-image never reaches the detector
        decode_image(data, max_pixels=cfg.max_upload_pixels, max_bytes=cfg.max_upload_bytes)
    except ImageRejected as exc:
        raise HTTPException(413 if exc.status == "too_large" else 422, f"upload: {exc.reason}") from exc
    model = state.model

    def work(job: Job) -> tuple[np.ndarray, dict[str, Any]]:
        return editing.prepare_upload(
            data,
            state.get_detector(),
            state.align_config(),
            max_pixels=cfg.max_upload_pixels,
            max_bytes=cfg.max_upload_bytes,
        )

    face, det = await state.run_job(request, work, "upload")
    return {
        "image": editing.png_b64(editing.resize_face(face, model.size)),
        "detection": det,
        "aligned_size": int(face.shape[0]),
        "size": model.size,
    }


def _repaint_mask(req: EditRequest, model: LoadedModel, cfg: StudioConfig) -> np.ndarray:
    """The request's mask at the model's size as (1, 1, H, W) float32, 1 = repaint."""
    if req.mask is None:
        raise HTTPException(422, "mode 'repaint' needs a 'mask' (base64 PNG, white = repaint)")
    m = editing.resize_face(image_from_b64(req.mask, "mask", cfg), model.size)
    return (m.mean(axis=2) >= 128).astype(np.float32)[None, None]


@router.post("/api/edit")
async def edit(req: EditRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """SDEdit (re-generate from a noise level) or RePaint (re-draw the masked region) of a face."""
    model = state.model
    sampler, steps = state.settings(req, model, conditional=req.mode == "sdedit")
    if req.mode == "sdedit":
        sampler = "ddim"  # facegen.diffusion.edit's SDEdit: DDIM, so strength 1 is generation's image
    state.cost(req.resample if req.mode == "repaint" else 1, steps, req.mode)
    guidance = state.sample.guidance if req.guidance is None else req.guidance
    face = editing.resize_face(image_from_b64(req.image, "image", state.cfg), model.size)
    mask = _repaint_mask(req, model, state.cfg) if req.mode == "repaint" else None
    if mask is not None and sampler == "dpm++":
        sampler = "ddim"  # a multistep solver cannot jump back: RePaint runs on DDIM

    def work(job: Job) -> np.ndarray:  # the specs' checks run here: a refused value is a 422
        import torch

        if mask is None:
            spec = SampleSpec(
                sampler="ddim",
                steps=steps,
                timestep_spacing=state.sample.timestep_spacing,
                batch_size=state.sample.batch_size,
                guidance=guidance if req.condition else 1.0,
                device=state.device,
            )
            edit = SDEditSpec(condition=req.condition, strength=req.strength, seed=req.seed)
            writable = np.array(face)  # torch.from_numpy of a read-only array warns
            return sdedit(model.unet, model.scheduler_config, spec, writable, edit=edit, on_step=job.step)[0]
        x0 = editing.to_tensor(face[None], state.device)
        return editing.repaint(
            model.unet,
            model.scheduler_config,
            SampleSpec(sampler=sampler, steps=steps, device=state.device),  # trailing spacing, as repaint always ran
            x0,
            mask=torch.from_numpy(mask),
            seed=req.seed,
            resample=req.resample,
            check=job.check,
        )[0]

    image = await state.run_job(request, work, req.mode, job_key(req.mode, model, req))
    return {
        "image": editing.png_b64(image),
        "mode": req.mode,
        "strength": req.strength,
        "seed": req.seed,
        **state.echo(model, sampler, steps),
    }
