"""The debugger: gdb's commands over one machine and one call, plus the arena's own.

`Debugger.execute(line)` runs one command and returns its output; the REPL,
scripts (-x/-ex) and gdb's `monitor` all go through it, so every front end
prints the same thing. Breakpoints and watchpoints are Unicorn hooks bounded
to their addresses; nothing runs per instruction elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import unicorn

from ..asm.exprs import ExprError, evaluate
from ..bpf.arena import Arena
from ..bpf.stream import BPF_STDERR, BPF_STDOUT, STREAM_NAMES
from ..errors import EmuError
from ..kernel.events import FaultEvent
from ..machine import OOPS, RETURNED, STOPPED, Machine
from ..mm.layout import CALL_RETURN_ADDR, MASK64, PAGE_MASK
from ..policy import Policy
from ..x86.decode import disasm, disasm_one
from ..x86.fault import Decision
from ..x86.pgtable import flag_names, pte_pfn, pte_present
from ..x86.traps import X86_TRAP_PF

SLICE = 200_000  # instructions run between checks for Ctrl-C during `continue`
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
        "r15", "rip", "rflags")
CONTROL = ("cr0", "cr2", "cr3", "cr4")
ALIASES = {"pc": "rip", "sp": "rsp", "fp": "rbp", "eflags": "rflags"}
_UNITS = {"b": 1, "h": 2, "w": 4, "g": 8}
_X = re.compile(r"^x(?:/(\d*)([a-z]*))?\s*(.*)$")


class CommandError(Exception):
    """A command could not do what was asked: one line for the user, the session goes on."""


@dataclass
class Breakpoint:
    num: int
    addr: int
    what: str
    kind: str = "breakpoint"  # or "watchpoint"
    hits: int = 0
    temporary: bool = False
    size: int = 8
    hooks: list = field(default_factory=list, repr=False)
    generation: int = -1  # of the page tables when `pa` was found
    pa: int | None = None  # where a watched address translates now


class Style:
    """ANSI colour where the terminal has it, plain text where it does not."""

    def __init__(self, color: bool):
        self.color = color

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def changed(self, text: str) -> str:
        return self._wrap("1;31", text) if self.color else f"{text}*"

    def head(self, text: str) -> str:
        return self._wrap("1;34", text)

    def current(self, text: str) -> str:
        return self._wrap("1;32", text)


class Debugger:
    def __init__(self, files: list[str], entry: str, args: list[str] | None = None, *,
                 policy: Policy | None = None, syntax: str = "att", budget: int | None = None,
                 color: bool = False, cpus: int = 1, others: dict[int, str] | None = None,
                 setup: str | None = None):
        self.files, self.entry, self.arg_exprs = files, entry, list(args or [])
        self.setup = setup  # a call made on CPU 0, to its end, before the calls start (as explore's)
        self.ncpus, self.others = cpus, dict(others or {})  # the calls of CPUs 1.., by CPU
        self.current = 0  # the CPU the commands look at and run
        self.policy, self.syntax, self.budget = policy or Policy(), syntax, budget
        self.style = Style(color)
        self.breakpoints: dict[int, Breakpoint] = {}
        self.displays: list[str] = []
        self.catches: set[str] = set()
        self.context_on = True
        self.x_format, self.x_unit = "x", "g"
        self.values: list[int] = []  # $1, $2, ... of print
        self._next_num = 1
        self._skip_bp: int | None = None
        self._watch_hit: tuple | None = None
        self._interrupted = False
        self._last_regs: dict[str, int] = {}
        self._seen_events = 0
        self.quit = False
        self.m: Machine
        self.result = None
        self.start()

    # -- the machine and the call -------------------------------------------

    def start(self) -> None:
        """Build the machine, load the files and stop at the entry (gdb's `run`, then stopped)."""
        if hasattr(self, "m"):
            self.m.close()  # `run` again: the old machine's engines go now, not at the next collection
        self.m = Machine(policy=self.policy, cpus=self.ncpus, **({"budget": self.budget} if self.budget else {}))
        self.m.load(*self.files, syntax=self.syntax)
        scope = self._scope()
        try:
            args = [evaluate(a, scope) for a in self.arg_exprs]
        except ExprError as e:
            raise EmuError(f"--arg: {e}") from None
        self.args = args
        if self.setup is not None:
            r = self.m.call(self.setup, cpu=0)
            if r.status != "returned":
                raise EmuError(f"the setup call {self.setup} did not return: {r.status}")
        for cpu, symbol in sorted(self.others.items()):
            self.m.start_call(symbol, cpu=cpu)
        self.result = self.m.start_call(self.entry, *args, cpu=0)
        self.current = 0
        self.m.catch = self._catch
        for bp in self.breakpoints.values():
            self._install(bp)
        self._seen_events = 0
        self._last_regs = self._regs()
        self._skip_bp = None

    @property
    def cpu(self):
        return self.m.cpus[self.current]

    @property
    def running(self) -> bool:
        return self.current in self.m.running_cpus()

    def interrupt(self) -> None:
        """Ctrl-C: the running `continue` stops at its next check."""
        self._interrupted = True
        self.m.interrupt()

    def _regs(self) -> dict[str, int]:
        return {r: self.cpu.reg(r) for r in GPRS}

    def _scope(self) -> dict[str, int]:
        scope = self.m.symbol_scope()
        if self.running:
            regs = self._regs() | {r: self.cpu.reg(r) for r in CONTROL}
            scope |= {f"${r}": v for r, v in regs.items()} | {f"${a}": regs[r] for a, r in ALIASES.items()}
        scope |= {f"${i + 1}": v for i, v in enumerate(self.values)}
        return scope

    def value(self, expr: str) -> int:
        expr = expr.strip()
        if not expr:
            raise CommandError("an expression is needed")
        try:
            return evaluate(expr, self._scope()) & MASK64
        except ExprError as e:
            raise CommandError(f"{e}") from None

    # -- catchpoints, breakpoints, watchpoints --------------------------------

    def _catch(self, event: FaultEvent, decision: Decision | None) -> bool:
        if decision is None:
            if "fault" in self.catches:
                return True
            return "scratch" in self.catches and self._would_scratch(event)
        return "oops" in self.catches and decision.action == "stop"

    def _would_scratch(self, event: FaultEvent) -> bool:
        """A not-present kernel #PF in an arena's recovery range, with no extable entry."""
        if event.vector != X86_TRAP_PF or event.error_code.present or self.m.search_exception_tables(event.rip):
            return False
        return self.policy.scratch and any(
            a.kern_vm_start <= event.address < a.kern_vm_start + (1 << 32) + 0x8000 for a in self.m.arenas.values())

    def _install(self, bp: Breakpoint) -> None:
        """On every CPU, as gdb's breakpoints stop any thread."""
        bp.hooks = []
        for c in self.m.cpus:
            uc = c.uc
            if bp.kind == "breakpoint":
                bp.hooks.append((uc, uc.hook_add(unicorn.UC_HOOK_CODE, self._on_breakpoint, bp, begin=bp.addr,
                                                 end=bp.addr)))
            else:
                # Unicorn reports a store by physical address once paging is on, so the hook sees
                # every store and compares with where the watched address translates now. A stop
                # asked for inside a memory hook would leave RIP on the store, so the stop waits for
                # the next instruction: like gdb's software watchpoints, a watched run steps in Python.
                bp.hooks += [(uc, uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, self._on_write, bp)),
                             (uc, uc.hook_add(unicorn.UC_HOOK_CODE, self._after_write, bp))]
            uc.ctl_flush_tb()

    def _uninstall(self, bp: Breakpoint) -> None:
        for uc, h in bp.hooks:
            uc.hook_del(h)
            uc.ctl_flush_tb()

    def _on_breakpoint(self, uc, address, _size, bp: Breakpoint) -> None:
        if address == self._skip_bp:
            self._skip_bp = None
            return
        bp.hits += 1
        self._stop_reason = bp
        self.m._call.stop = "breakpoint"
        uc.emu_stop()

    def _on_write(self, uc, _access, address, size, value, bp: Breakpoint) -> None:
        if bp.generation != self.m.pgtables.generation:
            bp.generation = self.m.pgtables.generation
            bp.pa = self.m.pgtables.translate(bp.addr)
        if bp.pa is None or not (address < bp.pa + bp.size and bp.pa < address + size):
            return
        bp.hits += 1
        self._watch_hit = (bp, self._read_value(bp.addr, bp.size), address, size, value)

    def _after_write(self, uc, _address, _size, _bp: Breakpoint) -> None:
        if self._watch_hit is not None:
            self._stop_reason, self._watch_hit = self._watch_hit, None
            self.m._call.stop = "watchpoint"
            uc.emu_stop()

    def _read_value(self, addr: int, size: int) -> int | None:
        try:
            return int.from_bytes(self.m.read(addr, size), "little")
        except EmuError:
            return None

    def _add(self, bp: Breakpoint) -> Breakpoint:
        self.breakpoints[bp.num] = bp
        self._next_num += 1
        self._install(bp)
        return bp

    def location(self, spec: str) -> tuple[int, str]:
        """A breakpoint spec as gdb takes it: *ADDR, SYM, SYM+OFF, FILE:LINE."""
        spec = spec.strip()
        if spec.startswith("*"):
            return self.value(spec[1:]), spec
        m = re.fullmatch(r"(\S+):(\d+)", spec)
        if m:
            want, line = m.group(1), int(m.group(2))
            hits = self.m.line_addresses(want, line)
            if not hits:
                raise CommandError(f"No line {line} in file \"{want}\".")
            return hits[0], spec
        return self.value(spec), spec

    def label(self, addr: int) -> str:
        """` <sym+off>` where a symbol covers `addr`, as gdb prints it; nothing elsewhere."""
        return f" <{self.m.symbolize(addr)}>" if self.m.kallsyms.lookup(addr) else ""

    def where(self, addr: int) -> str:
        line = self.m.lines.get(addr)
        return f"file {line[0].rsplit('/', 1)[-1]}, line {line[1]}" if line else f"<{self.m.symbolize(addr)}>"

    # -- running ----------------------------------------------------------------

    def _run(self, count: int | None, interrupted: Callable[[], bool] | None = None) -> list[str]:
        """Resume the call: `count` instructions, or until something stops it; `interrupted`
        is asked between slices (the gdb server's Ctrl-C)."""
        if not self.running:
            raise CommandError("The program is not being run.")
        self._stop_reason = None
        self._interrupted = False
        rip = self.cpu.reg("rip")
        self._skip_bp = rip if any(b.addr == rip and b.kind == "breakpoint" for b in self.breakpoints.values()) \
            else None
        while True:
            result = self.m.resume(SLICE if count is None else count, cpu=self.current)
            if count is not None or result.status != STOPPED or self._stop_reason is not None \
                    or self.m._call.stop is not None or self._interrupted:
                break
            if interrupted is not None and interrupted():
                self._interrupted = True
                break
        self.result = result
        return self._report_stop(result)

    def _report_stop(self, result) -> list[str]:
        out = [e.story() for e in self.m.events[self._seen_events:] if e.action]
        held = self.m._calls[self.current].held if self.running else None
        self._seen_events = len(self.m.events) - (1 if held else 0)
        reason = self._stop_reason
        who = f"CPU {self.current}" if len(self.m.cpus) > 1 else "Inferior 1"
        if result.status == RETURNED:
            out.append(f"[{who} returned {result.ret:#x} ({result.ret_signed}) after {result.insns} instructions]")
            return out
        if result.status == OOPS:
            out.append(result.oops)
            out.append(f"[{who} oopsed]")
            return out
        if result.status != STOPPED:
            out.append(f"[{who} stopped: {result.error}]")
            return out
        if held is not None:
            event, decision = held
            what = "oops" if decision is not None else ("scratch" if "scratch" in self.catches else "fault")
            out.append(f"Catchpoint ({what}): {event.kind} at {event.rip:#x} <{event.where}>, address "
                       f"{event.address:#x}, {event.error_code}")
            out.append(f"  PTE now: {self._pte_line(event.address)}; the handler has not run yet (si runs it)")
        elif isinstance(reason, Breakpoint):
            out.append(f"{'Temporary breakpoint' if reason.temporary else 'Breakpoint'} {reason.num}, "
                       f"{reason.addr:#x} in {self.m.symbolize(reason.addr)}")
            if reason.temporary:
                self._delete(reason.num)
        elif isinstance(reason, tuple):
            bp, old, _addr, _size, value = reason
            out.append(f"Hardware watchpoint {bp.num}: {bp.what}\n\nOld value = "
                       f"{'<unreadable>' if old is None else hex(old)}\nNew value = {value:#x}")
        elif self._interrupted:
            out.append("Program received signal SIGINT, Interrupt.")
        out += self._after_stop()
        return out

    def _after_stop(self) -> list[str]:
        out = []
        if self.context_on:
            out.append(self.context())
        else:
            rip = self.cpu.reg("rip")
            out.append(f"{rip:#x} in {self.m.symbolize(rip)}")
        for i, d in enumerate(self.displays, 1):
            out.append(self._display(i, d))
        self._last_regs = self._regs()
        return out

    # -- views ------------------------------------------------------------------

    def context(self) -> str:
        """pwndbg's context: registers (changed ones marked), code, stack, the last fault."""
        s = self.style
        regs = self._regs()
        lines = [s.head("─── registers " + "─" * 50)]
        cells = []
        for r in GPRS:
            text = f"{r.upper():>6} {regs[r]:#018x}"
            cells.append(s.changed(text) if regs[r] != self._last_regs.get(r) else text + (" " if not s.color else ""))
        for i in range(0, len(cells), 3):
            lines.append("  ".join(cells[i:i + 3]))
        lines.append(s.head("─── code " + "─" * 55))
        lines += self._code_around(regs["rip"])
        lines.append(s.head("─── stack " + "─" * 54))
        for i in range(6):
            addr = regs["rsp"] + 8 * i
            word = self._read_value(addr, 8)
            note = f" <{self.m.symbolize(word)}>" if word is not None and self.m.is_text(word) else ""
            lines.append(f"  {addr:#018x}: " + ("<unreadable>" if word is None else f"{word:#018x}{note}"))
        if self.m.events:
            lines.append(s.head("─── last fault " + "─" * 49))
            lines.append("  " + self.m.events[-1].summary())
        return "\n".join(lines)

    def _code_around(self, rip: int, before: int = 3, after: int = 4) -> list[str]:
        starts = sorted(a for a in self.m.lines if abs(a - rip) < 0x100)
        if rip in starts:
            i = starts.index(rip)
            addrs = starts[max(0, i - before):i + after + 1]
        else:
            code = self._read_bytes(rip, 64)
            addrs = [insn.address for insn in disasm(code, rip, after + 1)] if code else []
        return [self._insn_line(a, a == rip) for a in addrs]

    def _insn_line(self, addr: int, current: bool) -> str:
        code = self._read_bytes(addr, 16)
        insn = disasm_one(code, addr) if code else None
        text = insn.text if insn else "(bad)"
        line = f"{'=> ' if current else '   '}{addr:#x} <{self.m.symbolize(addr).split('/')[0]}>:\t{text}"
        return self.style.current(line) if current else line

    def _read_bytes(self, addr: int, n: int) -> bytes | None:
        for size in (n, 1):
            try:
                return self.m.read(addr, size)
            except EmuError:
                continue
        return None

    def _pte_line(self, va: int) -> str:
        w = self.m.walk(va & PAGE_MASK)
        pte = w.pte if w.stages and w.stages[-1].level == "PTE" else 0
        return f"{pte:#x} ({flag_names(pte)}){self._frame_note(pte)}" if pte else "0 (none)"

    def _frame_note(self, pte: int) -> str:
        if not pte_present(pte):
            return ""
        pfn = pte_pfn(pte)
        for a in self.m.arenas.values():
            if pfn == a.scratch_pfn:
                return f", frame {pfn:#x}: {a.name}'s scratch page"
            if pfn == a.garbage_pfn:
                return f", frame {pfn:#x}: {a.name}'s garbage page"
        kind = self.m.mem.kind(pfn)
        return f", frame {pfn:#x}: {kind.name.lower() if kind is not None else 'beyond RAM'}"

    def _display(self, i: int, expr: str) -> str:
        if expr.startswith("/i "):
            return f"{i}: x/i {expr[3:]}\n{self._insn_line(self.value(expr[3:]), True)}"
        try:
            return f"{i}: {expr} = {self.value(expr):#x}"
        except CommandError as e:
            return f"{i}: {expr} = <{e}>"

    # -- commands ---------------------------------------------------------------

    def execute(self, line: str) -> str:
        """Run one command line; errors come back as one line, and the session goes on."""
        line = line.strip()
        if not line or line.startswith("#"):
            return ""
        word, _, rest = line.partition(" ")
        name, fmt = (word.split("/", 1) + [""])[:2] if not word.startswith("x/") else ("x", "")
        cmd = COMMANDS.get(ALIASES_CMD.get(name, name))
        if cmd is None:
            return f"Undefined command: \"{name}\".  Try \"help\"."
        try:
            out = cmd.run(self, line[len("x"):].strip() if cmd.name == "x" else rest.strip(), fmt)
        except CommandError as e:
            return str(e)
        except EmuError as e:
            return str(e)
        return "\n".join(out) if isinstance(out, list) else (out or "")

    def _delete(self, num: int) -> None:
        bp = self.breakpoints.pop(num)
        self._uninstall(bp)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    fn: Callable[[Debugger, str, str], str | list[str] | None]
    aliases: tuple[str, ...] = ()

    def run(self, d: Debugger, rest: str, fmt: str):
        return self.fn(d, rest, fmt)


