"""Types of the rule language: the value types a name can have (number, string, condition,
date, timestamp), their mapping from contract and Spark types, the inference that refuses an
operation whose operands cannot work at run time, and ``validate``, which parses and checks
names and types without a SparkSession."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import NoReturn

from jobs.expressions.errors import ExpressionError, Pos, short
from jobs.expressions.inspection import check_names
from jobs.expressions.nodes import Binary, BoolOp, Compare, InList, IsNull, Literal, Name, Node, Unary, Value
from jobs.expressions.parser import parse
from jobs.expressions.text import literal_text, to_text
from jobs.tables import PROFILE_NAMES

NUMBER, STRING, BOOLEAN, DATE, TIMESTAMP, NULL, ANY = (
    "number",
    "string",
    "boolean",
    "date",
    "timestamp",
    "null",
    "any",
)
_NUMERIC_TYPES = re.compile(r"^(byte|tinyint|short|smallint|int|integer|long|bigint|float|real|double|decimal.*)$")
_ARTICLE = {NUMBER: "a number", STRING: "a string", BOOLEAN: "a condition (true/false)", DATE: "a date"}
_ARTICLE |= {TIMESTAMP: "a timestamp", NULL: "null"}
_TEMPORAL = (DATE, TIMESTAMP)
# the ISO text a date or timestamp compares with: Spark casts it, and would fail the night on
# any other text ('2025-02-30') or read the clock for its special words ('today', 'yesterday')
_ISO_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?)?$")


def type_text(type_name: object) -> str:
    """A contract/Spark type (a name like 'long' or a DataType) as its lower-case name."""
    simple = getattr(type_name, "simpleString", None)
    return (simple() if callable(simple) else str(type_name)).strip().lower()


def value_type(type_name: object) -> str:
    """The expression type of a contract/Spark type (a name like 'long' or a DataType)."""
    name = type_text(type_name)
    if _NUMERIC_TYPES.match(name):
        return NUMBER
    return {"string": STRING, "boolean": BOOLEAN, "date": DATE, "timestamp": TIMESTAMP}.get(name, ANY)


def _literal_type(value: Value) -> str:
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOLEAN
    return STRING if isinstance(value, str) else NUMBER


def _comparable(a: str, b: str, op: str) -> bool:
    if ANY in (a, b) or NULL in (a, b):
        return True
    if a == b:
        return a != BOOLEAN or op in ("==", "!=")
    temporal = {DATE, TIMESTAMP}
    # a date or timestamp compares with another one or with its ISO text ('2025-03-01')
    return (a in temporal and b in temporal | {STRING}) or (b in temporal and a in temporal | {STRING})


def _iso_text(text: str) -> bool:
    """Whether `text` is a valid ISO date or date and time (a real day and time of day)."""
    if not _ISO_TEXT.match(text):
        return False
    try:
        if len(text) == 10:
            date.fromisoformat(text)
        else:
            datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_types(
    node: Node,
    types: Mapping[str, str],
    *,
    text: str,
    expect: str | None = None,
    source: str = "<expression>",
    line: int = 1,
    column: int = 1,
) -> str:
    """Infer the type of ``node`` from the types of its names (see ``value_type``; names not in
    ``types`` are ``any``) and raise ``ExpressionError`` at the first operator whose operands
    cannot work at run time, or when the result is not ``expect``. Returns the type."""

    def fail(message: str, pos: Pos) -> NoReturn:
        raise ExpressionError(message, text, pos, source=source, line=line, column=column)

    def describe(child: Node, kind: str) -> str:
        if isinstance(child, Name):
            return f"{short(child.name)!r} is {_ARTICLE.get(kind, kind)}"
        if isinstance(child, Literal):
            return f"{short(literal_text(child.value))} is {_ARTICLE.get(kind, kind)}"
        return f"'{short(to_text(child))}' is {_ARTICLE.get(kind, kind)}"

    def need(child: Node, kind: str, wanted: tuple[str, ...], what: str, at: Pos) -> None:
        if kind not in (*wanted, ANY, NULL):
            fail(f"{what}, but {describe(child, kind)}", at)

    def need_iso(literal: Node, kind: str) -> None:
        """A text literal compared with a date or timestamp must be ISO text."""
        text = literal.value if isinstance(literal, Literal) else None
        if kind in _TEMPORAL and isinstance(text, str) and not _iso_text(text):
            fail(
                f"{short(literal_text(text))} is not a date in ISO form to compare with "
                f"{_ARTICLE[kind]} (YYYY-MM-DD or YYYY-MM-DD HH:MM:SS)",
                literal.pos,
            )

    def infer(current: Node) -> str:
        match current:
            case Literal(value=value):
                return _literal_type(value)
            case Name(name=name):
                return types.get(name, ANY)
            case Unary(op="-", operand=operand):
                need(operand, infer(operand), (NUMBER,), "'-' needs a number", current.at)
                return NUMBER
            case Unary(operand=operand):
                need(operand, infer(operand), (BOOLEAN,), "'not' needs a condition", current.at)
                return BOOLEAN
            case Binary(op=op, left=left, right=right):
                lt, rt = infer(left), infer(right)
                joined = op == "+" and STRING in (lt, rt)
                what = f"'{op}' needs numbers" + (" (strings cannot be joined)" if joined else "")
                need(left, lt, (NUMBER,), what, current.at)
                need(right, rt, (NUMBER,), what, current.at)
                return NUMBER
            case Compare(op=op, left=left, right=right):
                lt, rt = infer(left), infer(right)
                if not _comparable(lt, rt, op):
                    fail(
                        f"cannot compare {_ARTICLE.get(lt, lt)} with {_ARTICLE.get(rt, rt)}: "
                        f"'{short(to_text(current))}'",
                        current.at,
                    )
                need_iso(right, lt)
                need_iso(left, rt)
                return BOOLEAN
            case InList(operand=operand, values=values):
                kind = infer(operand)
                for value in values:
                    vt = _literal_type(value.value)
                    if not _comparable(kind, vt, "=="):
                        fail(
                            f"list value {short(literal_text(value.value))} is {_ARTICLE.get(vt, vt)}, "
                            f"but {describe(operand, kind)}",
                            value.pos,
                        )
                    need_iso(value, kind)
                return BOOLEAN
            case IsNull(operand=operand):
                infer(operand)
                return BOOLEAN
            case BoolOp(op=op, left=left, right=right):
                need(left, infer(left), (BOOLEAN,), f"'{op}' needs conditions", current.at)
                need(right, infer(right), (BOOLEAN,), f"'{op}' needs conditions", current.at)
                return BOOLEAN
        raise TypeError(f"not an expression node: {current!r}")

    result = infer(node)
    if expect is not None and result not in (expect, ANY, NULL):
        fail(
            f"must be {_ARTICLE.get(expect, expect)}, but this expression gives {_ARTICLE.get(result, result)}", (1, 1)
        )
    return result


# Names of subscriber attributes that hold text; every other score, feature, balance or lifetime
# metric a rule can name is a number.
TEXT_NAMES = frozenset({*PROFILE_NAMES, "segment", "nbo_offer_id", "tier"})


def subject_types(names: Iterable[str]) -> dict[str, str]:
    """Types of the names a segment, eligibility, badge, tier or audience rule may use."""
    return {n: STRING if n in TEXT_NAMES else NUMBER for n in names}


def validate(
    text: str,
    allowed: Iterable[str],
    *,
    source: str = "<expression>",
    line: int = 1,
    column: int = 1,
    types: Mapping[str, str] | None = None,
    expect: str | None = None,
) -> Node:
    """Parse, check names and (with ``types``/``expect``) types; needs no SparkSession."""
    node = parse(text, source=source, line=line, column=column)
    check_names(node, allowed, text=text, source=source, line=line, column=column)
    if types is not None or expect is not None:
        check_types(node, types or {}, text=text, expect=expect, source=source, line=line, column=column)
    return node
