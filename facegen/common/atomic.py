"""Atomic file writes: write a temp file next to the target, then ``os.replace`` it in.

Why: a stage killed mid-write must never leave a truncated Parquet, PNG or cache blob under
the real name (DVC would hash it, the fetch cache would trust it). The temp file lives in the
target's directory (so the rename is atomic on one file system), is named
``.<target name>.<random>.tmp`` so a crashed run's leftover is recognisable (see
:func:`is_temp_name`) and never matches the target's own pattern, and is removed when the
write fails. The temp file is created by the writer itself, so it gets ordinary permissions.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def is_temp_name(name: str) -> bool:
    """Whether a file name looks like a temp file left by :func:`atomic_path` (hidden, ``.tmp``)."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path next to ``path``; on a clean exit rename it onto ``path``.

    For writers that want a path (``pq.write_table``, ``DataFrame.to_parquet``, ``Image.save``,
    ``shutil.copyfile``). On an exception the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (readers see the old file or all of the new one)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | Path, obj: Any, sort_keys: bool = True) -> None:
    """Write ``obj`` as indented UTF-8 JSON (trailing newline) to ``path`` atomically, creating
    its folder: the one writer of every JSON record, metric and config the stages leave."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))
