"""Abuse corpus for the rule language: every case is rejected with a position or evaluated
correctly, large inputs are answered in linear time, and types are checked before Spark runs."""

from __future__ import annotations

import time

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from jobs.expressions import (
    BOOLEAN,
    MAX_DEPTH,
    NUMBER,
    STRING,
    ExpressionError,
    Literal,
    Name,
    compile_expression,
    validate,
    value_type,
)

TYPES = {"risk": NUMBER, "digital": NUMBER, "segment": STRING, "txn_type": STRING, "is_new": BOOLEAN}
MB = 1_000_000


def _error(text: str, *, expect: str | None = None) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        validate(text, TYPES, types=TYPES, expect=expect)
    return info.value


# (text, line, column, message start): SQL, Python, comments, look-alike characters
REJECTED = [
    # SQL fragments
    ("risk > 1 -- 2", 1, 10, "'--' is ambiguous: comments are not allowed"),
    ("risk > 1 --", 1, 10, "'--' is ambiguous"),
    ("risk > 1; DROP TABLE events", 1, 9, "unexpected character ';'"),
    ("segment == '' OR '1'='1'", 1, 21, "'=' is not allowed; use '=='"),
    ("risk > 1 /* note */", 1, 10, "comments are not allowed: '/*'"),
    ("risk > 1 # note", 1, 10, "comments are not allowed: '#'"),
    ("risk > 1 UNION SELECT msisdn FROM crm", 1, 10, "unexpected token 'UNION'"),
    ("segment LIKE 'gold%'", 1, 9, "unexpected token 'LIKE'"),
    ("CAST(risk AS string) > 1", 1, 1, "function calls are not allowed: 'CAST('"),
    ("risk::int > 1", 1, 5, "unexpected character ':'"),
    ("segment == 'a' || 'b'", 1, 16, "'|' is not allowed; use 'or'"),
    ("risk // 2 > 1", 1, 6, "'//' is not an operator; use '/'"),
    ("risk ** 2 > 1", 1, 6, "'**' is not an operator"),
    ("segment == null", 1, 9, "'== null' is never true; use 'is null'"),
    ("null != segment", 1, 6, "'!= null' is never true; use 'is not null'"),
    ("risk = null", 1, 6, "'=' is not allowed; use '=='"),
    ("risk > 1 and risk between 1 and 2", 1, 19, "unexpected token 'between'"),
    # Python: dunders, calls, attribute access, indexing
    ("__class__ == 1", 1, 1, "names starting with '__' are not allowed: '__class__'"),
    ("risk.__class__", 1, 1, "attribute access is not allowed: 'risk.'"),
    ("().__class__", 1, 2, "unexpected token ')'"),
    ("[].__class__", 1, 1, "list literals are only allowed after 'in'"),
    ("__import__('os').system('id')", 1, 1, "names starting with '__' are not allowed"),
    ("eval('1') == 1", 1, 1, "function calls are not allowed: 'eval('"),
    ("open('/etc/passwd') is null", 1, 1, "function calls are not allowed: 'open('"),
    ("F.expr('1') == 1", 1, 1, "attribute access is not allowed: 'F.'"),
    ("segment[0] == 'g'", 1, 1, "indexing is not allowed: 'segment['"),
    ("lambda: 1", 1, 7, "unexpected character ':'"),
    ("{risk} > 1", 1, 1, "unexpected character '{'"),
    ("risk > 1 if true else 0", 1, 10, "unexpected token 'if'"),
    ("f'{risk}' == 'x'", 1, 2, "unexpected token"),
    # look-alike and invisible characters
    ("r\u0456sk > 1", 1, 2, "unexpected character 'і' (U+0456 CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I)"),
    ("risk \uff1e 1", 1, 6, "unexpected character '＞' (U+FF1E FULLWIDTH GREATER-THAN SIGN)"),
    ("risk >\u00a01", 1, 7, "unexpected character '\\xa0' (U+00A0 NO-BREAK SPACE)"),
    ("risk\u200b > 1", 1, 5, "unexpected character '\\u200b' (U+200B ZERO WIDTH SPACE)"),
    ("risk > 1\u2028or digital > 1", 1, 9, "unexpected character '\\u2028' (U+2028 LINE SEPARATOR)"),
    ("risk > 1 \u202eor digital > 1", 1, 10, "unexpected character '\\u202e'"),
    ("risk > \u0661\u0662", 1, 8, "unexpected character '١' (U+0661 ARABIC-INDIC DIGIT ONE)"),
    ("risk > \uff11", 1, 8, "unexpected character '１' (U+FF11 FULLWIDTH DIGIT ONE)"),
    ("risk \u037e digital", 1, 6, "unexpected character '\u037e' (U+037E GREEK QUESTION MARK)"),
    ("segment == \u2018gold\u2019", 1, 12, "unexpected character '‘' (U+2018 LEFT SINGLE QUOTATION MARK)"),
    # literals
    ("risk > " + "9" * 5000, 1, 8, "integer out of range: '" + "9" * 40 + "... (5,000 characters)'"),
    ("risk > 9223372036854775808", 1, 8, "integer out of range: '9223372036854775808'"),
    ("risk > 1e400", 1, 8, "number out of range: '1e400'"),
    ("risk > 0x10", 1, 8, "malformed number '0x10'"),
    ("risk > 1_000", 1, 8, "malformed number '1_000'"),
    ("segment == 'gold\\x41'", 1, 17, "invalid escape '\\\\x' in string"),
    ("segment == 'gold\n'", 1, 12, "unterminated string"),
    # static types
    ("segment + 1 > 2", 1, 9, "'+' needs numbers (strings cannot be joined), but 'segment' is a string"),
    ("risk > 'abc'", 1, 6, "cannot compare a number with a string: 'risk > 'abc''"),
    ("'wallet_' + txn_type == 'wallet_x'", 1, 11, "'+' needs numbers (strings cannot be joined), but 'wallet_' is"),
    ("risk and digital > 1", 1, 6, "'and' needs conditions, but 'risk' is a number"),
    ("not segment", 1, 1, "'not' needs a condition, but 'segment' is a string"),
    ("-segment < 1", 1, 1, "'-' needs a number, but 'segment' is a string"),
    ("segment in ['gold', 1]", 1, 21, "list value 1 is a number, but 'segment' is a string"),
    ("risk in [1, 'x']", 1, 13, "list value 'x' is a string, but 'risk' is a number"),
    ("is_new > false", 1, 8, "cannot compare a condition (true/false) with a condition (true/false)"),
    ("(risk + 1) * segment > 0", 1, 12, "'*' needs numbers, but 'segment' is a string"),
    ("(segment == 'a') + 1 > 0", 1, 18, "'+' needs numbers, but 'segment == 'a'' is a condition"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("text", "line", "column", "message"), REJECTED, ids=range(len(REJECTED)))
def test_abuse_is_rejected_with_a_position(text: str, line: int, column: int, message: str) -> None:
    error = _error(text)
    assert (error.line, error.column) == (line, column), error.message
    assert error.message.startswith(message), error.message
    assert len(str(error)) < 600  # huge inputs are cut in the message


@pytest.mark.unit
def test_result_type_is_checked_against_the_use() -> None:
    error = _error("risk + 1", expect=BOOLEAN)
    assert error.message == "must be a condition (true/false), but this expression gives a number"
    error = _error("segment", expect=NUMBER)
    assert error.message == "must be a number, but this expression gives a string"
    assert validate("risk / 60.0", TYPES, types=TYPES, expect=NUMBER) is not None


@pytest.mark.unit
def test_types_locate_errors_in_the_yaml_file() -> None:
    with pytest.raises(ExpressionError) as info:
        validate("risk > 1 and\n  segment + 1 > 2", TYPES, types=TYPES, source="conf/segments.yaml", line=7, column=11)
    assert (info.value.source, info.value.line, info.value.column) == ("conf/segments.yaml", 8, 11)
    assert str(info.value).startswith("conf/segments.yaml:8:11: '+' needs numbers")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("spark_type", "expected"),
    [
        ("long", NUMBER),
        ("decimal(18,4)", NUMBER),
        ("double", NUMBER),
        ("int", NUMBER),
        ("string", STRING),
        ("boolean", BOOLEAN),
        ("date", "date"),
        ("timestamp", "timestamp"),
        ("map<string,string>", "any"),
        (DoubleType(), NUMBER),
    ],
)
def test_value_type_of_contract_and_spark_types(spark_type: object, expected: str) -> None:
    assert value_type(spark_type) == expected


