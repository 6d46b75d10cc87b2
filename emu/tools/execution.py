"""gdb's commands that run the call and say where it stops: stepi, nexti,
continue, finish, run; break, watch, delete and catch.
"""

from __future__ import annotations

from ..machine import RETURNED
from ..mm.layout import CALL_RETURN_ADDR
from ..x86.decode import disasm_one
from .commands import Command, registry
from .inferior import Breakpoint, CommandError, Inferior

COMMANDS: dict[str, Command] = {}
command = registry(COMMANDS)


def _count(rest: str, d: Inferior) -> int:
    """A step count, signed: gdb runs nothing for zero or less, and says where it is."""
    if not d.running:
        raise CommandError("The program is not being run.")
    n = d.value(rest) if rest else 1
    return n - (1 << 64) if n >> 63 else n


@command("stepi", "stepi [N]: run N instructions (a faulting one shows its story and lands where the "
                  "hardware would)", ("si",))
def _stepi(d: Inferior, rest: str, _fmt: str):
    n = _count(rest, d)
    return d._run(n) if n > 0 else d._after_stop()


@command("nexti", "nexti [N]: like stepi, but a call runs to its return", ("ni",))
def _nexti(d: Inferior, rest: str, _fmt: str):
    n = _count(rest, d)
    if n <= 0:
        return d._after_stop()
    out = []
    for _ in range(n):
        rip = d.cpu.reg("rip")
        insn = disasm_one(d._read_bytes(rip, 16) or b"", rip)
        if insn is None or not insn.mnemonic.startswith("call"):
            out = d._run(1)
        else:
            d._add(Breakpoint(0, rip + insn.size, "nexti", temporary=True))
            out = d._run(None)
        if not d.running:
            break
    return out


@command("continue", "continue: run until a breakpoint, a watchpoint, a catchpoint, the return, an oops, "
                     "the budget or Ctrl-C", ("c", "cont"))
def _continue(d: Inferior, _rest: str, _fmt: str):
    return d._run(None)


@command("finish", "finish: run until the current function returns")
def _finish(d: Inferior, _rest: str, _fmt: str):
    if not d.running:
        raise CommandError("The program is not being run.")
    frames = d.frames()
    if len(frames) < 2:
        raise CommandError("\"finish\" not meaningful in the outermost frame.")
    rip, ret = frames[0], frames[1]
    out = [f"Run till exit from #0  {rip:#x} in {d.m.symbolize(rip)}"]
    if ret != CALL_RETURN_ADDR:
        d._add(Breakpoint(0, ret, "finish", temporary=True))
    out += d._run(None)
    if d.running or d.result.status == RETURNED:
        d.values.append(d.result.ret if d.result.ret is not None else d.cpu.reg("rax"))  # returned, or still running
        out.append(f"Value returned is ${len(d.values)} = {d.values[-1]:#x}")
    return out


@command("break", "break LOCATION: *ADDR, SYM, SYM+OFF or FILE:LINE", ("b", "br"))
def _break(d: Inferior, rest: str, _fmt: str):
    if not rest:
        raise CommandError("Argument required (a location).")
    addr, spec = d.location(rest)
    bp = d._add(Breakpoint(d._next_num, addr, spec))
    return f"Breakpoint {bp.num} at {addr:#x}: {d.where(addr)}."


@command("watch", "watch ADDR: stop after a write to the 8 bytes at ADDR")
def _watch(d: Inferior, rest: str, _fmt: str):
    addr = d.value(rest.lstrip("*"))
    bp = d._add(Breakpoint(d._next_num, addr, f"*(u64 *){addr:#x}", kind="watchpoint"))
    return f"Hardware watchpoint {bp.num}: {bp.what}"


@command("delete", "delete [N|N-M|$N...]: delete breakpoints and watchpoints (all with no N)", ("d",),
         repeats=False)
def _delete(d: Inferior, rest: str, _fmt: str):
    words = rest.split()
    if words[:1] == ["breakpoints"]:  # gdb's `delete breakpoints [N...]`, the same command
        words = words[1:]
    if not words:
        for n in list(d.breakpoints):
            d._delete(n)
        return None
    out: list[str] = []
    for n in _breakpoint_numbers(d, words, out):
        if n in d.breakpoints:
            d._delete(n)
        else:
            out.append(f"No breakpoint number {n}.")
    return out


def _breakpoint_numbers(d: Inferior, words: list[str], out: list[str]):
    """gdb's number_or_range_parser: N, N-M and $N (a value of print); a word that is none of
    them is warned about and skipped, a negative number or an inverted range ends the command.
    A range goes on past the numbers given out so far only to its next one, which is said to
    be missing: gdb names each, and a range of millions would take as long."""
    for word in words:
        first, dash, last = word.partition("-")
        if not first and last:
            raise CommandError("\n".join([*out, "negative value"]))
        lo = _number(d, first, out)
        if dash:
            hi = _number(d, last, out) if last else 0
            if hi < lo:
                raise CommandError("\n".join([*out, "inverted range"]))
            yield from range(lo, min(hi, max(lo, d._next_num)) + 1)
        elif lo:
            yield lo
        else:
            out.append(f"warning: bad breakpoint number at or near '{word}'")


def _number(d: Inferior, word: str, out: list[str]) -> int:
    """get_number_trailer(): digits or $N; 0 for anything else."""
    if word.isdigit() and word.isascii():
        return int(word)
    if word[1:].isdigit() and word.startswith("$") and word.isascii():
        n = int(word[1:])
        if not 1 <= n <= len(d.values):
            raise CommandError("\n".join([*out, f"History has not yet reached ${n}."]))
        return d.values[n - 1]
    if word.startswith("$"):
        out.append("Convenience variable must have integer value.")
    return 0


@command("catch", "catch fault|oops|scratch: stop before the handler of a fault (any, one headed for an "
                  "oops, one bpf_arena_handle_page_fault() would take)")
def _catch(d: Inferior, rest: str, _fmt: str):
    if not rest:
        raise CommandError('"catch" must be followed by the name of a catch subcommand: fault, oops, scratch.')
    if rest not in ("fault", "oops", "scratch"):
        raise CommandError(f'Undefined catch command: "{rest}".  Try "help catch".')
    d.catches.add(rest)
    return f"Catchpoint ({rest})"


@command("run", "run: start the call again from its entry (breakpoints stay)", ("r",), repeats=False)
def _runcmd(d: Inferior, _rest: str, _fmt: str):
    d.start()
    return [f"Starting {d.entry}({', '.join(hex(a) for a in d.args)}) under policy {d.policy}", *d._after_stop()]
