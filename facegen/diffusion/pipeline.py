"""``models/best/`` as a diffusers pipeline, an MLflow model and a Hugging Face Hub repository.

- :func:`write_pipeline_files`: ``model_index.json`` (the custom ``FacegenPipeline`` shipped as
  ``pipeline_facegen.py``, and for a conditional model ``unet/unet_facegen.py``), the sampling
  scheduler (``scheduler/``: DPM-Solver++ 2M with trailing timesteps and x0 thresholding, the
  sample stage's defaults) and the model card ``README.md`` (``huggingface_hub.ModelCard``).
- :class:`FaceSampler` / :func:`log_mlflow_model`: an MLflow pyfunc model wrapping the folder
  (logged from code: :mod:`facegen.diffusion.mlflow_pyfunc`);
  input one ``seed`` per row (int64) and optional attribute columns, output uint8 images (N, H, W, 3).
- :func:`export_model`: copy the folder, sample it through diffusers (:func:`check_pipeline`),
  and (``repo_id``) create the Hub repository and upload the folder.

diffusers, mlflow and huggingface_hub are imported inside the functions.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_json

SAMPLER, SAMPLE_STEPS, TIMESTEP_SPACING = "dpm++", 25, "trailing"  # = params.yaml sample defaults
MODEL_ARTIFACT = "model"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # MLflow's switch for its download bars


def sampling_scheduler(noise_config: dict[str, Any]) -> Any:
    """The scheduler ``FacegenPipeline`` saves, so it samples like ``facegen.sample``'s defaults."""
    from facegen.diffusion.sampling import make_scheduler

    return make_scheduler(noise_config, SAMPLER, SAMPLE_STEPS, TIMESTEP_SPACING)


PIPELINE_MODULE, PIPELINE_CLASS = "pipeline_facegen", "FacegenPipeline"  # <folder>/pipeline_facegen.py
UNET_MODULE = "unet_facegen"  # <folder>/unet/unet_facegen.py (conditional models)


def write_pipeline_files(
    out_dir: str | Path, noise_config: dict[str, Any], train_config: dict[str, Any], best: dict[str, Any]
) -> None:
    """Add ``model_index.json``, ``scheduler/``, the custom pipeline code and ``README.md`` to a
    folder holding ``unet/`` (see :mod:`facegen.diffusion.pipeline_facegen`)."""
    import diffusers

    from facegen.diffusion import pipeline_facegen, unet_facegen
    from facegen.diffusion.conditional import CLASS_NAME, is_conditional

    out = Path(out_dir)
    sched = sampling_scheduler(noise_config)
    sched.save_pretrained(out / "scheduler")
    unet_config = json.loads((out / "unet" / "config.json").read_text(encoding="utf-8"))
    shutil.copyfile(pipeline_facegen.__file__, out / f"{PIPELINE_MODULE}.py")
    unet_entry = ["diffusers", "UNet2DModel"]
    if is_conditional(unet_config):
        shutil.copyfile(unet_facegen.__file__, out / "unet" / f"{UNET_MODULE}.py")
        unet_entry = [UNET_MODULE, CLASS_NAME]
    index = {
        "_class_name": [PIPELINE_MODULE, PIPELINE_CLASS],
        "_diffusers_version": diffusers.__version__,
        "unet": unet_entry,
        "scheduler": ["diffusers", type(sched).__name__],
    }
    write_json(out / "model_index.json", index, sort_keys=False)
    model_card(train_config, best, unet_config).save(out / "README.md")


def load_pipeline(folder: str | Path) -> Any:
    """``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``: the documented call
    (the folder ships its pipeline and UNet code)."""
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(str(folder), trust_remote_code=True)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# units of the attributes a model can be conditioned on (facegen.faces.appearance / pose)
UNITS = {"brightness": "mean luma, 0-255", "yaw": "degrees", "pitch": "degrees", "roll": "degrees"}
SCORE_KEYS = ("kid", "kid_std", "precision", "recall", "memorized_fraction")


