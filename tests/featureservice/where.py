"""A safe, parsed subset of SQL for `where` clauses, compiled to SQLite with bound parameters.

Nothing from the client is ever pasted into SQL: field names are looked up in the layer's
schema and emitted quoted, every literal becomes a `?` parameter. Supported:
comparisons (= <> != < <= > >=), AND / OR / NOT, parentheses, [NOT] IN (...),
[NOT] LIKE '...' [ESCAPE 'x'], IS [NOT] NULL, [NOT] BETWEEN a AND b, UPPER()/LOWER(),
numbers, 'strings' ('' escapes a quote), DATE 'YYYY-MM-DD' and TIMESTAMP 'YYYY-MM-DD HH:MM:SS'
(compared as epoch milliseconds, like the service's date fields), and `1=1`.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

MAX_WHERE_LENGTH = 20000
MAX_DEPTH = 40

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?)
  | (?P<string>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*|"[A-Za-z_][A-Za-z0-9_]*")
  | (?P<op><>|!=|<=|>=|=|<|>)
  | (?P<punct>[(),])
  | (?P<minus>-)
    """,
    re.VERBOSE,
)

_KEYWORDS = {
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "IS",
    "NULL",
    "BETWEEN",
    "ESCAPE",
    "DATE",
    "TIMESTAMP",
}
_FUNCTIONS = {"UPPER", "LOWER"}
_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S")
_GUID_RE = re.compile(
    r"^\{?[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\}?$"
)


class WhereError(ValueError):
    """The where clause is not valid or uses something outside the supported subset."""


