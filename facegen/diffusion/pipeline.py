"""``models/best/`` as a diffusers pipeline, an MLflow model and a Hugging Face Hub repository.

- :func:`write_pipeline_files`: ``model_index.json`` (``DDPMPipeline``), the sampling scheduler
  (``scheduler/``: DPM-Solver++ 2M with trailing timesteps and x0 thresholding, the sample
  stage's defaults) and the model card ``README.md`` (scores, data hash, params, how to use).
- :class:`FaceSampler` / :func:`log_mlflow_model`: an MLflow pyfunc model wrapping the folder;
  input one ``seed`` per row (int64), output uint8 images (N, H, W, 3).
- :func:`export_model`: copy the folder, check that ``DiffusionPipeline.from_pretrained`` loads
  it, and (``repo_id``) create the Hub repository and upload the folder.

diffusers, mlflow and huggingface_hub are imported inside the functions.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from facegen.common.atomic import write_json

SAMPLER, SAMPLE_STEPS, TIMESTEP_SPACING = "dpm++", 25, "trailing"  # = params.yaml sample defaults
MODEL_ARTIFACT = "model"


def sampling_scheduler(noise_config: dict[str, Any]) -> Any:
    """The scheduler a stock ``DDPMPipeline`` should use to sample like ``facegen.sample``."""
    from facegen.diffusion.sampling import make_scheduler

    return make_scheduler(noise_config, SAMPLER, SAMPLE_STEPS, TIMESTEP_SPACING)


def write_pipeline_files(
    out_dir: str | Path, noise_config: dict[str, Any], train_config: dict[str, Any], best: dict[str, Any]
) -> None:
    """Add ``model_index.json``, ``scheduler/`` and ``README.md`` to a folder holding ``unet/``."""
    import diffusers

    out = Path(out_dir)
    sched = sampling_scheduler(noise_config)
    sched.save_pretrained(out / "scheduler")
    index = {
        "_class_name": "DDPMPipeline",
        "_diffusers_version": diffusers.__version__,
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", type(sched).__name__],
    }
    write_json(out / "model_index.json", index, sort_keys=False)
    (out / "README.md").write_text(model_card(train_config, best), encoding="utf-8")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def model_card(train_config: dict[str, Any], best: dict[str, Any]) -> str:
    """The Hub model card: YAML front matter, scores of the best epoch, data, params, usage."""
    metric, value = best.get("metric"), best.get("value")
    scores = [f"| {metric} | {_fmt(value)} |"] if metric and value is not None else []
    scores += [f"| {k} | {_fmt(best[k])} |" for k in ("kid", "kid_std") if best.get(k) is not None]
    size = train_config.get("image_size", "?")
    params = "\n".join(f"| {k} | {json.dumps(v)} |" for k, v in sorted(train_config.items()))
    lines = [
        "---",
        "library_name: diffusers",
        "pipeline_tag: unconditional-image-generation",
        "tags: [diffusers, ddpm, unconditional-image-generation, faces, facegen]",
        "---",
        "",
        f"# facegen DDPM ({train_config.get('model', '?')}, {size}x{size} faces)",
        "",
        "An unconditional DDPM (diffusers `UNet2DModel`, EMA weights) trained by the facegen DVC pipeline "
        "on aligned faces from PTT Beauty posts.",
        "",
        "## Scores (best epoch)",
        "",
        f"Epoch {best.get('epoch', '?')} of {train_config.get('epochs', '?')}, MLflow run `{best.get('run_id')}`.",
        "",
        "| metric | value |",
        "| --- | --- |",
        *(scores or ["| (not scored) | |"]),
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
        "```python",
        "from diffusers import DiffusionPipeline",
        "",
        'pipe = DiffusionPipeline.from_pretrained("models/best")  # or the Hub repo id',
        f"images = pipe(batch_size=4, num_inference_steps={SAMPLE_STEPS}).images",
        "```",
        "",
        f"The saved scheduler is DPM-Solver++ 2M with `timestep_spacing: {TIMESTEP_SPACING}`, as "
        f"`facegen`'s sample stage draws; the training noise schedule is in `noise_scheduler/`.",
        "",
        "## Training parameters (params.yaml `train`)",
        "",
        "| key | value |",
        "| --- | --- |",
        params,
        "",
    ]
    return "\n".join(lines)


class FaceSampler:
    """MLflow pyfunc model: ``predict(DataFrame{seed}) -> uint8 (N, H, W, 3)`` from the pipeline folder."""

    def load_context(self, context: Any) -> None:
        from facegen.diffusion.model import load_model_dir

        self.unet, noise, _ = load_model_dir(context.artifacts["pipeline"])
        self.noise_config = dict(noise.config)

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        from facegen.diffusion.sampling import SampleSpec, generate

        seeds = [int(s) for s in model_input["seed"]]
        steps = int((params or {}).get("steps", SAMPLE_STEPS))
        spec = SampleSpec(sampler=SAMPLER, steps=steps, timestep_spacing=TIMESTEP_SPACING, batch_size=len(seeds))
        return generate(self.unet, self.noise_config, spec, seeds, progress=False)


def _pyfunc_class() -> type:
    import mlflow.pyfunc

    return type("FaceSamplerModel", (FaceSampler, mlflow.pyfunc.PythonModel), {"__module__": __name__})


def log_mlflow_model(
    tracking_uri: str, run_id: str, model_dir: str | Path, register_as: str | None = None, step: int = 0
) -> Any:
    """Log ``model_dir`` as the pyfunc model ``model`` of run ``run_id`` (signature: seed -> images,
    param ``steps``); register it under ``register_as`` in the model registry when given.

    MLflow's fluent API needs an active run: the run is entered here and left RUNNING."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature

    config = json.loads((Path(model_dir) / "unet" / "config.json").read_text(encoding="utf-8"))
    size = config["sample_size"]
    example = pd.DataFrame({"seed": np.array([0], dtype=np.int64)})
    signature = infer_signature(example, np.zeros((1, size, size, 3), np.uint8), params={"steps": SAMPLE_STEPS})
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.start_run(run_id=run_id)
    try:
        with warnings.catch_warnings():
            # the signature is given; MLflow still tries type hints and asks for an input example
            warnings.filterwarnings(
                "ignore", message=".*(type hint|input example|integer column).*", category=UserWarning
            )
            return mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=_pyfunc_class()(),
                artifacts={"pipeline": str(model_dir)},
                signature=signature,
                registered_model_name=register_as,
                step=step,
                pip_requirements=["facegen", "diffusers", "torch"],
            )
    finally:
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