def _condition_lines(unet_config: dict[str, Any]) -> list[str]:
    from facegen.diffusion.conditional import allowed_range, names

    known = names(unet_config)
    if not known:
        return ["Unconditional: `pipe(batch_size=4)` draws faces; it takes no condition."]
    rows = ["| attribute | unit | trained range | allowed request |", "| --- | --- | --- | --- |"]
    for i, name in enumerate(known):
        lo, hi = unet_config["condition_min"][i], unet_config["condition_max"][i]
        a, b = allowed_range(unet_config, name)
        rows.append(f"| {name} | {UNITS.get(name, 'its own units')} | [{lo:.4g}, {hi:.4g}] | [{a:.4g}, {b:.4g}] |")
    return [
        f"Conditional on {', '.join(known)} (classifier-free guidance; no condition = unconditional):",
        "",
        *rows,
    ]


def _use_lines(unet_config: dict[str, Any]) -> list[str]:
    from facegen.diffusion.conditional import names

    known = names(unet_config)
    lines = [
        "```python",
        "import torch",
        "from diffusers import DiffusionPipeline",
        "",
        'pipe = DiffusionPipeline.from_pretrained("models/best", trust_remote_code=True)  # or the Hub repo id',
        "seeds = range(4)  # the sample stage's images 1-4 for sample.seed: 0",
        "gens = [torch.Generator().manual_seed(s) for s in seeds]",
        f"images = pipe(batch_size=4, generator=gens, num_inference_steps={SAMPLE_STEPS}).images",
    ]
    if known:
        mid = (unet_config["condition_min"][0] + unet_config["condition_max"][0]) / 2
        lines.append(f'bright = pipe(batch_size=4, condition={{"{known[0]}": {mid:.4g}}}, guidance_scale=2.0).images')
    return [*lines, "```"]


