"""The studio's shared state and request schemas: config and limits, the loaded model, the job
runner, and the checks every route shares (limits, cost, sampler settings, the reproduce command).

Routes reach the one :class:`State` of an app through :func:`get_state` (FastAPI ``Depends``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import random
import shlex
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import HTTPException, Request
from pydantic import BaseModel, Field

from facegen.common.images import ImageRejected, decode_image
from facegen.sample.stage import SampleConfig
from facegen.studio.jobs import Cancelled, Job, JobRunner, QueueFull
from facegen.studio.judge import JudgementStore
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
    nearest: Any = None  # facegen.studio.nearest.NearestFinder, made by the first /api/nearest
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
            raise HTTPException(429, clear(exc)) from exc
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
            raise (HTTPException(409, "cancelled") if job.by_user else HTTPException(499, clear(exc))) from exc
        except UnknownCheckpoint as exc:
            raise HTTPException(404, clear(exc)) from exc
        except ValueError as exc:  # a setting the model or sampler refuses (steps past the schedule, ...)
            raise HTTPException(422, clear(exc)) from exc

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
                raise HTTPException(422, clear(exc)) from exc
        return sampler, steps

    def reproduce(
        self, model: LoadedModel, req: GenerateRequest, *, sampler: str, steps: int, guidance: float
    ) -> str | None:
        """The shell command whose sample stage writes these images' bytes (``data/samples/00001.png``
        on), or None when none does: only models/best is what the sample stage reads. Every setting
        is named, so the command holds whatever params.yaml says today."""
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
            "condition": "{" + ",".join(f"{k}:{v}" for k, v in condition.items()) + "}",  # Hydra's dict
            "guidance": guidance if condition else self.sample.guidance,
        }
        written = self.params.get("sample") or {}  # a key params.yaml lacks is added (Hydra's ``++``)
        overrides = (f"{'' if k in written else '++'}sample.{k}={v}" for k, v in sets.items())
        return "dvc exp run sample " + " ".join(f"-S {shlex.quote(o)}" for o in overrides)

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


def get_state(request: Request) -> State:
    """The app's :class:`State` (a FastAPI dependency: ``Annotated[State, Depends(get_state)]``)."""
    return request.app.state.studio


def sample_config(params: dict[str, Any]) -> SampleConfig:
    """params.yaml ``sample`` (the sample stage's defaults), or the dataclass defaults when absent."""
    from facegen.common.config import from_dict

    return from_dict(SampleConfig, params.get("sample"), "sample") if "sample" in params else SampleConfig()


def job_key(name: str, model: LoadedModel, req: BaseModel) -> str:
    """What makes two requests the same work: the action, the model and the request's fields."""
    digest = hashlib.sha256(req.model_dump_json().encode()).hexdigest()
    return f"{name}:{model.id}:{digest}"


def clear(exc: Exception) -> str:
    """An exception's message for an HTTP answer (its type name when the message is empty)."""
    return str(exc).strip() or type(exc).__name__


def image_from_b64(data: str, what: str, cfg: StudioConfig) -> np.ndarray:
    """Decode a base64 (or data: URL) image field within the upload limits; 413/422 naming ``what``."""
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
