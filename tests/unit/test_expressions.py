"""Unit tests for jobs.expressions: parsing, error locations, rendering and Spark compilation."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from jobs.expressions import (
    Binary,
    BoolOp,
    Compare,
    ExpressionError,
    InList,
    IsNull,
    Literal,
    Name,
    Node,
    Unary,
    check_names,
    compile_expression,
    name_column,
    names,
    parse,
    shown_values,
    to_text,
    validate,
)
from jobs.frames import ColumnMemo

SCORES = ["digital", "engagement", "loyalty", "revenue", "risk", "segment"]
STREAK = "templates/missions/streak.yaml"


def _error(text: str, allowed: list[str] | None = None, **where: object) -> ExpressionError:
    with pytest.raises(ExpressionError) as info:
        validate(text, allowed if allowed is not None else SCORES, **where)  # type: ignore[arg-type]
    return info.value


# ------------------------------------------------------------------------------------ parsing


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "1 + 2 * 3 == 7",
            Compare("==", Binary("+", Literal(1), Binary("*", Literal(2), Literal(3))), Literal(7)),
        ),
        (
            "not a > 1 and b < 2",
            BoolOp(
                "and",
                Unary("not", Compare(">", Name("a"), Literal(1))),
                Compare("<", Name("b"), Literal(2)),
            ),
        ),
        ("a or b and c", BoolOp("or", Name("a"), BoolOp("and", Name("b"), Name("c")))),
        ("a - b - c", Binary("-", Binary("-", Name("a"), Name("b")), Name("c"))),
        ("-a * b % 2", Binary("%", Binary("*", Unary("-", Name("a")), Name("b")), Literal(2))),
        ("- -1", Unary("-", Unary("-", Literal(1)))),
        ("(a + b) / 2", Binary("/", Binary("+", Name("a"), Name("b")), Literal(2))),
        ("not not a", Unary("not", Unary("not", Name("a")))),
        (
            "A > 1 AND NOT b IS NULL",
            BoolOp(
                "and",
                Compare(">", Name("A"), Literal(1)),
                Unary("not", IsNull(Name("b"))),
            ),
        ),
        ("x is not null", IsNull(Name("x"), negated=True)),
        (
            "x in ['a', \"b\", -1, 2.5, true,]",
            InList(Name("x"), (Literal("a"), Literal("b"), Literal(-1), Literal(2.5), Literal(True))),
        ),
        ("x Not In [1]", InList(Name("x"), (Literal(1),), negated=True)),
        ("a + 1 in [2]", InList(Binary("+", Name("a"), Literal(1)), (Literal(2),))),
    ],
)
def test_parse_builds_expected_ast(text: str, expected: Node) -> None:
    assert parse(text) == expected


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("70", 70),
        ("0.5", 0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2.5E-1", 0.25),
        ("'it\\'s'", "it's"),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'tab\\tnew\\nline\\\\'", "tab\tnew\nline\\"),
        ("'a\"b'", 'a"b'),
        ("TRUE", True),
        ("false", False),
        ("Null", None),
    ],
)
def test_literals(text: str, value: object) -> None:
    node = parse(text)
    assert isinstance(node, Literal)
    assert node.value == value and type(node.value) is type(value)


@pytest.mark.unit
def test_nodes_remember_their_position() -> None:
    node = parse("risk >= 70\n  and  digital < 40")
    assert isinstance(node, BoolOp)
    assert node.left.pos == (1, 1)
    assert node.right.pos == (2, 8)
    assert isinstance(node.right, Compare) and node.right.right.pos == (2, 18)


@pytest.mark.unit
def test_names_collects_every_reference() -> None:
    node = parse("risk >= 70 and (digital + risk) / 2 < loyalty or segment in ['a'] or x is null")
    assert names(node) == {"risk", "digital", "loyalty", "segment", "x"}
    assert names(parse("1 + 2")) == set()


@pytest.mark.unit
def test_validate_returns_the_ast() -> None:
    assert validate("risk >= 70", SCORES) == Compare(">=", Name("risk"), Literal(70))


@pytest.mark.unit
def test_validate_needs_no_spark_session() -> None:
    code = textwrap.dedent(
        """
        from pyspark import SparkContext
        from jobs.expressions import ExpressionError, validate
        validate("risk >= 70 and segment in ['gold']", ["risk", "segment"])
        try:
            validate("max(risk)", ["risk"])
        except ExpressionError:
            pass
        assert SparkContext._active_spark_context is None
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------------- rejection


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("max(risk, 1) > 2", 1, "function calls are not allowed: 'max('"),
        ("risk > 1 and abs (digital) < 2", 14, "function calls are not allowed: 'abs('"),
        ("risk.real > 1", 1, "attribute access is not allowed: 'risk.'"),
        ("risk.__class__", 1, "attribute access is not allowed: 'risk.'"),
        ("segment[0] == 'a'", 1, "indexing is not allowed: 'segment['"),
        ("risk = 70", 6, "'=' is not allowed; use '=='"),
        ("risk > 1; digital", 9, "unexpected character ';'"),
        ("`risk` > 1", 1, "backtick-quoted names are not allowed"),
        ("__import__('os')", 1, "names starting with '__' are not allowed: '__import__'"),
        ("risk > __x__", 8, "names starting with '__' are not allowed: '__x__'"),
        ("segment == 'gold", 12, "unterminated string"),
        ('segment == "gold', 12, "unterminated string"),
        ("segment == 'go\\ld'", 15, "invalid escape '\\\\l' in string"),
        ("risk > 1)", 9, "unexpected token ')'"),
        ("risk + )", 8, "unexpected token ')'"),
        ("risk digital", 6, "unexpected token 'digital'"),
        ("risk > 1 not", 10, "unexpected token 'not'"),
        ("(risk > 1", 10, "unexpected end of expression"),
        ("risk >", 7, "unexpected end of expression"),
        ("   ", 1, "empty expression"),
        ("1 < risk < 3", 10, "comparisons cannot be chained: '<'"),
        ("risk == 1 is null", 11, "comparisons cannot be chained: 'is'"),
        ("risk > 1 not in [1]", 10, "comparisons cannot be chained: 'not'"),
        ("risk && digital", 6, "'&' is not allowed; use 'and'"),
        ("risk || digital", 6, "'|' is not allowed; use 'or'"),
        ("!risk", 1, "'!' is not allowed; use 'not'"),
        ("segment in 'gold'", 12, "expected a list '[...]' after 'in'"),
        ("segment in []", 13, "a list needs at least one value"),
        ("segment in [1,,]", 15, "list items must be literals, found ','"),
        ("segment in [risk]", 13, "list items must be literals, found 'risk'"),
        ("segment in [null]", 13, "null is not allowed in a list; use 'is null'"),
        ("segment in ['a' 'b']", 17, "unexpected token \"'b'\""),
        ("[1, 2] == risk", 1, "list literals are only allowed after 'in'"),
        ("risk is 5", 9, "expected 'null' after 'is'"),
        ("risk > 1.2.3", 8, "malformed number '1.2.3'"),
        ("risk > 1e", 8, "malformed number '1e'"),
        ("risk > 99999999999999999999", 8, "integer out of range: '99999999999999999999'"),
        ("risk > 1e999", 8, "number out of range: '1e999'"),
        ("risk > 1 # comment", 10, "comments are not allowed: '#'"),
        (
            "rïsk > 1",
            2,
            "unexpected character 'ï' (U+00EF LATIN SMALL LETTER I WITH DIAERESIS): "
            "names, numbers and operators are plain ASCII",
        ),
    ],
)
def test_rejects_with_exact_position(text: str, column: int, message: str) -> None:
    error = _error(text)
    assert (error.line, error.column, error.message) == (1, column, message)
    assert error.source == "<expression>" and error.text == text


