"""Every benchmarks/quality.py command docs/quality.md shows is one its parser accepts."""

import shlex
from pathlib import Path

import quality

DOC = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
# the shell loop variables of the documented commands, at one of their values
LOOP = {"$r": "faces32", "$p": "peer-diffusers-example", "$w": "documented", "$F": "2.668e14"}


def documented_commands() -> list[list[str]]:
    text = DOC.read_text(encoding="utf-8").replace("\\\n", " ")
    for var, value in LOOP.items():
        text = text.replace(var, value)
    run = ".venv/bin/python benchmarks/quality.py"
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    # a command ends at a comment or at the shell's `;` (`...; done`)
    return [shlex.split(line[line.index(run) :].split(";")[0])[2:] for line in lines if run in line]


def test_the_documented_commands_parse() -> None:
    commands = documented_commands()
    assert len(commands) >= 15
    for argv in commands:
        if argv != ["--prepare"]:
            quality.parse_args(argv)  # an unknown flag or recipe exits


def test_the_peers_and_the_rate_measurement_are_documented() -> None:
    flat = [" ".join(a) for a in documented_commands()]
    assert any("--recipe peer-ddpm-pytorch" in c for c in flat)
    assert any("--recipe peer-diffusers-example" in c for c in flat)
    assert any("--measure-rate" in c for c in flat)


def test_each_evaluation_records_precision_recall_and_the_memorized_fraction() -> None:
    csv_row = {"fid": "80.1", "precision": "0.51234", "recall": "", "memorized_fraction": "0.0"}
    assert quality.novelty(csv_row) == {"precision": 0.5123, "memorized_fraction": 0.0}  # empty: not scored
    scores = {"fid": 80.1, "precision": 0.5, "recall": 0.25, "memorized_fraction": 1 / 3, "density": 0.9}
    assert quality.novelty(scores) == {"precision": 0.5, "recall": 0.25, "memorized_fraction": 0.3333}
