"""Golden days: tests/golden/<case>/input and conf go through a night's pure transformations and
every table produced is compared whole with tests/golden/<case>/expected (see each case's README)."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.loyalty import LoyaltySettings, balances, earnings, ledger_entries, tiers, with_budgets
from jobs.metrics import MetricRegistry, daily_activity
from jobs.progress import track
from jobs.templates import load_mission_metrics

pytestmark = pytest.mark.unit

GOLDEN = Path(__file__).parent
TYPES = {
    "string": (T.StringType(), str),
    "int": (T.IntegerType(), int),
    "long": (T.LongType(), int),
    "double": (T.DoubleType(), float),
    "boolean": (T.BooleanType(), {"true": True, "false": False}.__getitem__),
    "date": (T.DateType(), date.fromisoformat),
}


def read_table(spark: SparkSession, path: Path) -> DataFrame:
    """A CSV with a typed header (`name:type`) -> a DataFrame of exactly that schema; '' is null."""
    with path.open(newline="", encoding="utf-8") as handle:
        header, *lines = list(csv.reader(handle))
    fields, parsers = [], []
    for column in header:
        name, _, type_name = column.partition(":")
        if type_name not in TYPES:
            raise ValueError(f"{path}: column {name!r}: type {type_name!r} is not one of {', '.join(TYPES)}")
        spark_type, parse = TYPES[type_name]
        fields.append(T.StructField(name, spark_type))
        parsers.append(parse)
    rows = []
    for number, line in enumerate(lines, 2):
        if len(line) != len(header):
            raise ValueError(f"{path}:{number}: {len(line)} values for {len(header)} columns")
        try:
            rows.append(tuple(None if v == "" else p(v) for p, v in zip(parsers, line, strict=True)))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return spark.createDataFrame(rows, T.StructType(fields))


def test_read_table_types_every_column_and_reads_empty_cells_as_null(spark, tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("s:string,i:int,l:long,d:double,b:boolean,day:date\nx,1,20000000000,1.5,true,2025-05-03\n,,,,,\n")
    expected = spark.createDataFrame(
        [("x", 1, 20000000000, 1.5, True, date(2025, 5, 3)), (None, None, None, None, None, None)],
        "s string, i int, l long, d double, b boolean, day date",
    )
    assert_df_equality(read_table(spark, path), expected)
    path.write_text("s:string,b:boolean\nx,yes\n")
    with pytest.raises(ValueError, match=r"t.csv:2: 'yes'"):
        read_table(spark, path)
    path.write_text("s:text\nx\n")
    with pytest.raises(ValueError, match=r"column 's': type 'text'"):
        read_table(spark, path)


def one_day(spark: SparkSession, case: Path, ds: date) -> dict[str, DataFrame]:
    """The night of `ds`: events -> daily activity -> mission progress -> ledger -> tiers."""
    conf = case / "conf"

    def table(name: str) -> DataFrame:
        return read_table(spark, case / "input" / f"{name}.csv")

    registry = MetricRegistry.load(conf / "metrics.yaml")
    settings = LoyaltySettings.load(conf / "loyalty.yaml", ["engagement"])
    subjects, previous_tiers = table("subjects"), table("tiers_previous")
    activity = daily_activity(table("events"), registry)
    no_completions = spark.createDataFrame([], "assignment_id string, _completed_before date, _completed_same_day date")
    progress = track(table("assignments"), activity, no_completions, load_mission_metrics(conf / "metrics.yaml"), ds)
    no_awards = spark.createDataFrame(
        [], "award_id string, subscriber_id string, badge_id string, points int, holdout boolean, awarded_ds date"
    )
    nothing_recorded = spark.createDataFrame([], "entry_id string, entry_ds date")
    new = ledger_entries(earnings(progress, no_awards, settings, ds), nothing_recorded, ds)
    ledger = with_budgets(new, subjects, settings.budgets)
    tier_rows = tiers(subjects, balances(previous_tiers, ledger), previous_tiers, settings, ds)
    return {
        "daily_activity": activity,
        "mission_progress": progress,
        "loyalty_ledger": ledger,
        "loyalty_tiers": tier_rows,
    }


@pytest.fixture(scope="module")
def one_day_tables(spark):
    return one_day(spark, GOLDEN / "one_day", date(2025, 5, 3))


@pytest.mark.parametrize("name", ["daily_activity", "mission_progress", "loyalty_ledger", "loyalty_tiers"])
def test_one_day_matches_its_expected_tables(spark, one_day_tables, name):
    expected = read_table(spark, GOLDEN / "one_day" / "expected" / f"{name}.csv")
    assert_df_equality(one_day_tables[name], expected, ignore_row_order=True, ignore_nullable=True)


def test_every_case_has_its_expected_tables():
    produced = {"daily_activity", "mission_progress", "loyalty_ledger", "loyalty_tiers"}
    cases = [p for p in GOLDEN.iterdir() if p.is_dir() and (p / "input").is_dir()]
    assert "one_day" in [c.name for c in cases]
    for case in cases:
        assert {p.stem for p in (case / "expected").glob("*.csv")} == produced, case


def test_the_golden_day_runs_with_production_sql_settings(spark):
    assert spark.conf.get("spark.sql.adaptive.enabled") == "true"
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "true"
    assert spark.conf.get("spark.sql.codegen.factoryMode") == "FALLBACK"
