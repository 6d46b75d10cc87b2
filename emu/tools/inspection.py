"""gdb's commands that look without running: info, x, print, display,
disassemble, bt, and the context view with its setting.
"""

from __future__ import annotations

import math
import re
import struct

from ..errors import EmuError
from ..mm.layout import MASK64, PAGE_SIZE
from ..x86.decode import disasm
from .commands import Command, registry
from .cpus import threads
from .inferior import ALIASES, GPRS, CommandError, Inferior
from .source import info_line

_UNITS = {"b": 1, "h": 2, "w": 4, "g": 8}
_X = re.compile(r"^x(?:/(\d*)([a-z]*))?\s*(.*)$")

COMMANDS: dict[str, Command] = {}
command = registry(COMMANDS)


@command("info", "info breakpoints | registers [REG] | threads")
def _info(d: Inferior, rest: str, _fmt: str):
    what, _, arg = rest.partition(" ")
    if what in ("threads", "cpus"):
        return threads(d)
    if what in ("breakpoints", "break", "b", "watchpoints"):
        users = [bp for bp in d.breakpoints.values() if not bp.temporary]  # internal ones are gdb's maint list
        if not users and not d.catches:
            return "No breakpoints or watchpoints."
        out = ["Num     Type           Disp Address            What"]
        for bp in users:
            kind = "hw watchpoint" if bp.kind == "watchpoint" else "breakpoint"
            out.append(f"{bp.num:<7} {kind:<14} {'keep':<4} {bp.addr:#018x} "
                       f"{bp.what} ({d.where(bp.addr)})")
            if bp.hits:
                out.append(f"\tbreakpoint already hit {bp.hits} time{'s' if bp.hits > 1 else ''}")
        out += [f"-       catchpoint     keep {'':<18} {c}" for c in sorted(d.catches)]
        return out
    if what == "line":
        return info_line(d, arg)
    if what in ("registers", "reg", "r", "all-registers"):
        if not d.has_registers:
            raise CommandError("The program has no registers now.")
        regs = d._regs()
        names = [ALIASES.get(n.lstrip("$"), n.lstrip("$")) for n in arg.split()] or list(GPRS)
        out = []
        for n in names:
            if n not in regs:
                raise CommandError(f"Invalid register `{n}'")
            out.append(f"{n:<15}{regs[n]:<#19x}{regs[n] if n not in ('rip', 'rsp', 'rbp') else d.m.symbolize(regs[n])}")
        return out
    if not what:
        raise CommandError('"info" must be followed by the name of an info command: breakpoints, registers, threads.')
    raise CommandError(f'Undefined info command: "{what}".  Try "help info".')