@pytest.mark.unit
def test_unknown_name_in_yaml_file_at_line_12_column_17() -> None:
    error = _error("riskk >= 70", source=STREAK, line=12, column=17)
    assert (error.source, error.line, error.column) == (STREAK, 12, 17)
    assert str(error) == (
        f"{STREAK}:12:17: unknown name 'riskk' "
        "(known: digital, engagement, loyalty, revenue, risk, segment)\n"
        "riskk >= 70\n"
        "^"
    )


@pytest.mark.unit
def test_syntax_error_inside_yaml_expression_offsets_column() -> None:
    error = _error("risk >= 70 and max(digital) < 40", source=STREAK, line=12, column=17)
    assert str(error) == (
        f"{STREAK}:12:32: function calls are not allowed: 'max('\nrisk >= 70 and max(digital) < 40\n               ^"
    )


@pytest.mark.unit
def test_error_on_second_line_of_multi_line_expression() -> None:
    text = "risk >= 70\n  and digitl < 40\n  or loyalty > 5"
    error = _error(text, source=STREAK, line=12, column=17)
    assert (error.line, error.column) == (13, 7)
    assert str(error).splitlines() == [
        f"{STREAK}:13:7: unknown name 'digitl' (known: digital, engagement, loyalty, revenue, risk, segment)",
        "  and digitl < 40",
        "      ^",
    ]