def parse_date_literal(text: str) -> int:
    """'2024-05-01 12:00:00' (UTC) -> epoch milliseconds."""
    text = text.strip()
    for fmt in _DATE_FORMATS:
        try:
            dt = datetime.strptime(text, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        return int(dt.timestamp() * 1000)
    raise WhereError(f"'{text}' is not a date (use 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS')")


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise WhereError(f"unexpected character {text[pos]!r} at position {pos + 1}")
        pos = match.end()
        kind = match.lastgroup
        value = match.group()
        if kind == "ws":
            continue
        if kind == "ident":
            if value.startswith('"'):
                kind, value = "ident", value[1:-1]
            elif value.upper() in _KEYWORDS:
                kind, value = "kw", value.upper()
        tokens.append((kind, value))
    tokens.append(("end", ""))
    return tokens


class _Operand:
    """A compiled value expression: its SQL, its parameters and, for fields, the field type."""

    def __init__(
        self, sql: str, params: list, field_type: str | None = None, literal=None, is_literal=False
    ):
        self.sql = sql
        self.params = params
        self.field_type = field_type
        self.literal = literal
        self.is_literal = is_literal


class _Parser:
    def __init__(self, text: str, fields: dict[str, tuple[str, str]]):
        self.tokens = _tokenize(text)
        self.pos = 0
        self.fields = fields  # lower-case name -> (canonical name, esriFieldType)
        self.depth = 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.tokens[min(self.pos + offset, len(self.tokens) - 1)]

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def accept_kw(self, word: str) -> bool:
        if self.peek() == ("kw", word):
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, value: str | None = None) -> str:
        tok_kind, tok_value = self.take()
        if tok_kind != kind or (value is not None and tok_value != value):
            wanted = value or kind
            found = tok_value or "end of clause"
            raise WhereError(f"expected {wanted} but found {found!r}")
        return tok_value

    def parse(self) -> tuple[str, list]:
        sql, params = self.or_expr()
        if self.peek()[0] != "end":
            raise WhereError(f"unexpected {self.peek()[1]!r}")
        return sql, params

    def or_expr(self) -> tuple[str, list]:
        sql, params = self.and_expr()
        while self.accept_kw("OR"):
            right_sql, right_params = self.and_expr()
            sql, params = f"({sql} OR {right_sql})", params + right_params
        return sql, params

    def and_expr(self) -> tuple[str, list]:
        sql, params = self.not_expr()
        while self.accept_kw("AND"):
            right_sql, right_params = self.not_expr()
            sql, params = f"({sql} AND {right_sql})", params + right_params
        return sql, params

    def not_expr(self) -> tuple[str, list]:
        negations = 0
        while self.accept_kw("NOT"):
            negations += 1
        sql, params = self.predicate()
        return (f"(NOT {sql})" if negations % 2 else sql), params

    def predicate(self) -> tuple[str, list]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise WhereError("the clause is nested too deeply")
        try:
            if self.peek() == ("punct", "("):
                self.take()
                sql, params = self.or_expr()
                self.expect("punct", ")")
                return f"({sql})", params
            left = self.operand()
            return self.predicate_tail(left)
        finally:
            self.depth -= 1

    def predicate_tail(self, left: _Operand) -> tuple[str, list]:
        kind, value = self.peek()
        if kind == "op":
            self.take()
            right = self.operand()
            left, right = _coerce_pair(left, right)
            sql_op = "<>" if value == "!=" else value
            return f"({left.sql} {sql_op} {right.sql})", left.params + right.params
        if self.accept_kw("IS"):
            negate = self.accept_kw("NOT")
            self.expect("kw", "NULL")
            return f"({left.sql} IS {'NOT ' if negate else ''}NULL)", left.params
        negate = self.accept_kw("NOT")
        if self.accept_kw("IN"):
            self.expect("punct", "(")
            items = [self.operand()]
            while self.peek() == ("punct", ","):
                self.take()
                items.append(self.operand())
            self.expect("punct", ")")
            if len(items) > 10000:
                raise WhereError("IN lists are limited to 10000 values")
            params = list(left.params)
            parts = []
            for item in items:
                _, item = _coerce_pair(left, item)
                parts.append(item.sql)
                params += item.params
            return f"({left.sql} {'NOT ' if negate else ''}IN ({', '.join(parts)}))", params
        if self.accept_kw("LIKE"):
            pattern = self.operand()
            sql = f"({left.sql} {'NOT ' if negate else ''}LIKE {pattern.sql}"
            params = left.params + pattern.params
            if self.accept_kw("ESCAPE"):
                escape = self.operand()
                if not (
                    escape.is_literal
                    and isinstance(escape.literal, str)
                    and len(escape.literal) == 1
                ):
                    raise WhereError("ESCAPE needs a one-character string")
                sql += f" ESCAPE {escape.sql}"
                params += escape.params
            return sql + ")", params
        if self.accept_kw("BETWEEN"):
            low = self.operand()
            self.expect("kw", "AND")
            high = self.operand()
            _, low = _coerce_pair(left, low)
            _, high = _coerce_pair(left, high)
            return (
                f"({left.sql} {'NOT ' if negate else ''}BETWEEN {low.sql} AND {high.sql})",
                left.params + low.params + high.params,
            )
        if negate:
            raise WhereError("NOT must be followed by IN, LIKE or BETWEEN here")
        found = value or "end of clause"
        raise WhereError(f"expected a comparison after the value but found {found!r}")

    def operand(self) -> _Operand:
        kind, value = self.take()
        if kind == "number":
            number = float(value) if any(c in value for c in ".eE") else int(value)
            return _Operand("?", [number], literal=number, is_literal=True)
        if kind == "minus":
            kind, value = self.take()
            if kind != "number":
                raise WhereError("'-' must be followed by a number")
            number = -(float(value) if any(c in value for c in ".eE") else int(value))
            return _Operand("?", [number], literal=number, is_literal=True)
        if kind == "string":
            text = value[1:-1].replace("''", "'")
            return _Operand("?", [text], literal=text, is_literal=True)
        if kind == "kw" and value in ("DATE", "TIMESTAMP"):
            tok_kind, tok_value = self.take()
            if tok_kind != "string":
                raise WhereError(f"{value} must be followed by a quoted date")
            millis = parse_date_literal(tok_value[1:-1])
            return _Operand("?", [millis], literal=millis, is_literal=True)
        if kind == "kw" and value == "NULL":
            return _Operand("NULL", [], literal=None, is_literal=True)
        if kind == "ident":
            if value.upper() in _FUNCTIONS and self.peek() == ("punct", "("):
                self.take()
                self.depth += 1
                if self.depth > MAX_DEPTH:
                    raise WhereError("the clause is nested too deeply")
                inner = self.operand()
                self.depth -= 1
                self.expect("punct", ")")
                return _Operand(
                    f"{value.upper()}({inner.sql})", inner.params, field_type="esriFieldTypeString"
                )
            field = self.fields.get(value.lower())
            if field is None:
                raise WhereError(f"unknown field '{value}'")
            name, field_type = field
            return _Operand(f'"{name}"', [], field_type=field_type)
        found = value or "end of clause"
        raise WhereError(f"expected a field or a value but found {found!r}")


def _coerce_pair(left: _Operand, right: _Operand) -> tuple[_Operand, _Operand]:
    """Dates compared with plain strings and GUIDs written loosely are read the service's way."""
    for field_side, literal_side in ((left, right), (right, left)):
        if not literal_side.is_literal or not isinstance(literal_side.literal, str):
            continue
        text = literal_side.literal
        if field_side.field_type == "esriFieldTypeDate":
            millis = parse_date_literal(text)
            converted = _Operand("?", [millis], literal=millis, is_literal=True)
        elif field_side.field_type in (
            "esriFieldTypeGUID",
            "esriFieldTypeGlobalID",
        ) and _GUID_RE.match(text):
            guid = "{" + text.strip("{}").upper() + "}"
            converted = _Operand("?", [guid], literal=guid, is_literal=True)
        else:
            continue
        return (field_side, converted) if field_side is left else (converted, field_side)
    return left, right


def compile_where(where: str | None, fields: list[dict[str, Any]]) -> tuple[str, list]:
    """Compiles a where clause against a layer's fields to (sql, params); raises WhereError."""
    if where is None or not where.strip():
        return "1=1", []
    if len(where) > MAX_WHERE_LENGTH:
        raise WhereError(f"the clause is longer than {MAX_WHERE_LENGTH} characters")
    lookup = {f["name"].lower(): (f["name"], f["type"]) for f in fields}
    return _Parser(where, lookup).parse()
