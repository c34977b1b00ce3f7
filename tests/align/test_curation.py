"""facegen.align.curation: curation.csv read/written, applied by the align stage, `facegen curate`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from curation_faces import REPO, build_repo, run_stage

from facegen.align.curation import Curation, read_curation, write_curation


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    return build_repo(tmp_path)


def _status(root: Path) -> dict[str, str]:
    table = pd.read_parquet(root / "data" / "faces.parquet")
    return dict(zip(table["face_id"], table["status"], strict=False))


def _curate(root: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "facegen.cli", "curate", *args]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=60)


def test_the_stage_applies_rejections_and_restorations_and_counts_them(repo) -> None:
    root, ids = repo
    assert run_stage(root).returncode == 0
    auto = _status(root)
    assert {k: auto[v] for k, v in ids.items()} == {"a": "ok", "a_twin": "near_duplicate", "b": "ok", "flat": "blurry"}
    assert json.loads((root / "metrics" / "align.json").read_text())["manual"] == {
        "decisions": 0,
        "rejected": 0,
        "restored": 0,
        "unused": 0,
    }

    # reject the kept twin (the other twin is then no longer its duplicate), restore the blurry face
    write_curation(
        root / "curation.csv",
        Curation({ids["a"]: ("reject", "a drawing"), ids["flat"]: ("restore", ""), "0" * 16 + "_00": ("reject", "")}),
    )
    assert run_stage(root).returncode == 0
    got = _status(root)
    assert {k: got[v] for k, v in ids.items()} == {"a": "manual", "a_twin": "ok", "b": "ok", "flat": "ok"}
    pngs = sorted(p.stem for p in (root / "data" / "faces").glob("*.png"))
    assert pngs == sorted([ids["a_twin"], ids["b"], ids["flat"]])
    metrics = json.loads((root / "metrics" / "align.json").read_text())
    assert metrics["manual"] == {"decisions": 3, "rejected": 1, "restored": 1, "unused": 1}
    assert metrics["yield"]["rejected"]["manual"] == 1 and metrics["ok"] == 3

    # restoring the twin while its original is back: it stays accepted beside it
    write_curation(root / "curation.csv", Curation({ids["a_twin"]: ("restore", "")}))
    assert run_stage(root).returncode == 0
    assert {k: _status(root)[v] for k, v in ids.items()} == {"a": "ok", "a_twin": "ok", "b": "ok", "flat": "blurry"}

    # a damaged file is one error line naming it, before anything is written
    before = (root / "data" / "faces.parquet").read_bytes()
    (root / "curation.csv").write_text("face_id,decision,note\nxyz,reject,\n")
    proc = run_stage(root)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "align: error: curation.csv line 2: face_id 'xyz' is not a face id (16 hex digits, '_', two digits or 'none')"
    ]
    assert (root / "data" / "faces.parquet").read_bytes() == before


def test_curate_cli_round_trip_validates_against_the_faces_table(repo) -> None:
    root, ids = repo
    proc = _curate(root, "reject", ids["b"])
    assert proc.returncode == 2 and "data/faces.parquet not found: run the align stage first" in proc.stderr
    assert not (root / "curation.csv").exists()
    assert run_stage(root).returncode == 0

    assert _curate(root, "reject", ids["b"], "--note", "a baby, not the poster").returncode == 0
    assert _curate(root, "restore", ids["flat"]).returncode == 0
    text = (root / "curation.csv").read_text()
    assert (
        text
        == "\n".join(
            [
                "face_id,decision,note",
                *sorted([f'{ids["b"]},reject,"a baby, not the poster"', f"{ids['flat']},restore,"]),
            ]
        )
        + "\n"
    )
    assert read_curation(root / "curation.csv").decisions == {
        ids["b"]: ("reject", "a baby, not the poster"),
        ids["flat"]: ("restore", ""),
    }
    # the latest decision replaces the earlier one
    assert _curate(root, "restore", ids["b"]).returncode == 0
    assert read_curation(root / "curation.csv").decisions[ids["b"]] == ("restore", "")

    unknown = _curate(root, "reject", "0123456789abcdef_00")
    assert unknown.returncode == 2 and unknown.stderr.strip() == (
        "facegen curate: error: face 0123456789abcdef_00 is not in the aligned faces table "
        "(run the align stage, or check the id)"
    )
    assert _curate(root, "reject", "not-an-id").stderr.startswith("facegen curate: error: face_id 'not-an-id'")
    assert (root / "curation.csv").read_text().count("\n") == 3  # nothing written by the refused ones

    assert run_stage(root).returncode == 0
    assert _status(root)[ids["b"]] == "ok" and _status(root)[ids["flat"]] == "ok"


def test_a_face_without_anything_to_align_cannot_be_restored(tmp_path) -> None:
    from facegen.align.curation import decide

    row = {"face_index": -1, "status": "no_face", "eye_distance": float("nan")}
    with pytest.raises(ValueError, match="cannot be restored: its image has no face to align"):
        decide(tmp_path / "curation.csv", row, "0123456789abcdef_none", "restore")
    flat = {"face_index": 0, "status": "eyes_too_close", "eye_distance": 0.0}
    with pytest.raises(ValueError, match="eye keypoints coincide"):
        decide(tmp_path / "curation.csv", flat, "0123456789abcdef_00", "restore")
    decide(tmp_path / "curation.csv", row, "0123456789abcdef_none", "reject", note="spam")
    assert read_curation(tmp_path / "curation.csv").rejected == {"0123456789abcdef_none"}


def test_a_file_saved_by_a_spreadsheet_reads(tmp_path) -> None:
    (tmp_path / "curation.csv").write_bytes(b"\xef\xbb\xbfface_id,decision,note\r\n0123456789abcdef_00,reject,\r\n")
    assert read_curation(tmp_path / "curation.csv").decisions == {"0123456789abcdef_00": ("reject", "")}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("face_id,decision\n", "first line must be the header face_id,decision,note"),
        ("face_id,decision,note\n0123456789abcdef_00,drop,\n", "line 2: decision 'drop'"),
        (
            "face_id,decision,note\n0123456789abcdef_00,reject,\n0123456789abcdef_00,restore,\n",
            "line 3: face 0123456789abcdef_00 is listed twice",
        ),
    ],
)
def test_a_bad_file_is_named_by_line(tmp_path, text: str, message: str) -> None:
    (tmp_path / "curation.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        read_curation(tmp_path / "curation.csv")


def test_dvc_yaml_declares_the_tracked_curation_file_as_an_align_input() -> None:
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert "curation.csv" in stages["align"]["deps"]
    assert read_curation(REPO / "curation.csv").decisions == {}  # the repository's file parses
    tracked = subprocess.run(["git", "ls-files", "curation.csv"], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout.strip() == "curation.csv"
