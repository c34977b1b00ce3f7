"""facegen.train.recipes: named sets of train keys, valid against TrainConfig; the demo trains faces32."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.common.config import from_dict, load_params
from facegen.demo.run import TINY
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
    assert {k: TINY[f"train.{k}"] for k in RECIPES["faces32"]} == RECIPES["faces32"]