@pytest.mark.unit
def test_dates_compare_with_dates_and_iso_text_only() -> None:
    types = {"activation_date": "date", "ds": "date", "n": NUMBER}
    validate("activation_date == ds and activation_date >= '2025-01-01'", types, types=types)
    with pytest.raises(ExpressionError, match="cannot compare a date with a number"):
        validate("activation_date > n", types, types=types)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("activation_date >= '2025-02-30'", 20),  # no such day: Spark's cast fails the night
        ("activation_date >= '2025-3-1'", 20),
        ("'yesterday' < activation_date", 1),  # Spark reads the clock for these words
        ("activation_date in ['2025-03-01', 'today']", 35),
        ("seen_at > '2025-03-01 25:00:00'", 11),
    ],
)
def test_text_compared_with_a_date_must_be_an_iso_date(text: str, column: int) -> None:
    types = {"activation_date": "date", "seen_at": "timestamp"}
    with pytest.raises(ExpressionError, match="is not a date in ISO form") as info:
        validate(text, types, types=types)
    assert info.value.column == column
    for good in ("'2025-03-01'", "'2025-03-01 10:15:00'", "'2025-03-01T10:15:00.5Z'"):
        validate(f"activation_date < {good} and seen_at in [{good}]", types, types=types)


# --------------------------------------------------------------------------------- nesting


