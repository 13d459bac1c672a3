"""Errors of the rule language: ``ExpressionError`` places a syntax, name or type problem at
the line and column of the file the expression came from, and quotes the offending line under
the message with a caret; long tokens and lines are cut so a message stays readable whatever
the input."""

from __future__ import annotations

Pos = tuple[int, int]  # (line, column) inside the expression text, both 1-based

_SHOWN_CHARS = 40  # longest token quoted in a message
_SNIPPET_CHARS = 120  # longest source line quoted under a message


def short(raw: str) -> str:
    """``raw`` for a message: long tokens (a 1 MB name, a 5,000-digit number) are cut."""
    if len(raw) <= _SHOWN_CHARS:
        return raw
    return f"{raw[:_SHOWN_CHARS]}... ({len(raw):,} characters)"


class ExpressionError(ValueError):
    """A syntax, name or type error, located in the file the expression came from."""

    def __init__(
        self,
        message: str,
        text: str,
        pos: Pos = (1, 1),
        *,
        source: str = "<expression>",
        line: int = 1,
        column: int = 1,
    ) -> None:
        rel_line, rel_col = pos
        self.message, self.text, self.source = message, text, source
        self.line = line + rel_line - 1
        self.column = column + rel_col - 1 if rel_line == 1 else rel_col
        snippet, caret_col = _snippet(text, rel_line, rel_col)
        caret = "".join("\t" if c == "\t" else " " for c in snippet[: caret_col - 1]) + "^"
        super().__init__(f"{source}:{self.line}:{self.column}: {message}\n{snippet}\n{caret}")


def _snippet(text: str, line: int, col: int) -> tuple[str, int]:
    """The source line of the error (a window of it when long) and the caret column in it."""
    start = 0
    for _ in range(line - 1):
        start = text.index("\n", start) + 1
    end = text.find("\n", start)
    snippet = text[start : len(text) if end < 0 else end].rstrip("\r")
    if len(snippet) <= _SNIPPET_CHARS:
        return snippet, col
    half = _SNIPPET_CHARS // 2
    lo = max(0, col - 1 - half)
    window = snippet[lo : lo + _SNIPPET_CHARS]
    prefix = "..." if lo else ""
    suffix = "..." if lo + _SNIPPET_CHARS < len(snippet) else ""
    return prefix + window + suffix, col - lo + len(prefix)