def model_card(train_config: dict[str, Any], best: dict[str, Any], unet_config: dict[str, Any] | None = None) -> Any:
    """The Hub model card (``huggingface_hub.ModelCard``): conditional or not, attributes with units
    and ranges, scores of the best epoch (FID, KID, precision/recall when scored), data, params."""
    from huggingface_hub import ModelCard, ModelCardData

    from facegen.diffusion.conditional import names

    unet_config = unet_config or {}
    conditional = bool(names(unet_config))
    metric, value = best.get("metric"), best.get("value")
    scores = [f"| {metric} | {_fmt(value)} |"] if metric and value is not None else []
    scores += [f"| {k} | {_fmt(best[k])} |" for k in SCORE_KEYS if best.get(k) is not None]
    size = train_config.get("image_size", "?")
    kind = "conditional" if conditional else "unconditional"
    data = ModelCardData(
        library_name="diffusers",
        pipeline_tag="unconditional-image-generation",
        tags=["diffusers", "ddpm", "faces", "facegen", f"{kind}-image-generation"],
    )
    lines = [
        f"# facegen DDPM ({train_config.get('model', '?')}, {size}x{size} faces)",
        "",
        f"{'A' if conditional else 'An'} {kind} DDPM (diffusers UNet, EMA weights) trained by the facegen DVC pipeline "
        "on aligned faces from PTT Beauty posts.",
        "",
        *_condition_lines(unet_config),
        "",
        "## Scores (best epoch)",
        "",
        f"Epoch {best.get('epoch', '?')} of {train_config.get('epochs', '?')}, MLflow run `{best.get('run_id')}`.",
        "",
        *["| metric | value |", "| --- | --- |", *(scores or ["| (not scored) | |"])],
        "",
        "`fid` is clean-fid's FID (Inception-V3); `fd_offline` is the Fréchet distance of an offline "
        "stand-in network, comparable only between runs of this pipeline. Scored on DDIM samples "
        f"({train_config.get('eval_steps', '?')} steps) against the test split.",
        "",
        "## Data",
        "",
        f"Training split content hash (sha256 of the decoded faces): `{best.get('data_hash', 'unknown')}`"
        + (f", {best['num_train_images']} images." if best.get("num_train_images") else "."),
        "",
        "## Use",
        "",
        *_use_lines(unet_config),
        "",
        f"The saved scheduler is DPM-Solver++ 2M with `timestep_spacing: {TIMESTEP_SPACING}`, as "
        "`facegen`'s sample stage draws; the training noise schedule is in `noise_scheduler/`. "
        "The folder ships its pipeline (`pipeline_facegen.py`) and, for a conditional model, its "
        "UNet class (`unet/unet_facegen.py`): hence `trust_remote_code=True`.",
        "",
        "## Training parameters (params.yaml `train`)",
        "",
        "| key | value |",
        "| --- | --- |",
        *(f"| {k} | {json.dumps(v)} |" for k, v in sorted(train_config.items())),
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


class FaceSampler:
    """MLflow pyfunc model: ``predict(DataFrame{seed[, attribute...]}, params={steps, guidance})``
    -> uint8 (N, H, W, 3) from the pipeline folder. An attribute column (a conditional model's)
    is optional; NaN in it leaves that attribute unconditioned for that row."""

    def load_context(self, context: Any) -> None:
        from facegen.diffusion.conditional import names
        from facegen.diffusion.model import load_model_dir

        self.unet, noise, _ = load_model_dir(context.artifacts["pipeline"])
        self.noise_config = dict(noise.config)
        self.attributes = names(self.unet.config)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        import math

        from facegen.diffusion.sampling import SampleSpec, generate

        params = params or {}
        seeds = [int(s) for s in model_input["seed"]]
        columns = [a for a in self.attributes if a in model_input.columns]
        conditions = [
            {a: float(model_input[a].iloc[i]) for a in columns if not math.isnan(float(model_input[a].iloc[i]))}
            for i in range(len(seeds))
        ]
        spec = SampleSpec(
            sampler=SAMPLER,
            steps=int(params.get("steps", SAMPLE_STEPS)),
            timestep_spacing=TIMESTEP_SPACING,
            batch_size=len(seeds),
            guidance=float(params.get("guidance", 1.0)),
        )
        return generate(
            self.unet, self.noise_config, spec, seeds, conditions=conditions if columns else None, progress=False
        )


def _signature(config: dict[str, Any]) -> Any:
    """The pyfunc signature, built, not inferred (inference from an int64 example warns that integer
    columns cannot hold missing values): ``seed`` (long) and a conditional model's attributes
    (double, optional) -> uint8 images (-1, H, W, 3); params ``steps`` and ``guidance``."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    from facegen.diffusion.conditional import names

    size = config["sample_size"]
    attributes = [ColSpec("double", name, required=False) for name in names(config)]
    return ModelSignature(
        inputs=Schema([ColSpec("long", "seed"), *attributes]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, size, size, 3))]),
        params=ParamSchema([ParamSpec("steps", "long", SAMPLE_STEPS), ParamSpec("guidance", "double", 1.0)]),
    )


def log_mlflow_model(
    tracking_uri: str, run_id: str, model_dir: str | Path, *, register_as: str | None = None, step: int = 0
) -> Any:
    """Log ``model_dir`` as the pyfunc model ``model`` of run ``run_id`` (:func:`_signature`);
    register it under ``register_as`` in the model registry when given.

    Logged from code (:mod:`facegen.diffusion.mlflow_pyfunc`, nothing pickled) with a one-row
    input example whose params ask for one denoising step: MLflow stores it and checks that the
    logged model serves it, at the cost of one 1-step sample. MLflow's fluent API needs an active
    run: the run is entered here and left RUNNING."""
    import mlflow
    import numpy as np
    import pandas as pd

    config = json.loads((Path(model_dir) / "unet" / "config.json").read_text(encoding="utf-8"))
    example = pd.DataFrame({"seed": np.array([0], dtype=np.int64)})
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.start_run(run_id=run_id)
    # checking the example downloads the model: no tqdm bar (\r lines) in a log that is no terminal
    quiet = not sys.stderr.isatty() and PROGRESS_BAR_ENV not in os.environ
    if quiet:
        os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=Path(__file__).with_name("mlflow_pyfunc.py"),  # its code, not a pickle
            artifacts={"pipeline": str(model_dir)},
            signature=_signature(config),
            input_example=(example, {"steps": 1}),
            registered_model_name=register_as,
            step=step,
            pip_requirements=["facegen", "diffusers", "torch"],
        )
    finally:
        if quiet:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        mlflow.end_run(status="RUNNING")  # pops the fluent run; the trainer closes it


def register_model(run_id: str, name: str, tracking_uri: str) -> Any:
    """Register the ``model`` logged by run ``run_id`` under ``name``; returns the model version."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_id = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models([experiment_id], filter_string=f"source_run_id = '{run_id}'")
    if not models:
        raise ValueError(f"MLflow run {run_id} has no logged model (train with this version of facegen first)")
    return mlflow.register_model(models[0].model_uri, name)


def check_pipeline(folder: str | Path) -> str:
    """Load ``folder`` through diffusers and draw one 2-step image (and one conditioned on each
    attribute's trained midpoint); returns the pipeline class name. Raises ValueError when the
    images are not (1, H, W, 3) finite in [0, 1]."""
    import numpy as np
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.disable_progress_bar()  # a check, not a job: no loading bar in the CLI's one-line answer
    try:
        pipe = load_pipeline(folder)
    finally:
        diffusers_logging.enable_progress_bar()
    pipe.set_progress_bar_config(disable=True)
    config = dict(pipe.unet.config)
    size = config["sample_size"]
    calls: list[dict[str, Any]] = [{}]
    if config.get("condition_names"):
        mids = [(lo + hi) / 2 for lo, hi in zip(config["condition_min"], config["condition_max"], strict=True)]
        calls.append({"condition": dict(zip(config["condition_names"], mids, strict=True)), "guidance_scale": 2.0})
    for extra in calls:
        gen = torch.Generator().manual_seed(0)
        images = pipe(batch_size=1, num_inference_steps=2, generator=gen, output_type="np", **extra).images
        if images.shape != (1, size, size, 3) or not np.isfinite(images).all():
            raise ValueError(f"{folder}: diffusers sampled {images.shape}, expected (1, {size}, {size}, 3)")
    return type(pipe).__name__


def push_to_hub(folder: Path, repo_id: str, *, private: bool, api: Any) -> str:
    """Create the Hub repository and upload ``folder``; a missing token or network is one
    ValueError naming HF_TOKEN (no traceback of the HTTP client)."""
    from huggingface_hub.errors import HfHubHTTPError

    # HfHubHTTPError's bases are the HTTP client's error class (huggingface_hub's own httpx) and
    # OSError: catching them catches refused, offline and unauthorised pushes alike
    network_errors: tuple[type[BaseException], ...] = (OSError, *HfHubHTTPError.__bases__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message="facegen export: models/best"
        )
    except network_errors as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"--push-to-hub {repo_id}: {first}; set HF_TOKEN to a write token (or `hf auth login`) "
            "and check that the network reaches the Hub (HF_HUB_OFFLINE unset)"
        ) from err
    return str(getattr(commit, "commit_url", commit))


def export_model(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    repo_id: str | None = None,
    *,
    private: bool = False,  # create the Hub repository private
    token: str | None = None,  # Hub token; None = HF_TOKEN or the cached login
    api: Any = None,  # a huggingface_hub.HfApi (tests pass a recorder)
) -> dict[str, Any]:
    """Check that ``model_dir`` samples as a diffusers pipeline (:func:`check_pipeline`), copy it to
    ``out_dir`` (and check the copy) and/or push it to the Hub repository ``repo_id`` (``api``: a
    ``huggingface_hub.HfApi``, made here by default).

    Returns ``{"folder": ..., "pipeline": class name, "url": commit URL or None}``.
    """
    src = Path(model_dir)
    if not (src / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{src}/model_index.json missing: not a pipeline folder (run `dvc repro train`, "
            "which writes models/best in this format)"
        )
    folder = src
    if out_dir is not None:
        folder = Path(out_dir)
        if folder.exists():
            raise FileExistsError(f"facegen export: {folder} exists; choose a new --out folder")
        shutil.copytree(src, folder)
    name = check_pipeline(folder)
    url = None
    if repo_id is not None:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
        url = push_to_hub(folder, repo_id, private=private, api=api)
    return {"folder": str(folder), "pipeline": name, "url": url}