@command("x", "x/NFU ADDR: examine memory; F is x d u c s i, U is b h w g")
def _x(d: Inferior, rest: str, _fmt: str):
    m = _X.match("x" + rest)
    letters = (m.group(2) or "") if m else ""
    fmts, units = [c for c in letters if c in "xducsi"], [c for c in letters if c in _UNITS]
    if not m or len(fmts) > 1 or len(units) > 1 or len(fmts) + len(units) != len(letters):
        raise CommandError("x/NFU ADDR: F is one of x d u c s i, U one of b h w g")
    n = int(m.group(1)) if m.group(1) else 1
    fmt = fmts[0] if fmts else d.x_format
    unit = units[0] if units else (d.x_unit if fmt not in "cs" else "b")
    d.x_format, d.x_unit = fmt, unit if fmt not in "cs" else d.x_unit
    if m.group(3):
        addr = d.value(m.group(3))
    elif d.x_next is not None:
        addr = d.x_next
    else:
        raise CommandError("Argument required (starting display address).")
    if fmt == "i":
        out = []
        insns = disasm(d._read_bytes(addr, 16 * n) or b"", addr, n)
        for insn in insns:
            out.append(d._insn_line(insn.address, insn.address == d.cpu.reg("rip")))
        if not out:
            raise CommandError(f"Cannot access memory at address {addr:#x}")
        d.x_next = insns[-1].address + insns[-1].size
        return out
    if fmt == "s":
        s = d.m.read_cstring(addr, 4096)
        if s is None:
            raise CommandError(f"Cannot access memory at address {addr:#x}")
        d.x_next = addr + len(s.encode()) + 1
        return f"{addr:#x}{d.label(addr)}:\t\"{s}\""
    size = _UNITS[unit]
    data = _readable(d, addr, n * size)
    words = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data) - size + 1, size)]
    if not words:
        raise CommandError(f"Cannot access memory at address {addr:#x}")
    d.x_next = (addr + len(words) * size) & MASK64
    per = {1: 8, 2: 8, 4: 4, 8: 2}[size]
    out = []
    for i in range(0, len(words), per):
        cells = []
        for w in words[i:i + per]:
            if fmt == "x":
                cells.append(f"0x{w:0{2 * size}x}")
            elif fmt == "d":
                cells.append(str(w - (1 << 8 * size) if w >> (8 * size - 1) else w))
            elif fmt == "c":
                cells.append(f"{w - 256 if w > 127 else w} {_char(w)}")
            else:
                cells.append(str(w))
        a = (addr + i * size) & MASK64
        out.append(f"{a:#x}{d.label(a)}:\t" + "\t".join(cells))
    if len(words) < n:
        # gdb prints what it read, then the error where the next value was due: on the line
        # already begun, or at the start of the next one.
        bad = d.x_next
        error = f"\tCannot access memory at address {bad:#x}"
        if len(words) % per:
            out[-1] += error
        else:
            out.append(f"{bad:#x}{d.label(bad)}:{error}")
        raise CommandError("\n".join(out))
    return out


def _readable(d: Inferior, addr: int, length: int) -> bytes:
    """The bytes from `addr` up to the first unreadable one, page by page, at most `length`."""
    out = bytearray()
    while len(out) < length:
        va = (addr + len(out)) & MASK64
        try:
            out += d.m.read(va, min(length - len(out), PAGE_SIZE - va % PAGE_SIZE))
        except EmuError:
            break
    return bytes(out)


@command("print", "print[/F] EXPR: registers ($rdi), symbols, $N and arithmetic; F is one of x d u o t a c f s z",
         ("p",))
def _print(d: Inferior, rest: str, fmt: str):
    letter = _print_format(fmt)
    if rest:
        v = d.value(rest)
    elif d.values:
        v = d.values[-1]
    else:
        raise CommandError("The history is empty.")
    d.values.append(v)
    return f"${len(d.values)} = {_formatted(d, v, letter)}"


def _print_format(fmt: str) -> str:
    """The last format letter of print/FMT, refused as gdb's validate_format() refuses."""
    letters = fmt.lstrip("-0123456789")
    if len(letters) != len(fmt):
        raise CommandError('Item count other than 1 is meaningless in "print" command.')
    if any(c in _UNITS for c in letters):
        raise CommandError('Size letters are meaningless in "print" command.')
    for c in letters:
        if c == "i":
            raise CommandError('Format letter "i" is meaningless in "print" command.')
        if c not in "xduotacfsz":
            raise CommandError(f'Undefined output format "{c}".')
    return letters[-1:]


def _formatted(d: Inferior, v: int, letter: str) -> str:
    """A 64-bit value as gdb's print_scalar_formatted() prints a long in each format."""
    signed = v - (1 << 64) if v >> 63 else v
    if letter in ("", "s"):
        return f"{v:#x}" if v > 0xFFFF_FFFF else str(signed)
    if letter == "a":
        loc = d.m.kallsyms.lookup(v)
        if loc is None:
            return f"{v:#x}"
        return f"{v:#x} <{loc.symbol.display or loc.symbol.name}{f'+{loc.offset}' if loc.offset else ''}>"
    if letter == "c":
        byte = v & 0xFF
        return f"{byte - 256 if byte > 127 else byte} {_char(byte)}"
    if letter == "f":
        return _double(v)
    return {"x": f"{v:#x}", "z": f"0x{v:016x}", "d": str(signed), "u": str(v), "o": f"0{v:o}" if v else "0",
            "t": f"{v:b}"}[letter]


