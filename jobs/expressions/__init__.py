"""A small, safe expression language for YAML configs, compiled to Spark columns.

Used by event-mapping filters, segment rules, mission eligibility and badge rules, e.g.
``risk >= 70 and digital < 40`` or ``segment in ['gold', 'silver'] and churn_date is null``.
No text is ever handed to ``eval``, ``F.expr`` or SQL; tokenising, parsing and checking are
linear in the length of the text. What lives where:

- ``errors``: ``ExpressionError`` and how it quotes the offending line;
- ``nodes``: the syntax tree (``Literal``, ``Name``, ``Compare``, ...);
- ``parser``: tokenizer and parser, the grammar and its limits (``parse``, ``MAX_DEPTH``);
- ``inspection``: walking a tree, the names it reads, ``check_names``;
- ``typecheck``: value types, type inference, ``subject_types`` and ``validate``;
- ``compile``: the Spark column of a tree (``compile_node``, ``compile_expression``, ``name_column``, ``shown_values``);
- ``text``: canonical text of a tree (``to_text``).
"""

from __future__ import annotations

from jobs.expressions.compile import compile_expression, compile_node, name_column, shown_values
from jobs.expressions.errors import ExpressionError
from jobs.expressions.inspection import check_names, names
from jobs.expressions.nodes import Binary, BoolOp, Compare, InList, IsNull, Literal, Name, Node, Unary
from jobs.expressions.parser import MAX_DEPTH, parse
from jobs.expressions.text import to_text
from jobs.expressions.typecheck import BOOLEAN, DATE, NUMBER, STRING, subject_types, validate, value_type

__all__ = [
    "BOOLEAN",
    "DATE",
    "MAX_DEPTH",
    "NUMBER",
    "STRING",
    "Binary",
    "BoolOp",
    "Compare",
    "ExpressionError",
    "InList",
    "IsNull",
    "Literal",
    "Name",
    "Node",
    "Unary",
    "check_names",
    "compile_expression",
    "compile_node",
    "name_column",
    "names",
    "parse",
    "shown_values",
    "subject_types",
    "to_text",
    "validate",
    "value_type",
]
