"""A small, safe expression language for YAML configs, compiled to Spark columns.

Used by event-mapping filters, segment rules, mission eligibility and badge rules, e.g.
``risk >= 70 and digital < 40`` or ``segment in ['gold', 'silver'] and churn_date is null``.

Text is tokenised and parsed by hand into a tiny AST, checked against the names a config may
use, and compiled to a ``Column`` built only from pyspark functions and operators. No text is
ever handed to ``eval``, ``F.expr`` or SQL. Grammar, loosest binding first::

    or  ->  and  ->  not  ->  comparison (== != < <= > >=, [not] in [..], is [not] null)
        ->  + -  ->  * / %  ->  unary -  ->  literal | name | ( expr )

Comparisons do not chain, list literals only appear right of ``in``, and keywords
(and, or, not, in, is, null, true, false) are case-insensitive.
"""

from __future__ import annotations

import operator
import re
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
MAX_DEPTH = 100  # deeper trees are rejected, so walking or compiling them cannot overflow
_MAX_SHOWN = 20
_INT64 = 2**63

_SCAN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>==|!=|<=|>=|[<>+\-*/%()\[\],])"
)
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]+")
_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_UNESCAPES = {v: "\\" + k for k, v in _ESCAPES.items() if k != '"'}
_BAD_CHARS = {
    "=": "'=' is not allowed; use '=='",
    "!": "'!' is not allowed; use 'not'",
    "&": "'&' is not allowed; use 'and'",
    "|": "'|' is not allowed; use 'or'",
    "`": "backtick-quoted names are not allowed",
}


class ExpressionError(ValueError):
    """A syntax or name error, located in the file the expression came from."""

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
        snippet = text.split("\n")[rel_line - 1].rstrip("\r")
        caret = "".join("\t" if c == "\t" else " " for c in snippet[: rel_col - 1]) + "^"
        super().__init__(f"{source}:{self.line}:{self.column}: {message}\n{snippet}\n{caret}")


# --------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Node:
    """Base of all AST nodes; ``pos`` is where the node starts and is ignored by ``==``."""

    pos: Pos = field(default=(1, 1), compare=False, repr=False, kw_only=True)


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


def _position(text: str, offset: int) -> Pos:
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _number(raw: str, pos: Pos, fail: Fail) -> Token:
    if any(c in raw for c in ".eE"):
        value: float | int = float(raw)
        if value == float("inf"):
            fail(f"number out of range: {raw!r}", pos)
    else:
        value = int(raw)
        if value >= _INT64:
            fail(f"integer out of range: {raw!r}", pos)
    return Token("num", value, raw, pos)


def _string(text: str, start: int, fail: Fail) -> tuple[Token, int]:
    """Scan the quoted string opening at ``start``; return its token and the end offset."""
    quote, chars, i = text[start], [], start + 1
    while i < len(text) and text[i] not in (quote, "\n"):
        if text[i] == "\\":
            if text[i + 1 : i + 2] not in _ESCAPES:
                fail(f"invalid escape {text[i : i + 2]!r} in string", _position(text, i))
            chars.append(_ESCAPES[text[i + 1]])
            i += 2
        else:
            chars.append(text[i])
            i += 1
    if i == len(text) or text[i] != quote:
        fail("unterminated string", _position(text, start))
    return Token("str", "".join(chars), text[start : i + 1], _position(text, start)), i + 1


def tokenize(text: str, fail: Fail) -> list[Token]:
    """Split ``text`` into tokens, ending with an ``eof`` token; ``fail`` reports errors."""
    tokens: list[Token] = []
    i = 0
    while i < len(text):
        if text[i] in "'\"":
            token, i = _string(text, i, fail)
            tokens.append(token)
            continue
        pos, m = _position(text, i), _SCAN.match(text, i)
        if m is None:
            if text[i] == "." and tokens and tokens[-1].kind == "name":
                fail(f"attribute access is not allowed: '{tokens[-1].raw}.'", tokens[-1].pos)
            fail(_BAD_CHARS.get(text[i], f"unexpected character {text[i]!r}"), pos)
        raw, i = m.group(), m.end()
        if m.lastgroup == "ws":
            continue
        if m.lastgroup == "num":
            if _NUMBER_TAIL.match(text, i):
                fail(f"malformed number {_NUMBER_TAIL.match(text, m.start()).group()!r}", pos)
            tokens.append(_number(raw, pos, fail))
        elif m.lastgroup == "name" and raw.lower() in KEYWORDS:
            tokens.append(Token("kw", raw.lower(), raw, pos))
        elif m.lastgroup == "name":
            if raw.startswith("__"):
                fail(f"names starting with '__' are not allowed: {raw!r}", pos)
            tokens.append(Token("name", raw, raw, pos))
        else:
            tokens.append(Token("op", raw, raw, pos))
    tokens.append(Token("eof", None, "", _position(text, len(text.rstrip()))))
    return tokens


