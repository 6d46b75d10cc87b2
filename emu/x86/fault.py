"""The kernel-mode page-fault path, step by step after arch/x86/mm/fault.c.

Plain functions over a `KernelOps` (what the kernel can look at), so the whole
decision can be tested without a CPU. The CPU hook only applies the `Decision`.
Each step appends a line to `steps`: that is the fault's story.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from ..bpf.jit_extable import ex_handler_bpf
from ..errors import EmuError
from ..kernel.events import FIXUP, RESTART, SKIP, STOP, Step, Steps, steps_of
from ..mm.layout import fault_in_kernel_space
from .dumpstack import show_fault_oops
from .extable import EX_TYPE_BPF, EX_TYPE_DEFAULT, ExtableEntry
from .pgtable import _PAGE_NX, _PAGE_RW, PageWalk
from .traps import X86_PF_INSTR, X86_PF_PROT, X86_PF_WRITE, ErrorCode


@dataclass
class OopsHandler:
    """A slot in page_fault_oops()'s chain for not-present faults (KFENCE, the arena, ...).

    `handle(address, is_write, ip)` returns True when it fixed the fault so the
    instruction can be retried, as kfence_handle_page_fault() does; or a pair
    (handled, why) to say in the fault's story what it found (a `Step`, made text when read).
    """

    name: str
    resolution: str
    handle: Callable[[int, bool, int], bool | tuple[bool, Step]]


class FaultContext:
    """The context a fault was taken in, as its handlers see it (the kernel's regs and current):
    the CPU, and its stack walk, done at most once per fault because finding the BPF program
    and dumping the stack for the report both need it. `report` is the stream report the
    handling made: (the elements committed, or None when refused; what became of them)."""

    __slots__ = ("cpu", "_walk", "_frames", "report")

    def __init__(self, cpu: int, walk: Callable[[], list[int]]):
        self.cpu = cpu
        self._walk = walk
        self._frames: list[int] | None = None
        self.report: tuple[list[bytes] | None, Step] | None = None

    def frames(self) -> list[int]:
        """RIP at the fault, then the return addresses of a frame-pointer walk of its stack."""
        if self._frames is None:
            self._frames = self._walk()
        return self._frames


class KernelOps(Protocol):
    def walk(self, va: int) -> PageWalk: ...

    def symbolize(self, addr: int) -> str: ...

    def search_exception_tables(self, ip: int) -> ExtableEntry | None: ...

    def stack_guard(self, address: int) -> tuple[int, int] | None: ...

    def pt_regs(self, offset: int) -> int:
        """The faulting context's register at `offset` in struct pt_regs."""

    def bpf_prog_report_arena_violation(self, is_write: bool, addr: int, fault_ip: int) -> None: ...

    @property
    def oops_handlers(self) -> list[OopsHandler]: ...


@dataclass
class Decision:
    resolution: str  # "spurious", "extable", a handler's resolution, or "oops"
    action: str  # RESTART, FIXUP or STOP
    handler: str = ""
    resume_at: int | None = None
    cleared: str | None = None  # the register ex_handler_bpf() zeroed
    steps: Steps = Steps()  # the story's lines, made text when first read
    oops_what: str = "Oops"  # the die() string when action is STOP
    oops_err: int | None = None  # the die() error code, when not the hardware's
    oops_head: list[str] = field(default_factory=list)  # lines printed before the die header

    @property
    def resume_ip(self) -> int:
        """Where a FIXUP or a SKIP resumes, which both always set."""
        if self.resume_at is None:
            raise EmuError(f"a {self.action} decision without an address to resume at")
        return self.resume_at


def undecided() -> Decision:
    """Decision(resolution="", action=""), without a Python call per field: one per fault."""
    d = object.__new__(Decision)
    d.__dict__ = {"resolution": "", "action": "", "handler": "", "resume_at": None, "cleared": None, "_steps": [],
                  "oops_what": "Oops", "oops_err": None, "oops_head": []}
    return d


def spurious_kernel_fault_check(error_code: ErrorCode, entry: int) -> bool:
    """spurious_kernel_fault_check(): does this entry really permit the access?"""
    if error_code.value & X86_PF_WRITE and not entry & _PAGE_RW:
        return False
    return not (error_code.value & X86_PF_INSTR and entry & _PAGE_NX)


def spurious_kernel_fault(error_code: ErrorCode, walk: PageWalk) -> bool:
    """spurious_kernel_fault(): a protection fault the tables no longer justify (a stale TLB
    entry after a permission increase). Only WRITE|PROT and INSTR|PROT qualify, never a
    not-present fault."""
    if error_code.value not in (X86_PF_WRITE | X86_PF_PROT, X86_PF_INSTR | X86_PF_PROT):
        return False
    if walk.pa is None:
        return False
    return all(spurious_kernel_fault_check(error_code, s.entry) for s in walk.stages if s.level != "P4D")


def fixup_exception(k: KernelOps, ip: int, d: Decision) -> bool:
    """fixup_exception(): search the exception tables for the faulting instruction."""
    entry = k.search_exception_tables(ip)
    if entry is None:
        steps_of(d).append(("fixup_exception: no exception-table entry for {:#x}", ip))
        return False
    if entry.type == EX_TYPE_BPF:
        steps_of(d).append(("fixup_exception: EX_TYPE_BPF entry for {:#x} (fixup {:#010x}, data {:#010x})",
                         ip, entry.fixup, entry.data))
        done = ex_handler_bpf(entry, ip, k.pt_regs, k.bpf_prog_report_arena_violation)
        if done.address is not None:
            steps_of(d).append(("ex_handler_bpf: bpf_prog_report_arena_violation({}, {:#x}, ip={:#x})",
                             "WRITE" if done.is_write else "READ", done.address, ip))
        steps_of(d).append(("ex_handler_bpf: {}, regs->ip += {} -> {:#x} (skipped, not restarted)",
                         "clear " + done.cleared if done.cleared else "DONT_CLEAR", done.resume_at - ip,
                         done.resume_at))
        d.resolution, d.action, d.handler, d.resume_at = "extable", SKIP, "ex_handler_bpf", done.resume_at
        d.cleared = done.cleared
        return True
    if entry.type != EX_TYPE_DEFAULT:
        steps_of(d).append(("fixup_exception: {} entry for {:#x} has no handler in this model", entry.type_name, ip))
        return False
    steps_of(d).append(("fixup_exception: {} entry {:#x} -> {:#x} <{}>", entry.type_name, ip, entry.fixup,
                     k.symbolize(entry.fixup)))
    steps_of(d).append(("ex_handler_default: regs->ip = {:#x}", entry.fixup))
    d.resolution, d.action, d.handler, d.resume_at = "extable", FIXUP, "ex_handler_default", entry.fixup
    return True


def page_fault_oops(k: KernelOps, address: int, error_code: ErrorCode, ip: int, user_mode: bool,
                    walk: Callable[[], PageWalk], d: Decision) -> None:
    """page_fault_oops(): the last stop. Not-present faults get the handler chain first."""
    if not user_mode:
        guard = k.stack_guard(address)
        if guard is not None:
            lo, hi = guard
            steps_of(d).append("page_fault_oops: address is in the stack guard page -> handle_stack_overflow()")
            d.oops_head = [f"BUG: TASK stack guard page was hit at {address:016x} "
                           f"(stack is {lo:016x}..{hi - 1:016x})"]
            d.oops_what, d.oops_err = "stack guard page", 0
            d.resolution, d.action, d.handler = "oops", STOP, "handle_stack_overflow"
            return
        if not error_code.value & X86_PF_PROT:
            is_write = bool(error_code.value & X86_PF_WRITE)
            for h in k.oops_handlers:
                verdict = h.handle(address, is_write, ip)
                handled, why = verdict if isinstance(verdict, tuple) else (bool(verdict), "")
                if handled:
                    steps_of(d).append(("page_fault_oops: {}({:#x}, {.access}) handled it: {} -> return, the "
                                     "instruction restarts", h.name, address, error_code, why) if why else
                                    ("page_fault_oops: {}({:#x}, {.access}) handled it -> return, the "
                                     "instruction restarts", h.name, address, error_code))
                    d.resolution, d.action, d.handler = h.resolution, RESTART, h.name
                    return
                steps_of(d).append(("page_fault_oops: {}() declined: {}", h.name, why) if why else
                                ("page_fault_oops: {}() declined", h.name))
    steps_of(d).append("page_fault_oops: oops")
    d.oops_head = show_fault_oops(address, error_code, user_mode, walk())
    d.resolution, d.action, d.handler = "oops", STOP, "page_fault_oops"


def kernelmode_fixup_or_oops(k: KernelOps, address: int, error_code: ErrorCode, ip: int, user_mode: bool,
                             walk: Callable[[], PageWalk], d: Decision) -> None:
    if fixup_exception(k, ip, d):
        return
    page_fault_oops(k, address, error_code, ip, user_mode, walk, d)


_SPURIOUS_CODES = (X86_PF_WRITE | X86_PF_PROT, X86_PF_INSTR | X86_PF_PROT)


def do_kern_addr_fault(k: KernelOps, address: int, error_code: ErrorCode, ip: int, walk: Callable[[], PageWalk],
                       d: Decision) -> None:
    if error_code.value in _SPURIOUS_CODES and spurious_kernel_fault(error_code, walk()):
        steps_of(d).append("spurious_kernel_fault: the tables permit this access (stale TLB entry) -> return")
        d.resolution, d.action, d.handler = "spurious", RESTART, "spurious_kernel_fault"
        return
    steps_of(d).extend(("spurious_kernel_fault: no", "bad_area_nosemaphore -> kernelmode_fixup_or_oops"))
    kernelmode_fixup_or_oops(k, address, error_code, ip, False, walk, d)


def exc_page_fault(k: KernelOps, address: int, error_code: ErrorCode, ip: int, user_mode: bool,
                   walk: PageWalk | Callable[[], PageWalk] | None = None) -> Decision:
    """exc_page_fault() -> handle_page_fault(): the whole kernel decision for one #PF.
    `walk`: the tables for `address` as the caller already read them, or how to get them;
    only a protection fault and an oops read them."""
    if walk is None:
        walk = partial(k.walk, address)
    elif isinstance(walk, PageWalk):
        walk = partial(_same, walk)
    d = undecided()
    if fault_in_kernel_space(address):
        steps_of(d).append("handle_page_fault: kernel address -> do_kern_addr_fault")
        do_kern_addr_fault(k, address, error_code, ip, walk, d)
    else:
        # do_user_addr_fault(): kernel code touching a user address it has no mm for
        # (the machine runs no user task) goes the same way as a bad kernel access.
        steps_of(d).extend(("handle_page_fault: user address -> do_user_addr_fault: no user mapping",
                            "bad_area_nosemaphore -> kernelmode_fixup_or_oops"))
        kernelmode_fixup_or_oops(k, address, error_code, ip, user_mode, walk, d)
    return d


def _same(walk: PageWalk) -> PageWalk:
    return walk
