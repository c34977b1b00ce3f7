"""Runs of benchmarks/quality.py that share the cores finish into one results file."""

import json
import multiprocessing
from pathlib import Path

import quality


def _write(path: Path, prefix: str, n: int) -> None:
    for i in range(n):
        quality.merge_result(path, f"{prefix}{i}", {"fid": float(i)}, machine=prefix)


def test_runs_that_finish_together_keep_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "quality.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write, args=(path, p, 40)) for p in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    out = json.loads(path.read_text(encoding="utf-8"))
    assert sorted(out["recipes"]) == sorted(f"{p}{i}" for p in "abc" for i in range(40))
    assert out["recipes"]["b7"] == {"fid": 7.0} and out["machine"] in ("a", "b", "c")


def test_an_entry_replaces_the_one_of_the_same_name(tmp_path: Path) -> None:
    path = tmp_path / "quality.json"
    quality.merge_result(path, "faces32", {"fid": 80.0}, floor={"fid": 54.3})
    quality.merge_result(path, "baseline", {"fid": 140.0})
    out = quality.merge_result(path, "faces32", {"fid": 76.0})
    assert out == json.loads(path.read_text(encoding="utf-8"))
    assert out == {"recipes": {"faces32": {"fid": 76.0}, "baseline": {"fid": 140.0}}, "floor": {"fid": 54.3}}


def test_entry_names_end_in_the_size_when_not_32_px() -> None:
    def names(*argv: str) -> tuple[str, str]:
        return quality.entry_names(quality.parse_args(list(argv)))

    assert names("--recipe", "faces32") == ("faces32", "faces32")
    assert names("--recipe", "faces32", "--size", "64", "--tag", "_snr5") == ("faces32-64", "faces32_snr5-64")
    assert names("--recipe", "peer-diffusers-example", "--peer-lr-scale", "10") == (
        "peer-diffusers-example-matched",
        "peer-diffusers-example-matched_lr10x",
    )
    assert names("--recipe", "peer-ddpm-pytorch", "--peer-width", "documented", "--size", "64") == (
        "peer-ddpm-pytorch-documented-64",
        "peer-ddpm-pytorch-documented-64",
    )
    assert quality.bench_config("faces32", 300, size=64).image_size == 64
    assert quality.bench_config("faces32", 300).image_size == 32