class _Parser:
    """Recursive descent over the token list, one method per precedence level."""

    def __init__(self, tokens: list[Token], fail: Fail) -> None:
        self.parens = 0  # open parentheses around the current position
        self.tokens, self.fail, self.i = tokens, fail, 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def at(self, *raws: str, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind in ("op", "kw") and tok.value in raws

    def advance(self) -> Token:
        tok = self.peek()
        self.i += 1
        return tok

    def unexpected(self, tok: Token | None = None) -> NoReturn:
        tok = tok or self.peek()
        if tok.kind == "eof":
            self.fail("unexpected end of expression", tok.pos)
        self.fail(f"unexpected token {tok.raw!r}", tok.pos)

    def accept(self, *raws: str) -> Token | None:
        return self.advance() if self.at(*raws) else None

    def at_in(self) -> bool:
        return self.at("in") or (self.at("not") and self.at("in", ahead=1))

    def expect(self, raw: str) -> Token:
        return self.accept(raw) or self.unexpected()

    def parse(self) -> Node:
        if self.peek().kind == "eof":
            self.fail("empty expression", self.peek().pos)
        node = self.or_expr()
        if self.peek().kind != "eof":
            self.unexpected()
        return node

    def chain(self, ops: tuple[str, ...], operand: Callable[[], Node], make: type[Binary | BoolOp]) -> Node:
        """Left-associative run of ``operand (op operand)*``."""
        node = operand()
        while tok := self.accept(*ops):
            node = make(str(tok.value), node, operand(), pos=node.pos)
        return node

    def or_expr(self) -> Node:
        return self.chain(("or",), self.and_expr, BoolOp)

    def and_expr(self) -> Node:
        return self.chain(("and",), self.not_expr, BoolOp)

    def not_expr(self) -> Node:
        if tok := self.accept("not"):
            return Unary("not", self.not_expr(), pos=tok.pos)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        if tok := self.accept(*COMPARE_OPS):
            node: Node = Compare(str(tok.value), left, self.additive(), pos=left.pos)
        elif self.at_in():
            negated = self.accept("not") is not None
            self.advance()
            node = InList(left, self.list_literal(), negated, pos=left.pos)
        elif self.accept("is"):
            negated = self.accept("not") is not None
            if not self.accept("null"):
                self.fail("expected 'null' after 'is'", self.peek().pos)
            node = IsNull(left, negated, pos=left.pos)
        else:
            return left
        if self.at(*COMPARE_OPS, "is") or self.at_in():
            self.fail(f"comparisons cannot be chained: {self.peek().raw!r}", self.peek().pos)
        return node

    def list_literal(self) -> tuple[Literal, ...]:
        if not self.accept("["):
            self.fail("expected a list '[...]' after 'in'", self.peek().pos)
        if self.at("]"):
            self.fail("a list needs at least one value", self.peek().pos)
        values = [self.list_item()]
        while self.accept(",") and not self.at("]"):
            values.append(self.list_item())
        self.expect("]")
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
        self.fail(f"list items must be literals, found {tok.raw or 'end of expression'!r}", tok.pos)

    def additive(self) -> Node:
        return self.chain(("+", "-"), self.multiplicative, Binary)

    def multiplicative(self) -> Node:
        return self.chain(("*", "/", "%"), self.unary, Binary)

    def unary(self) -> Node:
        if tok := self.accept("-"):
            return Unary("-", self.unary(), pos=tok.pos)
        return self.primary()

    def primary(self) -> Node:
        tok = self.advance()
        if tok.kind in ("num", "str"):
            return Literal(tok.value, pos=tok.pos)
        if tok.kind == "kw" and tok.value in _KEYWORD_LITERALS:
            return Literal(_KEYWORD_LITERALS[str(tok.value)], pos=tok.pos)
        if tok.kind == "name":
            if self.at("("):
                self.fail(f"function calls are not allowed: '{tok.raw}('", tok.pos)
            if self.at("["):
                self.fail(f"indexing is not allowed: '{tok.raw}['", tok.pos)
            return Name(str(tok.value), pos=tok.pos)
        if tok.raw == "(":
            # parentheses leave no node, so their depth is counted here rather than relying on
            # the interpreter's recursion limit (which other libraries may raise)
            self.parens += 1
            if self.parens > MAX_DEPTH:
                self.fail(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", (1, 1))
            node = self.or_expr()
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

    try:
        node = _Parser(tokenize(text, fail), fail).parse()
    except RecursionError:
        node = None
    if node is None or _height(node) > MAX_DEPTH:
        fail(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", (1, 1))
    return node


# ------------------------------------------------------------------------------ inspection


def _children(node: Node) -> list[Node]:
    return [child for f in fields(node) if isinstance(child := getattr(node, f.name), Node)]


def _height(node: Node) -> int:
    """Depth of the tree, computed without recursion so it is safe on any parse result."""
    height, stack = 0, [(node, 1)]
    while stack:
        current, depth = stack.pop()
        height = max(height, depth)
        stack.extend((child, depth + 1) for child in _children(current))
    return height


def walk(node: Node) -> Iterator[Node]:
    """Yield ``node`` and its descendants, in source order."""
    yield node
    for child in _children(node):
        yield from walk(child)


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
            message = f"unknown name {n.name!r} (known: {shown})"
            raise ExpressionError(message, text, n.pos, source=source, line=line, column=column)


def validate(
    text: str,
    allowed: Iterable[str],
    *,
    source: str = "<expression>",
    line: int = 1,
    column: int = 1,
) -> Node:
    """Parse and check names; needs no SparkSession."""
    node = parse(text, source=source, line=line, column=column)
    check_names(node, allowed, text=text, source=source, line=line, column=column)
    return node


# ----------------------------------------------------------------------------- compilation

_BinaryFn = Callable[[Column, Column], Column]
# try_divide / try_mod give null instead of an ANSI division-by-zero error
_ARITHMETIC: dict[str, _BinaryFn] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
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
            return -compile_node(operand, resolve)
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
) -> Column:
    """Parse, check and compile ``text``; a Mapping gives each name's column, else ``F.col``."""
    resolve = allowed.__getitem__ if isinstance(allowed, Mapping) else F.col
    allowed_names = list(allowed)
    node = validate(text, allowed_names, source=source, line=line, column=column)
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
            return f"{op}{sub(operand, prec)}"
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
