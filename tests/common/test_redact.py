"""facegen.common.redact: passwords in URIs never reach the terminal."""

from __future__ import annotations

import json

import pytest

from facegen.common.redact import mask_uri


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://alice:s3cret@mlflow.example.com/", "https://alice:***@mlflow.example.com/"),
        ("postgresql://bob:p@ss:w0rd@db:5432/mlflow", "postgresql://bob:***@db:5432/mlflow"),
        ("store http://a:b@h1 and https://c:d@h2/x?q=1", "store http://a:***@h1 and https://c:***@h2/x?q=1"),
        ("sqlite:////work/repo/mlflow.db", "sqlite:////work/repo/mlflow.db"),
        ("http://127.0.0.1:5000/path", "http://127.0.0.1:5000/path"),
    ],
)
def test_mask_uri(text, masked):
    assert mask_uri(text) == masked


def test_demo_summary_and_cli_print_the_tracking_uri_masked(tmp_path, monkeypatch, capsys):
    from facegen import cli
    from facegen.demo.run import summary

    (tmp_path / "models" / "best").mkdir(parents=True)
    (tmp_path / "metrics").mkdir()
    best = {"epoch": 3, "metric": "fd_offline", "value": 12.5, "run_id": "abc"}
    (tmp_path / "models" / "best" / "best.json").write_text(json.dumps(best))
    score = {
        "fd_offline": 12.5,
        "kid_offline": 0.5,
        "kid_offline_std": 0.01,
        "num_samples": 4,
        "num_reference": 2,
        "image_size": 32,
    }
    (tmp_path / "metrics" / "fid.json").write_text(json.dumps(score))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:s3cret@mlflow.example.com")
    text = summary(tmp_path)
    assert "s3cret" not in text and "mlflow ui --backend-store-uri https://alice:***@mlflow.example.com" in text

    def no_runs(uri, experiment, all_runs=False, root="."):
        raise ValueError(f"no MLflow experiment {experiment!r} in {uri}")

    monkeypatch.setattr(cli, "best_runs", no_runs)  # the store's own error, carrying the URI
    assert cli.main(["best"]) == 2
    err = capsys.readouterr().err
    assert "s3cret" not in err and "https://alice:***@mlflow.example.com" in err
