"""Reading rule text: a hand-written tokenizer and precedence-climbing parser that turn text
into the syntax tree of ``jobs.expressions.nodes`` or raise ``ExpressionError`` at the first
problem. Grammar, loosest binding first::

    or  ->  and  ->  not  ->  comparison (== != < <= > >=, [not] in [..], is [not] null)
        ->  + -  ->  * / %  ->  unary -  ->  literal | name | ( expr )

Comparisons do not chain, list literals only appear right of ``in``, and keywords
(and, or, not, in, is, null, true, false) are case-insensitive. There are no comments: ``--``
is refused rather than read as a double minus (write ``- -x``), and ``== null`` is refused
(write ``is null``). Tokenising and parsing are linear in the length of the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple, NoReturn

from jobs.expressions.errors import ExpressionError, Pos, short
from jobs.expressions.nodes import (
    COMPARE_OPS,
    Binary,
    BoolOp,
    Compare,
    InList,
    IsNull,
    Literal,
    Name,
    Node,
    Unary,
    Value,
)

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
_KEYWORD_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}
# At most this many levels of parentheses, and at most this many operators on any path of the
# tree (prefix operators, operator chains, nested operations). The parser needs about three
# interpreter frames per parenthesis, so the limit is reached well before Python's own.
MAX_DEPTH = 100
_INT64 = 2**63
_MAX_INT_DIGITS = 19

_SCAN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^'\\\n]*(?:\\[^\n][^'\\\n]*)*'|\"[^\"\\\n]*(?:\\[^\n][^\"\\\n]*)*\")"
    r"|(?P<op>--|/\*|//|\*\*|==|!=|<=|>=|[<>+\-*/%()\[\],])"
    r"|(?P<bad>.)",
    re.DOTALL,
)
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]+")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_BAD_CHARS = {
    "=": "'=' is not allowed; use '=='",
    "!": "'!' is not allowed; use 'not'",
    "&": "'&' is not allowed; use 'and'",
    "|": "'|' is not allowed; use 'or'",
    "`": "backtick-quoted names are not allowed",
    "#": "comments are not allowed: '#'",
    ";": "unexpected character ';'",
}
_BAD_PAIRS = {
    "--": "'--' is ambiguous: comments are not allowed, and a double minus must be written '- -'",
    "/*": "comments are not allowed: '/*'",
    "//": "'//' is not an operator; use '/'",
    "**": "'**' is not an operator",
}


class Token(NamedTuple):
    kind: str  # num, str, name, kw, op, eof
    value: Value
    raw: str
    pos: Pos


Fail = Callable[[str, Pos], NoReturn]
_token = tuple.__new__  # Token(...) without the namedtuple constructor's cost (a 1 MB list is 250k tokens)


def _position(text: str, offset: int) -> Pos:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _number(raw: str, pos: Pos, fail: Fail) -> Token:
    if any(c in raw for c in ".eE"):
        value: float | int = float(raw)
        if value == float("inf"):
            fail(f"number out of range: {short(raw)!r}", pos)
    else:
        # checked on the digit count first: int() refuses (or is slow on) thousands of digits
        if len(raw.lstrip("0")) > _MAX_INT_DIGITS or int(raw) >= _INT64:
            fail(f"integer out of range: {short(raw)!r}", pos)
        value = int(raw)
    return Token("num", value, raw, pos)


def _unescape(raw: str, start: int, text: str, fail: Fail) -> str:
    """The value of a scanned string literal ``raw`` found at offset ``start``."""

    def replace(m: re.Match[str]) -> str:
        if m.group(1) not in ESCAPES:
            fail(f"invalid escape {m.group()!r} in string", _position(text, start + 1 + m.start()))
        return ESCAPES[m.group(1)]

    body = raw[1:-1]
    return _ESCAPE.sub(replace, body) if "\\" in body else body


def _bad_character(char: str) -> str:
    if char in _BAD_CHARS:
        return _BAD_CHARS[char]
    if char in "'\"":
        return "unterminated string"
    if ord(char) > 127:
        name = unicodedata.name(char, "unnamed character")
        return f"unexpected character {char!r} (U+{ord(char):04X} {name}): names, numbers and operators are plain ASCII"
    return f"unexpected character {char!r}"


def _scan(text: str, fail: Fail) -> Iterator[Token]:
    """Tokens of ``text`` one at a time, then ``eof`` forever; ``fail`` reports errors.

    One left-to-right scan with positions tracked incrementally, so the cost is linear, and
    tokens are produced only as the parser asks: an error early in a huge text stops it.
    """
    line, line_start, previous = 1, 0, None
    for m in _SCAN.finditer(text):
        kind, start = m.lastgroup, m.start()
        if kind == "ws":
            raw = m.group()
            if "\n" in raw:
                line += raw.count("\n")
                line_start = start + raw.rindex("\n") + 1
            continue
        pos = (line, start - line_start + 1)
        if kind == "name":
            raw = m.group()
            lowered = raw.lower()
            if lowered in KEYWORDS:
                previous = _token(Token, ("kw", lowered, raw, pos))
            elif raw.startswith("__"):
                fail(f"names starting with '__' are not allowed: {short(raw)!r}", pos)
            else:
                previous = _token(Token, ("name", raw, raw, pos))
        elif kind == "op":
            raw = m.group()
            if raw in _BAD_PAIRS:
                fail(_BAD_PAIRS[raw], pos)
            previous = _token(Token, ("op", raw, raw, pos))
        elif kind == "str":
            raw = m.group()
            value = _unescape(raw, start, text, fail) if "\\" in raw else raw[1:-1]
            previous = _token(Token, ("str", value, raw, pos))
        elif kind == "num":
            raw = m.group()
            tail = _NUMBER_TAIL.match(text, m.end())
            if tail:
                fail(f"malformed number {short(raw + tail.group())!r}", pos)
            previous = _number(raw, pos, fail)
        else:  # a character no token starts with
            char = m.group()
            if (
                char == "."
                and previous is not None
                and previous.kind == "name"
                and previous.pos[1] + len(previous.raw) == pos[1]
            ):
                fail(f"attribute access is not allowed: '{short(previous.raw)}.'", previous.pos)
            fail(_bad_character(char), pos)
        yield previous
    eof = Token("eof", None, "", _position(text, len(text.rstrip())))
    while True:
        yield eof


def tokenize(text: str, fail: Fail) -> list[Token]:
    """Every token of ``text``, ending with an ``eof`` token; ``fail`` reports errors."""
    tokens = []
    for token in _scan(text, fail):
        tokens.append(token)
        if token.kind == "eof":
            return tokens
    raise AssertionError("unreachable")


_INFIX = {"or": 1, "and": 2, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}
_NOT_PREC, _COMPARE_PREC, _UNARY_MINUS_PREC = 3, 4, 7
_TOO_DEEP = f"expression is nested too deeply (more than {MAX_DEPTH} levels)"


class _Parser:
    """Precedence climbing over the token stream. Every method returns the node and its height
    (operators on its deepest path); parentheses are counted as they are entered. Both are held
    to MAX_DEPTH as the text is read, so the limit holds whatever the interpreter's own limit,
    and a huge nested input is refused at the first level too many."""

    def __init__(self, tokens: Iterator[Token], fail: Fail) -> None:
        self.parens = 0
        self.stream, self.fail = tokens, fail
        self.ahead: deque[Token] = deque()

    def peek(self, ahead: int = 0) -> Token:
        while len(self.ahead) <= ahead:
            self.ahead.append(next(self.stream))
        return self.ahead[ahead]

    def at(self, *raws: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind in ("op", "kw") and tok.value in raws

    def advance(self) -> Token:
        tok = self.peek()
        self.ahead.popleft()
        return tok

    def unexpected(self, tok: Token | None = None) -> NoReturn:
        tok = tok or self.peek()
        if tok.kind == "eof":
            self.fail("unexpected end of expression", tok.pos)
        self.fail(f"unexpected token {short(tok.raw)!r}", tok.pos)

    def accept(self, *raws: str) -> Token | None:
        return self.advance() if self.at(*raws) else None

    def at_in(self) -> bool:
        return self.at("in") or (self.at("not") and self.at("in", ahead=1))

    def at_comparison(self) -> bool:
        return self.at(*COMPARE_OPS, "is") or self.at_in()

    def expect(self, raw: str) -> Token:
        return self.accept(raw) or self.unexpected()

    def height(self, *heights: int, at: Pos) -> int:
        height = max(heights) + 1
        if height > MAX_DEPTH:
            self.fail(_TOO_DEEP, at)
        return height

    def parse(self) -> Node:
        if self.peek().kind == "eof":
            self.fail("empty expression", self.peek().pos)
        node, _ = self.expression(1)
        if self.peek().kind != "eof":
            self.unexpected()
        return node

    def expression(self, min_prec: int) -> tuple[Node, int]:
        left, height = self.prefix(min_prec)
        while True:
            tok = self.peek()
            if self.at_comparison():
                if min_prec > _COMPARE_PREC:
                    return left, height
                left, height = self.comparison(left, height)
                continue
            prec = _INFIX.get(str(tok.value)) if tok.kind in ("op", "kw") else None
            if prec is None or prec < min_prec:
                return left, height
            self.advance()
            right, right_height = self.expression(prec + 1)
            height = self.height(height, right_height, at=tok.pos)
            make = BoolOp if prec <= 2 else Binary
            left = make(str(tok.value), left, right, pos=left.pos, op_pos=tok.pos)

    def prefix(self, min_prec: int) -> tuple[Node, int]:
        tok = self.peek()
        if (min_prec <= _NOT_PREC and self.at("not")) or self.at("-"):
            self.advance()
            self.parens += 1  # a prefix operator nests like a parenthesis while it is parsed
            if self.parens > MAX_DEPTH:
                self.fail(_TOO_DEEP, tok.pos)
            operand, height = self.expression(_NOT_PREC if tok.value == "not" else _UNARY_MINUS_PREC)
            self.parens -= 1
            return Unary(str(tok.value), operand, pos=tok.pos), self.height(height, at=tok.pos)
        return self.primary()

    def comparison(self, left: Node, left_height: int) -> tuple[Node, int]:
        if tok := self.accept(*COMPARE_OPS):
            right, right_height = self.expression(_COMPARE_PREC + 1)
            for side in (left, right):
                if isinstance(side, Literal) and side.value is None:
                    hint = "is not null" if tok.value == "!=" else "is null"
                    self.fail(f"'{tok.value} null' is never true; use '{hint}'", tok.pos)
            node: Node = Compare(str(tok.value), left, right, pos=left.pos, op_pos=tok.pos)
            height = self.height(left_height, right_height, at=tok.pos)
        elif self.at_in():
            tok = self.advance()
            negated = tok.value == "not"
            if negated:
                self.advance()
            node = InList(left, self.list_literal(), negated, pos=left.pos, op_pos=tok.pos)
            height = self.height(left_height, at=tok.pos)
        else:
            tok = self.advance()  # 'is'
            negated = self.accept("not") is not None
            if not self.accept("null"):
                self.fail("expected 'null' after 'is'", self.peek().pos)
            node = IsNull(left, negated, pos=left.pos, op_pos=tok.pos)
            height = self.height(left_height, at=tok.pos)
        if self.at_comparison():
            self.fail(f"comparisons cannot be chained: {self.peek().raw!r}", self.peek().pos)
        return node, height

    def list_literal(self) -> tuple[Literal, ...]:
        if not self.accept("["):
            self.fail("expected a list '[...]' after 'in'", self.peek().pos)
        if self.at("]"):
            self.fail("a list needs at least one value", self.peek().pos)
        values = []
        while True:  # one tight loop: a list may hold many thousands of values
            values.append(self.list_item())
            tok = self.advance()
            if tok.raw == "," and tok.kind == "op":
                if not self.accept("]"):
                    continue
            elif tok.raw != "]" or tok.kind != "op":
                self.unexpected(tok)
            return tuple(values)

    def list_item(self) -> Literal:
        tok = self.advance()
        if tok.kind in ("num", "str"):
            return Literal(tok.value, pos=tok.pos)
        if tok.kind == "kw" and tok.value in ("true", "false"):
            return Literal(tok.value == "true", pos=tok.pos)
        if tok.raw == "-" and self.peek().kind == "num":
            return Literal(-self.advance().value, pos=tok.pos)  # type: ignore[operator]
        if tok.kind == "kw" and tok.value == "null":
            self.fail("null is not allowed in a list; use 'is null'", tok.pos)
        shown = short(tok.raw) or "end of expression"
        self.fail(f"list items must be literals, found {shown!r}", tok.pos)

    def primary(self) -> tuple[Node, int]:
        tok = self.advance()
        if tok.kind in ("num", "str"):
            return Literal(tok.value, pos=tok.pos), 0
        if tok.kind == "kw" and tok.value in _KEYWORD_LITERALS:
            return Literal(_KEYWORD_LITERALS[str(tok.value)], pos=tok.pos), 0
        if tok.kind == "name":
            if self.at("("):
                self.fail(f"function calls are not allowed: '{short(tok.raw)}('", tok.pos)
            if self.at("["):
                self.fail(f"indexing is not allowed: '{short(tok.raw)}['", tok.pos)
            return Name(str(tok.value), pos=tok.pos), 0
        if tok.raw == "(":
            self.parens += 1
            if self.parens > MAX_DEPTH:
                self.fail(_TOO_DEEP, tok.pos)
            node = self.expression(1)
            self.expect(")")
            self.parens -= 1
            return node
        if tok.raw == "[":
            self.fail("list literals are only allowed after 'in'", tok.pos)
        self.unexpected(tok)


def parse(text: str, *, source: str = "<expression>", line: int = 1, column: int = 1) -> Node:
    """Parse ``text`` into an AST; ``source``/``line``/``column`` locate it for errors."""

    def fail(message: str, pos: Pos) -> NoReturn:
        raise ExpressionError(message, text, pos, source=source, line=line, column=column)

    return _Parser(_scan(text, fail), fail).parse()
