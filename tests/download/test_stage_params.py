"""The crawl, download and align stages name a bad value in one line before any work."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def stage_main(name: str):
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    ("stage", "section", "key", "value"),
    [
        ("download", "faces", "pad", float("inf")),
        ("download", "faces", "pad", 1000),
        ("download", "faces", "max_aspect", 641.0),
        ("download", "download", "blur_threshold", float("nan")),
        ("download", "download", "workers", 10**6),
        ("crawl", "crawl", "delay_s", 1e300),
        ("crawl", "crawl", "max_bytes", 10**12),
        ("align", "align", "seed", 2**32),
        ("align", "align", "margin", float("inf")),
    ],
)
def test_a_bad_value_is_one_line_before_any_work(stage, section, key, value, tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params[section][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        stage_main(stage)(["--params", "params.yaml"])
    msg = str(info.value.code)
    assert msg.startswith(f"{stage}: error: {section}.{key}") and "\n" not in msg, msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
