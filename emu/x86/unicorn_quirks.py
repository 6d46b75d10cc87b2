"""What we need from Unicorn that its Python binding does not give, found by calibration.

1. The #PF hardware error code is not a register; it lives in the CPU context
   (`env->error_code`).
2. Unicorn issue 1883: `env->old_exception` is never reset after a hooked
   exception, so the next #PF is promoted to #DF (vector 8) and the third to a
   triple fault that silently ends emu_start. Clearing it to -1 in the saved
   context and restoring the context makes every fault a fresh #PF.
3. The instruction counter behind `emu_start(count=N)` (`uc->emu_counter`), which
   tells how many instructions a run started before it stopped early.
4. Where RIP, RCX, RBP and CR2 sit in a saved context. Point 2 saves one at every
   fault anyway, and reading them there costs a tenth of a uc_reg_read call.

None of these offsets is part of Unicorn's API, so none is hard-coded: one
calibration run per process forces faults with known error codes on a scratch
CPU and finds the fields by comparing saved contexts. A Unicorn build where
calibration fails is refused with a clear error instead of misbehaving later.

One behaviour we model around rather than fix: a TLB entry that a load filled
does not let a store through; the first store walks the tables again, where
hardware uses the cached entry (its dirty bit was set). A stale translation is
kept for stores only once a store has used it (tests/test_paging.py).
"""

from __future__ import annotations

import ctypes
import functools
import struct
from dataclasses import dataclass
from typing import NamedTuple

import unicorn
from unicorn import x86_const as X
from unicorn.unicorn_py3.unicorn import UcContext, uclib

from ..errors import EmuError

EFER_MSR = 0xC000_0080
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NXE = 1 << 11
CR0_PE, CR0_MP, CR0_ET, CR0_NE, CR0_WP, CR0_AM, CR0_PG = 1, 2, 0x10, 0x20, 1 << 16, 1 << 18, 1 << 31
CR0_KERNEL = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_AM | CR0_PG  # 0x80050033
CR4_PAE = 1 << 5

_UC_STRUCT_SCAN = 4096  # bytes of uc_struct searched for emu_counter


class UnicornUnsupported(EmuError):
    pass


@dataclass(frozen=True)
class Offsets:
    """Byte offsets from the start of a uc_context, and into uc_struct."""

    error_code: int
    old_exception: int
    emu_counter: int
    rip: int
    rcx: int
    rbp: int
    cr2: int


class TakenException(NamedTuple):
    """What the exception hook needs first, as the CPU had it when the exception was raised."""

    error_code: int
    rip: int
    rcx: int
    rbp: int
    cr2: int


def enable_long_mode_paging(uc: unicorn.Uc, cr3: int) -> None:
    """Long mode with paging really on: CR3, CR4.PAE, EFER.LME|LMA|NXE, CR0.PG|WP."""
    uc.reg_write(X.UC_X86_REG_CR3, cr3)
    uc.reg_write(X.UC_X86_REG_CR4, uc.reg_read(X.UC_X86_REG_CR4) | CR4_PAE)
    # uc.msr_read()/msr_write() of the x86 subclass, spelled so that any Uc types them
    uc.reg_write(X.UC_X86_REG_MSR, (EFER_MSR, uc.reg_read(X.UC_X86_REG_MSR, EFER_MSR) | EFER_LME | EFER_LMA | EFER_NXE))
    uc.reg_write(X.UC_X86_REG_CR0, CR0_KERNEL)
    flush_tlb_all(uc)


def flush_tlb_all(uc: unicorn.Uc) -> None:
    """UC_CTL_TLB_FLUSH: the binding has no wrapper for it."""
    uc.ctl(unicorn.UC_CTL_TLB_FLUSH, unicorn.UC_CTL_IO_WRITE)


