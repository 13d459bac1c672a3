"""Rendering a syntax tree back to canonical rule text with only the parentheses it needs,
used in messages and in the rule columns of output tables."""

from __future__ import annotations

from jobs.expressions.nodes import Binary, BoolOp, Compare, InList, IsNull, Literal, Name, Node, Unary, Value
from jobs.expressions.parser import ESCAPES

_UNESCAPES = {v: "\\" + k for k, v in ESCAPES.items() if k != '"'}

_PRECEDENCE = {"or": 1, "and": 2, "not": 3, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_COMPARISON, _UNARY_MINUS, _ATOM = 4, 7, 8


def _precedence(node: Node) -> int:
    if isinstance(node, (Compare, InList, IsNull)):
        return _COMPARISON
    if isinstance(node, Unary):
        return _PRECEDENCE["not"] if node.op == "not" else _UNARY_MINUS
    if isinstance(node, (Binary, BoolOp)):
        return _PRECEDENCE[node.op]
    return _ATOM


def literal_text(value: Value) -> str:
    """Source text of a literal value, strings quoted and escaped so that the parser reads them back."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, str):
        return "'" + "".join(_UNESCAPES.get(c, c) for c in value) + "'"
    return repr(value)


def to_text(node: Node) -> str:
    """Canonical source text for ``node`` with only the parentheses it needs."""

    def sub(child: Node, minimum: int) -> str:
        rendered = to_text(child)
        return f"({rendered})" if _precedence(child) < minimum else rendered

    prec = _precedence(node)
    match node:
        case Literal(value=value):
            return literal_text(value)
        case Name(name=name):
            return name
        case Unary(op="not", operand=operand):
            return f"not {sub(operand, prec)}"
        case Unary(op=op, operand=operand):
            rendered = sub(operand, prec)
            return f"- {rendered}" if rendered.startswith("-") else f"-{rendered}"  # never '--'

        case Binary(op=op, left=left, right=right) | BoolOp(op=op, left=left, right=right):
            return f"{sub(left, prec)} {op} {sub(right, prec + 1)}"
        case Compare(op=op, left=left, right=right):
            return f"{sub(left, prec + 1)} {op} {sub(right, prec + 1)}"
        case InList(operand=operand, values=values, negated=negated):
            items = ", ".join(literal_text(v.value) for v in values)
            return f"{sub(operand, prec + 1)} {'not in' if negated else 'in'} [{items}]"
        case IsNull(operand=operand, negated=negated):
            return f"{sub(operand, prec + 1)} is {'not null' if negated else 'null'}"
    raise TypeError(f"not an expression node: {node!r}")
