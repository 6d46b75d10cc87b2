"""Integer expressions in directives (`.quad node + 8`, `.set SIZE, 4096 * 2`), C precedence."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"\s*(?:(0[xX][0-9A-Fa-f]+|0[bB][01]+|\d+)|('(?:\\.|[^\\'])')|([A-Za-z_.$][\w.$]*)|"
                    r"(<<|>>|[-+*/%&|^~()!]))")

_BINARY = [("|",), ("^",), ("&",), ("<<", ">>"), ("+", "-"), ("*", "/", "%")]


class ExprError(ValueError):
    pass


def _number(text: str) -> int:
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if text[:2] in ("0b", "0B"):
        return int(text[2:], 2)
    if len(text) > 1 and text[0] == "0":
        try:
            return int(text, 8)
        except ValueError:
            raise ExprError(f"bad octal number '{text}'") from None
    return int(text)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprError(f"unexpected '{text[pos:].strip()[:20]}' in expression '{text.strip()}'")
        num, char, ident, op = m.groups()
        if num is not None:
            out.append(("num", num))
        elif char is not None:
            body = char[1:-1]
            out.append(("num", str(ord(body[-1]) if not body.startswith("\\") else
                                   {"n": 10, "t": 9, "0": 0, "\\": 92, "'": 39}.get(body[1], ord(body[1])))))
        elif ident is not None:
            out.append(("id", ident))
        else:
            out.append(("op", op))
        pos = m.end()
    return out


class _AnySymbol(dict):
    """A scope that knows every name (as 0): for checking syntax only."""

    def __contains__(self, name: object) -> bool:
        return True

    def __missing__(self, name: str) -> int:
        return 0


def check_syntax(text: str) -> str | None:
    """None when `text` is a well-formed expression, else what is wrong with it."""
    try:
        evaluate(text, _AnySymbol())
    except ExprError as e:
        return None if str(e).startswith("division by zero") else str(e)
    return None


def evaluate(text: str, scope: dict[str, int]) -> int:
    """Evaluate `text`; symbols come from `scope` (`.` is the current location, when given)."""
    toks = _tokens(text)
    if not toks:
        raise ExprError("empty expression")
    pos = 0

    def peek() -> tuple[str, str] | None:
        return toks[pos] if pos < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        tok = toks[pos]
        pos += 1
        return tok

    def primary() -> int:
        tok = peek()
        if tok is None:
            raise ExprError(f"expression '{text.strip()}' ends early")
        kind, val = take()
        if kind == "num":
            return _number(val)
        if kind == "id":
            if val not in scope:
                raise ExprError(f"undefined symbol '{val}'")
            return scope[val]
        if val == "(":
            v = binary(0)
            if peek() != ("op", ")"):
                raise ExprError(f"missing ')' in '{text.strip()}'")
            take()
            return v
        if val in ("-", "+", "~", "!"):
            v = primary()
            return {"-": -v, "+": v, "~": ~v, "!": int(not v)}[val]
        raise ExprError(f"unexpected '{val}' in '{text.strip()}'")

    def binary(level: int) -> int:
        if level == len(_BINARY):
            return primary()
        left = binary(level + 1)
        while (tok := peek()) is not None and tok[0] == "op" and tok[1] in _BINARY[level]:
            op = take()[1]
            right = binary(level + 1)
            if op in ("/", "%") and right == 0:
                raise ExprError(f"division by zero in '{text.strip()}'")
            left = {"|": left | right, "^": left ^ right, "&": left & right,
                    "<<": left << (right & 63), ">>": left >> (right & 63),
                    "+": left + right, "-": left - right, "*": left * right,
                    "/": int(left / right) if right else 0, "%": left % right if right else 0}[op]
        return left

    value = binary(0)
    if pos != len(toks):
        raise ExprError(f"unexpected '{toks[pos][1]}' in '{text.strip()}'")
    return value