def release(uc: unicorn.Uc) -> None:
    """uc_close() now. The binding closes an engine only when its Uc is collected, and a
    machine's hooks make a reference cycle, so that waits for the cycle collector while
    every live engine's memory makes the next uc_open() slower (6 ms instead of 0.3 ms)."""
    finalizer = getattr(uc, "_Uc__finalizer", None)  # the binding's weakref.finalize: runs once
    if finalizer is not None:
        finalizer()


def _address(handle: ctypes.c_void_p) -> int:
    """The address in a ctypes handle: ctypes says None for NULL, which a live engine's never is."""
    address = ctypes.cast(handle, ctypes.c_void_p).value
    if address is None:
        raise UnicornUnsupported("Unicorn gave a NULL handle")
    return address


def _raw(ctx: UcContext) -> bytes:
    return ctypes.string_at(_address(ctx.context), ctx.size)


def _one(candidates: list[int], what: str) -> int:
    if len(candidates) != 1:
        raise UnicornUnsupported(
            f"cannot locate {what} in this Unicorn build ({unicorn.__version__}): "
            f"{len(candidates)} candidates; arena-emu supports unicorn 2.1.x")
    return candidates[0]


@functools.cache
def offsets() -> Offsets:
    """Calibrate once per process (about 2 ms)."""
    # A tiny machine of its own: code at 0x1000, tables at 0x2000.., data pages unmapped.
    ram = 0x10_0000
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(0, ram)
    code_va, read_va, write_va, fetch_va = 0x40_0000, 0x60_0000, 0x60_1000, 0x60_2000
    next_frame = [0x2000]

    def frame() -> int:
        next_frame[0] += 0x1000
        return next_frame[0]

    def map_page(va: int, pa: int) -> None:
        table = 0x2000
        for shift in (39, 30, 21):
            slot = table + ((va >> shift) & 511) * 8
            entry = struct.unpack("<Q", uc.mem_read(slot, 8))[0]
            if not entry & 1:
                entry = frame() | 0x67
                uc.mem_write(slot, struct.pack("<Q", entry))
            table = entry & ~0xFFF
        uc.mem_write(table + ((va >> 12) & 511) * 8, struct.pack("<Q", pa | 0x63))

    code_pa = frame()
    # mov (%rdi),%rax ; mov %rax,(%rsi) ; call *%rdx ; nop x5
    code = bytes.fromhex("488b07" "488906" "ffd2") + b"\x90" * 5
    uc.mem_write(code_pa, code)
    map_page(code_va, code_pa)
    map_page(code_va - 0x1000, frame())  # stack for the call
    enable_long_mode_paging(uc, 0x2000)
    uc.reg_write(X.UC_X86_REG_RSP, code_va - 8)
    uc.reg_write(X.UC_X86_REG_RDI, read_va)
    uc.reg_write(X.UC_X86_REG_RSI, write_va)
    uc.reg_write(X.UC_X86_REG_RDX, fetch_va)
    rcx, rbp = 0x1C1C_2C2C_3C3C_4C4C, 0x1B1B_2B2B_3B3B_4B4B  # not used by the code: seen unchanged
    uc.reg_write(X.UC_X86_REG_RCX, rcx)
    uc.reg_write(X.UC_X86_REG_RBP, rbp)

    ctx = uc.context_save()
    pristine = _raw(ctx)
    snaps: list[bytes] = []
    old_exception: list[int] = []

    def on_fault(uc: unicorn.Uc, intno: int, _data: object) -> None:
        uclib.uc_context_save(uc._uch, ctx.context)
        snap = _raw(ctx)
        snaps.append(snap)
        if not old_exception:
            old_exception.append(_one(
                [o for o in range(0, len(snap) - 3, 4)
                 if struct.unpack_from("<i", pristine, o)[0] == -1 and struct.unpack_from("<i", snap, o)[0] == 14],
                "env->old_exception"))
        base = _address(ctx.context)
        ctypes.c_int32.from_address(base + old_exception[0]).value = -1
        uclib.uc_context_restore(uc._uch, ctx.context)
        cr2 = uc.reg_read(X.UC_X86_REG_CR2)
        pa = frame()
        if cr2 == fetch_va:
            uc.mem_write(pa, b"\xc3")  # ret
        map_page(cr2, pa)

    uc.hook_add(unicorn.UC_HOOK_INTR, on_fault)
    marker = 0x5EED_1234
    end = code_va + len(code) - 1
    uc.emu_start(code_va, end, count=marker)
    if len(snaps) != 3 or uc.reg_read(X.UC_X86_REG_RIP) != end:
        raise UnicornUnsupported(
            f"calibration run took {len(snaps)} faults instead of 3; this Unicorn build "
            f"({unicorn.__version__}) does not deliver #PF as arena-emu expects")
    error_code = _one(
        [o for o in range(0, len(pristine) - 3, 4)
         if [struct.unpack_from("<i", s, o)[0] for s in snaps] == [0x0, 0x2, 0x10]],
        "env->error_code")

    def u64_at(seen: list[int]) -> list[int]:
        return [o for o in range(0, len(pristine) - 7, 4)
                if [struct.unpack_from("<Q", snap, o)[0] for snap in snaps] == seen]

    # The three faults: the load at code_va, the store at code_va + 3, the fetch at fetch_va.
    # RIP's value also sits in a second field; env->eip is the one after the 16 GPRs.
    rcx_at, rbp_at = _one(u64_at([rcx] * 3), "env->regs[R_ECX]"), _one(u64_at([rbp] * 3), "env->regs[R_EBP]")
    rip_at = _one([o for o in u64_at([code_va, code_va + 3, fetch_va]) if o == rcx_at - 8 + 16 * 8], "env->eip")
    regs = (rip_at, rcx_at, rbp_at, _one(u64_at([read_va, write_va, fetch_va]), "env->cr[2]"))
    uch = _address(uc._uch)
    mem = ctypes.string_at(uch, _UC_STRUCT_SCAN)
    counter = _one(
        [o for o in range(0, len(mem) - 15, 8) if struct.unpack_from("<QQ", mem, o) in
         {(n, marker) for n in range(6, 16)}],
        "uc->emu_counter")
    return Offsets(error_code, old_exception[0], counter, *regs)


