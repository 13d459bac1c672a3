"""Small DataFrame helpers shared by the stage runners."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T


def nullable_type(data_type: T.DataType) -> T.DataType:
    """The same type with every nested field, array element and map value nullable."""
    if isinstance(data_type, T.StructType):
        return T.StructType([T.StructField(f.name, nullable_type(f.dataType), True) for f in data_type.fields])
    if isinstance(data_type, T.ArrayType):
        return T.ArrayType(nullable_type(data_type.elementType), True)
    if isinstance(data_type, T.MapType):
        return T.MapType(data_type.keyType, nullable_type(data_type.valueType), True)
    return data_type


def with_nullable_nesting(df: DataFrame) -> DataFrame:
    """Cast nested types to their all-nullable form: Delta stores nested fields as nullable (it
    cannot enforce NOT NULL inside arrays, maps and structs), so writes must match that."""
    return df.select(
        *[
            F.col(f.name).cast(nullable_type(f.dataType)).alias(f.name)
            if nullable_type(f.dataType) != f.dataType
            else F.col(f.name)
            for f in df.schema.fields
        ]
    )
