"""facegen.train.recipes: named sets of train keys, valid against TrainConfig; the demo trains faces32."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.common.config import from_dict, load_params
from facegen.demo.run import DEMO_PARAMS
from facegen.train.config import TrainConfig
from facegen.train.recipes import RECIPES, recipe


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_is_a_valid_train_section(name: str) -> None:
    defaults = load_params(Path(__file__).parents[2] / "params.yaml")["train"]
    cfg = from_dict(TrainConfig, {**defaults, **recipe(name)}, "train")
    assert cfg.model == RECIPES[name]["model"] and cfg.precision == "no"


def test_unknown_recipe_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'faces64': choose one of \['baseline', 'faces32'\]"):
        recipe("faces64")


def test_recipe_returns_a_copy_and_the_demo_trains_faces32() -> None:
    got = recipe("faces32")
    got["channels"].append(1)
    assert RECIPES["faces32"]["channels"] == []
    # what the demo trains, written out (docs/quality.md's faces32), not read back from the recipe
    assert {k[len("train.") :]: v for k, v in DEMO_PARAMS.items() if k.startswith("train.") and k[6:] in got} == {
        "model": "faces32",
        "channels": [],
        "batch_size": 16,
        "lr": 3e-3,
        "min_snr_gamma": 5.0,
        "warmup_steps": 50,
        "schedule": "cosine",
        "ema_decay": 0.9999,
        "ema_warmup": True,
        "precision": "no",
        "channels_last": False,
        "prediction": "v_prediction",
    }
    assert DEMO_PARAMS["train.image_size"] == 32