def _nested(kind: str, levels: int) -> str:
    """An expression with exactly ``levels`` levels of the given kind."""
    return {
        "parens": "(" * levels + "risk" + ")" * levels,
        "not": "not " * levels + "is_new",
        "minus": "- " * levels + "risk",
        "chain": " + ".join(["risk"] * (levels + 1)),
    }[kind]


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["parens", "not", "minus", "chain"])
def test_depth_limit_is_exactly_the_documented_one(kind: str) -> None:
    assert validate(_nested(kind, MAX_DEPTH), TYPES)  # the limit itself is accepted
    error = _error(_nested(kind, MAX_DEPTH + 1))
    assert error.message == f"expression is nested too deeply (more than {MAX_DEPTH} levels)"


@pytest.mark.unit
def test_too_deep_parentheses_are_reported_at_the_first_one_beyond_the_limit() -> None:
    assert _error(_nested("parens", MAX_DEPTH + 1)).column == MAX_DEPTH + 1


@pytest.mark.unit
def test_depth_limit_does_not_depend_on_the_interpreter_stack() -> None:
    def deep(n: int) -> object:  # called from 300 frames down, as from a deep caller
        return deep(n - 1) if n else validate(_nested("parens", MAX_DEPTH), TYPES)

    assert deep(300) is not None


@pytest.mark.unit
def test_long_operator_chains_are_limited_too() -> None:
    assert validate(" + ".join(["risk"] * (MAX_DEPTH - 1)) + " > 1", TYPES)
    assert _error(_nested("chain", MAX_DEPTH + 5)).message.startswith("expression is nested too deeply")


# ------------------------------------------------------------------------- 1 MB and linearity


def _answer(text: str) -> str:
    try:
        validate(text, TYPES, types=TYPES)
    except ExpressionError as exc:
        assert len(str(exc)) < 600
        return exc.message
    return "ok"


LARGE = {
    "list": lambda n: "segment in [" + ", ".join(f"'s{i}'" for i in range(n // 8)) + "]",
    "string": lambda n: "segment == '" + "x" * n + "'",
    "name": lambda n: "r" * n + " > 1",
    "digits": lambda n: "risk > " + "7" * n,
    "parens": lambda n: "(" * n,
    "chain": lambda n: " + ".join(["risk"] * (n // 7)) + " > 1",
    "whitespace": lambda n: " \n\t" * (n // 3),
    "newlines": lambda n: "risk > 1 or\n" * (n // 12) + "risk > 2",
}


@pytest.mark.unit
@pytest.mark.parametrize("kind", sorted(LARGE))
def test_one_megabyte_inputs_are_answered(kind: str) -> None:
    expected = {
        "list": "ok",
        "string": "ok",
        "name": "unknown name 'rrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrrr... (1,000,000 characters)'",
        "digits": "integer out of range",
        "parens": "expression is nested too deeply",
        "chain": "expression is nested too deeply",
        "whitespace": "empty expression",
        "newlines": "expression is nested too deeply",
    }[kind]
    assert _answer(LARGE[kind](MB)).startswith(expected)


def _seconds(text: str) -> float:
    """Best CPU time of three answers: other processes on the machine do not count."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        _answer(text)
        best = min(best, time.process_time() - started)
    return best


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["list", "string", "newlines", "chain"])
def test_cost_grows_linearly_with_the_input(kind: str) -> None:
    small, large = _seconds(LARGE[kind](MB // 10)), _seconds(LARGE[kind](MB))
    # ten times the text: about ten times the time when linear, a hundred when quadratic; answers
    # faster than a millisecond count as one (timer and allocator noise)
    assert large / max(small, 1e-3) < 30, (small, large)


# ----------------------------------------------------------------------- evaluated correctly

SCHEMA = StructType(
    [
        StructField("id", IntegerType(), False),
        StructField("segment", StringType(), True),
        StructField("risk", DoubleType(), True),
    ]
)
ROWS = [
    (1, "; DROP TABLE events; --", 1.0),
    (2, "it's", 3.0),
    (3, "__class__", None),
    (4, "gold", 2.0),
    (5, "x" * 100_000, 0.5),
]


@pytest.fixture(scope="module")
def frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, SCHEMA)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("segment == '; DROP TABLE events; --'", [True, False, False, False, False]),
        ("segment == 'it\\'s' or segment == \"__class__\"", [False, True, True, False, False]),
        ("segment in ['__class__', 'gold', '1=1']", [False, False, True, True, False]),
        ("risk - - 1 > 2.5", [False, True, None, True, False]),
        ("risk - -1 > 2.5", [False, True, None, True, False]),
        ("segment == '" + "x" * 100_000 + "'", [False, False, False, False, True]),
        ("risk > 9223372036854775807 or risk is null", [False, False, True, False, False]),
    ],
)
def test_hostile_looking_but_valid_rules_evaluate_correctly(
    frame: DataFrame, text: str, expected: list[object]
) -> None:
    column = compile_expression(text, ["segment", "risk"], types={"segment": STRING, "risk": NUMBER}, expect=BOOLEAN)
    assert [r.v for r in frame.select("id", column.alias("v")).orderBy("id").collect()] == expected


@pytest.mark.unit
def test_spaced_double_minus_is_still_a_double_minus() -> None:
    from jobs.expressions import Compare, Unary

    assert validate("risk > - -1", TYPES) == Compare(">", Name("risk"), Unary("-", Unary("-", Literal(1))))
