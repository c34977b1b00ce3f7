"""The studio's FastAPI app: the JSON API (generate, explore, edit, runs, judge) and the page.

Every route that runs the model goes through :class:`facegen.studio.jobs.JobRunner` (one job
at a time, a bounded queue, cancelled when the client disconnects). Generation is the sample
stage's own code path (:func:`facegen.diffusion.sampling.iter_batches` with params.yaml
``sample.batch_size`` and ``timestep_spacing``), so image ``i`` of seed ``s`` is the sample
stage's image of seed ``s + i``, byte for byte. The schema is served at ``/openapi.json``;
docs/studio.md describes the API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hashlib
import json
import random
import shlex
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, File, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from facegen.common.device import resolve_device
from facegen.common.images import ImageRejected, decode_image
from facegen.diffusion.edit import sdedit
from facegen.diffusion.sampling import SAMPLERS
from facegen.sample.stage import SampleConfig
from facegen.studio import editing
from facegen.studio.dataset_routes import dataset_router
from facegen.studio.guard import HostPolicy, OriginGuard
from facegen.studio.jobs import Cancelled, Job, JobRunner, QueueFull
from facegen.studio.judge import JudgementStore, log_to_mlflow
from facegen.studio.models import Catalog, LoadedModel, UnknownCheckpoint

STATIC = Path(__file__).with_name("static")
UPLOAD_PATH = "/api/upload"
MULTIPART_SLACK = 64 * 1024  # bytes of multipart headers and boundaries allowed beyond the file
DISCONNECT_POLL_S = 0.2  # how often a waiting request checks that its client is still there
JUDGE_SEED_BASE = 1_000_000  # fakes shown for judging use seeds from here on (clear of sample seeds)


LIMIT_KEYS = ("max_images", "max_steps", "max_cost", "max_upload_bytes", "max_upload_pixels", "queue_size")


@dataclass(frozen=True)
class StudioConfig:
    """What the studio serves and its limits (``facegen studio`` flags)."""

    model: Path = Path("models/best")
    root: Path = Path(".")  # repository: params.yaml, data/faces.parquet
    tracking_uri: str | None = None
    experiment: str | None = None  # None = params.yaml train.experiment
    device: str | None = None  # torch device; None = params.yaml sample.device (as the sample stage)
    max_images: int = 64  # per request
    max_steps: int = 250  # per request (ddpm's full 1000 needs --max-steps 1000)
    max_cost: int = 16_000  # images x denoising steps per request (64 images x 250 steps)
    max_upload_bytes: int = 10_000_000
    max_upload_pixels: int = 50_000_000
    queue_size: int = 4  # model jobs waiting behind the running one
    judgements: Path = Path("data/studio_judgements.parquet")
    faces: Path = Path("data/faces.parquet")
    detector: str | None = None  # faces.model override; None = params.yaml faces.model
    host: str = "127.0.0.1"  # the bound interface: requests must name it (or allow_hosts) as Host
    port: int | None = None  # the bound port; None = any port (a caller that picks a free one)
    allow_hosts: tuple[str, ...] = ()  # further Host names ('name' or 'name:port'), --allow-host

    @property
    def upload_body_bytes(self) -> int:
        """Cap of a multipart upload body: the file plus the multipart envelope."""
        return self.max_upload_bytes + MULTIPART_SLACK

    @property
    def json_body_bytes(self) -> int:
        """Cap of any other body: an edit carries a base64 image and a base64 mask (4/3 each)."""
        return 3 * self.max_upload_bytes + MULTIPART_SLACK

    def body_limit(self, path: str) -> int:
        """The byte cap of a request body to ``path``."""
        return self.upload_body_bytes if path == UPLOAD_PATH else self.json_body_bytes

    def __post_init__(self) -> None:
        for name in LIMIT_KEYS:
            if getattr(self, name) < 1:
                raise ValueError(f"studio {name}={getattr(self, name)} must be >= 1")


def params_limits(params: dict[str, Any]) -> dict[str, int]:
    """params.yaml ``studio``: the per-request limits (keys of :data:`LIMIT_KEYS`); flags override them."""
    section = params.get("studio") or {}
    if not isinstance(section, dict):
        raise ValueError(f"studio: must be a mapping of limits {list(LIMIT_KEYS)}, got {section!r}")
    unknown = sorted(set(section) - set(LIMIT_KEYS))
    if unknown:
        raise ValueError(f"studio.{unknown[0]} is not a studio key; known: {list(LIMIT_KEYS)}")
    for key, value in section.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"studio.{key} must be an integer >= 1, got {value!r}")
    return dict(section)


class SampleSettings(BaseModel):
    sampler: Literal["ddpm", "ddim", "dpm++"] | None = Field(None, description="default: params.yaml sample.sampler")
    steps: int | None = Field(None, ge=1, description="denoising steps; default: params.yaml sample.steps")
    condition: dict[str, float] | None = Field(
        None, description="attribute -> value (conditional models); null or {} = unconditional"
    )
    guidance: float | None = Field(None, ge=0.0, description="classifier-free guidance scale (conditional models)")


class GenerateRequest(SampleSettings):
    seed: int = Field(0, ge=0, description="image i uses seed + i, as the sample stage")
    n: int = Field(8, ge=1, description="number of images (at most the studio's max_images)")


class InterpolateRequest(SampleSettings):
    seed_a: int = Field(0, ge=0)
    seed_b: int = Field(1, ge=0)
    frames: int = Field(8, ge=2)


class VariationsRequest(SampleSettings):
    seed: int = Field(0, ge=0)
    n: int = Field(8, ge=1)
    amount: float = Field(0.2, gt=0.0, le=1.0, description="slerp fraction towards other seeds' noise")


class EditRequest(SampleSettings):
    image: str = Field(..., description="base64 PNG/JPEG of an aligned face (from /api/upload or a canvas)")
    mode: Literal["sdedit", "repaint"] = "sdedit"
    strength: float = Field(
        0.5, ge=0.0, le=1.0, description="SDEdit noise level: 0 keeps the face, 1 is generation's image of `seed`"
    )
    mask: str | None = Field(None, description="repaint: base64 PNG, white = repaint")
    seed: int = Field(0, ge=0)
    resample: int = Field(2, ge=1, le=10, description="repaint: resampling rounds per step")


class ModelRequest(BaseModel):
    id: str = Field(..., description="'best', 'run:<run_id>' or 'run:<run_id>:epoch:<N>'")


class JudgeRequest(BaseModel):
    token: str
    answer: Literal["real", "fake"]


@dataclass
class State:
    """What the running app holds: config, the loaded model, jobs, judgements, pending judge items."""

    cfg: StudioConfig
    sample: SampleConfig
    device: str
    catalog: Catalog
    model: LoadedModel
    runner: JobRunner
    store: JudgementStore
    params: dict[str, Any] = field(default_factory=dict)
    detector: Any = None
    pending: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    rng: random.Random = field(default_factory=random.SystemRandom)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def run_job(self, request: Request, fn: Callable[[Job], Any], name: str, key: str | None = None) -> Any:
        """Run ``fn`` as a model job (or join the identical one, ``key``); errors -> HTTP errors.

        A client that disconnects leaves the job, which stops at its next step when no client
        is left; ``POST /api/cancel`` stops it for everyone (409 ``cancelled``)."""
        try:
            job = self.runner.submit(fn, name, key)
        except QueueFull as exc:
            raise HTTPException(429, _clear(exc)) from exc
        waiter = asyncio.wrap_future(job.future)
        while True:
            done, _ = await asyncio.wait({waiter}, timeout=DISCONNECT_POLL_S)
            if done:
                break
            if await request.is_disconnected():
                self.runner.leave(job)
                raise HTTPException(499, f"{name} cancelled: the client disconnected")
        try:
            return waiter.result()
        except Cancelled as exc:
            raise (HTTPException(409, "cancelled") if job.by_user else HTTPException(499, _clear(exc))) from exc
        except UnknownCheckpoint as exc:
            raise HTTPException(404, _clear(exc)) from exc
        except ValueError as exc:  # a setting the model or sampler refuses (steps past the schedule, ...)
            raise HTTPException(422, _clear(exc)) from exc

    def cost(self, images: int, steps: int, what: str) -> None:
        """413 when a request's work (images x denoising steps) passes max_cost."""
        if images * steps > self.cfg.max_cost:
            raise HTTPException(
                413,
                f"{what}: {images} images x {steps} steps = {images * steps} exceeds this studio's "
                f"max_cost={self.cfg.max_cost} (ask for fewer images or steps, or start it with --max-cost)",
            )

    def settings(self, req: SampleSettings, model: LoadedModel, conditional: bool = False) -> tuple[str, int]:
        """Sampler and steps of a request (params.yaml defaults), checked against limits and conditions."""
        sampler = req.sampler or self.sample.sampler
        steps = req.steps if req.steps is not None else self.sample.steps
        if steps is None:
            steps = int(model.scheduler_config.get("num_train_timesteps", 1000))
        if steps > self.cfg.max_steps:
            raise HTTPException(
                422,
                f"steps={steps} exceeds this studio's max_steps={self.cfg.max_steps} "
                "(ask for fewer, or start it with --max-steps)",
            )
        names = {c["name"] for c in model.conditions}
        condition = req.condition or {}
        if condition or (req.guidance is not None and not conditional):
            if not names:
                raise HTTPException(
                    422,
                    f"model {model.id} is unconditional: drop 'condition' and 'guidance' "
                    "(or load a model trained with train.condition)",
                )
            unknown = sorted(set(condition) - names)
            if unknown:
                raise HTTPException(422, f"condition names {unknown} are not among the model's {sorted(names)}")
            if not conditional:
                raise HTTPException(
                    501,
                    "this endpoint samples unconditionally: use /api/generate for a condition, "
                    "or omit 'condition' and 'guidance'",
                )
            from facegen.diffusion.conditional import check_request

            try:
                check_request(model.unet.config, condition)
            except ValueError as exc:
                raise HTTPException(422, _clear(exc)) from exc
        return sampler, steps

    def reproduce(
        self, model: LoadedModel, req: GenerateRequest, *, sampler: str, steps: int, guidance: float
    ) -> str | None:
        """The shell command whose sample stage writes these images' bytes (``data/samples/00001.png``
        on), or None when none does: only models/best is what the sample stage reads."""
        stage_model = (Path(self.cfg.root) / "models" / "best").resolve()
        if model.id != "best" or Path(model.path).resolve() != stage_model:
            return None
        condition = dict(req.condition or {})
        sets = {
            "seed": req.seed,
            "num_images": req.n,
            "sampler": sampler,
            "steps": steps,
            "batch_size": self.sample.batch_size,
            "timestep_spacing": self.sample.timestep_spacing,
            "precision": self.sample.precision,
            "device": self.device,
            "condition": json.dumps(condition, separators=(",", ":")),
            "guidance": guidance if condition else self.sample.guidance,
        }
        return "dvc exp run sample " + " ".join(f"-S {shlex.quote(f'sample.{k}={v}')}" for k, v in sets.items())

    def limit(self, n: int, what: str) -> None:
        """413 when a request asks for more than max_images images."""
        if n > self.cfg.max_images:
            raise HTTPException(
                413,
                f"{what}={n} exceeds this studio's max_images={self.cfg.max_images} per request "
                "(ask in several requests, or start it with --max-images)",
            )

    def echo(self, model: LoadedModel, sampler: str, steps: int | None) -> dict[str, Any]:
        """The settings that reproduce an answer's images."""
        return {
            "model": model.id,
            "run_id": model.run_id,
            "epoch": model.epoch,
            "sampler": sampler,
            "steps": steps,
            "batch_size": self.sample.batch_size,
            "timestep_spacing": self.sample.timestep_spacing,
            "precision": self.sample.precision,
            "size": model.size,
        }

    def get_detector(self) -> Any:
        """The face detector of params.yaml ``faces`` (or --detector), built on first use."""
        from facegen.common.config import from_dict
        from facegen.faces.detect import FaceDetector, FacesConfig, WeightsMissingError

        if self.detector is None:
            section = self.params.get("faces")
            faces = from_dict(FacesConfig, section, "faces") if section is not None else FacesConfig()
            if self.cfg.detector:
                faces = FacesConfig(model=self.cfg.detector, det_size=faces.det_size, min_score=faces.min_score)
            try:
                self.detector = FaceDetector(faces)
            except WeightsMissingError as exc:
                raise ValueError(f"no face detector: {exc} (facegen studio --detector PATH.onnx)") from exc
        return self.detector

    def align_config(self) -> Any:
        """params.yaml ``align``: how uploads are aligned, as the align stage does."""
        from facegen.align.geometry import AlignConfig
        from facegen.common.config import from_dict

        section = self.params.get("align")
        return from_dict(AlignConfig, section, "align") if section is not None else AlignConfig()


