"""The MLflow pyfunc model of ``models/best/``, logged from code (MLflow's "models from code").

:func:`facegen.diffusion.pipeline.log_mlflow_model` passes this file's path as ``python_model``:
MLflow copies the file into the model and runs it on load, where :func:`mlflow.models.set_model`
names the model. Nothing is pickled (MLflow warns that a pickled ``python_model`` may run
arbitrary code when loaded), and ``predict``'s type hints are real classes (this module imports
pandas and numpy, without postponed annotations) that MLflow reads as "DataFrame in, array out",
so it does not try to infer a second signature from them: the signature is the one given.
The sampling itself is :class:`facegen.diffusion.pipeline.FaceSampler`.
"""

from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

from facegen.diffusion.pipeline import FaceSampler


class FaceSamplerModel(FaceSampler, mlflow.pyfunc.PythonModel):
    """``predict(DataFrame{seed[, attribute...]}, params={steps, guidance})`` -> uint8 (N, H, W, 3)."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        """The images of the rows' seeds (and conditions), as :meth:`FaceSampler.predict`."""
        return np.asarray(FaceSampler.predict(self, context, model_input, params))


mlflow.models.set_model(FaceSamplerModel())
