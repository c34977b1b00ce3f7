"""Typed, frozen configs built from one params.yaml section each.

Every stage reads exactly one section (plus, where it says so, a shared one such as
``faces``) into a frozen dataclass. Unknown keys are an error that names the key, so a
typo in params.yaml never silently falls back to a default. Each config's ``__post_init__``
calls :func:`validate` with its numeric :class:`Range` table: choice-valued (``Literal``) keys
and ranges are checked when the config is built, before a stage opens a run or writes a file,
and the error names ``section.key``, the value and the valid range.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from facegen.common.atomic import write_json

T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml into a dict; a missing file is a clear error.

    Parsed as YAML 1.2 (ruamel, as DVC reads and rewrites it): ``dvc exp run -S`` writes
    ``precision: no`` unquoted, which YAML 1.1 (PyYAML) would read as False. A choice key with a
    ``"no"`` choice (the precision keys) also takes ``false``: ``no``, ``"no"`` and ``false`` all
    mean off (see :func:`_coerce`).
    """
    from ruamel.yaml import YAML

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path} (run stages from the repository root)")
    with path.open(encoding="utf-8") as fh:
        data = YAML(typ="safe", pure=True).load(fh) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


@dataclasses.dataclass(frozen=True)
class Range:
    """A closed or open numeric interval for a config key: ``lo``/``hi`` of None mean unbounded.

    ``lo_open``/``hi_open`` exclude the bound itself (``Range(0, lo_open=True)`` is "> 0").
    """

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, value: float) -> bool:
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return False
        return not (self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)))

    def __str__(self) -> str:
        def num(x: float) -> str:  # 4294967295, not 4.29497e+09
            return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"

        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {num(self.lo)}" if self.lo is not None else "any number"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {num(self.hi)}"
        return f"in {'(' if self.lo_open else '['}{num(self.lo)}, {num(self.hi)}{')' if self.hi_open else ']'}"


POSITIVE = Range(0, lo_open=True)  # > 0
NON_NEGATIVE = Range(0)  # >= 0
AT_LEAST_ONE = Range(1)  # >= 1
FRACTION = Range(0, 1)  # [0, 1]


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved field annotations of a config class (computed once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _choices(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` (or ``Literal | None``) annotation, else None."""
    if typing.get_origin(annotation) is typing.Literal:
        return typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if typing.get_origin(arg) is typing.Literal:
                return typing.get_args(arg) + ((None,) if type(None) in typing.get_args(annotation) else ())
    return None


def validate(cfg: Any, section: str, ranges: Mapping[str, Range] | None = None) -> None:
    """Check a config dataclass: ``Literal`` keys hold one of their choices, numbers lie in ``ranges``.

    Call it from ``__post_init__`` so a typo or nonsense value fails when the config is built
    (params loaded, or a test's direct construction), not at step 1 of a run. ``None`` values
    (optional keys) and tuple items are checked item by item. Raises ValueError naming
    ``section.key``, the value and what is allowed.
    """
    for name, annotation in _hints(type(cfg)).items():
        allowed = _choices(annotation)
        if allowed is not None and getattr(cfg, name) not in allowed:
            raise ValueError(f"{section}.{name} = {getattr(cfg, name)!r}: choose one of {list(allowed)}")
    for name, rng in (ranges or {}).items():
        value = getattr(cfg, name)
        for item in value if isinstance(value, tuple) else (value,):
            if item is not None and item not in rng:
                raise ValueError(f"{section}.{name} = {value!r} is out of range: valid values are {rng}")


def _yaml_hint(value: Any, annotation: Any) -> str:
    """Why YAML may have produced this value, and how to write it instead ("" when no hint applies)."""
    if isinstance(value, datetime.date):
        return f'; YAML read an unquoted date: quote it: "{value.isoformat()}"'
    if value is None:
        return "; an empty value is null in YAML: write the value, or quote an empty string"
    if annotation in (int, float) and isinstance(value, str):
        try:  # a string that reads as a number was quoted (YAML reads an unquoted one as a number)
            float(value)
        except ValueError:
            return "; not a number"
        return "; it is quoted: remove the quotes (and write exponents with a dot, e.g. 3.0e-4)"
    if annotation is bool and isinstance(value, str):
        return "; write true or false"
    if annotation is str and isinstance(value, (bool, int, float)):
        return f'; YAML read it as {type(value).__name__}: quote it: "{value}"'
    return ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert YAML values to the annotated type (lists -> tuples, ints -> floats)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except (TypeError, ValueError):
                continue
        raise ValueError(f"{where}: {value!r} does not match {annotation}{_yaml_hint(value, args[0])}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {value!r}")
        return (
            tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
            if args
            else tuple(value)
        )
    if origin is typing.Literal:
        if value is False and "no" in args:  # `-S key=false`, or `no` read as YAML 1.1 (PyYAML): off
            return "no"
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}{_yaml_hint(value, annotation)}")
    if annotation is int and isinstance(value, bool):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if annotation in (int, str, bool) and not isinstance(value, annotation):
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}{_yaml_hint(value, annotation)}")
    return value


def from_dict(cls: type[T], data: dict[str, Any] | None, section: str) -> T:
    """Build the frozen dataclass ``cls`` from one params section.

    Raises ValueError naming ``section.key`` for unknown keys, missing required keys
    and values of the wrong type.
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown key(s) in params section '{section}': {', '.join(unknown)} "
            f"(known keys: {', '.join(sorted(fields))})"
        )
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{section}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"params section '{section}' is missing the required key '{name}'")
    return cls(**kwargs)


def load_section(cls: type[T], section: str, params_path: str | Path = "params.yaml") -> T:
    """Read ``section`` of params.yaml into ``cls``."""
    params = load_params(params_path)
    if section not in params:
        raise ValueError(f"params file {params_path} has no section '{section}'")
    return from_dict(cls, params[section], section)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config next to a stage's outputs, for the record."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, to_dict(cfg))