def _sample_config(params: dict[str, Any]) -> SampleConfig:
    from facegen.common.config import from_dict

    return from_dict(SampleConfig, params.get("sample"), "sample") if "sample" in params else SampleConfig()


def _key(name: str, model: LoadedModel, req: BaseModel) -> str:
    """What makes two requests the same work: the action, the model and the request's fields."""
    digest = hashlib.sha256(req.model_dump_json().encode()).hexdigest()
    return f"{name}:{model.id}:{digest}"


def _clear(exc: Exception) -> str:
    return str(exc).strip() or type(exc).__name__


def _image_from_b64(data: str, what: str, cfg: StudioConfig) -> np.ndarray:
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(422, f"{what} is not valid base64: {exc}") from exc
    try:
        return decode_image(raw, max_pixels=cfg.max_upload_pixels, max_bytes=cfg.max_upload_bytes).rgb
    except ImageRejected as exc:
        raise HTTPException(413 if exc.status == "too_large" else 422, f"{what}: {exc.reason}") from exc


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """A request that fails validation: 400 for malformed JSON, else 422 naming each bad field."""
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        msg = next(e for e in errors if e.get("type") == "json_invalid")
        return JSONResponse({"detail": f"malformed JSON body: {msg.get('ctx', {}).get('error', msg['msg'])}"}, 400)
    parts = [f"{'.'.join(str(x) for x in e['loc'] if x != 'body') or 'body'}: {e['msg']}" for e in errors]
    return JSONResponse({"detail": "; ".join(parts), "errors": jsonable(errors)}, 422)


