"""`local_frame`: driver rows as a local relation, typed exactly as `spark.createDataFrame` types them."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from jobs.frames import local_frame

pytestmark = pytest.mark.unit

SCHEMA = (
    "s string, i int, l bigint, d double, b boolean, day date, ts timestamp, bin binary, amount decimal(18,4), "
    "m map<string,double>, a array<string>, st struct<x:int,y:string>"
)
ROWS = [
    (
        'two\nlines, "quoted" and \\ escaped',
        -7,
        2**40,
        0.1 + 0.2,
        True,
        date(2025, 3, 1),
        datetime(2025, 3, 1, 23, 59, 58, 123456),
        b"\x00\xff\n",
        Decimal("1234.5678"),
        {"k": 1.5, "nan": float("nan")},
        ["x", None],
        (1, "y"),
    ),
    (None,) * 12,
    ("", 0, 0, float("inf"), False, date(1970, 1, 1), datetime(1970, 1, 1), b"", Decimal("0"), {}, [], (None, None)),
]


def optimized_plan(df) -> str:
    return df._jdf.queryExecution().optimizedPlan().getClass().getSimpleName()


def test_rows_come_back_as_spark_create_data_frame_gives_them(spark):
    local = local_frame(spark, ROWS, SCHEMA)
    expected = spark.createDataFrame(ROWS, SCHEMA)
    assert [f.simpleString() for f in local.schema.fields] == [f.simpleString() for f in expected.schema.fields]
    got, want = local.collect(), expected.collect()
    assert str(got) == str(want)  # NaN compares unequal to itself: compare the printed rows
    assert got[0].d == 0.30000000000000004 and got[0].ts == datetime(2025, 3, 1, 23, 59, 58, 123456)


def test_the_rows_are_planned_as_a_local_relation(spark):
    assert optimized_plan(local_frame(spark, ROWS, SCHEMA)) == "LocalRelation"
    assert optimized_plan(local_frame(spark, [], SCHEMA)) == "LocalRelation"
    assert optimized_plan(spark.createDataFrame(ROWS, SCHEMA)) == "LogicalRDD"  # what it replaces


def test_no_rows_give_an_empty_frame_of_the_schema(spark):
    empty = local_frame(spark, [], SCHEMA)
    assert empty.count() == 0
    assert empty.schema == local_frame(spark, ROWS, SCHEMA).schema


def test_mapping_rows_are_read_by_field_name(spark):
    (row,) = local_frame(spark, [{"l": 3, "s": "by name", "unknown": 1}], "s string, l bigint, i int").collect()
    assert row.asDict() == {"s": "by name", "l": 3, "i": None}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", "7")], "row 0.i: '7' does not fit int"),
        ([("a", 1), ("b", 1.5)], "row 1.i: 1.5 does not fit int"),
        ([("a",)], "row 0: ('a',) does not fit struct<s:string,i:int>"),
        ([("a", True)], "row 0.i: True does not fit int"),
    ],
)
def test_a_value_that_does_not_fit_names_its_row_and_field(spark, rows, message):
    with pytest.raises(TypeError) as raised:
        local_frame(spark, rows, "s string, i int")
    assert str(raised.value) == message