COMMANDS: dict[str, Command] = {}
ALIASES_CMD: dict[str, str] = {}


def command(name: str, help: str, aliases: tuple[str, ...] = ()):
    def register(fn):
        COMMANDS[name] = Command(name, help, fn, aliases)
        for a in aliases:
            ALIASES_CMD[a] = name
        return fn
    return register


def _count(rest: str, d: Debugger) -> int:
    n = d.value(rest) if rest else 1
    if n <= 0:
        raise CommandError("the count must be positive")
    return n


@command("stepi", "stepi [N]: run N instructions (a faulting one shows its story and lands where the "
                  "hardware would)", ("si",))
def _stepi(d: Debugger, rest: str, _fmt: str):
    return d._run(_count(rest, d))


@command("nexti", "nexti [N]: like stepi, but a call runs to its return", ("ni",))
def _nexti(d: Debugger, rest: str, _fmt: str):
    out = []
    for _ in range(_count(rest, d)):
        rip = d.cpu.reg("rip")
        insn = disasm_one(d._read_bytes(rip, 16) or b"", rip)
        if insn is None or not insn.mnemonic.startswith("call"):
            out = d._run(1)
        else:
            d._add(Breakpoint(d._next_num, rip + insn.size, "nexti", temporary=True))
            out = d._run(None)
        if not d.running:
            break
    return out


