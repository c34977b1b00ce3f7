"""facegen.common.tables: the one Parquet writer (declared types, atomic, typed when empty)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from facegen.common.tables import arrow_schema, write_parquet

SCHEMA = {"name": "string", "n": "int32", "box": "list<float64>", "at": "timestamp[s, Asia/Taipei]"}


def test_empty_rows_are_written_with_the_declared_types(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.parquet"
    write_parquet([], SCHEMA, path)
    schema = pq.read_schema(path)
    assert schema.names == ["name", "n", "box", "at"]
    assert schema.field("n").type == pa.int32()
    assert schema.field("box").type == pa.list_(pa.float64())
    assert arrow_schema(SCHEMA).field("at").type == pa.timestamp("s", tz="Asia/Taipei")
    assert pa.types.is_timestamp(schema.field("at").type) and schema.field("at").type.tz == "Asia/Taipei"  # Parquet: ms
    assert pq.read_table(path).num_rows == 0


def test_dataframe_columns_are_ordered_and_extras_dropped(tmp_path: Path) -> None:
    frame = pd.DataFrame({"extra": [1, 2], "n": [3, 4], "name": ["a", None]})
    write_parquet(frame, {"name": "string", "n": "int64"}, tmp_path / "t.parquet")
    back = pd.read_parquet(tmp_path / "t.parquet")
    assert list(back.columns) == ["name", "n"]
    assert back["n"].tolist() == [3, 4] and back["name"].tolist()[0] == "a" and back["name"].isna().tolist()[1]


def test_missing_column_and_unknown_type_are_clear_errors_and_leave_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    write_parquet([{"name": "kept"}], {"name": "string"}, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"lacks declared column\(s\) \['n'\]"):
        write_parquet(pd.DataFrame({"name": ["x"]}), {"name": "string", "n": "int64"}, path)
    with pytest.raises(ValueError, match=r"column 'n': unknown type 'integer'"):
        arrow_schema({"n": "integer"})
    with pytest.raises(pa.ArrowInvalid):
        write_parquet([{"name": "x", "n": "not a number"}], {"name": "string", "n": "int64"}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]  # no temp file left
