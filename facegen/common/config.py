"""Typed, frozen configs built from one params.yaml section each.

Every stage reads exactly one section (plus, where it says so, a shared one such as
``faces``) into a frozen dataclass. Unknown keys are an error that names the key, so a
typo in params.yaml never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar


T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read params.yaml into a dict; a missing file is a clear error.

    Parsed as YAML 1.2 (ruamel, as DVC reads and rewrites it): ``dvc exp run -S`` writes
    ``precision: no`` unquoted, which YAML 1.1 (PyYAML) would read as False.
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
        raise ValueError(f"{where}: {value!r} does not match {annotation}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {value!r}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))) if args else tuple(value)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"{where}: expected a number, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if annotation in (int, str, bool) and not isinstance(value, annotation):
        raise ValueError(f"{where}: expected {annotation.__name__}, got {value!r}")
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
    hints = typing.get_type_hints(cls)
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
    path.write_text(json.dumps(to_dict(cfg), indent=2, sort_keys=True) + "\n", encoding="utf-8")
