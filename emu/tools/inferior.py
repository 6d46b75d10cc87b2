"""The debugged call, as the debugger holds it: the machine it runs on, what
stops it, how a stop is reported, and the views the commands share.

Breakpoints and watchpoints are Unicorn hooks bounded to their addresses;
nothing runs per instruction elsewhere. The commands (execution.py,
inspection.py, arena_views.py, cpus.py) work on an Inferior; debugger.py
puts gdb's command line on top of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import unicorn

from ..asm.exprs import ExprError, evaluate
from ..errors import EmuError
from ..kernel.events import FaultEvent
from ..machine import BUDGET, DEFAULT_BUDGET, ERROR, OOPS, RETURNED, STOPPED, CallResult, Machine
from ..mm.layout import MASK64, PAGE_MASK
from ..policy import Policy
from ..x86.decode import disasm, disasm_one
from ..x86.fault import Decision
from ..x86.pgtable import flag_names, pte_pfn, pte_present
from ..x86.traps import X86_TRAP_PF
from .loading import load_files
from .prog_dump import bpf_here

SLICE = 200_000  # instructions run between checks for Ctrl-C during `continue`
GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
        "r15", "rip", "rflags")
CONTROL = ("cr0", "cr2", "cr3", "cr4")
ALIASES = {"pc": "rip", "sp": "rsp", "fp": "rbp", "eflags": "rflags"}


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


class Inferior:
    """One call on one machine under the debugger, and what the commands keep between them."""

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
        self.x_next: int | None = None  # where the last x stopped: x with no address goes on from there
        self.values: list[int] = []  # $1, $2, ... of print
        self._next_num = 1
        self._list_last: tuple[str, int] | None = None  # the last line `list` showed
        self._skip_bp: int | None = None
        self._watch_hit: tuple | None = None
        self._stop_reason: Breakpoint | tuple | None = None  # what stopped the last run, when it was ours
        self._interrupted = False
        self._last_regs: dict[str, int] = {}
        self._seen_events = 0
        self.quit = False
        self.m: Machine
        self.result: CallResult  # start() sets it
        self.start()

    # -- the machine and the call -------------------------------------------

    def start(self) -> None:
        """Build the machine, load the files and stop at the entry (gdb's `run`, then stopped)."""
        if hasattr(self, "m"):
            self.m.close()  # `run` again: the old machine's engines go now, not at the next collection
        self.m = Machine(policy=self.policy, cpus=self.ncpus, budget=self.budget or DEFAULT_BUDGET)
        load_files(self.m, self.files, self.syntax)
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

    @property
    def has_registers(self) -> bool:
        """Running, or ended where it died (an oops, the budget, an engine error): until the
        next `run` its registers, stack and memory stay to look at, as a core file's do in gdb."""
        result = self.m.results.get(self.current)
        return self.running or (result is not None and result.status in (OOPS, BUDGET, ERROR))

    def interrupt(self) -> None:
        """Ctrl-C: the running `continue` stops at its next check."""
        self._interrupted = True
        self.m.interrupt()

    def _regs(self) -> dict[str, int]:
        return {r: self.cpu.reg(r) for r in GPRS}

    def _scope(self) -> dict[str, int]:
        scope = self.m.symbol_scope()
        if self.has_registers:
            regs = self._regs() | {r: self.cpu.reg(r) for r in CONTROL}
            scope |= {f"${r}": v for r, v in regs.items()} | {f"${a}": regs[r] for a, r in ALIASES.items()}
        scope |= {f"${i + 1}": v for i, v in enumerate(self.values)}
        return scope

    def value(self, expr: str) -> int:
        expr = expr.strip()
        if not expr:
            raise CommandError("Argument required (expression to compute).")
        try:
            return evaluate(expr, self._scope()) & MASK64
        except (ExprError, ArithmeticError) as e:  # exprs.py's `/` goes through a float: it can overflow
            raise CommandError(f"{e}") from None

    def frames(self) -> list[int]:
        """RIP, then the return addresses, as the kernel's unwinder finds them from these registers."""
        return self.m.stack_frames(self.current)

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
        return self.policy.scratch and any(a.in_recovery_range(event.address) for a in self.m.arenas.values())

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
        self._uncount()
        self.m.interrupt("breakpoint")

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
            self._uncount()
            self.m.interrupt("watchpoint")

    def _uncount(self) -> None:
        """A breakpoint or watchpoint stop must not add the instruction it stopped at to the count."""
        self.cpu.exc.uncount()

    def _read_value(self, addr: int, size: int) -> int | None:
        try:
            return int.from_bytes(self.m.read(addr, size), "little")
        except EmuError:
            return None

    def _add(self, bp: Breakpoint) -> Breakpoint:
        """A temporary breakpoint is internal (finish, next, nexti): as gdb's, it takes a number below
        zero, so the user's breakpoints are numbered 1, 2, ... whatever ran between them."""
        if bp.temporary:
            bp.num = min([0, *self.breakpoints]) - 1
        else:
            self._next_num += 1
        self.breakpoints[bp.num] = bp
        self._install(bp)
        return bp

    def _delete(self, num: int) -> None:
        bp = self.breakpoints.pop(num)
        self._uninstall(bp)

    def location(self, spec: str) -> tuple[int, str]:
        """A breakpoint spec as gdb takes it: *ADDR, SYM, SYM+OFF, FILE:LINE."""
        spec = spec.strip()
        if spec.startswith("*"):
            return self.value(spec[1:]), spec
        m = re.fullmatch(r"(\S+):(\d+)", spec)
        if m:
            want, line = m.group(1), int(m.group(2))
            hits = self.m.line_addresses(want, line)
            later = sorted(n for f, n in self.m.lines.values() if n > line and (f == want or f.endswith("/" + want)))
            if not hits and later:  # gdb moves a breakpoint on a line with no code to the next one that has some
                hits = self.m.line_addresses(want, later[0])
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
                    or self.m.executor.stop_reason(self.current) is not None or self._interrupted:
                break
            if interrupted is not None and interrupted():
                self._interrupted = True
                break
        self.result = result
        return self._report_stop(result)

    def _report_stop(self, result) -> list[str]:
        out = [e.story() for e in self.m.events[self._seen_events:] if e.action]
        held = self.m.executor.held(self.current) if self.running else None
        self._seen_events = len(self.m.events) - (1 if held else 0)
        reason = self._stop_reason
        who = f"CPU {self.current}" if len(self.m.cpus) > 1 else "Inferior 1"
        if result.status == RETURNED:
            out.append(f"[{who} returned {result.ret:#x} ({result.ret_signed}) {result.after}]")
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
        elif isinstance(reason, Breakpoint) and reason.temporary:  # gdb announces no internal breakpoint
            self._delete(reason.num)
        elif isinstance(reason, Breakpoint):
            out.append(f"Breakpoint {reason.num}, {reason.addr:#x} in {self.m.symbolize(reason.addr)}")
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
        here = bpf_here(self.m.bpf, self.m.line_table, regs["rip"])
        if here is not None:  # JITed BPF: the C line and the BPF instruction the x86 code came from
            lines += [f"  {line}" for line in here.lines()]
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
        """One display; one that cannot be shown now says why, and the stop's report goes on."""
        try:
            if expr.startswith("/i "):
                return f"{i}: x/i {expr[3:]}\n{self._insn_line(self.value(expr[3:]), True)}"
            return f"{i}: {expr} = {self.value(expr):#x}"
        except CommandError as e:
            return f"{i}: {expr.removeprefix('/i ')} = <{e}>"
