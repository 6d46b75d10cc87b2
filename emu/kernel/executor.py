"""Calls run on the CPUs: start, resume and settle, and every exception a CPU takes on the way.

A call runs in Unicorn's compiled core; Python runs only when a CPU takes an
exception (the kernel's fault path), reaches a native kfunc, or makes an access
Unicorn cannot place. Each exception becomes a FaultEvent with its story. The
executor owns the CPUs and the calls on them; memory, symbols, the exception
table and the BPF subsystem are handed to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import unicorn

from ..bpf.helpers import CONFORMANCE_HELPERS, HELPERS
from ..bpf.jit_extable import PT_REGS_NAMES
from ..bpf.kfuncs import KFUNCS, KfuncCall, NativeKfunc, ProgramExit, map_kfunc_page
from ..bpf.prog_info import bpf_insn_text
from ..bpf.syscall import BpfSubsystem
from ..errors import EmuError
from ..mm.layout import (
    CALL_RETURN_ADDR,
    KFUNC_PAGE,
    MACHINE_PAGE,
    MASK64,
    PAGE_SIZE,
    THREAD_SIZE,
    is_canonical,
    stack_top,
)
from ..mm.memory import KernelMemory
from ..mm.physmem import FrameKind
from ..x86.cpu import ARG_REGS, CPU, MACHINE_PAGE_CODE
from ..x86.decode import (
    Insn,
    MemRef,
    disasm_one,
    effective_address,
    memory_operand_addresses,
    read_modify_write_operands,
)
from ..x86.dumpstack import OPCODE_BUFSIZE, PROLOGUE_SIZE, oops_report
from ..x86.extable import ExceptionTable, ExtableEntry
from ..x86.fault import Decision, FaultContext, OopsHandler, exc_page_fault, fixup_exception
from ..x86.pgtable import PAGE_KERNEL, PAGE_KERNEL_ROX, PageWalk, capture_walk
from ..x86.traps import (
    TRAP_NAMES,
    X86_PF_INSTR,
    X86_PF_PROT,
    X86_PF_RSVD,
    X86_PF_WRITE,
    X86_TRAP_GP,
    X86_TRAP_PF,
    X86_TRAP_UD,
    error_code,
)
from ..x86.unwind import FRAMED, frame_state, show_trace, walk_stack_frames
from ..x86.unwind_orc import OrcTable, unwind_frames
from .call import BUDGET, ERROR, OOPS, RETURNED, STOPPED, CallResult
from .events import FIXUP, RESTART, SKIP, STOP, FaultEvent, Observation, fault_taken, observe_retry, steps_of
from .kallsyms import Kallsyms, Symbol
from .lines import LineTable

_CLEARED_AT_CALL = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14",
                    "r15", "rbp")

# A call with no budget of its own counts this many instructions, exactly, then runs on uncounted
# at full speed: a short call reports its count, a long one does not pay for counting (Unicorn's
# count is a C callback per instruction, a tenth of its free speed).
COUNTED_PREFIX = 100_000

# Unicorn's error when a translation names memory beyond guest RAM, and the access it was.
_UNMAPPED = {unicorn.UC_ERR_READ_UNMAPPED: 0, unicorn.UC_ERR_WRITE_UNMAPPED: X86_PF_WRITE,
             unicorn.UC_ERR_FETCH_UNMAPPED: X86_PF_INSTR}


@dataclass
class CallState:
    cpu: CPU
    result: CallResult
    started_base: int = 0  # instructions started in earlier slices of this call
    pending: FaultEvent | None = None  # a restarted instruction not yet seen again
    after_stop: tuple[FaultEvent, Decision] | None = None  # a bad access decided in a memory hook
    kfunc_error: str | None = None  # a native kfunc refused to go on
    budget: int | None = 0  # None: COUNTED_PREFIX counted, then a time limit; 0: none counted
    used: int = 0  # of the budget
    counted: bool = True  # every instruction of the call so far was counted: `insns` is exact
    deadline: float = 0.0  # time.monotonic() at which this resume's time limit runs out
    watch_deadline: bool = False  # the hooks look at the clock (a counted start, which has no timer)
    timed_out: bool = False  # a hook found the deadline passed and stopped the run
    stop: str | None = None  # why a debugger stop happened (a breakpoint, a caught fault, an interrupt)
    held: tuple[FaultEvent, Decision | None] | None = None  # a fault caught before its handler ran (or applied)
    # a native kfunc stopped at a preemption point: (kfunc, body, slot)
    kfunc: tuple[NativeKfunc, Iterator[str], int] | None = None
    fault: FaultContext | None = None  # the context of the fault being handled
    exit_value: int | None = None  # a native function ended the whole call with this R0 (ProgramExit)


class Executor:
    def __init__(self, cpus: int, memory: KernelMemory, kallsyms: Kallsyms, extable: ExceptionTable,
                 lines: LineTable, orc: OrcTable, bpf: BpfSubsystem, comm: str, budget: int | None,
                 time_limit: float):
        self.memory, self.kallsyms, self.extable, self.lines, self.bpf = memory, kallsyms, extable, lines, bpf
        self.orc = orc
        self.comm, self.budget, self.time_limit = comm, budget, time_limit
        self.oops_handlers: list[OopsHandler] = []
        # A debugger's catchpoint: called before a fault's handler runs (decision None) and before an
        # oops is printed; True stops the call there, to go on with resume().
        self.catch: Callable[[FaultEvent, Decision | None], bool] | None = None
        # A scheduler's preemption points: preempt(cpu, point) is asked at each named point of a
        # native kfunc ("free-before-flush", ...) and when a fault is taken ("fault"); True stops
        # the CPU there, to go on with resume().
        self.preempt: Callable[[int, str], bool] | None = None
        self.events: list[FaultEvent] = []
        self.results: dict[int, CallResult] = {}  # the last call started on each CPU
        self.call_state: CallState | None = None  # the call of the CPU running (or last resumed)
        self.calls: dict[int, CallState] = {}  # every started call, by CPU
        self._die_counter = 0
        self._insn_cache: dict[int, Insn | None] = {}
        # rip -> (insn text, string op, FILE:LINE, the BPF instruction the JIT made it of)
        self._sites: dict[int, tuple[str, bool, str | None, str | None]] = {}
        self._frame_states: dict[int, str] = {}  # rip -> frame_state() there
        self._rmw_cache: dict[int, tuple[MemRef, ...]] = {}
        memory.code_changed.append(self.clear_decode_caches)
        memory.install(MACHINE_PAGE, MACHINE_PAGE_CODE, PAGE_KERNEL_ROX, FrameKind.TEXT)
        kallsyms.add_section(MACHINE_PAGE, MACHINE_PAGE + PAGE_SIZE)
        kallsyms.add(Symbol("emu_call_return", CALL_RETURN_ADDR, "text", True, "<machine>"))
        kallsyms.add(Symbol("emu_invlpg", CALL_RETURN_ADDR + 0x10, "text", True, "<machine>"))
        self._kfunc_at = map_kfunc_page(memory, kallsyms, [*KFUNCS.values(), *HELPERS.values(),
                                                           *CONFORMANCE_HELPERS.values()])
        for i in range(cpus):
            memory.map(stack_top(i) - THREAD_SIZE, THREAD_SIZE, PAGE_KERNEL, FrameKind.STACK)
        self.cpus = [CPU(i, memory.mem, memory.pgtables.root, self._on_exception) for i in range(cpus)]
        for c in self.cpus:
            c.add_code_hook(KFUNC_PAGE, KFUNC_PAGE + PAGE_SIZE - 1, self._on_kfunc)

    def close(self) -> None:
        for c in self.cpus:
            c.close()

    def clear_decode_caches(self) -> None:
        """Code may have changed (a load, a write, a PTE): decode again."""
        self._insn_cache.clear()
        self._rmw_cache.clear()
        self._sites.clear()
        self._frame_states.clear()

    def code_loaded(self) -> None:
        self.clear_decode_caches()
        for c in self.cpus:
            c.uc.ctl_flush_tb()

    # -- KernelOps: what the fault path may look at ---------------------------

    def walk(self, va: int) -> PageWalk:
        return self.memory.walk(va)

    def symbolize(self, addr: int) -> str:
        return self.kallsyms.format(addr)

    def is_text(self, addr: int) -> bool:
        """__kernel_text_address(): inside loaded code."""
        loc = self.kallsyms.lookup(addr)
        return loc is not None and loc.symbol.section == "text"

    def search_exception_tables(self, ip: int) -> ExtableEntry | None:
        return self.extable.search_exception_tables(ip)

    def stack_guard(self, address: int) -> tuple[int, int] | None:
        """get_stack_guard_info(): the current task's stack if `address` is in its guard page."""
        if self.call_state is None:
            return None
        hi = stack_top(self.call_state.cpu.index)
        lo = hi - THREAD_SIZE
        return (lo, hi) if lo - PAGE_SIZE <= address < lo else None

    @property
    def _running(self) -> CallState:
        """The call a CPU is running: the hooks and the fault path run only inside one."""
        if self.call_state is None:
            raise EmuError("no call is running")
        return self.call_state

    def pt_regs(self, offset: int) -> int:
        return self._running.cpu.reg(PT_REGS_NAMES[offset])

    def bpf_prog_report_arena_violation(self, is_write: bool, addr: int, fault_ip: int) -> None:
        self.bpf.bpf_prog_report_arena_violation(self.fault_context(), is_write, addr, fault_ip)

    def fault_context(self) -> FaultContext:
        """The context of the fault being handled, for the handlers in page_fault_oops()'s chain."""
        fault = self._running.fault
        if fault is None:
            raise EmuError("no fault is being handled")
        return fault

    def stack_frames(self, cpu: int) -> list[int]:
        """A CPU's RIP, then the return addresses of a walk of its kernel stack, as the kernel's
        unwinder finds them: by compiled code's unwind tables, by frame pointer elsewhere."""
        return self._frames(cpu, *self.cpus[cpu].reg_values(("rip", "rbp")))

    def _frames(self, cpu: int, rip: int, rbp: int) -> list[int]:
        hi = stack_top(cpu)
        state = self._frame_states.get(rip)
        if state is None:
            insn, loc = self._insn_at(rip), self.kallsyms.lookup(rip)
            state = self._frame_states[rip] = frame_state(insn.text if insn else None,
                                                          loc is not None and loc.offset == 0)
        if not self.orc and state == FRAMED:  # the common case, and the fault path's: no rsp needed
            return [rip] + [ret for _, ret in walk_stack_frames(self.memory.stack_reader(), rbp, hi - THREAD_SIZE,
                                                                hi)]
        return unwind_frames(self.orc, self.memory.stack_reader(), rip, self.cpus[cpu].reg("rsp"), rbp,
                             hi - THREAD_SIZE, hi, state)

    # -- calls ----------------------------------------------------------------

    def start_call(self, entry: str | int, args: tuple[int, ...], cpu: int, budget: int | None,
                   locate: Callable[[str | int], tuple[int, str]]) -> CallResult:
        """Set a CPU up to call `entry` (its address and name from `locate`, once the call
        itself is known to be possible), stopped at its first instruction."""
        if not 0 <= cpu < len(self.cpus):
            raise EmuError(f"no CPU {cpu}: this machine has {len(self.cpus)}")
        if cpu in self.calls:
            raise EmuError(f"CPU {cpu} is already running a call")
        if len(args) > len(ARG_REGS):
            raise EmuError(f"at most {len(ARG_REGS)} arguments are passed in registers, got {len(args)}")
        budget = self.budget if budget is None else budget
        if budget is not None and budget < 0:
            raise EmuError(f"the instruction budget must be positive (or 0 for none), not {budget}")
        addr, name = locate(entry)
        c = self.cpus[cpu]
        rsp = stack_top(cpu) - 8
        self.memory.mem.write_u64(self.memory.pgtables.translate_mapped(rsp), CALL_RETURN_ADDR)  # stack, not code
        c.set_regs(dict.fromkeys(_CLEARED_AT_CALL, 0) | dict(zip(ARG_REGS, args, strict=False))
                   | {"rsp": rsp, "rflags": 0x2, "rip": addr})
        self.call_state = self.calls[cpu] = CallState(c, CallResult(name, STOPPED), budget=budget,
                                                      counted=budget != 0)
        self.results[cpu] = self.call_state.result
        return self.call_state.result

    def finish_call(self, cpu: int) -> None:
        self.calls.pop(cpu, None)
        self.call_state = None

    def resume_until(self, addr: int, cpu: int, why: str = "") -> CallResult:
        """Resume `cpu` until its RIP reaches `addr` (or the call ends, or it stops for another reason)."""
        c = self.cpus[cpu]
        state = self.calls.get(cpu)
        if state is None or c.reg("rip") == addr:
            return self.results[cpu]

        def stop_here(uc, _address, _size, _data) -> None:
            state.stop = why or f"reached {addr:#x}"
            uc.emu_stop()

        hook = c.uc.hook_add(unicorn.UC_HOOK_CODE, stop_here, begin=addr, end=addr)
        c.uc.ctl_flush_tb()
        try:
            return self.resume(cpu=cpu)
        finally:
            c.uc.hook_del(hook)
            c.uc.ctl_flush_tb()

    def resume(self, count: int | None = None, cpu: int | None = None) -> CallResult:
        """Run a started call on from its RIP (the last resumed CPU's, or `cpu`'s): to its end,
        for at most `count` instructions, or to a debugger stop or a preemption point. Its
        status stays STOPPED while it can go on."""
        state = self.call_state if cpu is None else self.calls.get(cpu)
        if state is None:
            raise EmuError("no call is running" if cpu is None else f"CPU {cpu} is not running a call")
        self.call_state = state
        state.stop = None
        if state.kfunc is not None:
            if self._drive_kfunc(state.cpu, state):
                return self._settle(state)
            if count is not None:
                count -= 1  # the kfunc was the step's instruction
                if count <= 0:
                    return self._settle(state)
        if state.held is not None:
            self._run_held(state)
            if count is not None or state.result.status != STOPPED:
                return self._settle(state)
            state.stop = None
        state.deadline = time.monotonic() + self.time_limit
        if state.budget is None and count is None and state.counted:
            if state.used < COUNTED_PREFIX:
                self._run(state, state.cpu.reg("rip"), COUNTED_PREFIX - state.used, stepping=True, timed=True)
                if state.result.status != STOPPED or state.stop is not None or state.held is not None:
                    return self._settle(state)
            self._stop_counting(state)
        if not state.budget:  # no instruction budget: a wall-clock limit stops a runaway
            self._run(state, state.cpu.reg("rip"), count, stepping=count is not None)
            return self._settle(state)
        left = state.budget - state.used
        limit = left if count is None else min(count, left)
        self._run(state, state.cpu.reg("rip"), limit, stepping=limit < left)
        return self._settle(state)

    def _stop_counting(self, state: CallState) -> None:
        """A call with no budget of its own ran through its counted prefix: it goes on uncounted.
        A restarted instruction not seen again yet is judged where the count ends, the last
        point at which it can be."""
        state.counted = False
        if state.pending is not None:
            c = state.cpu
            state.pending.retry = observe_retry(state.pending, Observation(
                rip=c.reg("rip"), started=state.started_base, rcx=c.reg("rcx"), fault_address=None))
            state.pending = None

    def interrupt(self, why: str = "interrupted") -> None:
        """Stop the running call at its next instruction (Ctrl-C, a breakpoint's hook)."""
        if self.call_state is not None:
            self.call_state.stop = why
            self.call_state.cpu.uc.emu_stop()

    def stop_reason(self, cpu: int) -> str | None:
        """Why `cpu`'s call stopped, when a debugger stop or a preemption stopped it."""
        state = self.calls.get(cpu)
        return state.stop if state is not None else None

    def held(self, cpu: int) -> tuple[FaultEvent, Decision | None] | None:
        """A fault `cpu` took whose handler has not run yet (a catchpoint or a preemption), and
        the decision already made, if it was caught before an oops."""
        state = self.calls.get(cpu)
        return state.held if state is not None else None

    def _settle(self, state: CallState) -> CallResult:
        result = state.result
        result.insns = state.started_base if state.counted else None
        if result.status != STOPPED:
            c = state.cpu
            if state.pending is not None:
                state.pending.retry = observe_retry(state.pending, Observation(
                    rip=c.reg("rip"), started=state.started_base, rcx=c.reg("rcx"), fault_address=None,
                    returned=result.status == RETURNED))
                state.pending = None
            self.finish_call(c.index)
        return result

    def _run_held(self, state: CallState) -> None:
        """Run (or apply) the handler of a fault caught before it; a restarted instruction then
        runs once, so the step lands where the hardware would after it."""
        assert state.held is not None  # resume() runs it only then
        event, decision = state.held
        state.held = None
        c = state.cpu
        self._handle(c, event, decision)
        if state.result.status != OOPS and event.action == RESTART:
            self._run(state, c.reg("rip"), 1, stepping=True)

    def _run(self, state: CallState, begin: int, limit: int | None, stepping: bool, timed: bool = False) -> None:
        """Run slices until the call returns, oopses or stops; `limit` None: no instruction
        count at all (Unicorn then runs at full speed, and the time limit stops a runaway).
        `timed`: the time limit holds for a counted run too: a counted start, whose hundred
        thousand instructions may each take a fault. There the hooks look at the clock, since
        Python runs only in them, and a timer thread would cost every short call its start-up
        (about 0.2 ms, as much as the call)."""
        c, result = state.cpu, state.result
        remaining = limit
        state.watch_deadline = timed and remaining is not None
        while True:
            error, fired = None, False
            state.timed_out = False
            try:
                fired = c.run(begin, CALL_RETURN_ADDR, remaining or 0, time_limit=0.0 if remaining is not None
                                  else max(1e-6, state.deadline - time.monotonic()))
            except unicorn.UcError as e:
                error = e
            timed_out = fired or state.timed_out
            started = c.exc.instructions_started
            used = started if remaining is None else min(started, remaining)
            state.used += used
            state.started_base += started
            rip = c.reg("rip")
            if result.status == OOPS:
                break
            if error is not None and error.errno in _UNMAPPED and state.after_stop is None:
                self._bad_access(c, _UNMAPPED[error.errno])
            if error is not None and state.after_stop is not None:
                # A bad physical access decided in the memory hook; apply it now.
                event, decision = state.after_stop
                state.after_stop = None
                if decision.action == FIXUP:
                    begin = decision.resume_ip
                    c.set_reg("rip", begin)
                    if remaining is None:
                        continue
                    remaining -= used
                    if remaining > 0:
                        continue
                    result.status = STOPPED if stepping else BUDGET
                    break
                self._stop_with_oops(c, event, decision)
                break
            if error is not None:
                result.status, result.error = ERROR, f"unicorn: {error} at {rip:#x} <{self.symbolize(rip)}>"
                break
            if state.kfunc_error is not None:
                result.status, result.error = ERROR, state.kfunc_error
                break
            if state.exit_value is not None:
                result.status, result.ret = RETURNED, state.exit_value & MASK64
                break
            if rip == CALL_RETURN_ADDR and (remaining is None or started <= remaining):
                result.status, result.ret = RETURNED, c.reg("rax")
                break
            state.started_base -= started - used
            if state.stop is not None or state.held is not None or (stepping and not timed_out):
                result.status = STOPPED
                break
            result.status = BUDGET
            if timed_out or not state.budget:
                past = f" past the first {COUNTED_PREFIX:,} instructions" if not (state.counted or state.budget == 0) \
                    else ""
                why = f"no instruction budget{past}, and the time limit of {self.time_limit:g} s ran out"
            else:
                why = f"instruction budget of {state.budget} exhausted"
            result.error = f"{why} at {rip:#x} <{self.symbolize(rip)}>"
            break

    # -- native kfuncs --------------------------------------------------------

    def _on_kfunc(self, c: CPU, addr: int) -> None:
        """UC_HOOK_CODE on the kfunc page: run a native kfunc; its `ret` then returns. A kfunc
        with preemption points is a generator: a scheduler may stop the CPU at one of them, and
        the rest of the body runs when the CPU is resumed."""
        k = self._kfunc_at.get(addr)
        state = self.call_state
        if k is None or state is None:
            return
        if c.kfunc_done_at == addr:  # resumed after a preempted body finished: just `ret`
            c.kfunc_done_at = None
            return
        args = [c.reg(r) for r in ARG_REGS[:k.nargs]]
        try:
            call = KfuncCall(self.bpf, self.memory, c.index, self.memory.read_u64(c.reg("rsp")))
            value = k.body(call, *args)
        except EmuError as e:
            state.kfunc_error = f"{k.name}: {e}"
            c.uc.emu_stop()
            return
        except ProgramExit as e:
            state.exit_value = e.value
            c.uc.emu_stop()
            return
        if isinstance(value, Iterator):
            state.kfunc = (k, value, addr)
            if self._drive_kfunc(c, state):
                c.uc.emu_stop()
            return
        self._kfunc_return(c, k, value)
        self._check_deadline(c)

    def _check_deadline(self, c: CPU) -> None:
        """In a counted start, after a hook's work: stop the run if the time limit ran out."""
        state = self._running
        if state.watch_deadline and time.monotonic() > state.deadline:
            state.timed_out = True
            c.uc.emu_stop()

    def _kfunc_return(self, c: CPU, k: NativeKfunc, value: int | None) -> None:
        result = k.result(value)
        if result is not None:
            c.set_reg("rax", result)

    def _drive_kfunc(self, c: CPU, state: CallState) -> bool:
        """Run a preemptible kfunc body on to its end or its next preemption point; True when
        a scheduler stopped it there."""
        assert state.kfunc is not None  # a kfunc body started, or stopped at a preemption point
        k, body, addr = state.kfunc
        try:
            while True:
                point = next(body)
                if self.preempt is not None and self.preempt(c.index, point):
                    state.stop = f"preempted in {k.name} at {point}"
                    return True
        except StopIteration as done:
            state.kfunc = None
            self._kfunc_return(c, k, done.value)
            if c.running:
                return False
            c.kfunc_done_at = addr  # resumed from outside the hook: the hook must not run it again
            return False
        except EmuError as e:
            state.kfunc = None
            state.kfunc_error = f"{k.name}: {e}"
            state.result.status, state.result.error = ERROR, state.kfunc_error
            return True

    # -- exceptions -----------------------------------------------------------

    def _insn_at(self, rip: int) -> Insn | None:
        """The instruction at `rip`, decoded once: code only changes through load() and write()."""
        if rip not in self._insn_cache:
            code = self.memory.try_read(rip, 16)
            self._insn_cache[rip] = disasm_one(code, rip) if code else None
        return self._insn_cache[rip]

    def _rmw_at(self, rip: int) -> tuple[MemRef, ...]:
        """The read-modify-write memory operands of the instruction at `rip`, decoded once."""
        if rip not in self._rmw_cache:
            code = self.memory.try_read(rip, 16)
            self._rmw_cache[rip] = read_modify_write_operands(code, rip) if code else ()
        return self._rmw_cache[rip]

    def _site(self, rip: int) -> tuple[str, bool, str | None, str | None]:
        """What a fault at `rip` records of its instruction, found once per address (code and lines
        change only through a load or a write, which clear it)."""
        site = self._sites.get(rip)
        if site is None:
            insn = self._insn_at(rip)
            site = self._sites[rip] = (insn.text if insn else "", bool(insn and insn.string_op),
                                       self.lines.debug_line(rip),
                                       bpf_insn_text(self.bpf.progs, self.bpf.maps, self.kallsyms, rip))
        return site

    def _new_event(self, c: CPU, vector: int, code: int, address: int | None, rip: int, rcx: int,
                   state: CallState | None = None) -> FaultEvent:
        """The event of a fault just taken: plain facts only (its walk as the entries read); its
        story, walks and report text are made when read."""
        state = state or self._running
        started = state.started_base + c.exc.instructions_started
        if state.pending is not None:
            state.pending.retry = (rip, started, rcx, address, False)  # judged by observe_retry() when read
            state.pending = None
        insn, string_op, source, bpf_insn = self._site(rip)
        event = fault_taken(
            len(self.events) + 1, c.index, vector, rip, self.kallsyms.format(rip),
            address if address is not None else 0, error_code(code),
            capture_walk(self.memory.mem, self.memory.pgtables.root, address) if address is not None else None,
            started, rcx, string_op, insn, source, bpf_insn)
        self.events.append(event)
        state.result.faults.append(event)
        return event

    def _fresh_context(self, c: CPU) -> None:
        """A new context for a fault handled after the CPU stopped: its stack walk starts from the
        CPU's registers as they are when it is walked. (The exception hook starts it from RIP and
        RBP at the fault.)"""
        self._running.fault = FaultContext(c.index, partial(self.stack_frames, c.index))

    def _on_exception(self, c: CPU, vector: int) -> None:
        """UC_HOOK_INTR: the CPU took an exception; play exc_page_fault() or die(), unless a
        debugger catches it first."""
        code, rip, rcx, rbp, cr2 = c.exc.take_exception()
        state = self._running
        state.fault = FaultContext(c.index, partial(self._frames, c.index, rip, rbp))
        if vector != X86_TRAP_PF:
            event = self._new_event(c, vector, code, None, rip, rcx, state)
        elif code & (X86_PF_WRITE | X86_PF_INSTR) or not self._rmw_at(rip) or not any(
                ea <= cr2 < ea + m.size for m in self._rmw_at(rip) for ea in [effective_address(m, c.reg)]):
            event = self._new_event(c, vector, code, cr2, rip, rcx, state)
        else:
            event = self._new_event(c, vector, code | X86_PF_WRITE, cr2, rip, rcx, state)
            steps_of(event).append("a read-modify-write access: x86 reports it as a write "
                                   "(Unicorn's core faulted on its read half)")
        if self.catch is not None and self.catch(event, None):
            self._hold(c, event, None)
            return
        if self.preempt is not None and self.preempt(c.index, "fault"):
            self._hold(c, event, None)
            self._running.stop = "preempted at fault"
            return
        decision = self._decide(c, event)
        if decision.action == STOP and self.catch is not None and self.catch(event, decision):
            self._hold(c, event, decision)
            return
        self._apply(c, event, decision)
        self._check_deadline(c)

    def _hold(self, c: CPU, event: FaultEvent, decision: Decision | None) -> None:
        self._running.held = (event, decision)
        self._running.stop = "caught"
        c.uc.emu_stop()

    def _decide(self, c: CPU, event: FaultEvent) -> Decision:
        if event.vector == X86_TRAP_PF:
            return exc_page_fault(self, event.address, event.error_code, event.rip, user_mode=False,
                                  walk=lambda: event.walk_before or self.walk(event.address))
        return self._trap(c, event)

    def _handle(self, c: CPU, event: FaultEvent, decision: Decision | None) -> None:
        """A held fault's handler, run later: the registers may have been changed meanwhile."""
        self._fresh_context(c)
        self._apply(c, event, decision if decision is not None else self._decide(c, event))

    def _trap(self, c: CPU, event: FaultEvent) -> Decision:
        """A kernel-mode trap other than #PF: the extable first (do_trap()), then die()."""
        name = TRAP_NAMES.get(event.vector, f"vector {event.vector}")
        d = Decision(resolution="", action="", steps=[f"{name} (vector {event.vector}) in kernel mode"])
        if event.vector != X86_TRAP_UD and fixup_exception(self, event.rip, d):
            return d
        d.resolution, d.action, d.handler, d.oops_what = "oops", STOP, "die", name
        if event.vector == X86_TRAP_GP:
            code = self.memory.try_read(event.rip, 16) or b""
            bad = [a for a in memory_operand_addresses(code, event.rip, c.reg) if not is_canonical(a)]
            if bad:
                event.address = bad[0]
                d.oops_what = f"{name}, probably for non-canonical address {bad[0]:#x}"
        where = self.lines.get(event.rip)
        if event.vector == X86_TRAP_UD and event.insn == "ud2" and where is not None:
            file, line = where
            d.oops_head = [f"kernel BUG at {file}:{line}!"]
        d.steps.append(f"die(\"{d.oops_what}\")")
        return d

    def _bad_access(self, c: CPU, access: int) -> None:
        """Unicorn stopped: a translation named memory beyond guest RAM.

        Guest RAM ends where our physical address space ends, so such a PTE has
        reserved bits set, as on hardware with a narrower MAXPHYADDR: a #PF with
        RSVD on the virtual address whose translation leads there. (Found after
        the stop rather than in a UC_HOOK_MEM_INVALID hook: any memory hook puts
        every access on Unicorn's slow path, five times slower.)
        """
        code = X86_PF_PROT | X86_PF_RSVD | access
        self._fresh_context(c)
        address, pa = self._virtual_address_of(c, access)
        rip, rcx = c.reg_values(("rip", "rcx"))
        event = self._new_event(c, X86_TRAP_PF, code, address, rip, rcx)
        decision = exc_page_fault(self, address, event.error_code, event.rip, user_mode=False)
        decision.steps.insert(0, f"the translation names physical address {pa:#x}, beyond guest RAM "
                                 f"({self.memory.mem.size:#x} bytes): reserved bits set")
        event.steps, event.resolution, event.handler, event.action = (
            decision.steps, decision.resolution, decision.handler, decision.action)
        event.resume_at = decision.resume_at
        event.walk_after = self.walk(address)
        self._running.after_stop = (event, decision)

    def _virtual_address_of(self, c: CPU, access: int) -> tuple[int, int]:
        """Which virtual address the instruction at RIP meant, when Unicorn says only that it
        reached no memory: the operand (or RIP, for a fetch) whose walk leads beyond guest RAM."""
        rip = c.reg("rip")
        if access == X86_PF_INSTR:
            return rip, self.walk(rip).pa or 0
        code = self.memory.try_read(rip, 16) or b""
        rsp = c.reg("rsp")
        candidates = memory_operand_addresses(code, rip, c.reg) + [c.reg("rdi"), c.reg("rsi"), rsp - 8, rsp]
        for va in candidates:
            w = self.walk(va)
            if w.pa is not None and not self.memory.mem.contains(w.pa):
                return va, w.pa
            if w.stopped and "outside guest RAM" in w.stopped:
                return va, 0
        return (candidates[0] if candidates else rip), 0

    def _apply(self, c: CPU, event: FaultEvent, d: Decision) -> None:
        # The fields as kept (FaultEvent's descriptors make them text when read).
        fields = event.__dict__
        steps = fields["_steps"]
        steps += steps_of(d)
        fields["_resolution"], fields["_handler"], fields["_action"] = d.resolution, d.handler, d.action
        if event.vector == X86_TRAP_PF:
            # Only a handler in page_fault_oops()'s chain changes the tables; a fixup does not.
            fields["_walk_after"] = fields["_walk_before"] if d.action in (FIXUP, SKIP) else capture_walk(
                self.memory.mem, self.memory.pgtables.root, event.address)
        report = self.fault_context().report
        if report is not None:
            fields["_stream"], fate = report
            steps.append(("bpf_stream_stage: {}", fate))
        if d.action == FIXUP:
            event.resume_at = d.resume_at
            c.set_reg("rip", d.resume_ip)
        elif d.action == SKIP:
            event.resume_at, event.cleared = d.resume_at, d.cleared
            if d.cleared:
                c.set_reg(d.cleared, 0)
            c.set_reg("rip", d.resume_ip)
        elif d.action == RESTART:
            self._running.pending = event
        elif d.action == STOP:
            self._stop_with_oops(c, event, d)
            c.uc.emu_stop()

    def _stop_with_oops(self, c: CPU, event: FaultEvent, d: Decision) -> None:
        regs = c.regs()
        lo = stack_top(c.index) - THREAD_SIZE
        trace = show_trace(self.memory.read_u64_or_none, regs.rsp, regs.rbp, lo, lo + THREAD_SIZE, self.is_text)
        frames = [("" if e.reliable else "? ") + self.symbolize(e.address) for e in trace]
        self._die_counter += 1
        event.report = oops_report(
            head=d.oops_head, what=d.oops_what,
            err=d.oops_err if d.oops_err is not None else event.error_code.value if event.vector == 14 else 0,
            counter=self._die_counter, cpu=c.index, pid=1, comm=self.comm, regs=regs,
            where=f"{event.where} {event.source}" if event.source else event.where,
            code=self.memory.try_read(regs.rip - PROLOGUE_SIZE, OPCODE_BUFSIZE), frames=frames, cr2=regs.cr2)
        event.steps.append(f"oops: {event.report.splitlines()[0]}")
        self._running.result.status = OOPS
        self._running.result.oops = event.report
