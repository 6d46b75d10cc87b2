"""One emulated x86-64 CPU: a Unicorn instance in long mode with paging on.

Unicorn runs in its CPU TLB mode, so the emulated MMU walks our page tables
and caches translations as hardware does: a changed PTE is not seen until
invlpg, a CR3 write or a flush. Hooks are thin: they hand the CPU to the
machine's plain functions and Unicorn's binding carries any exception back to
the emu_start caller.
"""

from __future__ import annotations

import ctypes
import threading
from array import array
from collections.abc import Callable

import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import uclib

from ..errors import EmuError
from ..mm.layout import CALL_RETURN_ADDR, MACHINE_PAGE
from ..mm.physmem import PhysMem
from .dumpstack import Regs
from .traps import X86_TRAP_UD
from .unicorn_quirks import ExceptionState, enable_long_mode_paging, flush_tlb_all, release

REG_IDS = {
    "rax": X.UC_X86_REG_RAX, "rbx": X.UC_X86_REG_RBX, "rcx": X.UC_X86_REG_RCX, "rdx": X.UC_X86_REG_RDX,
    "rsi": X.UC_X86_REG_RSI, "rdi": X.UC_X86_REG_RDI, "rbp": X.UC_X86_REG_RBP, "rsp": X.UC_X86_REG_RSP,
    "r8": X.UC_X86_REG_R8, "r9": X.UC_X86_REG_R9, "r10": X.UC_X86_REG_R10, "r11": X.UC_X86_REG_R11,
    "r12": X.UC_X86_REG_R12, "r13": X.UC_X86_REG_R13, "r14": X.UC_X86_REG_R14, "r15": X.UC_X86_REG_R15,
    "rip": X.UC_X86_REG_RIP, "rflags": X.UC_X86_REG_RFLAGS,
    "cr0": X.UC_X86_REG_CR0, "cr2": X.UC_X86_REG_CR2, "cr3": X.UC_X86_REG_CR3, "cr4": X.UC_X86_REG_CR4,
    "fs_base": X.UC_X86_REG_FS_BASE, "gs_base": X.UC_X86_REG_GS_BASE,
}
_REGS_ORDER = tuple(Regs.__dataclass_fields__)
_REGS_IDS = [REG_IDS[n] for n in _REGS_ORDER]

ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")  # SysV / kernel calling convention

# The machine's own code page: int3 everywhere but an `invlpg (%rdi)`, used to
# flush one page of a CPU's TLB from the API.
INVLPG_ADDR = CALL_RETURN_ADDR + 0x10
_page = bytearray(b"\xcc" * 0x1000)
_page[INVLPG_ADDR - MACHINE_PAGE:INVLPG_ADDR - MACHINE_PAGE + 3] = bytes.fromhex("0f013f")
MACHINE_PAGE_CODE = bytes(_page)

ExceptionHook = Callable[["CPU", int], None]


class _Closed:
    """A closed CPU's engine: using it is a clear error, not a crash inside Unicorn."""

    def __getattr__(self, name: str):
        raise EmuError("this machine was closed")


_CLOSED = _Closed()


