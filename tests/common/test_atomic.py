"""facegen.common.atomic: content lands; a failed write leaves the target untouched and no temp file."""

from __future__ import annotations

from pathlib import Path

import pytest

from facegen.common.atomic import atomic_path, is_temp_name, write_bytes_atomic


def test_write_bytes_atomic_writes_and_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    write_bytes_atomic(target, b"first")
    write_bytes_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_atomic_path_temp_is_sibling_and_recognisable(tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        assert is_temp_name(tmp.name) and not tmp.name.endswith(".png")
        tmp.write_bytes(b"png")
    assert target.read_bytes() == b"png"
    assert not tmp.exists()
    assert not is_temp_name(target.name)


def test_failure_mid_write_leaves_target_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_failure_before_anything_is_written(tmp_path: Path) -> None:
    target = tmp_path / "new.bin"
    with pytest.raises(ValueError), atomic_path(target):
        raise ValueError("writer refused")
    assert list(tmp_path.iterdir()) == []
