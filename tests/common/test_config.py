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
        "channels": [4, 8],
        "limit": None,
        "size": [1, 2.0],
        "lr": 0.0001,
        "mode": "a",
        "name": "run",
    }
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_section(Cfg, "train", tmp_path / "nope.yaml")


def test_params_are_read_as_dvc_writes_them(tmp_path):
    """`dvc exp run -S` rewrites params.yaml in YAML 1.2, dropping quotes: `no` must stay a string."""
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  name: no\n  lr: 1e-3\n", encoding="utf-8")
    assert load_section(Cfg, "train", path) == Cfg(name="no", lr=1e-3)


@pytest.mark.parametrize("written", ["no", '"no"', "false", "False"])
def test_precision_no_quoted_or_false_means_off(tmp_path, written):
    """`-S sample.precision=no` (unquoted), `"no"` and `false` all mean no mixed precision, for the
    real train and sample configs; any other bool is still an error."""
    from facegen.sample.stage import SampleConfig
    from facegen.train.config import TrainConfig

    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  precision: {written}\nsample:\n  precision: {written}\n", encoding="utf-8")
    assert load_section(TrainConfig, "train", path).precision == "no"
    assert load_section(SampleConfig, "sample", path).precision == "no"
    assert from_dict(SampleConfig, {"precision": False}, "sample").precision == "no"  # PyYAML 1.1's `no`
    with pytest.raises(ValueError, match=r"sample\.precision"):
        from_dict(SampleConfig, {"precision": True}, "sample")
    with pytest.raises(ValueError, match=r"train\.mode"):  # only a choice list holding "no" takes false
        from_dict(Cfg, {"name": "x", "mode": False}, "train")


# --- one source per default, ranges, choices, YAML pitfalls -------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def _section_classes() -> dict:
    from facegen.align.geometry import AlignConfig
    from facegen.crawl.crawler import CrawlConfig
    from facegen.download.stage import DownloadConfig
    from facegen.faces.detect import FacesConfig
    from facegen.fid.score import FidConfig
    from facegen.sample.control import ControlConfig
    from facegen.sample.stage import SampleConfig
    from facegen.train.config import TrainConfig

    return {
        "crawl": CrawlConfig,
        "faces": FacesConfig,
        "download": DownloadConfig,
        "align": AlignConfig,
        "train": TrainConfig,
        "sample": SampleConfig,
        "fid": FidConfig,
        "control": ControlConfig,
    }


def test_every_dataclass_default_equals_params_yaml():
    from facegen.common.config import load_params, to_dict

    params = load_params(REPO / "params.yaml")
    classes = _section_classes()
    assert set(params) - {"studio"} == set(classes)  # a new section needs its class here
    from facegen.studio.app import StudioConfig, params_limits

    studio = params_limits(params)  # the studio's section holds only its limits (the rest are flags)
    assert studio and all(getattr(StudioConfig(), k) == v for k, v in studio.items()), studio
    for section, cls in classes.items():
        loaded, default = to_dict(from_dict(cls, params[section], section)), to_dict(cls())
        differ = {k: (default[k], loaded[k]) for k in default if default[k] != loaded[k]}
        assert not differ, f"{section}: dataclass default vs params.yaml: {differ}"


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "lr", 0, r"train\.lr = 0\.0 is out of range: valid values are in \(0, 1\]"),
        ("train", "ema_decay", 2, r"train\.ema_decay = 2\.0 is out of range: valid values are in \[0, 1\]"),
        ("train", "warmup_steps", -5, r"train\.warmup_steps = -5 is out of range: valid values are >= 0"),
        ("train", "image_size", 0, r"train\.image_size = 0 is out of range: valid values are in \[8, 1024\]"),
        ("train", "beta_start", 0.05, r"train\.beta_start = 0\.05 must be below train\.beta_end = 0\.02"),
        ("faces", "det_size", 0, r"faces\.det_size=0 must be a multiple of 32"),
        ("faces", "det_size", -64, r"faces\.det_size=-64 must be a multiple of 32"),
        ("faces", "pad", -0.5, r"faces\.pad=-0\.5 must be >= 0"),
        ("crawl", "timeout_s", 0, r"crawl\.timeout_s = 0\.0 is out of range: valid values are in \(0, 3600\]"),
        ("align", "max_abs_yaw", 200, r"align\.max_abs_yaw = 200\.0 is out of range: valid values are in \[0, 180\]"),
        ("sample", "batch_size", 0, r"sample\.batch_size must be >= 1"),
        (
            "download",
            "backoff_max_s",
            -1,
            r"download\.backoff_max_s = -1\.0 is out of range: valid values are in \[0, 86400\]",
        ),
    ],
)
def test_out_of_range_params_name_the_key_and_the_valid_range(section, key, value, message):
    cls = _section_classes()[section]
    with pytest.raises(ValueError, match=message):
        from_dict(cls, {key: value}, section)


@pytest.mark.parametrize(
    "key, value",
    [
        ("loss", "msee"),
        ("schedule", "cosin"),
        ("prediction", "eps"),
        ("model", "ddpm128"),
        ("precision", "fp8"),
        ("fid_extractor", "clip"),
    ],
)
def test_choice_keys_fail_at_load_and_at_construction(key, value):
    from facegen.train.config import TrainConfig

    with pytest.raises(ValueError, match=rf"train\.{key}: '{value}' is not one of"):
        from_dict(TrainConfig, {key: value}, "train")
    with pytest.raises(ValueError, match=rf"train\.{key} = '{value}': choose one of"):
        TrainConfig(**{key: value})


def test_yaml_pitfalls_get_a_hint(tmp_path):
    from facegen.crawl.crawler import CrawlConfig
    from facegen.train.config import TrainConfig

    path = tmp_path / "params.yaml"
    path.write_text("crawl:\n  start_date: 2024-01-01\n", encoding="utf-8")  # unquoted: a datetime.date
    with pytest.raises(
        ValueError,
        match=r"crawl\.start_date: expected str, got datetime\.date\(2024, 1, 1\); "
        r'YAML read an unquoted date: quote it: "2024-01-01"',
    ):
        load_section(CrawlConfig, "crawl", path)
    path.write_text("train:\n  lr: '3e-4'\n  experiment: 2024\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.lr: expected a number, got '3e-4'; it is quoted: remove the quotes"):
        load_section(TrainConfig, "train", path)
    with pytest.raises(ValueError, match=r"train\.experiment: expected str, got 2024; YAML read it as int: quote it"):
        from_dict(TrainConfig, {"experiment": 2024}, "train")
    with pytest.raises(ValueError, match=r"train\.hflip: expected bool, got 'yes'; write true or false"):
        from_dict(TrainConfig, {"hflip": "yes"}, "train")


def test_range_describes_itself():
    from facegen.common.config import Range

    assert str(Range(0, lo_open=True)) == "> 0" and str(Range(1)) == ">= 1" and str(Range(None, 5)) == "<= 5"
    assert str(Range(0, 1, hi_open=True)) == "in [0, 1)"
    assert 0.5 in Range(0, 1) and 1 not in Range(0, 1, hi_open=True) and float("nan") not in Range()