def _model_routes(app: FastAPI, state: State) -> None:
    """The page, the model, generate, interpolate and variations."""
    cfg = state.cfg

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/model")
    async def get_model() -> dict[str, Any]:
        """The loaded model, the limits and the sample stage's defaults."""
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

    @app.post("/api/model", max_body_size=cfg.json_body_bytes)
    async def set_model(req: ModelRequest, request: Request) -> dict[str, Any]:
        """Switch the generator to another checkpoint (404 when unknown)."""

        def work(job: Job) -> dict[str, Any]:
            state.model = state.catalog.load(req.id, state.device)
            return state.model.describe()

        return await state.run_job(request, work, f"load {req.id}")

    @app.post("/api/generate", max_body_size=cfg.json_body_bytes)
    async def generate(req: GenerateRequest, request: Request) -> dict[str, Any]:
        """``n`` images from seeds ``seed .. seed+n-1``: the sample stage's images of those seeds."""
        state.limit(req.n, "n")
        model = state.model
        sampler, steps = state.settings(req, model, conditional=True)
        state.cost(req.n, steps, "generate")
        seeds = [req.seed + i for i in range(req.n)]
        guidance = state.sample.guidance if req.guidance is None else req.guidance

        def work(job: Job) -> list[np.ndarray]:
            from facegen.diffusion.sampling import SampleSpec, iter_batches

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

        images = await state.run_job(request, work, "generate", _key("generate", model, req))
        return {
            "images": [editing.png_b64(im) for im in images],
            "seeds": seeds,
            **state.echo(model, sampler, steps),
            "condition": dict(req.condition or {}),
            "guidance": guidance if req.condition else None,
            "reproduce": state.reproduce(model, req, sampler=sampler, steps=steps, guidance=guidance),
        }

    async def from_noise(
        request: Request, make_noise: Callable[[LoadedModel], Any], seeds: list[int], req: SampleSettings, name: str
    ) -> dict[str, Any]:
        model = state.model
        sampler, steps = state.settings(req, model)
        state.cost(len(seeds), steps, name)

        def work(job: Job) -> np.ndarray:
            from facegen.diffusion.sampling import SampleSpec, generate_from_noise

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
            return generate_from_noise(model.unet, model.scheduler_config, spec, noise, seeds, on_step=job.step)

        images = await state.run_job(request, work, name, _key(name, model, req))
        return {"images": [editing.png_b64(im) for im in images], **state.echo(model, sampler, steps)}

    @app.post("/api/interpolate", max_body_size=cfg.json_body_bytes)
    async def interpolate(req: InterpolateRequest, request: Request) -> dict[str, Any]:
        """Frames of the slerp from seed_a's initial noise to seed_b's (both ends included)."""
        state.limit(req.frames, "frames")
        out = await from_noise(
            request,
            lambda m: editing.interpolation_noise(m.unet, req.seed_a, req.seed_b, req.frames, state.device),
            [req.seed_a] * req.frames,
            req,
            "interpolate",
        )
        return {**out, "t": np.linspace(0.0, 1.0, req.frames).round(6).tolist()}

    @app.post("/api/variations", max_body_size=cfg.json_body_bytes)
    async def variations(req: VariationsRequest, request: Request) -> dict[str, Any]:
        """Faces near seed's: its noise moved ``amount`` towards seeds seed+1..seed+n."""
        state.limit(req.n, "n")
        return await from_noise(
            request,
            lambda m: editing.variation_noise(m.unet, req.seed, req.n, req.amount, state.device),
            [req.seed] * req.n,
            req,
            "variations",
        )