@command("continue", "continue: run until a breakpoint, a watchpoint, a catchpoint, the return, an oops, "
                     "the budget or Ctrl-C", ("c", "cont"))
def _continue(d: Debugger, _rest: str, _fmt: str):
    return d._run(None)


@command("finish", "finish: run until the current function returns")
def _finish(d: Debugger, _rest: str, _fmt: str):
    if not d.running:
        raise CommandError("The program is not being run.")
    rip, rsp, rbp = d.cpu.reg("rip"), d.cpu.reg("rsp"), d.cpu.reg("rbp")
    loc = d.m.kallsyms.lookup(rip)
    at_entry = loc is None or loc.offset == 0
    ret = d._read_value(rsp if at_entry else rbp + 8, 8)
    if ret is None:
        raise CommandError("cannot find the return address of this frame")
    out = [f"Run till exit from #0  {rip:#x} in {d.m.symbolize(rip)}"]
    if ret != CALL_RETURN_ADDR:
        d._add(Breakpoint(d._next_num, ret, "finish", temporary=True))
    out += d._run(None)
    if d.running or d.result.status == RETURNED:
        d.values.append(d.result.ret if d.result.status == RETURNED else d.cpu.reg("rax"))
        out.append(f"Value returned is ${len(d.values)} = {d.values[-1]:#x}")
    return out


