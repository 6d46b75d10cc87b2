"""gdb's source-level commands: list, step, next and info line, over the machine's line table.

The table holds every loaded instruction's FILE:LINE: assembly's own lines, and
compiled code's DWARF lines (kernel C objects). `step` and `next` run one
instruction at a time until the CPU reaches the start of another line, as gdb's
stepping ranges do; code with no line (a native kfunc) is stepped through.
"""

from __future__ import annotations

import bisect
import re

from ..mm.layout import CALL_RETURN_ADDR
from ..x86.decode import disasm_one
from .commands import Command, registry
from .inferior import Breakpoint, CommandError, Inferior
from .prog_dump import bpf_here

COMMANDS: dict[str, Command] = {}
command = registry(COMMANDS)

LIST_LINES = 10
STEP_LIMIT = 1_000_000  # instructions one `step` may run looking for the next line


def _line_at(d: Inferior, addr: int) -> tuple[str, int] | None:
    return d.m.line_table.containing(addr) if d.m.kallsyms.lookup(addr) else None


def _line_of(d: Inferior, spec: str) -> tuple[str, int]:
    """A linespec as `list` takes it: FILE:LINE, LINE (of the current file), or a function."""
    m = re.fullmatch(r"(\S+):(\d+)", spec)
    if m:
        addrs = d.m.line_addresses(m.group(1), int(m.group(2)))
        where = d.m.line_table.get(addrs[0]) if addrs else None
        return (where[0] if where else _file_named(d, m.group(1))), int(m.group(2))
    if spec.isdigit():
        here = d._list_last or (_line_at(d, d.cpu.reg("rip")) if d.has_registers else None)
        if here is None:
            raise CommandError("No symbol table is loaded.  Use the \"file\" command.")
        return here[0], int(spec)
    where = _line_at(d, d.value(spec))
    if where is None:
        raise CommandError(f"Function \"{spec}\" has no line information.")
    return where


def _file_named(d: Inferior, name: str) -> str:
    for file in d.m.line_table.sources:
        if file == name or file.endswith("/" + name):
            return file
    raise CommandError(f"No source file named {name}.")


@command("list", "list [FILE:LINE|LINE|FUNC]: ten source lines around the place, or the ten after the last",
         ("l",))
def _list(d: Inferior, rest: str, _fmt: str):
    if rest:
        file, line = _line_of(d, rest)
        first = max(1, line - LIST_LINES // 2)
    elif d._list_last is not None:
        file, first = d._list_last[0], d._list_last[1] + 1
    else:
        here = _line_at(d, d.cpu.reg("rip")) if d.has_registers else None
        if here is None:
            raise CommandError("No line information for the current location.")
        file, first = here[0], max(1, here[1] - LIST_LINES // 2)
    text = d.m.line_table.sources.get(file)
    if text is None:
        raise CommandError(f"{file}: No such file or directory.")
    if first > len(text):
        raise CommandError(f"Line number {first} out of range; \"{file}\" has {len(text)} lines.")
    last = min(len(text), first + LIST_LINES - 1)
    d._list_last = (file, last)
    return [f"{n}\t{text[n - 1]}" for n in range(first, last + 1)]


def _steps(rest: str, d: Inferior) -> int:
    if not d.running:
        raise CommandError("The program is not being run.")
    return d.value(rest) if rest else 1


def _step_line(d: Inferior, over_calls: bool) -> list[str]:
    """Run to the start of the next line: one whose FILE:LINE differs from where it started, or
    the same line entered again from its start (a loop's next round)."""
    start = d.cpu.reg("rip")
    here = _line_at(d, start)
    out: list[str] = []
    faults = len(d.m.events)
    for _ in range(STEP_LIMIT):
        rip = d.cpu.reg("rip")
        insn = disasm_one(d._read_bytes(rip, 16) or b"", rip)
        if over_calls and insn is not None and insn.mnemonic.startswith("call"):
            d._add(Breakpoint(0, rip + insn.size, "next", temporary=True))
            out = d._run(None)
        else:
            out = d._run(1)
        if not d.running or d._stop_reason is not None or len(d.m.events) != faults or d.m.executor.held(d.current):
            return out
        rip = d.cpu.reg("rip")
        if rip == CALL_RETURN_ADDR:
            return out
        line = d.m.line_table.get(rip)
        if line is not None and (line != here or rip <= start):
            return out
    raise CommandError(f"No new line after {STEP_LIMIT} instructions; stopped at {d.cpu.reg('rip'):#x}.")


def _stepping(d: Inferior, rest: str, over_calls: bool) -> list[str]:
    out: list[str] = []
    for _ in range(_steps(rest, d)):
        out = _step_line(d, over_calls)
        if not d.running:
            return out
    rip = d.cpu.reg("rip")
    where = d.m.line_table.get(rip)
    text = d.m.line_table.sources.get(where[0], []) if where else []
    if where is None or not 0 < where[1] <= len(text):
        return out
    if out and out[-1].startswith(f"{rip:#x} in "):  # the source line says where, as gdb prints a step
        out = out[:-1]
    return [*out, f"{where[1]}\t{text[where[1] - 1]}"]


@command("step", "step [N]: run to the start of the next source line, into calls", ("s",))
def _step(d: Inferior, rest: str, _fmt: str):
    return _stepping(d, rest, over_calls=False)


@command("next", "next [N]: run to the next source line of this function, calls run to their return", ("n",))
def _next(d: Inferior, rest: str, _fmt: str):
    return _stepping(d, rest, over_calls=True)


def info_line(d: Inferior, spec: str) -> str:
    """`info line [LINESPEC]`: where a line's code starts and ends, as gdb says it."""
    if spec:
        file, line = _line_of(d, spec)
        addrs = d.m.line_addresses(file, line)
        if not addrs:
            return f"Line {line} of \"{file}\" is at an address with no code."
        start = addrs[0]
    else:
        if not d.has_registers:
            raise CommandError("No line number information available.")
        rip = d.cpu.reg("rip")
        where = _line_at(d, rip)
        if where is None:
            return f"No line number information available for address {rip:#x}{d.label(rip)}"
        file, line = where
        starts = sorted(a for a, fl in d.m.lines.items() if fl == where and a <= rip)
        start = starts[-1]
    ends = sorted(d.m.lines)
    i = bisect.bisect_right(ends, start)
    end = ends[i] if i < len(ends) else start
    return (f"Line {line} of \"{file}\" starts at address {start:#x}{d.label(start)} and ends at "
            f"{end:#x}{d.label(end)}.")


@command("bpf", "bpf [ADDR]: the BPF instruction (bpftool's xlated text) and C line the x86 code at ADDR (default "
                "$pc) was JITed from")
def _bpf(d: Inferior, rest: str, _fmt: str):
    if not rest and not d.has_registers:
        raise CommandError("The program is not being run.")
    rip = d.value(rest) if rest else d.cpu.reg("rip")
    here = bpf_here(d.m.bpf, d.m.line_table, rip)
    if here is not None:
        return here.lines()
    if d.m.bpf.progs.bpf_prog_ksym_find(rip) is not None:
        raise CommandError(f"{rip:#x}{d.label(rip)} is in a BPF program written in assembly: it has no BPF "
                           "instructions.")
    raise CommandError(f"{rip:#x}{d.label(rip)} is not in a BPF program.")