def _edit_routes(app: FastAPI, state: State) -> None:
    """Upload (detect and align) and edit (SDEdit, repaint)."""
    cfg = state.cfg

    @app.post(UPLOAD_PATH, max_body_size=cfg.upload_body_bytes)
    async def upload(request: Request, file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        """A photo -> its largest face, detected and aligned as the pipeline does, at the model's size."""
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
                data, state.get_detector(), state.align_config(), cfg.max_upload_pixels, cfg.max_upload_bytes
            )

        face, det = await state.run_job(request, work, "upload")
        return {
            "image": editing.png_b64(editing.resize_face(face, model.size)),
            "detection": det,
            "aligned_size": int(face.shape[0]),
            "size": model.size,
        }

    @app.post("/api/edit", max_body_size=cfg.json_body_bytes)
    async def edit(req: EditRequest, request: Request) -> dict[str, Any]:
        """SDEdit (re-generate from a noise level) or RePaint (re-draw the masked region) of a face."""
        model = state.model
        sampler, steps = state.settings(req, model, conditional=req.mode == "sdedit")
        if req.mode == "sdedit":
            sampler = "ddim"  # facegen.diffusion.edit's SDEdit: DDIM, so strength 1 is generation's image
        state.cost(req.resample if req.mode == "repaint" else 1, steps, req.mode)
        guidance = state.sample.guidance if req.guidance is None else req.guidance
        face = editing.resize_face(_image_from_b64(req.image, "image", cfg), model.size)
        mask = None
        if req.mode == "repaint":
            if req.mask is None:
                raise HTTPException(422, "mode 'repaint' needs a 'mask' (base64 PNG, white = repaint)")
            m = editing.resize_face(_image_from_b64(req.mask, "mask", cfg), model.size)
            mask = (m.mean(axis=2) >= 128).astype(np.float32)[None, None]
            if sampler == "dpm++":
                sampler = "ddim"  # a multistep solver cannot jump back: RePaint runs on DDIM

        def work(job: Job) -> np.ndarray:
            import torch

            if mask is None:
                return sdedit(
                    model.unet,
                    model.scheduler_config,
                    np.array(face),  # writable: torch.from_numpy of a read-only array warns
                    req.condition,
                    req.strength,
                    seed=req.seed,
                    steps=steps,
                    guidance=guidance if req.condition else 1.0,
                    device=state.device,
                    timestep_spacing=state.sample.timestep_spacing,
                    batch_size=state.sample.batch_size,
                    on_step=job.step,
                )[0]
            x0 = editing.to_tensor(face[None], state.device)
            return editing.repaint(
                model.unet,
                model.scheduler_config,
                sampler,
                steps,
                x0,
                mask=torch.from_numpy(mask),
                seed=req.seed,
                resample=req.resample,
                check=job.check,
            )[0]

        image = await state.run_job(request, work, req.mode, _key(req.mode, model, req))
        return {
            "image": editing.png_b64(image),
            "mode": req.mode,
            "strength": req.strength,
            "seed": req.seed,
            **state.echo(model, sampler, steps),
        }