class CPU:
    def __init__(self, index: int, mem: PhysMem, cr3: int, on_exception: ExceptionHook):
        self.index = index
        self.uc: unicorn.Uc | _Closed = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self._uch: ctypes.c_void_p | None = self.uc._uch
        self._value = ctypes.c_uint64()
        self._value_ref = ctypes.byref(self._value)
        self._batches: dict[tuple[str, ...], tuple] = {}
        self.uc.mem_map_ptr(0, mem.size, unicorn.UC_PROT_ALL, mem.host_address)
        enable_long_mode_paging(self.uc, cr3)
        self.exc: ExceptionState | _Closed = ExceptionState(self.uc)
        self.running = False
        self._uncounted_code = False  # translations made without Unicorn's count hook may be cached
        self._stale: dict[int, int] = {}
        self._stale_runs: list[tuple[int, array, array]] = []  # PTE writes not merged into _stale yet
        self.kfunc_done_at: int | None = None  # a native kfunc whose body already ran: its hook skips once
        self._on_exception = on_exception
        self.uc.hook_add(unicorn.UC_HOOK_INTR, lambda _uc, intno, _d: self._on_exception(self, intno))
        self.uc.hook_add(unicorn.UC_HOOK_INSN_INVALID, self._on_invalid_opcode)

    def _on_invalid_opcode(self, _uc: unicorn.Uc, _data: object) -> bool:
        """Unicorn halts on #UD instead of raising vector 6 to the interrupt hook: route it there.
        Returning True tells Unicorn it was handled; the CPU stops either way."""
        self._on_exception(self, X86_TRAP_UD)
        return True

    def add_code_hook(self, begin: int, end: int, callback: Callable[[CPU, int], None]) -> None:
        """Run `callback(cpu, address)` before each instruction in [begin, end]: only code
        translated from that range carries the hook."""
        self.uc.hook_add(unicorn.UC_HOOK_CODE, lambda _uc, addr, _size, _d: callback(self, addr),
                         begin=begin, end=end)

    def close(self) -> None:
        uc, self.uc, self.exc, self._uch = self.uc, _CLOSED, _CLOSED, None
        if isinstance(uc, unicorn.Uc):
            release(uc)

    # reg() and set_reg() call uc_reg_read/uc_reg_write themselves: through the binding each
    # costs 3.6 us (it picks a ctypes class per call), directly 0.8-1.4 us, and a fault reads
    # and writes several registers.
    def reg(self, name: str) -> int:
        if self._uch is None:
            raise EmuError("this machine was closed")
        if status := uclib.uc_reg_read(self._uch, REG_IDS[name], self._value_ref):
            raise unicorn.UcError(status)
        return self._value.value

    def set_reg(self, name: str, value: int) -> None:
        if self._uch is None:
            raise EmuError("this machine was closed")
        self._value.value = value & 0xFFFF_FFFF_FFFF_FFFF
        if status := uclib.uc_reg_write(self._uch, REG_IDS[name], self._value_ref):
            raise unicorn.UcError(status)

    def reg_values(self, names: tuple[str, ...]) -> tuple[int, ...]:
        """Several registers in one uc_reg_read_batch, into buffers made once per tuple of names."""
        if self._uch is None:
            raise EmuError("this machine was closed")
        batch = self._batches.get(names)
        if batch is None:
            n = len(names)
            values = (ctypes.c_uint64 * n)()
            batch = self._batches[names] = (
                (ctypes.c_int * n)(*(REG_IDS[r] for r in names)),
                (ctypes.c_void_p * n)(*(ctypes.addressof(values) + 8 * i for i in range(n))), values, n)
        ids, ptrs, values, n = batch
        if status := uclib.uc_reg_read_batch(self._uch, ids, ptrs, n):
            raise unicorn.UcError(status)
        return tuple(values)

    def set_regs(self, values: dict[str, int]) -> None:
        self.uc.reg_write_batch([(REG_IDS[n], v & 0xFFFF_FFFF_FFFF_FFFF) for n, v in values.items()])

    def regs(self) -> Regs:
        return Regs(*self.uc.reg_read_batch(_REGS_IDS))

    @property
    def maybe_stale(self) -> dict[int, int]:
        """Pages whose present PTE changed since this CPU last flushed them: page -> the old PTE
        it may still hold in its TLB (if it used it). Runs of PTE writes are merged when this is
        first read: a free clears thousands, and the flush after it usually drops them unread."""
        for va, old, new in self._stale_runs:
            for i, pte in enumerate(old):
                if pte & 1 and pte != new[i]:
                    self._stale.setdefault(va + (i << 12), pte)
        self._stale_runs.clear()
        return self._stale

    def note_pte_writes(self, va: int, old: array, new: array) -> None:
        """PTEs from `va` on were rewritten: what this CPU may hold of the old ones."""
        self._stale_runs.append((va, old, new))

    def flush_tlb_all(self) -> None:
        flush_tlb_all(self.uc)  # type: ignore[arg-type]  # closed, its _Closed raises EmuError there
        self._stale.clear()
        self._stale_runs.clear()

    def flush_tlb_one(self, va: int) -> None:
        """invlpg, executed by this CPU. Inside a running call Unicorn cannot nest a run,
        so there it flushes the whole TLB: more than invlpg drops, never less."""
        if self.running:
            self.flush_tlb_all()
            return
        self.maybe_stale.pop(va & ~0xFFF, None)
        rip, rdi = self.reg("rip"), self.reg("rdi")
        self.set_reg("rdi", va)
        self._emu_start(INVLPG_ADDR, INVLPG_ADDR + 3, 0)
        self.set_reg("rdi", rdi)
        self.set_reg("rip", rip)

    def run(self, begin: int, until: int, count: int, time_limit: float = 0.0) -> bool:
        """Run from `begin` until RIP reaches `until`, at most `count` instructions started
        (0: no count, and Unicorn runs without its per-instruction counter), for at most
        `time_limit` seconds (0: no limit). True when the time limit stopped it."""
        self.running = True
        timer = StopTimer(self.uc, time_limit) if time_limit else None
        try:
            self._emu_start(begin, until, count)
        finally:
            self.running = False
            if timer is not None:
                timer.cancel()
        return timer is not None and timer.fired

    def _emu_start(self, begin: int, until: int, count: int) -> None:
        """emu_start, with cached code fit for counting. Unicorn counts with a code hook that
        only code translated while it exists carries: a run without `count` deletes the hook
        (and drops every translation), and code it then translates would run uncounted in a
        later counted run, which would overrun its count. So a counted run after an uncounted
        one drops the translations first."""
        if count and self._uncounted_code:
            self.uc.ctl_flush_tb()
        self._uncounted_code = not count
        self.uc.emu_start(begin, until, count=count)


class StopTimer:
    """emu_stop() a run after `seconds`, from a thread that sleeps until then. Unicorn's own
    timeout (emu_start's `timeout`) wakes every few microseconds to look at the clock; on a
    loaded 2-core machine that thread takes the CPU the run needs (0.7x of bare Unicorn
    against 0.85-0.95x with this timer, measured side by side)."""

    def __init__(self, uc: unicorn.Uc | _Closed, seconds: float):
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire, args=(uc,))
        self._timer.daemon = True
        self._timer.start()

    def _fire(self, uc: unicorn.Uc) -> None:
        with self._lock:
            if self._armed:
                self.fired = True
                uc.emu_stop()

    def cancel(self) -> None:
        """After this returns the timer stops nothing: a later run on the same engine is safe."""
        with self._lock:
            self._armed = False
        self._timer.cancel()