@pytest.mark.unit
def test_syntax_error_on_second_line() -> None:
    error = _error("risk >= 70 and\n\tsegment == 'gold", source=STREAK, line=3, column=9)
    assert (error.line, error.column, error.message) == (4, 13, "unterminated string")
    assert str(error).splitlines()[1:] == ["\tsegment == 'gold", "\t           ^"]


@pytest.mark.unit
def test_first_unknown_name_in_source_order_is_reported() -> None:
    error = _error("risk > 1 and (foo + bar) > 2")
    assert (error.column, error.message.split(" (")[0]) == (15, "unknown name 'foo'")


@pytest.mark.unit
def test_unknown_name_lists_at_most_twenty_known_names() -> None:
    allowed = [f"n{i:02d}" for i in range(25)]
    with pytest.raises(ExpressionError) as info:
        check_names(parse("zz > 1"), allowed, text="zz > 1")
    shown = ", ".join(allowed[:20])
    assert info.value.message == f"unknown name 'zz' (known: {shown}, ... (5 more))"
    with pytest.raises(ExpressionError, match=r"\(known: none\)"):
        validate("a", [])


@pytest.mark.unit
@pytest.mark.parametrize(
    "text",
    [
        "(" * 400 + "risk" + ")" * 400,
        "- " * 3000 + "risk",
        "not " * 200 + "risk",
        " + ".join(["risk"] * 200),
    ],
)
def test_rejects_pathological_nesting(text: str) -> None:
    error = _error(text)
    assert error.message == "expression is nested too deeply (more than 100 levels)"


@pytest.mark.unit
def test_accepts_reasonable_nesting() -> None:
    assert validate("(" * 40 + "risk" + ")" * 40 + " + 1", SCORES) == Binary("+", Name("risk"), Literal(1))


@pytest.mark.unit
def test_expression_error_is_a_value_error() -> None:
    assert issubclass(ExpressionError, ValueError)


# ------------------------------------------------------------------------------------- to_text


ROUND_TRIP = [
    "risk >= 70 and digital < 40",
    "1 + 2 * 3 == 7",
    "(1 + 2) * 3",
    "a - (b - c) - d",
    "a / (b * c) % 2",
    "not a > 1 and b < 2",
    "not (a > 1 and b < 2)",
    "(not a) == b",
    "(a or b) and (c or not d)",
    "a or b or c and d",
    "-(a + 1) * -2",
    "a - -1",
    "- -a",
    "x in ['a', 'b\\'c', \"d\\\\e\", 'f\\ng'] or x not in [-1, 2.5, 1e-05, 1e+20, true, false]",
    "y is null or (y + 1) is not null",
    "(a < b) == (c >= d)",
    "(a is null) != true",
    "segment == 'gold' and loyalty >= 0.5 or null is null",
]


@pytest.mark.unit
@pytest.mark.parametrize("text", ROUND_TRIP)
def test_to_text_round_trips(text: str) -> None:
    node = parse(text)
    rendered = to_text(node)
    again = parse(rendered)
    assert again == node and repr(again) == repr(node)
    assert to_text(again) == rendered


@pytest.mark.unit
def test_to_text_is_canonical() -> None:
    assert to_text(parse("(risk>=70)AND(digital<40)")) == "risk >= 70 and digital < 40"
    assert to_text(parse("((a + b)) + (c)")) == "a + b + c"
    assert to_text(parse('X  NOT IN ["a",1.0,]')) == "X not in ['a', 1.0]"