@command("break", "break LOCATION: *ADDR, SYM, SYM+OFF or FILE:LINE", ("b", "br"))
def _break(d: Debugger, rest: str, _fmt: str):
    if not rest:
        raise CommandError("Argument required (a location).")
    addr, spec = d.location(rest)
    bp = d._add(Breakpoint(d._next_num, addr, spec))
    return f"Breakpoint {bp.num} at {addr:#x}: {d.where(addr)}."


@command("watch", "watch ADDR: stop after a write to the 8 bytes at ADDR")
def _watch(d: Debugger, rest: str, _fmt: str):
    addr = d.value(rest.lstrip("*"))
    bp = d._add(Breakpoint(d._next_num, addr, f"*(u64 *){addr:#x}", kind="watchpoint"))
    return f"Hardware watchpoint {bp.num}: {bp.what}"


@command("delete", "delete [N...]: delete breakpoints and watchpoints (all with no N)", ("d",))
def _delete(d: Debugger, rest: str, _fmt: str):
    nums = [int(n) for n in rest.split()] if rest else list(d.breakpoints)
    for n in nums:
        if n not in d.breakpoints:
            raise CommandError(f"No breakpoint number {n}.")
        d._delete(n)
    return None


@command("catch", "catch fault|oops|scratch: stop before the handler of a fault (any, one headed for an "
                  "oops, one bpf_arena_handle_page_fault() would take)")