class ExceptionState:
    """Per-CPU access to the hidden exception fields, through one reusable context."""

    def __init__(self, uc: unicorn.Uc):
        off = offsets()
        self._uch = uc._uch
        self._ctx = uc.context_save()
        self._handle = self._ctx.context
        base = _address(self._handle)
        self._error_code = ctypes.c_int32.from_address(base + off.error_code)
        self._old_exception = ctypes.c_int32.from_address(base + off.old_exception)
        self._regs = [ctypes.c_uint64.from_address(base + o) for o in (off.rip, off.rcx, off.rbp, off.cr2)]
        uch = _address(uc._uch)
        self._counter = ctypes.c_uint64.from_address(uch + off.emu_counter)

    def take_exception(self) -> TakenException:
        """Called first in the exception hook: clears the in-flight exception, and returns the
        error code and the registers the fault path reads first, from the same saved context."""
        uclib.uc_context_save(self._uch, self._handle)
        error_code = self._error_code.value & 0xFFFF_FFFF
        self._old_exception.value = -1
        uclib.uc_context_restore(self._uch, self._handle)
        rip, rcx, rbp, cr2 = self._regs
        return TakenException(error_code, rip.value, rcx.value, rbp.value, cr2.value)

    @property
    def instructions_started(self) -> int:
        """Instructions started since the last emu_start (each `rep` iteration counts)."""
        return self._counter.value

    def uncount(self) -> None:
        """Take back the instruction a code hook stopped at: Unicorn counts an instruction
        before its code hooks run, and the one a hook stops does not run."""
        if self._counter.value:
            self._counter.value -= 1
