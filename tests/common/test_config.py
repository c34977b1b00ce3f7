"""facegen.common.config: params sections become frozen, typed dataclasses; typos are errors."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest

from facegen.common.config import from_dict, load_section, save_config


@dataclasses.dataclass(frozen=True)
class Cfg:
    name: str
    lr: float = 1e-4
    channels: tuple[int, ...] = (8, 16)
    mode: Literal["a", "b"] = "a"
    limit: int | None = None
    size: tuple[int, float] = (1, 2.0)


def test_defaults_and_coercion():
    cfg = from_dict(Cfg, {"name": "x", "lr": 3, "channels": [32, 64, 128], "limit": 5, "size": [161, 81]}, "train")
    assert cfg == Cfg(name="x", lr=3.0, channels=(32, 64, 128), mode="a", limit=5, size=(161, 81.0))
    assert isinstance(cfg.size[1], float)
    assert isinstance(cfg.lr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


def test_unknown_key_names_section_and_key():
    with pytest.raises(ValueError, match=r"unknown key\(s\) in params section 'train': lrr"):
        from_dict(Cfg, {"name": "x", "lrr": 1.0}, "train")


def test_missing_required_and_bad_types():
    with pytest.raises(ValueError, match="missing the required key 'name'"):
        from_dict(Cfg, {}, "train")
    with pytest.raises(ValueError, match=r"train\.mode: 'c' is not one of \['a', 'b'\]"):
        from_dict(Cfg, {"name": "x", "mode": "c"}, "train")
    with pytest.raises(ValueError, match=r"train\.limit"):
        from_dict(Cfg, {"name": "x", "limit": "many"}, "train")
    with pytest.raises(ValueError, match=r"train\.size: expected 2 items"):
        from_dict(Cfg, {"name": "x", "size": [1]}, "train")
    with pytest.raises(ValueError, match=r"train\.name: expected str"):
        from_dict(Cfg, {"name": 3}, "train")
    for bad in ("fast", True, [1e-4], None):  # a float field took any value and failed later, or never
        with pytest.raises(ValueError, match=r"train\.lr: expected a number"):
            from_dict(Cfg, {"name": "x", "lr": bad}, "train")


def test_load_section_and_save(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  name: run\n  channels: [4, 8]\n", encoding="utf-8")
    cfg = load_section(Cfg, "train", params)
    assert cfg.channels == (4, 8)
    with pytest.raises(ValueError, match="no section 'sample'"):
        load_section(Cfg, "sample", params)
    save_config(cfg, tmp_path / "out" / "config.json")
    assert json.loads((tmp_path / "out" / "config.json").read_text()) == {
        "channels": [4, 8], "limit": None, "size": [1, 2.0], "lr": 0.0001, "mode": "a", "name": "run"}
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_section(Cfg, "train", tmp_path / "nope.yaml")


def test_params_are_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S` rewrites params.yaml in YAML 1.2, dropping quotes: `no` must stay a string."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  name: no\n  lr: 1e-3\n", encoding="utf-8")
    assert load_section(Cfg, "train", path) == Cfg(name="no", lr=1e-3)
