"""Compiling a checked rule to a Spark ``Column`` built only from pyspark functions and
operators (never ``eval``, ``F.expr`` or SQL text), with null instead of an error on overflow
or division by zero, plus the ``name=value`` columns that show why a rule fired. Integer
arithmetic is 64-bit: integer literals are ``long``, and ``name_column`` widens a narrower
integer column."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping

from pyspark.sql import Column
from pyspark.sql import functions as F

from jobs.expressions.inspection import names
from jobs.expressions.nodes import COMPARE_OPS, Binary, BoolOp, Compare, InList, IsNull, Literal, Name, Node, Unary
from jobs.expressions.typecheck import type_text, validate
from jobs.frames import ColumnMemo

_NARROW_INTEGER = re.compile(r"^(byte|tinyint|short|smallint|int|integer)$")
_BinaryFn = Callable[[Column, Column], Column]
# try_divide / try_mod give null instead of an ANSI division-by-zero error
# try_add / try_subtract / try_multiply give null instead of an ANSI overflow error
_ARITHMETIC: dict[str, _BinaryFn] = {
    "+": F.try_add,
    "-": F.try_subtract,
    "*": F.try_multiply,
    "/": F.try_divide,
    "%": F.try_mod,
}
_COMPARISONS: dict[str, _BinaryFn] = dict(
    zip(
        COMPARE_OPS,
        (operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge),
        strict=True,
    )
)


def compile_node(node: Node, resolve: Callable[[str], Column]) -> Column:
    """Build the Spark column for ``node``; ``resolve`` maps a name to its column."""
    match node:
        case Literal(value=int() as value) if not isinstance(value, bool):
            return F.lit(value).cast("long")  # 2 * 1500000000 is 3000000000, not an int overflow
        case Literal(value=value):
            return F.lit(value)
        case Name(name=name):
            return resolve(name)
        case Unary(op="-", operand=operand):
            return F.try_subtract(F.lit(0), compile_node(operand, resolve))
        case Unary(op="not", operand=operand):
            return ~compile_node(operand, resolve)
        case Binary(op=op, left=left, right=right):
            return _ARITHMETIC[op](compile_node(left, resolve), compile_node(right, resolve))
        case Compare(op=op, left=left, right=right):
            return _COMPARISONS[op](compile_node(left, resolve), compile_node(right, resolve))
        case InList(operand=operand, values=values, negated=negated):
            col = compile_node(operand, resolve).isin(*(v.value for v in values))
            return ~col if negated else col
        case IsNull(operand=operand, negated=negated):
            col = compile_node(operand, resolve)
            return col.isNotNull() if negated else col.isNull()
        case BoolOp(op=op, left=left, right=right):
            a, b = compile_node(left, resolve), compile_node(right, resolve)
            return a & b if op == "and" else a | b
    raise TypeError(f"not an expression node: {node!r}")


def name_column(name: str, type_name: object) -> Column:
    """The column a rule reads for `name` of contract or Spark type `type_name`: an integer
    narrower than 64 bits is widened, so `dropped_calls * 1000000` overflows (to null) past
    2^63 rather than 2^31."""
    return F.col(name).cast("long") if _NARROW_INTEGER.match(type_text(type_name)) else F.col(name)


def shown_values(
    node: Node, columns: Mapping[str, Column], numeric: Iterable[str] = (), memo: ColumnMemo | None = None
) -> list[Column]:
    """`name=value` for every name the expression reads (numbers rounded to 2 places), to show
    why a rule fired. With a `memo`, each name's value over the same column is built once."""
    memo = memo or ColumnMemo()
    numeric = set(numeric)

    def shown(name: str) -> Column:
        value = F.round(columns[name], 2) if name in numeric else columns[name]
        return F.format_string(f"{name}=%s", F.coalesce(value.cast("string"), memo.lit("null")))

    return [
        memo.get(("shown", n, n in numeric, id(columns[n])), lambda n=n: shown(n), pin=columns[n])
        for n in sorted(names(node))
    ]


def compile_expression(
    text: str,
    allowed: Mapping[str, Column] | Iterable[str],
    *,
    source: str = "<expression>",
    line: int = 1,
    column: int = 1,
    types: Mapping[str, str] | None = None,
    expect: str | None = None,
) -> Column:
    """Parse, check and compile ``text``; a Mapping gives each name's column, else ``F.col``."""
    resolve = allowed.__getitem__ if isinstance(allowed, Mapping) else F.col
    allowed_names = list(allowed)
    node = validate(text, allowed_names, source=source, line=line, column=column, types=types, expect=expect)
    return compile_node(node, resolve)
