"""Integer expressions (`.quad node + 8`, `.set SIZE, 4096 * 2`), evaluated as GNU as does (gas/expr.c).

gas computes in 64-bit offsetT: results wrap to 64 bits, `/` and `%` truncate as C
does (the remainder takes the dividend's sign), `>>` is unsigned, and a shift by 64
or more gives 0. Its precedence is not C's: `* / % << >>` bind tightest, then
`| & ^`, then `+ -`, so `1 + 2 << 3` is 17. The parser is a loop, not recursion,
so no nesting of parentheses or signs reaches Python's recursion limit.
"""

from __future__ import annotations

import re

MASK64 = (1 << 64) - 1

_TOKEN = re.compile(r"\s*(?:(0[xX][0-9A-Fa-f]+|0[bB][01]+|\d+)|('(?:\\.|[^\\'])')|([A-Za-z_.$][\w.$]*)|"
                    r"(<<|>>|[-+*/%&|^~()!]))")

_RANK = {"*": 3, "/": 3, "%": 3, "<<": 3, ">>": 3, "|": 2, "&": 2, "^": 2, "+": 1, "-": 1}
_UNARY = frozenset("-+~!")
_MAX_LITERAL = 1000  # characters: int() refuses over 4300 digits, and no 64-bit value needs a tenth of this


class ExprError(ValueError):
    pass


def signed64(value: int) -> int:
    """`value`'s low 64 bits as gas's signed offsetT."""
    value &= MASK64
    return value - (1 << 64) if value >> 63 else value


def _wrap(value: int) -> int:
    """A result kept as it is when it fits 64 bits (addresses stay positive, -1 stays -1), else wrapped."""
    return value if -(1 << 63) <= value <= MASK64 else signed64(value)


def fits(value: int, nbytes: int) -> bool:
    """gas's offset_in_range(): an n-byte field takes any value whose magnitude fits it, either sign."""
    high = MASK64 & ~((1 << (8 * nbytes)) - 1)
    return -(1 << 63) <= value <= MASK64 and (not value & high or not -value & high)


def shown(text: str, limit: int = 60) -> str:
    """`text` as a message quotes it: stripped, cut short, and on one line."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_number(text: str) -> int:
    """One literal: 0x hex, 0b binary, 0 octal or decimal. It may exceed 64 bits (gas's bignum)."""
    if len(text) > _MAX_LITERAL:
        raise ExprError(f"number '{shown(text, 20)}' is too long ({len(text)} digits)")
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if text[:2] in ("0b", "0B"):
        return int(text[2:], 2)
    if len(text) > 1 and text[0] == "0":
        try:
            return int(text, 8)
        except ValueError:
            raise ExprError(f"bad octal number '{shown(text, 20)}'") from None
    return int(text)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExprError(f"unexpected '{shown(text[pos:], 20)}' in expression '{shown(text)}'")
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


def _apply(op: str, left: int, right: int, text: str) -> int:
    """One binary operator, as gas's expr() applies it to two constants."""
    if op in ("/", "%"):
        if right == 0:
            raise ExprError(f"division by zero in '{shown(text)}'")
        a, b = signed64(left), signed64(right)
        q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
        return _wrap(q if op == "/" else a - b * q)
    if op in ("<<", ">>"):
        count = right & MASK64
        if count >= 64:
            return 0
        return _wrap(left << count) if op == "<<" else (left & MASK64) >> count
    return _wrap({"|": left | right, "^": left ^ right, "&": left & right,
                  "+": left + right, "-": left - right, "*": left * right}[op])


def _reduce(op: str, values: list[int], text: str) -> None:
    """Apply the operator `op` (a unary one is `u` and its sign) to the values on top of the stack."""
    operands = [values.pop()] if op[0] == "u" else [values.pop(-2), values.pop()]
    big = next((v for v in operands if v > MASK64), None)
    if big is not None:
        raise ExprError(f"number {big:#x} does not fit in 64 bits, in '{shown(text)}'")
    if op[0] != "u":
        values.append(_apply(op, operands[0], operands[1], text))
        return
    v = operands[0]
    values.append({"u-": _wrap(-v), "u+": v, "u~": _wrap(~v), "u!": int(v == 0)}[op])


def evaluate(text: str, scope: dict[str, int]) -> int:
    """Evaluate `text`; symbols come from `scope` (`.` is the current location, when given).

    The result lies in [-2**63, 2**64): the same 64 bits gas would get, negative only when
    the value is. A lone literal over 64 bits comes back whole, for its user to refuse.
    """
    toks = _tokens(text)
    if not toks:
        raise ExprError("empty expression")
    values: list[int] = []
    ops: list[str] = []  # "(", binary operators, and unary ones as "u-", "u~", ...
    want_operand = True
    for kind, val in toks:
        if want_operand:
            if kind == "num":
                values.append(parse_number(val))
            elif kind == "id":
                if val not in scope:
                    raise ExprError(f"undefined symbol '{val}'")
                values.append(_wrap(scope[val]))
            elif val == "(" or val in _UNARY:
                ops.append(val if val == "(" else "u" + val)
                continue
            else:
                raise ExprError(f"unexpected '{val}' in '{shown(text)}'")
            want_operand = False
        elif val in _RANK and kind == "op":
            while ops and ops[-1] != "(" and (ops[-1][0] == "u" or _RANK[ops[-1]] >= _RANK[val]):
                _reduce(ops.pop(), values, text)
            ops.append(val)
            want_operand = True
        elif val == ")" and "(" in ops:
            while ops[-1] != "(":
                _reduce(ops.pop(), values, text)
            ops.pop()
        else:
            raise ExprError(f"unexpected '{val}' in '{shown(text)}'")
    if want_operand:
        raise ExprError(f"expression '{shown(text)}' ends early")
    while ops:
        op = ops.pop()
        if op == "(":
            raise ExprError(f"missing ')' in '{shown(text)}'")
        _reduce(op, values, text)
    return values[0]


def evaluate64(text: str, scope: dict[str, int]) -> int:
    """evaluate(), with a lone literal over 64 bits refused: for users with no range of their own."""
    value = evaluate(text, scope)
    if value > MASK64:
        raise ExprError(f"number {value:#x} does not fit in 64 bits")
    return value