def _run_routes(app: FastAPI, state: State) -> None:
    """MLflow runs, their grids, and the job queue."""
    cfg = state.cfg

    @app.get("/api/runs")
    async def runs() -> dict[str, Any]:
        """The experiment's runs from MLflow: curves, best epoch, sample grids, loadable checkpoints."""
        return {
            "experiment": state.catalog.experiment,
            "tracking_uri": cfg.tracking_uri,
            "runs": await asyncio.to_thread(state.catalog.runs),
            "current": state.model.id,
        }

    @app.get("/api/runs/{run_id}/grid/{epoch}")
    async def grid(run_id: str, epoch: int) -> Response:
        """The sample grid a run logged at ``epoch`` (PNG)."""
        try:
            png = await asyncio.to_thread(state.catalog.grid_png, run_id, epoch)
        except UnknownCheckpoint as exc:
            raise HTTPException(404, _clear(exc)) from exc
        return Response(png, media_type="image/png")

    @app.get("/api/progress")
    async def progress() -> dict[str, Any]:
        """The running job: its name and denoising steps done of total, and how many wait."""
        return state.runner.progress()

    @app.post("/api/cancel", max_body_size=cfg.json_body_bytes)
    async def cancel() -> dict[str, bool]:
        """Cancel the running job (its request answers 409 ``cancelled``)."""
        return {"cancelled": state.runner.cancel_running()}

    @app.get("/api/status")
    async def status() -> dict[str, Any]:
        """The model job queue."""
        r = state.runner
        return {
            "running": r.running.name if r.running else None,
            "waiting": r.waiting,
            "completed": r.completed,
            "cancelled": r.cancelled,
            "queue_size": r.queue_size,
        }


