"""Is a generated face a copy of a training face? ``POST /api/nearest`` (issue 26: see it).

The answer is :class:`facegen.studio.nearest.NearestFinder`'s: the nearest accepted training face
by the fid stage's memorization detector, both distances, both thresholds and ``flagged``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from facegen.studio import editing
from facegen.studio.jobs import Job
from facegen.studio.nearest import NearestFinder, NoReference
from facegen.studio.state import State, clear, get_state, image_from_b64

router = APIRouter()
StateDep = Annotated[State, Depends(get_state)]


class NearestRequest(BaseModel):
    image: str = Field(..., description="base64 PNG of a face (a generated image: the model's size)")


def finder(state: State) -> NearestFinder:
    """The app's finder, made on first use (it reads params.yaml ``fid`` and data/faces.parquet)."""
    with state.lock:
        if state.nearest is None:
            root = state.cfg.root
            faces = state.cfg.faces if state.cfg.faces.is_absolute() else root / state.cfg.faces
            state.nearest = NearestFinder(root, faces, state.params, state.device)
        found: NearestFinder = state.nearest
    return found


@router.post("/api/nearest")
async def nearest(req: NearestRequest, request: Request, state: StateDep) -> dict[str, Any]:
    """The image's nearest training face, both distances and thresholds, and whether it is flagged."""
    image = image_from_b64(req.image, "image", state.cfg)
    size = state.model.size
    if image.shape[:2] != (size, size):
        image = editing.resize_face(image=image, size=size)
    found = finder(state)

    def work(job: Job) -> dict[str, Any]:
        try:
            return found.nearest(image, size)
        except NoReference as exc:  # a 404 from the route (409 means cancelled)
            return {"error": clear(exc)}

    row = await state.run_job(request, work, "nearest training face")
    if "error" in row:
        raise HTTPException(404, row["error"])
    face = row.pop("face")
    return {
        **row,
        "face_image": editing.png_b64(face),
        "face_url": f"/api/dataset/{row['face_id']}/image",
        "size": size,
    }