def _catch(d: Debugger, rest: str, _fmt: str):
    if rest not in ("fault", "oops", "scratch"):
        raise CommandError("catch takes fault, oops or scratch")
    d.catches.add(rest)
    return f"Catchpoint ({rest})"


@command("info", "info breakpoints | registers [REG] | threads")
def _info(d: Debugger, rest: str, _fmt: str):
    what, _, arg = rest.partition(" ")
    if what in ("threads", "cpus"):
        return _threads(d)
    if what in ("breakpoints", "break", "b", "watchpoints"):
        if not d.breakpoints and not d.catches:
            return "No breakpoints or watchpoints."
        out = ["Num     Type           Disp Address            What"]
        for bp in d.breakpoints.values():
            kind = "hw watchpoint" if bp.kind == "watchpoint" else "breakpoint"
            out.append(f"{bp.num:<7} {kind:<14} {'del' if bp.temporary else 'keep':<4} {bp.addr:#018x} "
                       f"{bp.what} ({d.where(bp.addr)})")
            if bp.hits:
                out.append(f"\tbreakpoint already hit {bp.hits} time{'s' if bp.hits > 1 else ''}")
        out += [f"-       catchpoint     keep {'':<18} {c}" for c in sorted(d.catches)]
        return out
    if what in ("registers", "reg", "r", "all-registers"):
        if not d.running:
            raise CommandError("The program has no registers now.")
        regs = d._regs()
        names = [ALIASES.get(n.lstrip("$"), n.lstrip("$")) for n in arg.split()] or list(GPRS)
        out = []
        for n in names:
            if n not in regs:
                raise CommandError(f"Invalid register `{n}'")
            out.append(f"{n:<15}{regs[n]:<#19x}{regs[n] if n not in ('rip', 'rsp', 'rbp') else d.m.symbolize(regs[n])}")
        return out
    raise CommandError("info takes breakpoints or registers")