def _judge_routes(app: FastAPI, state: State) -> None:
    """Real-vs-fake judging."""
    cfg = state.cfg
    root = Path(cfg.root)

    @app.get("/api/judge/next")
    async def judge_next(request: Request) -> dict[str, Any]:
        """One face to judge, real (test split) or fake (the model), 50/50; the truth stays here."""
        from facegen.train.data import face_paths

        model = state.model
        want_real = state.rng.random() < 0.5
        real: list[Path] = []
        if want_real:
            try:
                real = face_paths(root / cfg.faces, "test", root) if (root / cfg.faces).is_file() else []
            except ValueError:
                real = []
        if real:
            path = state.rng.choice(real)
            from facegen.common.images import read_image

            image, item, truth = editing.resize_face(read_image(path), model.size), f"face:{path.stem}", "real"
        else:
            seed = JUDGE_SEED_BASE + state.rng.randrange(1_000_000)
            sampler, steps = state.settings(SampleSettings.model_validate({}), model)

            def work(job: Job) -> np.ndarray:
                from facegen.diffusion.sampling import SampleSpec
                from facegen.diffusion.sampling import generate as gen

                spec = SampleSpec(
                    sampler=sampler,
                    steps=steps,
                    timestep_spacing=state.sample.timestep_spacing,
                    batch_size=1,
                    precision=state.sample.precision,
                    device=state.device,
                )
                return gen(model.unet, model.scheduler_config, spec, [seed], progress=False)[0]

            image, item, truth = await state.run_job(request, work, "judge sample"), f"sample:{seed}", "fake"
        token = f"{state.rng.getrandbits(64):016x}"
        with state.lock:
            state.pending[token] = {
                "item": item,
                "truth": truth,
                "model_id": model.id,
                "run_id": model.run_id,
                "epoch": model.epoch,
            }
            while len(state.pending) > 256:
                state.pending.popitem(last=False)
        return {"token": token, "image": editing.png_b64(image), "size": model.size}

    @app.post("/api/judge", max_body_size=cfg.json_body_bytes)
    async def judge(req: JudgeRequest) -> dict[str, Any]:
        """Record a real/fake answer; returns the truth and the model's error rate with its 95% CI."""
        with state.lock:
            item = state.pending.pop(req.token, None)
        if item is None:
            raise HTTPException(
                404, f"judge token {req.token!r} is unknown or already answered; GET /api/judge/next for a new face"
            )
        try:
            state.store.add(
                item["model_id"],
                item["run_id"],
                item["epoch"],
                item=item["item"],
                truth=item["truth"],
                answer=req.answer,
            )
        except OSError as exc:
            with state.lock:  # not saved: the same token may answer again once there is room
                state.pending[req.token] = item
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise HTTPException(
                    507, f"judgement not saved: no space left for {state.store.path} (free some disk and answer again)"
                ) from exc
            raise HTTPException(500, f"judgement not saved to {state.store.path}: {_clear(exc)}") from exc
        summary = state.store.summary_of(item["model_id"], item["run_id"], item["epoch"])
        logged = False
        if item["run_id"] and cfg.tracking_uri:
            try:
                await asyncio.to_thread(log_to_mlflow, cfg.tracking_uri, item["run_id"], summary, item["epoch"])
                logged = True
            except Exception as exc:
                summary["mlflow_error"] = f"{type(exc).__name__}: {_clear(exc)}"
        return {
            "correct": item["truth"] == req.answer,
            "truth": item["truth"],
            "item": item["item"],
            "summary": summary,
            "logged_to_mlflow": logged,
        }

    @app.get("/api/judge/summary")
    async def judge_summary() -> dict[str, Any]:
        """The loaded model's error rate so far, and over all judgements."""
        m = state.model
        return {"model": state.store.summary_of(m.id, m.run_id, m.epoch), "all": state.store.summary()}


def create_app(cfg: StudioConfig) -> FastAPI:
    """Build the app over ``cfg.model`` (loaded now: a missing model is an error before serving)."""
    from facegen.common.config import load_params

    root = Path(cfg.root)
    params_path = root / "params.yaml"
    params = load_params(params_path) if params_path.is_file() else {}
    experiment = cfg.experiment or str((params.get("train") or {}).get("experiment", "facegen"))
    catalog = Catalog(cfg.model if cfg.model.is_absolute() else root / cfg.model, cfg.tracking_uri, experiment)
    sample = _sample_config(params)
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
    app.add_exception_handler(RequestValidationError, _invalid)
    for add in (_model_routes, _edit_routes, _run_routes, _judge_routes):
        add(app, state)
    app.include_router(dataset_router(root, cfg.faces), max_body_size=cfg.json_body_bytes)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def jsonable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """Validation errors without the non-JSON ``ctx`` objects pydantic may attach."""
    return [{k: (str(v) if k in ("ctx", "input") else v) for k, v in e.items() if k != "url"} for e in errors]
