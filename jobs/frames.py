"""Small DataFrame helpers shared by the stage runners."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

# How local_frame writes a timestamp for from_json: UTC, microseconds
_TIMESTAMP_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def local_frame(
    spark: SparkSession, rows: Iterable[Sequence[Any] | Mapping[str, Any]], schema: T.StructType | str
) -> DataFrame:
    """Rows of the driver (run records, catalogs, key pads) as a local relation of `schema`.

    `spark.createDataFrame(list)` makes an RDD of pickled rows over the default parallelism, so
    each query reading it runs tasks that unpickle them, and a broadcast of it is a job of its
    own (about 0.1 s for one row). The rows of a local relation are part of the plan: the rows
    cross to the JVM as JSON text, `from_json` (FAILFAST) parses them to `schema`, and the
    optimizer folds the parse into the relation. Rows are tuples in field order or mappings by
    field name; fields come out nullable."""
    struct = schema if isinstance(schema, T.StructType) else T._parse_datatype_string(schema)
    if not isinstance(struct, T.StructType):
        raise TypeError(f"local_frame needs a struct schema, got {struct.simpleString()}")
    lines = [json.dumps(_json_value(row, struct, f"row {i}"), separators=(",", ":")) for i, row in enumerate(rows)]
    jvm = spark._jvm
    texts = jvm.java.util.ArrayList()
    if lines:  # every row in one string (JSON escapes the line breaks inside values)
        texts = jvm.java.util.regex.Pattern.compile("\n").splitAsStream("\n".join(lines)).toList()
    text = DataFrame(
        spark._jsparkSession.createDataset(texts, jvm.org.apache.spark.sql.Encoders.STRING()).toDF(), spark
    )
    parsed = F.from_json("value", struct, {"mode": "FAILFAST", "timestampFormat": _TIMESTAMP_FORMAT})
    return text.select(parsed.alias("row")).select("row.*")


def _json_value(value: Any, data_type: T.DataType, where: str) -> Any:
    """`value` as JSON for `from_json` into `data_type`; TypeError naming `where` otherwise."""
    if value is None:
        return None
    if isinstance(data_type, T.StructType):
        if isinstance(value, Mapping):
            return {f.name: _json_value(value.get(f.name), f.dataType, f"{where}.{f.name}") for f in data_type.fields}
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == len(data_type.fields):
            return {
                f.name: _json_value(v, f.dataType, f"{where}.{f.name}")
                for f, v in zip(data_type.fields, value, strict=True)
            }
        raise TypeError(f"{where}: {value!r} does not fit {data_type.simpleString()}")
    if isinstance(data_type, T.ArrayType) and isinstance(value, Sequence) and not isinstance(value, str):
        return [_json_value(v, data_type.elementType, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(data_type, T.MapType) and isinstance(data_type.keyType, T.StringType) and isinstance(value, Mapping):
        return {str(k): _json_value(v, data_type.valueType, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(data_type, T.BooleanType) and isinstance(value, bool):
        return value
    if isinstance(data_type, T.IntegralType) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(data_type, T.DecimalType) and isinstance(value, Decimal | int) and not isinstance(value, bool):
        return str(value)  # exact: from_json reads a decimal from its text
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(data_type, T.FractionalType) and not isinstance(data_type, T.DecimalType) and number:
        return float(value)
    if isinstance(data_type, T.StringType) and isinstance(value, str):
        return value
    if isinstance(data_type, T.DateType) and isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(data_type, T.TimestampType) and isinstance(value, datetime):
        # read as pyspark reads it (a naive value in the process's local time)
        moment = _EPOCH + timedelta(microseconds=T.TimestampType().toInternal(value))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
    if isinstance(data_type, T.BinaryType) and isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"{where}: {value!r} does not fit {data_type.simpleString()}")


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
