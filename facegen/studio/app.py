"""The studio's FastAPI app: one router per tab over one shared :class:`~facegen.studio.state.State`.

- :mod:`facegen.studio.generate_routes`: the page, the model, generate, interpolate, variations;
- :mod:`facegen.studio.edit_routes`: upload and edit (SDEdit, RePaint);
- :mod:`facegen.studio.runs_routes`: MLflow runs and grids, job progress, cancel and status;
- :mod:`facegen.studio.judge_routes`: real-vs-fake judging;
- :mod:`facegen.studio.nearest_routes`: a generated face's nearest training face (memorization);
- :mod:`facegen.studio.dataset_routes`: curation of the aligned faces.

Every route that runs the model goes through :class:`facegen.studio.jobs.JobRunner` (one job
at a time, a bounded queue, cancelled when the client disconnects); :mod:`facegen.studio.guard`
refuses other origins and hosts. The schema is served at ``/openapi.json``; docs/studio.md
describes the API.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from facegen.common.config import load_params
from facegen.common.device import resolve_device
from facegen.studio import dataset_routes, edit_routes, generate_routes, judge_routes, nearest_routes, runs_routes
from facegen.studio.dataset_routes import FaceTable
from facegen.studio.guard import HostPolicy, OriginGuard
from facegen.studio.jobs import JobRunner
from facegen.studio.judge import JudgementStore
from facegen.studio.models import Catalog
from facegen.studio.state import STATIC, State, StudioConfig, params_limits, sample_config

__all__ = ["StudioConfig", "create_app", "params_limits"]


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """A request that fails validation: 400 for malformed JSON, else 422 naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(e for e in errors if e.get("type") == "json_invalid")
        return JSONResponse({"detail": f"malformed JSON body: {msg.get('ctx', {}).get('error', msg['msg'])}"}, 400)
    parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body') or 'body'}: {e['msg']}" for e in errors]
    return JSONResponse({"detail": "; ".join(parts), "errors": jsonable(errors)}, 422)


def create_app(cfg: StudioConfig) -> FastAPI:
    """Build the app over ``cfg.model`` (loaded now: a missing model is an error before serving)."""
    root = Path(cfg.root)
    params_path = root / "params.yaml"
    params = load_params(params_path) if params_path.is_file() else {}
    experiment = cfg.experiment or str((params.get("train") or {}).get("experiment", "facegen"))
    catalog = Catalog(
        cfg.model if cfg.model.is_absolute() else root / cfg.model, cfg.tracking_uri, experiment, root=root
    )
    sample = sample_config(params)
    device = resolve_device(cfg.device or sample.device)
    state = State(
        cfg=cfg,
        sample=sample,
        device=device,
        catalog=catalog,
        model=catalog.load("best", device),
        runner=JobRunner(cfg.queue_size),
        store=JudgementStore(cfg.judgements if cfg.judgements.is_absolute() else root / cfg.judgements),
        params=params,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        state.runner.close()

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN; /openapi.json stays
    app = FastAPI(
        title="facegen studio",
        version="1",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Generate, explore, edit and judge faces of a trained facegen model (docs/studio.md).",
    )
    app.add_middleware(OriginGuard, hosts=HostPolicy(cfg.host, cfg.port, cfg.allow_hosts), body_limit=cfg.body_limit)
    app.state.studio = state
    app.state.dataset = FaceTable.at(root, cfg.faces)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(edit_routes.upload_router, max_body_size=cfg.upload_body_bytes)
    for module in (generate_routes, edit_routes, runs_routes, judge_routes, nearest_routes, dataset_routes):
        app.include_router(module.router, max_body_size=cfg.json_body_bytes)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def jsonable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the non-JSON ``ctx`` objects pydantic may attach."""
    return [{k: (str(v) if k in ("ctx", "input") else v) for k, v in e.items() if k != "url"} for e in errors]
