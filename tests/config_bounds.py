"""Every number of a params section, pushed past what it can mean: each must fail in one named line."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from facegen.common.config import from_dict


def bad_numbers(cls: type) -> list[tuple[str, object]]:
    """(key, value) for each int / float field of ``cls``: inf, nan and 1e300 for floats, 10**30 and -1 for ints."""
    hints = typing.get_type_hints(cls)
    out: list[tuple[str, object]] = []
    for f in dataclasses.fields(cls):
        if hints[f.name] is float:
            out += [(f.name, float("inf")), (f.name, float("nan")), (f.name, 1e300), (f.name, -float("inf"))]
        elif hints[f.name] is int:
            out += [(f.name, 10**30), (f.name, -(10**30))]
    return out


def assert_named_in_one_line(cls: type, section: str, key: str, value: object) -> None:
    """``from_dict`` refuses ``key: value`` with one line that names ``section.key``."""
    with pytest.raises(ValueError) as info:
        from_dict(cls, {key: value}, section)
    msg = str(info.value)
    assert f"{section}.{key}" in msg and "\n" not in msg, msg


def numeric_keys(cls: type) -> set[str]:
    """The int / float fields of a config dataclass: each needs an entry in its ranges table."""
    hints = typing.get_type_hints(cls)
    return {f.name for f in dataclasses.fields(cls) if hints[f.name] in (int, float)}
