"""facegen.cli: `facegen best` answers which epoch was best, from the MLflow store."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow_runs import log_run as _log_run

from facegen import cli


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    uri = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'mlflow.db'}"
    older = _log_run(uri, "older", {1: 3.0, 2: 2.0}, "/m/older/best")
    newer = _log_run(uri, "newer", {1: 4.0, 2: 1.5, 3: 1.75}, "/m/newer/best")
    return uri, older, newer


def test_best_prints_the_latest_run(store, capsys):
    uri, _, newer = store
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out == (
        f"run {newer} (newer, FINISHED): best epoch 2 fd_offline 1.5000 checkpoint /m/newer/best\n")


def test_best_all_as_json(store, capsys):
    uri, older, newer = store
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", uri, "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["epoch"], r["value"]) for r in rows] == [(newer, 2, 1.5), (older, 2, 2.0)]


def test_unknown_experiment_is_a_clear_error(store, capsys):
    assert cli.main(["best", "--experiment", "nope", "--tracking-uri", store[0]]) == 2
    assert "no MLflow experiment 'nope'" in capsys.readouterr().err


def test_console_script_entry_point(store):
    out = subprocess.run([sys.executable, "-m", "facegen.cli", "best", "--experiment", "exp", "--tracking-uri",
                          store[0]], capture_output=True, text=True, check=True).stdout
    assert out.startswith(f"run {store[2]} (newer") and "best epoch 2" in out
