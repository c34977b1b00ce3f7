"""`facegen best` refuses (or, with --allow-memorized, warns about) a best epoch whose samples copy training faces."""

from __future__ import annotations

import json

import pytest

from facegen import cli
from facegen.train import tracking


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A run whose best epoch (2, lowest fd_offline) flagged 3 of 16 samples (0.1875); epoch 1 none."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = tracking.Tracker(uri, "exp", "copier")
    t.set_tags({"metric": "fd_offline", "best_checkpoint": ""})
    t.log_metrics({"fd_offline": 3.0, "best_fd_offline": 3.0, "best_epoch": 1, "memorized_fraction": 0.0}, 1)
    t.log_metrics({"fd_offline": 2.0, "best_fd_offline": 2.0, "best_epoch": 2, "memorized_fraction": 0.1875}, 2)
    t.end()
    monkeypatch.chdir(tmp_path)
    return uri


def test_best_refuses_an_epoch_over_the_limit(store, capsys):
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", store]) == 3
    err = capsys.readouterr().err
    assert "error: run" in err and "epoch 2 has memorized_fraction 0.1875 > 0.05" in err and "--allow-memorized" in err


def test_allow_memorized_warns_and_answers(store, capsys):
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", store, "--allow-memorized", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["memorized_fraction"] == 0.1875 and "warning:" in err


def test_the_limit_comes_from_params_or_the_flag(store, tmp_path, capsys):
    (tmp_path / "params.yaml").write_text("fid:\n  max_memorized_fraction: 0.2\n")
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", store]) == 0
    assert "best epoch 2" in capsys.readouterr().out
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", store, "--max-memorized", "0.1"]) == 3
    assert "> 0.1 " in capsys.readouterr().err
    (tmp_path / "params.yaml").write_text("fid:\n  max_memorized_fraction: 2\n")
    assert cli.main(["best", "--experiment", "exp", "--tracking-uri", store]) == 2
    assert capsys.readouterr().err.startswith("facegen best: error: fid.max_memorized_fraction = 2")
