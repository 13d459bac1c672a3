"""Reading a parsed rule without evaluating it: walking its tree, listing the names it
references, and refusing a name the config may not use."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields

from jobs.expressions.errors import ExpressionError, short
from jobs.expressions.nodes import Name, Node

_MAX_SHOWN = 20


def _children(node: Node) -> list[Node]:
    return [child for f in fields(node) if isinstance(child := getattr(node, f.name), Node)]


def walk(node: Node) -> Iterator[Node]:
    """Yield ``node`` and its descendants, in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_children(current)))


def names(node: Node) -> set[str]:
    """Every name the expression references."""
    return {n.name for n in walk(node) if isinstance(n, Name)}


def check_names(
    node: Node,
    allowed: Iterable[str],
    *,
    text: str,
    source: str = "<expression>",
    line: int = 1,
    column: int = 1,
) -> None:
    """Raise ``ExpressionError`` at the first name not in ``allowed``."""
    allowed_set = set(allowed)
    for n in walk(node):
        if isinstance(n, Name) and n.name not in allowed_set:
            known = sorted(allowed_set)
            shown = ", ".join(known[:_MAX_SHOWN]) or "none"
            if len(known) > _MAX_SHOWN:
                shown += f", ... ({len(known) - _MAX_SHOWN} more)"
            message = f"unknown name {short(n.name)!r} (known: {shown})"
            raise ExpressionError(message, text, n.pos, source=source, line=line, column=column)