@command("x", "x/NFU ADDR: examine memory; F is x d u c s i, U is b h w g")
def _x(d: Debugger, rest: str, _fmt: str):
    m = _X.match("x" + rest)
    letters = m.group(2) if m else ""
    fmts, units = [c for c in letters if c in "xducsi"], [c for c in letters if c in _UNITS]
    if not m or len(fmts) > 1 or len(units) > 1 or len(fmts) + len(units) != len(letters):
        raise CommandError("x/NFU ADDR: F is one of x d u c s i, U one of b h w g")
    n = int(m.group(1)) if m.group(1) else 1
    fmt = fmts[0] if fmts else d.x_format
    unit = units[0] if units else (d.x_unit if fmt not in "cs" else "b")
    d.x_format, d.x_unit = fmt, unit if fmt not in "cs" else d.x_unit
    addr = d.value(m.group(3) or "$pc")
    if fmt == "i":
        out = []
        for insn in disasm(d._read_bytes(addr, 16 * n) or b"", addr, n):
            out.append(d._insn_line(insn.address, insn.address == d.cpu.reg("rip")))
        if not out:
            raise CommandError(f"Cannot access memory at address {addr:#x}")
        return out
    if fmt == "s":
        s = d.m.read_cstring(addr, 4096)
        if s is None:
            raise CommandError(f"Cannot access memory at address {addr:#x}")
        return f"{addr:#x}{d.label(addr)}:\t\"{s}\""
    size = _UNITS[unit]
    try:
        data = d.m.read(addr, n * size)
    except EmuError:
        raise CommandError(f"Cannot access memory at address {addr:#x}") from None
    words = [int.from_bytes(data[i:i + size], "little") for i in range(0, len(data), size)]
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
                cells.append(f"{w} {chr(w)!r}" if 32 <= w < 127 else f"{w} '\\x{w:02x}'")
            else:
                cells.append(str(w))
        a = addr + i * size
        out.append(f"{a:#x}{d.label(a)}:\t" + "\t".join(cells))
    return out


@command("print", "print[/x|/d] EXPR: registers ($rdi), symbols, $N and arithmetic", ("p",))
def _print(d: Debugger, rest: str, fmt: str):
    v = d.value(rest)
    d.values.append(v)
    if fmt == "x" or (not fmt and v > 0xFFFF_FFFF):
        return f"${len(d.values)} = {v:#x}"
    return f"${len(d.values)} = {v - (1 << 64) if v >> 63 else v}"


@command("display", "display[/i] EXPR: show EXPR after every stop")
def _display(d: Debugger, rest: str, fmt: str):
    if not rest:
        return [d._display(i, e) for i, e in enumerate(d.displays, 1)]
    d.displays.append(f"/i {rest}" if fmt == "i" else rest)
    return d._display(len(d.displays), d.displays[-1])


