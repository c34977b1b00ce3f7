"""The one Parquet writer: declared column types, atomic write, typed even when empty.

Every table a stage leaves (posts, links, downloads, faces, sample requests, the control sweep,
studio judgements) declares its columns as a :data:`Schema` (column -> type name) next to the
code that fills it, and is written by :func:`write_parquet`: the columns in that order with
those Arrow types (so an empty crawl still has typed columns and a reader never guesses), via
a temp file renamed into place (a kill never leaves half a Parquet under the real name).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facegen.common.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import pyarrow as pa

# column -> type name: a pyarrow alias ("string", "int32", "float64", "bool", ...) or one of _NAMED
Schema = Mapping[str, str]


def _named() -> dict[str, Any]:
    import pyarrow as pa

    floats = pa.list_(pa.float64())
    return {
        "list<float64>": floats,
        "list<list<float64>>": pa.list_(floats),
        "timestamp[s, Asia/Taipei]": pa.timestamp("s", tz="Asia/Taipei"),
    }


def arrow_schema(schema: Schema) -> pa.Schema:
    """The Arrow schema of ``schema``; an unknown type name is a ValueError naming it."""
    import pyarrow as pa

    named = _named()
    fields = []
    for name, kind in schema.items():
        try:
            fields.append((name, named[kind] if kind in named else pa.type_for_alias(kind)))
        except ValueError:
            raise ValueError(
                f"column {name!r}: unknown type {kind!r} (a pyarrow alias or one of {sorted(named)})"
            ) from None
    return pa.schema(fields)


def write_parquet(data: pd.DataFrame | Sequence[Mapping[str, Any]], schema: Schema, path: str | Path) -> None:
    """Write rows (a DataFrame, or dicts) as Parquet with ``schema``'s columns and types, atomically.

    A DataFrame keeps its pandas metadata (nullable dtypes read back as written); columns it
    lacks are an error, extra ones are dropped.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrow = arrow_schema(schema)
    if isinstance(data, pd.DataFrame):
        missing = [c for c in schema if c not in data.columns]
        if missing:
            raise ValueError(f"{path}: the table lacks declared column(s) {missing}")
        table = pa.Table.from_pandas(data[list(schema)], schema=arrow, preserve_index=False)
    else:
        table = pa.Table.from_pylist(list(data), schema=arrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
