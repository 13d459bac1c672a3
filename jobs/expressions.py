"""A small, safe expression language for YAML configs, compiled to Spark columns.

Used by event-mapping filters, segment rules, mission eligibility and badge rules, e.g.
``risk >= 70 and digital < 40`` or ``segment in ['gold', 'silver'] and churn_date is null``.

Text is tokenised and parsed by hand into a tiny AST, checked against the names (and, when
known, the types) a config may use, and compiled to a ``Column`` built only from pyspark
functions and operators. No text is ever handed to ``eval``, ``F.expr`` or SQL. Grammar,
loosest binding first::

    or  ->  and  ->  not  ->  comparison (== != < <= > >=, [not] in [..], is [not] null)
        ->  + -  ->  * / %  ->  unary -  ->  literal | name | ( expr )

Comparisons do not chain, list literals only appear right of ``in``, and keywords
(and, or, not, in, is, null, true, false) are case-insensitive. There are no comments: ``--``
is refused rather than read as a double minus (write ``- -x``), and ``== null`` is refused
(write ``is null``). Tokenising, parsing and checking are linear in the length of the text.
"""

from __future__ import annotations

import operator
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import NamedTuple, NoReturn

from pyspark.sql import Column
from pyspark.sql import functions as F

Pos = tuple[int, int]  # (line, column) inside the expression text, both 1-based
Value = bool | int | float | str | None

KEYWORDS = frozenset({"and", "or", "not", "in", "is", "null", "true", "false"})
COMPARE_OPS = ("==", "!=", "<", "<=", ">", ">=")
_KEYWORD_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}
# At most this many levels of parentheses, and at most this many operators on any path of the
# tree (prefix operators, operator chains, nested operations). The parser needs about three
# interpreter frames per parenthesis, so the limit is reached well before Python's own.
MAX_DEPTH = 100
_MAX_SHOWN = 20
_SHOWN_CHARS = 40  # longest token quoted in a message
_SNIPPET_CHARS = 120  # longest source line quoted under a message
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
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_UNESCAPES = {v: "\\" + k for k, v in _ESCAPES.items() if k != '"'}
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


def _short(raw: str) -> str:
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


# --------------------------------------------------------------------------------------- AST


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


# ------------------------------------------------------------------------- tokenizer + parser


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
            fail(f"number out of range: {_short(raw)!r}", pos)
    else:
        # checked on the digit count first: int() refuses (or is slow on) thousands of digits
        if len(raw.lstrip("0")) > _MAX_INT_DIGITS or int(raw) >= _INT64:
            fail(f"integer out of range: {_short(raw)!r}", pos)
        value = int(raw)
    return Token("num", value, raw, pos)


def _unescape(raw: str, start: int, text: str, fail: Fail) -> str:
    """The value of a scanned string literal ``raw`` found at offset ``start``."""

    def replace(m: re.Match[str]) -> str:
        if m.group(1) not in _ESCAPES:
            fail(f"invalid escape {m.group()!r} in string", _position(text, start + 1 + m.start()))
        return _ESCAPES[m.group(1)]

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
                fail(f"names starting with '__' are not allowed: {_short(raw)!r}", pos)
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
                fail(f"malformed number {_short(raw + tail.group())!r}", pos)
            previous = _number(raw, pos, fail)
        else:  # a character no token starts with
            char = m.group()
            if (
                char == "."
                and previous is not None
                and previous.kind == "name"
                and previous.pos[1] + len(previous.raw) == pos[1]
            ):
                fail(f"attribute access is not allowed: '{_short(previous.raw)}.'", previous.pos)
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
        self.fail(f"unexpected token {_short(tok.raw)!r}", tok.pos)

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
        shown = _short(tok.raw) or "end of expression"
        self.fail(f"list items must be literals, found {shown!r}", tok.pos)

    def primary(self) -> tuple[Node, int]:
        tok = self.advance()
        if tok.kind in ("num", "str"):
            return Literal(tok.value, pos=tok.pos), 0
        if tok.kind == "kw" and tok.value in _KEYWORD_LITERALS:
            return Literal(_KEYWORD_LITERALS[str(tok.value)], pos=tok.pos), 0
        if tok.kind == "name":
            if self.at("("):
                self.fail(f"function calls are not allowed: '{_short(tok.raw)}('", tok.pos)
            if self.at("["):
                self.fail(f"indexing is not allowed: '{_short(tok.raw)}['", tok.pos)
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


# ------------------------------------------------------------------------------ inspection


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
            message = f"unknown name {_short(n.name)!r} (known: {shown})"
            raise ExpressionError(message, text, n.pos, source=source, line=line, column=column)


# ------------------------------------------------------------------------------------ types

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


def value_type(type_name: object) -> str:
    """The expression type of a contract/Spark type (a name like 'long' or a DataType)."""
    simple = getattr(type_name, "simpleString", None)
    name = (simple() if callable(simple) else str(type_name)).strip().lower()
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
            return f"{_short(child.name)!r} is {_ARTICLE.get(kind, kind)}"
        if isinstance(child, Literal):
            return f"{_short(_literal_text(child.value))} is {_ARTICLE.get(kind, kind)}"
        return f"'{_short(to_text(child))}' is {_ARTICLE.get(kind, kind)}"

    def need(child: Node, kind: str, wanted: tuple[str, ...], what: str, at: Pos) -> None:
        if kind not in (*wanted, ANY, NULL):
            fail(f"{what}, but {describe(child, kind)}", at)

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
                        f"'{_short(to_text(current))}'",
                        current.at,
                    )
                return BOOLEAN
            case InList(operand=operand, values=values):
                kind = infer(operand)
                for value in values:
                    vt = _literal_type(value.value)
                    if not _comparable(kind, vt, "=="):
                        fail(
                            f"list value {_short(_literal_text(value.value))} is {_ARTICLE.get(vt, vt)}, "
                            f"but {describe(operand, kind)}",
                            value.pos,
                        )
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
TEXT_NAMES = frozenset({"payment_type", "plan_code", "status", "age_band", "region", "segment", "nbo_offer_id", "tier"})


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


# ----------------------------------------------------------------------------- compilation

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


def shown_values(node: Node, columns: Mapping[str, Column], numeric: Iterable[str] = ()) -> list[Column]:
    """`name=value` for every name the expression reads (numbers rounded to 2 places), to show
    why a rule fired."""
    numeric = set(numeric)
    return [
        F.format_string(
            f"{n}=%s",
            F.coalesce((F.round(columns[n], 2) if n in numeric else columns[n]).cast("string"), F.lit("null")),
        )
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


# --------------------------------------------------------------------------------- to_text

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


def _literal_text(value: Value) -> str:
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
            return _literal_text(value)
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
            items = ", ".join(_literal_text(v.value) for v in values)
            return f"{sub(operand, prec + 1)} {'not in' if negated else 'in'} [{items}]"
        case IsNull(operand=operand, negated=negated):
            return f"{sub(operand, prec + 1)} is {'not null' if negated else 'null'}"
    raise TypeError(f"not an expression node: {node!r}")