_ESCAPES = {7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 39: "\\'", 92: "\\\\"}


def _char(byte: int) -> str:
    """A char literal as gdb prints one: C's escapes, printable ASCII, else octal."""
    text = _ESCAPES.get(byte) or (chr(byte) if 32 <= byte < 127 else f"\\{byte:03o}")
    return f"'{text}'"


def _double(v: int) -> str:
    """print/f of a 64-bit integer: its bits as a double, with %g's 17 digits, NaNs with their payload."""
    x = struct.unpack("<d", v.to_bytes(8, "little"))[0]
    if math.isnan(x):
        return f"{'-' if v >> 63 else ''}nan({v & ((1 << 52) - 1):#x})"
    return f"{x:.17g}"


@command("display", "display[/i] EXPR: show EXPR after every stop")
def _display(d: Inferior, rest: str, fmt: str):
    if not rest:
        return [d._display(i, e) for i, e in enumerate(d.displays, 1)]
    d.value(rest)  # gdb refuses an expression it cannot parse, and keeps no display of it
    d.displays.append(f"/i {rest}" if fmt == "i" else rest)
    return d._display(len(d.displays), d.displays[-1])


@command("disassemble", "disassemble [SYM]: the function around RIP, its source lines interleaved, "
                        "=> at RIP", ("disas",))
def _disassemble(d: Inferior, rest: str, _fmt: str):
    addr = d.value(rest) if rest else d.cpu.reg("rip")
    loc = d.m.kallsyms.lookup(addr)
    if loc is None:
        return d._code_around(addr)
    start, end = loc.symbol.address, loc.symbol.address + loc.size
    out = [f"Dump of assembler code for function {loc.symbol.display or loc.symbol.name}:"]
    last = None
    rip = d.cpu.reg("rip") if d.has_registers else None
    for a in sorted(x for x in d.m.lines if start <= x < end) or [start]:
        f, n = d.m.lines.get(a, ("", 0))
        if n and (f, n) != last:
            text = d.m.line_table.sources.get(f, [])
            out.append(f"{n}\t{text[n - 1].strip() if 0 < n <= len(text) else ''}")
            last = (f, n)
        out.append(d._insn_line(a, a == rip))
    out.append("End of assembler dump.")
    return out


@command("bt", "bt: the stack as the kernel's frame-pointer unwinder walks it", ("backtrace", "where"))
def _bt(d: Inferior, _rest: str, _fmt: str):
    if not d.has_registers:
        raise CommandError("No stack.")
    out = []
    for i, ip in enumerate(d.frames()):
        line = d.m.lines.get(ip if i == 0 else ip - 1) or _line_before(d, ip - 1)
        at = f" at {line[0].rsplit('/', 1)[-1]}:{line[1]}" if line else ""
        out.append(f"#{i:<2} {ip:#018x} in {d.m.symbolize(ip)} (){at}")
    return out


def _line_before(d: Inferior, ip: int):
    starts = [a for a in d.m.lines if a <= ip and ip - a < 16]
    return d.m.lines[max(starts)] if starts else None


@command("set", "set context on|off")
def _set(d: Inferior, rest: str, _fmt: str):
    m = re.fullmatch(r"context\s+(on|off)", rest)
    if not m:
        raise CommandError("set takes: context on|off")
    d.context_on = m.group(1) == "on"
    return None


@command("context", "context: show registers, code, stack and the last fault", ("ctx",))
def _context(d: Inferior, _rest: str, _fmt: str):
    if not d.has_registers:
        raise CommandError("The program is not being run.")
    return d.context()
