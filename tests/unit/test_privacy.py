from __future__ import annotations

import hashlib
import hmac

import pytest
from pyspark.sql import functions as F

from jobs.privacy import mask_digit_runs, normalise_msisdn_py, pseudonymise, pseudonymise_py

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raw", ["+33612345678", "+33 6 12 34 56 78", "0033612345678", "0612345678", "33612345678"])
def test_every_number_format_gives_the_same_subscriber_id(spark, raw):
    expected = hmac.new(b"k", b"33612345678", hashlib.sha256).hexdigest()
    got = spark.createDataFrame([(raw,)], "m string").select(pseudonymise(F.col("m"), "k", "33").alias("h")).first().h
    assert got == expected == pseudonymise_py(raw, "k", "33")
    assert normalise_msisdn_py(raw, "33") == "33612345678"


def test_long_keys_follow_hmac_rules(spark):
    key = "x" * 100  # longer than the SHA-256 block: hashed first, as HMAC specifies
    got = (
        spark.createDataFrame([("33612345678",)], "m string")
        .select(pseudonymise(F.col("m"), key, "33").alias("h"))
        .first()
        .h
    )
    assert got == hmac.new(key.encode(), b"33612345678", hashlib.sha256).hexdigest()


def test_null_and_empty_stay_null(spark):
    rows = (
        spark.createDataFrame([(None,), ("",), ("--",)], "m string")
        .select(pseudonymise(F.col("m"), "k", "33").alias("h"))
        .collect()
    )
    assert [r.h for r in rows] == [None, None, None]


def test_an_empty_key_is_refused():
    with pytest.raises(ValueError, match="GAMIFY_PSEUDONYMISATION_KEY"):
        pseudonymise(F.col("m"), "", "33")


def test_phone_numbers_are_masked_in_free_text(spark):
    text = "C1|+33 6 12 34 56 78|MOC|0612345678|duration 120"
    got = spark.createDataFrame([(text,)], "t string").select(mask_digit_runs(F.col("t")).alias("m")).first().m
    assert got == "C1|<msisdn>|MOC|<msisdn>|duration 120"