@command("disassemble", "disassemble [SYM]: the function around RIP, its source lines interleaved, "
                        "=> at RIP", ("disas",))
def _disassemble(d: Debugger, rest: str, _fmt: str):
    addr = d.value(rest) if rest else d.cpu.reg("rip")
    loc = d.m.kallsyms.lookup(addr)
    if loc is None:
        return d._code_around(addr)
    start, end = loc.symbol.address, loc.symbol.address + loc.size
    out = [f"Dump of assembler code for function {loc.symbol.display or loc.symbol.name}:"]
    last = None
    rip = d.cpu.reg("rip") if d.running else None
    for a in sorted(x for x in d.m.lines if start <= x < end) or [start]:
        f, n = d.m.lines.get(a, ("", 0))
        if n and (f, n) != last:
            text = d.m._source_lines.get(f, [])
            out.append(f"{n}\t{text[n - 1].strip() if 0 < n <= len(text) else ''}")
            last = (f, n)
        out.append(d._insn_line(a, a == rip))
    out.append("End of assembler dump.")
    return out


@command("bt", "bt: the stack as the kernel's frame-pointer unwinder walks it", ("backtrace", "where"))
def _bt(d: Debugger, _rest: str, _fmt: str):
    if not d.running:
        raise CommandError("No stack.")
    out = []
    for i, ip in enumerate(d.m.stack_frames(d.current)):
        line = d.m.lines.get(ip if i == 0 else ip - 1) or _line_before(d, ip - 1)
        at = f" at {line[0].rsplit('/', 1)[-1]}:{line[1]}" if line else ""
        out.append(f"#{i:<2} {ip:#018x} in {d.m.symbolize(ip)} (){at}")
    return out


def _line_before(d: Debugger, ip: int):
    starts = [a for a in d.m.lines if a <= ip and ip - a < 16]
    return d.m.lines[max(starts)] if starts else None


@command("run", "run: start the call again from its entry (breakpoints stay)", ("r",))
def _runcmd(d: Debugger, _rest: str, _fmt: str):
    d.start()
    return [f"Starting {d.entry}({', '.join(hex(a) for a in d.args)}) under policy {d.policy}", *d._after_stop()]


@command("pte", "pte ADDR: the page walk level by level, the flags, and what the frame holds")
def _pte(d: Debugger, rest: str, _fmt: str):
    va = d.value(rest)
    w = d.m.walk(va)
    out = str(w).splitlines()
    if w.stages and w.stages[-1].level == "PTE" or w.pa is not None:
        pte = w.stages[-1].entry
        out.append(f"  PTE flags: {flag_names(pte) or 'none'}{d._frame_note(pte)}")
    return out


@command("tlb", "tlb: the translations this CPU may still have cached that the tables no longer say")
def _tlb(d: Debugger, _rest: str, _fmt: str):
    stale = d.cpu.maybe_stale
    if not stale:
        return "No PTE this CPU may have cached has changed since its last flush of it."
    out = ["page                old PTE (maybe cached)        PTE now"]
    for va in sorted(stale):
        old = stale[va]
        out.append(f"{va:#018x}  {old:#018x}{d._frame_note(old):<28}  {d._pte_line(va)}")
    return out


@command("arena", "arena: each arena's pages: allocated, reserved and free runs; scratched PTEs")
def _arena(d: Debugger, _rest: str, _fmt: str):
    if not d.m.arenas:
        return "No arena."
    out = []
    for a in d.m.arenas.values():
        out += _arena_view(d, a)
    return out


def _arena_view(d: Debugger, a: Arena) -> list[str]:
    out = [f"arena '{a.name}': {a.max_entries} pages, user {a.user_vm_start:#x}-{a.user_vm_end:#x}, "
           f"kern_vm_start {a.kern_vm_start:#x}, policy {a.policy}"]
    free = a.rt.runs()
    kinds: list[tuple[str, int, int]] = []
    for pgoff in range(a.max_entries):
        uaddr = a.user_addr(pgoff)
        pte = d.m.pte(a.kern_addr(uaddr))
        is_free = any(s <= pgoff < e for s, e in free)
        kind = "free" if is_free and not a.is_scratch(pte) else (
            "scratch" if a.is_scratch(pte) else "allocated" if pte_present(pte) and not a.is_garbage(pte)
            else "free" if is_free else "reserved")
        if kinds and kinds[-1][0] == kind and kinds[-1][2] == pgoff:
            kinds[-1] = (kind, kinds[-1][1], pgoff + 1)
        else:
            kinds.append((kind, pgoff, pgoff + 1))
    for kind, s, e in kinds:
        note = " (free in the range tree)" if kind == "scratch" and any(fs <= s < fe for fs, fe in free) else ""
        out.append(f"  pages {s:>7}-{e - 1:<7} {a.user_addr(s):#x}  {kind}{note}")
    if a.scratch_pfn is not None:
        out.append(f"  scratch page: frame {a.scratch_pfn:#x}")
    return out


