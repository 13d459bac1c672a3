from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import io

import pytest
from pyspark.sql import functions as F

from jobs.privacy import (
    mask_digit_runs,
    mask_text,
    normalise_msisdn,
    normalise_msisdn_py,
    pseudonymise,
    pseudonymise_py,
    with_hmac_key,
)

pytestmark = pytest.mark.unit


def _pseudonyms(spark, values, key="k"):
    df = with_hmac_key(spark.createDataFrame([(v,) for v in values], "m string"), key)
    return [r.h for r in df.select(pseudonymise(F.col("m"), "33").alias("h")).collect()]


@pytest.mark.parametrize(
    "raw",
    [
        "+33612345678",
        "+33 6 12 34 56 78",
        "0033612345678",
        "0612345678",
        "33612345678",
        "06-12-34-56-78",
        "+33-6-12-34-56-78",
        "+33(0)6 12 34 56 78",
        "+33 (0) 6.12.34.56.78",
        "0033 (0)6 12 34 56 78",
        "٠٦١٢٣٤٥٦٧٨",  # Arabic-Indic digits
        "０６１２３４５６７８",  # fullwidth digits
    ],
)
def test_every_number_format_gives_the_same_subscriber_id(spark, raw):
    expected = hmac.new(b"k", b"33612345678", hashlib.sha256).hexdigest()
    assert _pseudonyms(spark, [raw]) == [expected]
    assert pseudonymise_py(raw, "k", "33") == expected
    assert normalise_msisdn_py(raw, "33") == "33612345678"


def test_trunk_zero_is_dropped_only_after_a_country_code(spark):
    cases = {
        "+44 (0) 20 7946 0018": "442079460018",
        "(0)20 7946 0018": "332079460018",
        "0044(0)2079460018": "442079460018",
        "\t+44 20 (0) 7946 0018": "442079460018",
        "+44 20 7946 (1) 0018": "4420794610018",
        "0612 (0)34 56 78": "336120345678",
        "\u00a0+33 (\u00a00\u202f) 6 12 34 56 78": "33612345678",  # no-break spaces (a spreadsheet's)
        "+33 (\u30000) 6 12 34 56 78": "33612345678",  # an ideographic space
    }
    got = spark.createDataFrame([(k,) for k in cases], "m string").select(normalise_msisdn(F.col("m"), "33").alias("n"))
    assert [r.n for r in got.collect()] == list(cases.values())
    assert [normalise_msisdn_py(k, "33") for k in cases] == list(cases.values())


@pytest.mark.parametrize("raw", ["", "N/A", "--", "   ", None, "abc", "+", "١x"])
def test_python_and_spark_agree_when_there_is_no_number(spark, raw):
    got = spark.createDataFrame([(raw,)], "m string").select(normalise_msisdn(F.col("m"), "33").alias("n")).first().n
    assert got == normalise_msisdn_py(raw, "33") == (None if raw != "١x" else "1")
    if raw != "١x":
        assert _pseudonyms(spark, [raw]) == [None] and pseudonymise_py(raw, "k", "33") is None


def test_long_keys_follow_hmac_rules(spark):
    key = "x" * 100  # longer than the SHA-256 block: hashed first, as HMAC specifies
    assert _pseudonyms(spark, ["33612345678"], key) == [
        hmac.new(key.encode(), b"33612345678", hashlib.sha256).hexdigest()
    ]


def test_null_and_empty_stay_null(spark):
    assert _pseudonyms(spark, [None, "", "--"]) == [None, None, None]


def test_an_empty_key_is_refused(spark):
    with pytest.raises(ValueError, match="GAMIFY_PSEUDONYMISATION_KEY"):
        with_hmac_key(spark.createDataFrame([("1",)], "m string"), "")


def test_the_key_and_its_pads_never_appear_in_a_plan(spark):
    key = "Zq9-plan-probe-KEY"
    k = key.encode().ljust(64, b"\0")
    inner, outer = bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)
    df = with_hmac_key(spark.createDataFrame([("+33612345678",)], "m string"), key)
    out = df.select(pseudonymise(F.col("m"), "33").alias("h"))
    assert out.first().h == hmac.new(key.encode(), b"33612345678", hashlib.sha256).hexdigest()
    texts = [out._jdf.queryExecution().toString()]
    for mode in ("simple", "extended", "codegen", "cost", "formatted"):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            out.explain(mode)
        texts.append(buffer.getvalue())
    needles = [key, key.encode().hex(), inner.hex(), outer.hex(), inner[:16].hex(), outer[:16].hex()]
    needles += [base64.b64encode(pad).decode()[:20] for pad in (inner, outer)]  # as they cross to the JVM
    assert "_hmac_inner_pad" in texts[0]  # the plan reads the pads as a column ...
    for text in texts:
        assert not [n for n in needles if n.lower() in text.lower()]  # ... never as a literal


PHONE_TEXTS = {
    "C1|+33 6 12 34 56 78|MOC|0612345678|duration 120": "C1|<msisdn>|MOC|<msisdn>|duration 120",
    "06-12-34-56-78;x": "<msisdn>;x",
    "a,+33-6-12-34-56-78,b": "a,<msisdn>,b",
    "+33(0)6 12 34 56 78": "<msisdn>",
    "tel 06.12.34.56.78 ok": "tel <msisdn> ok",
    "0033612345678,2025-03-01,20250301103000": "<msisdn>,2025-03-01,<msisdn>",
    "id R0612345678 day 2025-03-01 n=1234567": "id R0612345678 day 2025-03-01 n=1234567",
    "+44 (0) 20 7946 0018": "<msisdn>",
}


@pytest.mark.parametrize(("text", "expected"), PHONE_TEXTS.items())
def test_phone_numbers_are_masked_in_free_text(spark, text, expected):
    got = spark.createDataFrame([(text,)], "t string").select(mask_digit_runs(F.col("t")).alias("m")).first().m
    assert got == expected == mask_text(text)