def _random_node(rng: random.Random, depth: int) -> Node:
    """A random AST of the shapes `parse` produces (negative literals only inside lists)."""
    if depth == 0 or rng.random() < 0.2:
        return rng.choice([Name(rng.choice("abc")), Literal(rng.choice([0, 7, 2.5, "s", True, None]))])
    kind = rng.randrange(7)
    if kind == 0:
        return Unary(rng.choice(["-", "not"]), _random_node(rng, depth - 1))
    if kind == 1:
        return Binary(rng.choice("+-*/%"), _random_node(rng, depth - 1), _random_node(rng, depth - 1))
    if kind == 2:
        op = rng.choice(["==", "!=", "<", "<=", ">", ">="])
        sides = [_random_node(rng, depth - 1), _random_node(rng, depth - 1)]
        sides = [Name("c") if side == Literal(None) else side for side in sides]  # '== null' is refused
        return Compare(op, *sides)
    if kind == 3:
        values = tuple(Literal(rng.choice([-3, 1, -0.5, "q'\\", False])) for _ in range(rng.randint(1, 3)))
        return InList(_random_node(rng, depth - 1), values, negated=rng.random() < 0.5)
    if kind == 4:
        return IsNull(_random_node(rng, depth - 1), negated=rng.random() < 0.5)
    return BoolOp(rng.choice(["and", "or"]), _random_node(rng, depth - 1), _random_node(rng, depth - 1))


@pytest.mark.unit
def test_to_text_round_trips_random_asts() -> None:
    rng = random.Random(20240601)
    for _ in range(500):
        node = _random_node(rng, 4)
        assert parse(to_text(node)) == node, to_text(node)


# --------------------------------------------------------------------------------- compilation

SCHEMA = StructType(
    [
        StructField("id", IntegerType(), False),
        StructField("a", IntegerType(), True),
        StructField("b", IntegerType(), True),
        StructField("x", StringType(), True),
        StructField("y", DoubleType(), True),
    ]
)
ROWS = [(1, 1, 1, "a", None), (2, 2, 4, "b", 1.5), (3, 3, 0, "c", -2.0), (4, None, 5, None, 0.0)]
T, N = True, None


@pytest.fixture(scope="module")
def frame(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(ROWS, SCHEMA)


def _evaluate(frame: DataFrame, text: str, allowed: object = ("a", "b", "x", "y")) -> list[object]:
    column = compile_expression(text, allowed)  # type: ignore[arg-type]
    return [row.v for row in frame.select("id", column.alias("v")).orderBy("id").collect()]


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3 == 7", [T, T, T, T]),
        ("(1 + 2) * 3", [9, 9, 9, 9]),
        ("not a > 1 and b < 2", [T, False, False, False]),
        ("not a > 1 or b < 2", [T, False, T, N]),
        ("not (a > 1 and b < 2)", [T, T, False, T]),
        ("x in ['a', 'b']", [T, T, False, N]),
        ("x not in ['a', 'b']", [False, False, T, N]),
        ("b in [0, 5]", [False, False, T, T]),
        ("y is null", [T, False, False, False]),
        ("y is not null", [False, T, T, T]),
        ("a / b", [1.0, 0.5, N, N]),
        ("a % b", [0, 2, N, N]),
        ("1 / 0", [N, N, N, N]),
        ("7 % 0 is null", [T, T, T, T]),
        ("x >= 'b'", [False, T, T, N]),
        ("x == \"c\" or x == 'a'", [T, False, T, N]),
        ("y * 2 > 0.5", [N, T, False, False]),
        ("1e3 + 0.5", [1000.5] * 4),
        ("-a + 10", [9, 8, 7, N]),
        ("b * -2", [-2, -8, 0, -10]),
        ("a - -1", [2, 3, 4, N]),
        ("-(a + 1) * 2", [-4, -6, -8, N]),
        ("y < -1.5", [N, False, T, False]),
        ("a == b or x == 'c'", [T, False, T, N]),
        ("a != 2", [T, False, T, N]),
        ("a > 1 AND x IN ['c']", [False, False, T, N]),
        ("true and not false", [T, T, T, T]),
        ("null is null", [T, T, T, T]),
        # integer literals are 64-bit: 2 * 1500000000 is no int overflow, nor is b * 1500000000
        ("2 * 1500000000 == 3000000000", [T, T, T, T]),
        ("b * 1500000000", [1500000000, 6000000000, 0, 7500000000]),
        ("9223372036854775807 + a", [N, N, N, N]),  # past 2^63: null, not an error
    ],
)
def test_compiled_values(frame: DataFrame, text: str, expected: list[object]) -> None:
    assert _evaluate(frame, text) == expected