@command("faults", "faults [N]: the fault log, one line each; faults N: fault N's whole story")
def _faults(d: Debugger, rest: str, _fmt: str):
    events = d.m.events
    if rest:
        n = int(d.value(rest))
        if not 1 <= n <= len(events):
            raise CommandError(f"No fault #{n}: there are {len(events)}.")
        return events[n - 1].story()
    return [e.summary() for e in events] or "No faults."


@command("stream", "stream [stdout|stderr]: what the BPF programs' streams hold (not consumed)")
def _stream(d: Debugger, rest: str, _fmt: str):
    ids = {"stdout": [BPF_STDOUT], "stderr": [BPF_STDERR], "": [BPF_STDOUT, BPF_STDERR]}.get(rest)
    if ids is None:
        raise CommandError("stream takes stdout or stderr")
    out = []
    for p in d.m.progs:
        if p.main is None:
            for i in ids:
                text = p.streams[i].peek().decode(errors="replace")
                if text:
                    out.append(f"--- {p.name} {STREAM_NAMES[i]} ---\n{text.rstrip()}")
    return out or "The streams are empty."


@command("cpu", "cpu [N]: the CPU the commands look at and run (no N: list the CPUs)")
def _cpu(d: Debugger, rest: str, _fmt: str):
    return _switch(d, rest, 0)


@command("thread", "thread [N]: gdb's name for cpu, numbered from 1 (thread 2 is CPU 1)")
def _thread(d: Debugger, rest: str, _fmt: str):
    return _switch(d, rest, 1)


def _switch(d: Debugger, rest: str, first: int):
    if not rest:
        return _threads(d)
    n = int(d.value(rest))
    cpu = n - first
    if not 0 <= cpu < len(d.m.cpus):
        raise CommandError(f"Invalid CPU {n}: this machine has {len(d.m.cpus)}.")
    d.current = cpu
    state = "running a call" if d.running else "idle"
    return f"[Switching to CPU {cpu} ({state})]\n" + "\n".join(d._after_stop()) if d.running else \
        f"[Switching to CPU {cpu} ({state})]"


def _threads(d: Debugger) -> list[str]:
    out = ["  Id   CPU   State      Where"]
    for c in d.m.cpus:
        mark = "*" if c.index == d.current else " "
        result = d.m.results.get(c.index)
        state = "stopped" if c.index in d.m.running_cpus() else (result.status if result else "idle")
        where = d.m.symbolize(c.reg("rip")) if result else ""
        out.append(f"{mark} {c.index + 1:<4} {c.index:<5} {state:<10} {where}")
    return out


@command("policy", "policy: the kernel this machine models, and its knobs")
def _policy(d: Debugger, _rest: str, _fmt: str):
    return f"policy {d.policy.name}, knobs: {', '.join(d.policy.knobs) or 'none'}"


@command("set", "set context on|off")
def _set(d: Debugger, rest: str, _fmt: str):
    m = re.fullmatch(r"context\s+(on|off)", rest)
    if not m:
        raise CommandError("set takes: context on|off")
    d.context_on = m.group(1) == "on"
    return None


@command("context", "context: show registers, code, stack and the last fault", ("ctx",))
def _context(d: Debugger, _rest: str, _fmt: str):
    if not d.running:
        raise CommandError("The program is not being run.")
    return d.context()


@command("help", "help [COMMAND]", ("h",))
def _help(_d: Debugger, rest: str, _fmt: str):
    if rest:
        cmd = COMMANDS.get(ALIASES_CMD.get(rest, rest))
        if cmd is None:
            raise CommandError(f"Undefined command: \"{rest}\".  Try \"help\".")
        also = f" (also {', '.join(cmd.aliases)})" if cmd.aliases else ""
        return cmd.help + also
    return [f"{c.name:<12} {c.help.split(':', 1)[-1].strip() if ':' in c.help else c.help}"
            for c in COMMANDS.values()]


@command("quit", "quit: leave", ("q",))
def _quit(d: Debugger, _rest: str, _fmt: str):
    d.quit = True

