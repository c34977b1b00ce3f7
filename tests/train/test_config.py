"""facegen.train.config: one source for the choices, run_key hashes only what changes the weights."""

from __future__ import annotations

import dataclasses
import typing

from facegen.train.config import OPERATIONAL_KEYS, Extractor, Preset, TrainConfig, run_key


def test_choices_agree_with_their_implementations():
    from facegen.diffusion.model import PRESETS
    from facegen.fid.features import EXTRACTORS

    assert set(typing.get_args(Preset)) == set(PRESETS)
    assert set(typing.get_args(Extractor)) == set(EXTRACTORS)


def test_run_key_ignores_operational_keys_only():
    base = TrainConfig()
    changed = {
        "resume": "never",
        "experiment": "other",
        "log_checkpoints": False,
        "keep_checkpoints": 5,
        "checkpoint_every": 1,
        "grid_size": 4,
        "fid_every": 0,
        "fid_num_samples": 10,
        "fid_batch_size": 7,
        "eval_steps": 3,
        "data_device": "cpu",
        "kid_subsets": 7,
        "kid_subset_size": 50,
    }
    assert set(changed) == OPERATIONAL_KEYS
    for key, value in changed.items():
        assert run_key(dataclasses.replace(base, **{key: value}), "d") == run_key(base, "d"), key
    weight_keys = {
        "lr": 1e-4,
        "epochs": 10,
        "seed": 1,
        "model": "tiny",
        "precision": "no",
        "loss": "l1_l2",
        "ema_decay": 0.99,
        "fid_extractor": "offline",
        "compile": True,
    }
    for key, value in weight_keys.items():
        assert run_key(dataclasses.replace(base, **{key: value}), "d") != run_key(base, "d"), key
    assert run_key(base, "other data") != run_key(base, "d")
    # the world size sets the effective batch: a 2-process run never resumes a 1-process checkpoint
    assert run_key(base, "d", 2) != run_key(base, "d", 1) == run_key(base, "d")
