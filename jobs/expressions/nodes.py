"""The syntax tree of the rule language: one frozen dataclass per construct (literal, name,
unary and binary operations, comparisons, ``in`` lists, ``is null``, ``and``/``or``), each
remembering where it starts in the text for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.expressions.errors import Pos

Value = bool | int | float | str | None

COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class Node:
    """Base of all AST nodes; ``pos`` is where the node starts and ``op_pos`` where its
    operator is (for error messages); both are ignored by ``==``."""

    pos: Pos = field(default=(1, 1), compare=False, repr=False, kw_only=True)
    op_pos: Pos | None = field(default=None, compare=False, repr=False, kw_only=True)

    @property
    def at(self) -> Pos:
        return self.op_pos or self.pos


@dataclass(frozen=True)
class Literal(Node):
    value: Value


@dataclass(frozen=True)
class Name(Node):
    name: str


@dataclass(frozen=True)
class Unary(Node):
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary(Node):
    op: str  # + - * / %
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare(Node):
    op: str  # one of COMPARE_OPS
    left: Node
    right: Node


@dataclass(frozen=True)
class InList(Node):
    operand: Node
    values: tuple[Literal, ...]
    negated: bool = False


@dataclass(frozen=True)
class IsNull(Node):
    operand: Node
    negated: bool = False


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" or "or"
    left: Node
    right: Node