def export_model(
    model_dir: str | Path,
    out_dir: str | Path | None = None,
    repo_id: str | None = None,
    private: bool = False,
    token: str | None = None,
    api: Any = None,
) -> dict[str, Any]:
    """Check ``model_dir`` loads as a diffusers pipeline, copy it to ``out_dir`` and/or push it to
    the Hub repository ``repo_id`` (``api``: a ``huggingface_hub.HfApi``, made here by default).

    Returns ``{"folder": ..., "pipeline": class name, "url": commit URL or None}``.
    """
    from diffusers import DiffusionPipeline

    src = Path(model_dir)
    if not (src / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{src}/model_index.json missing: not a pipeline folder (run `dvc repro train`, "
            "which writes models/best in this format)"
        )
    pipe = DiffusionPipeline.from_pretrained(src)
    folder = src
    if out_dir is not None:
        folder = Path(out_dir)
        if folder.exists():
            raise FileExistsError(f"facegen export: {folder} exists; choose a new --out folder")
        shutil.copytree(src, folder)
    url = None
    if repo_id is not None:
        if api is None:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=str(folder), repo_type="model", commit_message="facegen export: models/best"
        )
        url = str(getattr(commit, "commit_url", commit))
    return {"folder": str(folder), "pipeline": type(pipe).__name__, "url": url}
