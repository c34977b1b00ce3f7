"""facegen.train.data: which faces load, in what order, and how batches and augmentations draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_faces import random_faces, write_faceset

from facegen.train import data as dataset


@pytest.fixture()
def faceset(tmp_path):
    train, test = random_faces(6, 16, 0), random_faces(3, 16, 1)
    return tmp_path, write_faceset(tmp_path, train, test, rejected=2), train, test


def test_loads_only_accepted_faces_of_the_split_in_face_id_order(faceset):
    root, table, train, test = faceset
    paths = dataset.face_paths(table, "test", root)
    assert [p.name for p in paths] == ["test0000.png", "test0001.png", "test0002.png"]
    np.testing.assert_array_equal(dataset.load_split(table, "train", root), train)
    np.testing.assert_array_equal(dataset.load_split(table, "test", root), test)


def test_resizes_when_image_size_differs(faceset):
    root, table, train, _ = faceset
    small = dataset.load_split(table, "train", root, image_size=8)
    assert small.shape == (6, 8, 8, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(dataset.load_split(table, "train", root, image_size=16), train)


def test_missing_split_and_missing_files_are_clear_errors(faceset):
    root, table, _, _ = faceset
    with pytest.raises(ValueError, match=r"no accepted faces in split 'val' \(accepted splits: \['test', 'train'\]\)"):
        dataset.face_paths(table, "val", root)
    (root / "data/faces/train0003.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 face image.*train0003.png"):
        dataset.load_split(table, "train", root)


def test_to_tensor_is_channels_first_uint8():
    images = random_faces(2, 8, 0)
    t = dataset.to_tensor(images)
    assert t.shape == (2, 3, 8, 8) and t.dtype == torch.uint8
    assert torch.equal(t[1, :, 2, 5], torch.from_numpy(images[1, 2, 5]))


def test_epoch_batches_are_seeded_sharded_and_equal_sized():
    a = dataset.epoch_batches(10, 2, epoch=1, seed=0, rank=0, world_size=2)
    b = dataset.epoch_batches(10, 2, epoch=1, seed=0, rank=1, world_size=2)
    assert len(a) == len(b) == 2 and all(len(x) == 2 for x in a + b)
    assert not set(torch.cat(a).tolist()) & set(torch.cat(b).tolist())  # disjoint shards
    again = dataset.epoch_batches(10, 2, epoch=1, seed=0, rank=0, world_size=2)
    assert all(torch.equal(x, y) for x, y in zip(a, again, strict=False))
    other = dataset.epoch_batches(10, 2, epoch=2, seed=0, rank=0, world_size=2)
    assert not all(torch.equal(x, y) for x, y in zip(a, other, strict=False))
    with pytest.raises(ValueError, match=r"train.batch_size = 8 is larger than the 5 training faces per process"):
        dataset.epoch_batches(10, 8, epoch=1, seed=0, world_size=2)


def test_augment_without_augmentations_only_rescales():
    x = dataset.to_tensor(random_faces(3, 8, 0))
    out = dataset.augment(x, torch.Generator().manual_seed(0), hflip=False)
    torch.testing.assert_close(out, x.float() / 127.5 - 1)


def test_hflip_mirrors_exactly_the_drawn_images():
    x = dataset.to_tensor(random_faces(16, 8, 0))
    out = dataset.augment(x, torch.Generator().manual_seed(5), hflip=True)
    flipped = torch.rand(16, generator=torch.Generator().manual_seed(5)) < 0.5
    base = x.float() / 127.5 - 1
    for i in range(16):
        torch.testing.assert_close(out[i], base[i].flip(-1) if flipped[i] else base[i])
    assert 0 < flipped.sum() < 16


def test_rotation_and_jitter_stay_in_range_and_are_seeded():
    x = dataset.to_tensor(random_faces(4, 16, 0))
    a = dataset.augment(x, torch.Generator().manual_seed(1), hflip=True, rotate_deg=10, color_jitter=0.2)
    b = dataset.augment(x, torch.Generator().manual_seed(1), hflip=True, rotate_deg=10, color_jitter=0.2)
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert not torch.allclose(a, dataset.augment(x, torch.Generator().manual_seed(1), hflip=True))


def test_pick_data_device():
    cpu = torch.device("cpu")
    assert dataset.pick_data_device(10, cpu, "auto") == cpu
    assert dataset.pick_data_device(10, cpu, "cpu") == cpu
    with pytest.raises(ValueError, match=r"train.data_device = 'gpu'"):
        dataset.pick_data_device(10, cpu, "gpu")


def test_loading_faces_draws_no_progress_bar_into_a_log(tmp_path, capfd):
    """A stage's stderr redirected to a file (dvc repro's log) gets no tqdm ``\\r`` redraws."""
    from tiny_faces import random_faces, write_faceset

    from facegen.train.data import load_split

    write_faceset(tmp_path, random_faces(4, 16, 0), random_faces(2, 16, 1))
    assert load_split(tmp_path / "data" / "faces.parquet", "train", tmp_path).shape == (4, 16, 16, 3)
    assert "\r" not in capfd.readouterr().err
