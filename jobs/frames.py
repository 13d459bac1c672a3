"""Small DataFrame helpers shared by the stage runners."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


def nullable_type(data_type: T.DataType) -> T.DataType:
    """The same type with every struct field, at any depth, nullable (array and map
    containsNull flags are kept: Delta stores those as given)."""
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable_type(f.dataType), True) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable_type(data_type.elementType), data_type.containsNull)
    if isinstance(data_type, T.MapType):
        return T.MapType(data_type.keyType, nullable_type(data_type.valueType), data_type.valueContainsNull)
    return data_type


def with_nullable_nesting(df: DataFrame) -> DataFrame:
    """Cast nested struct fields to nullable: Delta stores them so (it cannot enforce NOT NULL
    inside arrays, maps and structs), and a write must carry the table's exact types."""
    return df.select(
        *[
            F.col(f.name).cast(nullable_type(f.dataType)).alias(f.name)
            if nullable_type(f.dataType) != f.dataType
            else F.col(f.name)
            for f in df.schema.fields
        ]
    )


def string_map(entries: Mapping[str, Column]) -> Column:
    """A map<string,string> of the entries whose value is not null, as one map_concat of
    one-entry maps: map_filter or array_compact would run a lambda per entry, outside
    generated code."""
    empty = F.create_map().cast("map<string,string>")
    if not entries:
        return empty
    return F.map_concat(
        *[F.when(v.isNotNull(), F.create_map(F.lit(k), v.cast("string"))).otherwise(empty) for k, v in entries.items()]
    )


class ColumnMemo:
    """Columns built once per plan and reused. Building a pyspark Column is a round trip to the
    JVM and releasing it another, and a plan built from many templates or rules asks for the
    same literal, reference or derived value hundreds of times."""

    def __init__(self) -> None:
        self._built: dict[Hashable, tuple[Any, Column]] = {}

    def get(self, key: Hashable, build: Callable[[], Column], *, pin: Any = None) -> Column:
        """`build()` the first time `key` is asked for, the same Column afterwards. `pin` is kept
        as long as the memo: what a key names by identity (`id(...)`) must outlive it."""
        if key not in self._built:
            self._built[key] = (pin, build())
        return self._built[key][1]

    def lit(self, value: Any) -> Column:
        """`F.lit(value)` for a scalar (1, 1.0 and True are different literals)."""
        return self.get(("lit", type(value), value), lambda: F.lit(value))

    def col(self, name: str) -> Column:
        return self.get(("col", name), lambda: F.col(name))
