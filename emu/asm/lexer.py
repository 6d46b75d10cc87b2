"""GNU as's lexical rules, which keystone does not have.

Comments, `;`-separated statements, comma-separated arguments, string
literals with their escapes, and plain numbers: keystone reads every number
as hex once an option is set, so each is rewritten in 0x form before it
gets one.
"""

from __future__ import annotations

import re

from .exprs import parse_number, shown

IDENT = re.compile(r"[A-Za-z_.][\w.$]*")
_DECIMAL = re.compile(r"(?<![\w.'])(\d+)(?![\w.'])")


def strip_comments(text: str) -> list[str]:
    """Remove /* */, // and # comments outside string literals; keep line numbers."""
    out, i, n = [], 0, len(text)
    cur: list[str] = []
    in_block = False
    in_str = False
    while i < n:
        c = text[i]
        if in_block:
            if text.startswith("*/", i):
                in_block = False
                i += 2
                continue
            if c == "\n":
                out.append("".join(cur))
                cur = []
            i += 1
            continue
        if in_str:
            cur.append(c)
            if c == "\\" and i + 1 < n:
                cur.append(text[i + 1])
                i += 2
                continue
            if c == '"' or c == "\n":
                in_str = False
                if c == "\n":
                    cur.pop()
                    out.append("".join(cur))
                    cur = []
            i += 1
            continue
        if c == '"':
            in_str = True
            cur.append(c)
        elif text.startswith("/*", i):
            in_block = True
            i += 2
            continue
        elif c == "#" or text.startswith("//", i):
            rest = text[i:].split("\n", 1)[0]
            at_line_start = i == 0 or text[i - 1] == "\n" or "".join(cur).strip() == ""
            if at_line_start and c == "#" and re.match(r"#\s*(define|if|ifdef|ifndef|else|elif|endif|undef)\b", rest):
                cur.append(rest)  # kept: reported as unsupported below
            i += len(rest)
            continue
        elif c == "\n":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def clean_line(line: str) -> str:
    """`line` with each carriage return outside a string read as a space, as GNU as reads it;
    a ValueError for any other control character, or a non-ASCII one outside a string.

    keystone hangs on a carriage return in an operand, and fails in its own ways on the
    rest, so none of them may reach it; nor may they reach a message, which is one line.
    """
    out, in_str = [], False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            in_str = not in_str
        if c == "\r" and not in_str:
            c = " "
        elif not (c.isprintable() or c == "\t") or (not in_str and not c.isascii()):
            raise ValueError(f"invalid character ({ord(c):#x}) in '{shown(line)}'")
        out.append(c)
    return "".join(out)


def split_statements(line: str) -> list[str]:
    """Split on `;` outside string and character literals."""
    parts: list[str] = []
    cur: list[str] = []
    in_str = False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            in_str = not in_str
        if c == ";" and not in_str:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    return parts


def split_args(text: str) -> list[str]:
    """Comma-separated arguments, respecting parentheses and strings."""
    args: list[str] = []
    cur: list[str] = []
    depth, in_str = 0, False
    for i, c in enumerate(text):
        if c == '"' and (i == 0 or text[i - 1] != "\\"):
            in_str = not in_str
        if not in_str:
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
            elif c == "," and depth == 0:
                args.append("".join(cur).strip())
                cur = []
                continue
        cur.append(c)
    tail = "".join(cur).strip()
    if tail or args:
        args.append(tail)
    return args


_ESCAPES = {"n": 10, "t": 9, "r": 13, "b": 8, "f": 12, "v": 11, "a": 7, "\\": 92, '"': 34, "'": 39, "0": 0}


def parse_string(text: str) -> bytes:
    """A GNU as string literal with its escapes."""
    text = text.strip()
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError(f"expected a string in double quotes, got '{text}'")
    body, out, i = text[1:-1], bytearray(), 0
    while i < len(body):
        c = body[i]
        if c == '"':
            raise ValueError("unescaped '\"' inside a string")
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        i += 1
        if i >= len(body):
            raise ValueError("string ends with a lone backslash")
        e = body[i]
        if e == "x":
            m = re.match(r"[0-9A-Fa-f]{1,2}", body[i + 1:])
            if not m:
                raise ValueError("\\x with no hex digits")
            out.append(int(m.group(), 16))
            i += 1 + len(m.group())
        elif e in "01234567":
            m = re.match(r"[0-7]{1,3}", body[i:])
            assert m is not None  # body[i] is an octal digit
            out.append(int(m.group(), 8) & 0xFF)
            i += len(m.group())
        elif e in _ESCAPES:
            out.append(_ESCAPES[e])
            i += 1
        else:
            raise ValueError(f"unknown escape '\\{e}'")
    return bytes(out)


def to_hex_literals(text: str) -> str:
    """keystone reads every plain number as hex once an option is set: write them in 0x form."""
    def repl(m: re.Match) -> str:
        return hex(parse_number(m.group(1)))
    return _DECIMAL.sub(repl, text)