@pytest.mark.unit
def test_mapping_resolves_names_to_columns(frame: DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_sql_text(*_: object) -> None:
        raise AssertionError("F.expr must not be used")

    monkeypatch.setattr(F, "expr", no_sql_text)
    allowed = {"score": F.col("a") * 35, "label": F.upper(F.col("x"))}
    assert _evaluate(frame, "score >= 70 and label != 'C'", allowed) == [False, T, False, N]


@pytest.mark.unit
def test_shown_values_are_built_once_per_name_and_column(frame: DataFrame) -> None:
    memo = ColumnMemo()
    a, doubled = F.col("a"), F.col("a") * 2
    first = shown_values(parse("a > 1 and y < 0"), {"a": a, "y": F.col("y")}, ["y"], memo)
    again = shown_values(parse("a > 2"), {"a": a}, (), memo)
    other = shown_values(parse("a > 2"), {"a": doubled}, (), memo)  # same name, another column
    assert again[0] is first[0] and other[0] is not first[0]
    rows = frame.select("id", F.concat_ws(", ", *first).alias("v"), other[0].alias("w")).orderBy("id").collect()
    assert [(r.v, r.w) for r in rows] == [
        ("a=1, y=null", "a=2"),
        ("a=2, y=1.5", "a=4"),
        ("a=3, y=-2.0", "a=6"),
        ("a=null, y=0.0", "a=null"),
    ]


@pytest.mark.unit
def test_name_columns_widen_narrow_integers_only(spark: SparkSession) -> None:
    row = (70000, 70000, Decimal("70000"), 1.5, "7")
    df = spark.createDataFrame([row], "i int, l long, d decimal(12,2), y double, s string")
    names = {f.name: name_column(f.name, f.dataType) for f in df.schema} | {"c": name_column("i", "integer")}
    product = compile_expression("i * c", names)
    typed = df.select(product.alias("p"), *[names[n].alias(n) for n in ("i", "l", "d", "y", "s")])
    assert typed.first() == (4900000000, 70000, 70000, Decimal("70000.00"), 1.5, "7")
    assert [f.dataType.simpleString() for f in typed.schema] == [
        "bigint",
        "bigint",
        "bigint",
        "decimal(12,2)",
        "double",
        "string",
    ]


@pytest.mark.unit
def test_a_memo_keeps_literals_of_different_types_apart(spark: SparkSession) -> None:
    memo = ColumnMemo()
    one, one_again = memo.lit(1), memo.lit(1)
    values = [memo.lit(1), memo.lit(1.0), memo.lit(True), memo.lit("1")]
    row = spark.range(1).select(*[v.alias(f"v{i}") for i, v in enumerate(values)]).first()
    assert one is one_again
    assert [type(row[f"v{i}"]) for i in range(4)] == [int, float, bool, str]


@pytest.mark.unit
def test_compile_rejects_unknown_names_before_spark() -> None:
    with pytest.raises(ExpressionError, match=r"^rules.yaml:2:5: unknown name 'z' \(known: a, b\)"):
        compile_expression("a > z", iter(["b", "a"]), source="rules.yaml", line=2, column=1)


@pytest.mark.unit
def test_deep_parentheses_are_rejected_even_with_a_raised_recursion_limit() -> None:
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # some libraries raise it at import
    try:
        assert (
            _error("(" * 400 + "risk" + ")" * 400).message == "expression is nested too deeply (more than 100 levels)"
        )
    finally:
        sys.setrecursionlimit(limit)
