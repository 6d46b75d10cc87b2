"""The eBPF-to-x86-64 JIT, after arch/x86/net/bpf_jit_comp.c.

Each emitter below is the kernel function, or the do_jit() case, its docstring
names, emitting the same bytes, so that images, instruction lengths and
exception-table entries are the ones a kernel would produce. The configuration modelled is a kernel without
CONFIG_X86_KERNEL_IBT/CFI (no ENDBR, no kCFI preamble), without retpolines,
rethunk or SLS padding (`ret` alone), without private stacks or tail calls, on
a CPU without BMI2 (shifts by a register go through CL).

Layout: one image at the load address holding every subprogram in instruction
order, each starting with its own prologue as jit_subprogs() JITs them; the
kernel places them in separate allocations, which changes only the call
displacements. Subprograms start at instruction 0 and at every target of a
bpf-to-bpf call (src 1) or of an ld_imm64 of BPF_PSEUDO_FUNC (src 4).

What the verifier would have patched in before the JIT is emitted inline so
that instruction indices stay the caller's: the ISA's div/mod by zero and
INT_MIN / -1 results (do_misc_fixups), the zero extension of R0 after a 32-bit
cmpxchg, and may_goto as a per-frame counter of BPF_MAX_LOOPS in the 8 bytes
below the frame's stack, set in the prologue.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import EmuError
from ..x86.extable import ExtableEntry
from .insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ARSH,
    BPF_ATOMIC,
    BPF_B,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_DW,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_FUNC_TAIL_CALL,
    BPF_H,
    BPF_HELPER_CALL,
    BPF_JA,
    BPF_JCOND,
    BPF_JEQ,
    BPF_JGE,
    BPF_JGT,
    BPF_JLE,
    BPF_JLT,
    BPF_JMP,
    BPF_JMP32,
    BPF_JNE,
    BPF_JSET,
    BPF_JSGE,
    BPF_JSGT,
    BPF_JSLE,
    BPF_JSLT,
    BPF_K,
    BPF_LD,
    BPF_LD_IMM64,
    BPF_LDX,
    BPF_LOAD_ACQ,
    BPF_LSH,
    BPF_MAY_GOTO,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_NOSPEC,
    BPF_OR,
    BPF_PROBE_MEM32,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_REG_FP,
    BPF_RSH,
    BPF_ST,
    BPF_STORE_REL,
    BPF_STX,
    BPF_SUB,
    BPF_TAIL_CALL,
    BPF_TO_LE,
    BPF_W,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    CAST_USER_IMM,
    Insn,
    check,
    ld_imm64,
)
from .jit_extable import REG2PT_REGS, ArenaAccess

MAX_BPF_STACK = 512
BPF_MAX_LOOPS = 8 * 1024 * 1024  # may_goto's per-frame budget (include/linux/bpf.h)
MAX_PASSES = 20
PADDING_PASSES = MAX_PASSES - 5
X86_PATCH_SIZE = 5

# JIT-internal registers beyond BPF R0..R10 (MAX_BPF_JIT_REG = 12).
BPF_REG_AX, AUX_REG, X86_REG_R9, X86_REG_R12 = 11, 13, 14, 15
BPF_REG_0, BPF_REG_3, BPF_REG_4 = 0, 3, 4

# reg2hex[]: R0..R10 -> rax, rdi, rsi, rdx, rcx, r8, rbx, r13, r14, r15, rbp; AX r10, AUX r11, r9, r12.
_REG2HEX = (0, 7, 6, 2, 1, 0, 3, 5, 6, 7, 5, 2, 0, 3, 1, 4)
_EREG = frozenset({5, 7, 8, 9, BPF_REG_AX, AUX_REG, X86_REG_R9, X86_REG_R12})  # is_ereg(): r8..r15
_EREG_8L = _EREG | {1, 2, BPF_REG_FP}  # is_ereg_8l(): sil, dil, bpl need a REX byte too
_X86_NAME = tuple(REG2PT_REGS)  # reg2pt_regs[] is in BPF register order, R0..R9

_SIMPLE_ALU_OPCODES = {BPF_ADD: 0x01, BPF_SUB: 0x29, BPF_AND: 0x21, BPF_OR: 0x09, BPF_XOR: 0x31, BPF_LSH: 0xE0,
                       BPF_RSH: 0xE8, BPF_ARSH: 0xF8}
_ALU_K = {BPF_ADD: (0xC0, 0x05), BPF_SUB: (0xE8, 0x2D), BPF_AND: (0xE0, 0x25), BPF_OR: (0xC8, 0x0D),
          BPF_XOR: (0xF0, 0x35)}  # (ModRM /n for 81/83, the short rax form)
X86_JB, X86_JAE, X86_JE, X86_JNE, X86_JBE, X86_JA = 0x72, 0x73, 0x74, 0x75, 0x76, 0x77
X86_JL, X86_JGE, X86_JLE, X86_JG = 0x7C, 0x7D, 0x7E, 0x7F
_JMP_COND = {BPF_JEQ: X86_JE, BPF_JSET: X86_JNE, BPF_JNE: X86_JNE, BPF_JGT: X86_JA, BPF_JLT: X86_JB,
             BPF_JGE: X86_JAE, BPF_JLE: X86_JBE, BPF_JSGT: X86_JG, BPF_JSLT: X86_JL, BPF_JSGE: X86_JGE,
             BPF_JSLE: X86_JLE}
_X86_NOPS = (b"", b"\x90", b"\x66\x90", b"\x0f\x1f\x00", b"\x0f\x1f\x40\x00", b"\x0f\x1f\x44\x00\x00",
             b"\x66\x0f\x1f\x44\x00\x00", b"\x0f\x1f\x80\x00\x00\x00\x00", b"\x0f\x1f\x84\x00\x00\x00\x00\x00")
_BPF_SIZE_TO_X86_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 4}  # DW stores a sign-extended imm32

_s32 = struct.Struct("<i").pack
_u32 = struct.Struct("<I").pack
_u64 = struct.Struct("<Q").pack

CallResolver = Callable[[int, int], "int | None"]
"""resolve(src_reg, imm) -> absolute address, or None if unknown: src_reg 0 is a helper id, 2 a kfunc's BTF id."""


class JitError(EmuError):
    """A program this JIT refuses, as the kernel's JIT or verifier would: says which instruction and why."""

    def __init__(self, index: int | None, message: str):
        self.index, self.message = index, message
        super().__init__(message if index is None else f"insn {index}: {message}")


@dataclass(frozen=True)
class JitImage:
    """A JITed program. Addresses are absolute; insn_ranges[i] is what BPF slot i became (the second slot of an
    ld_imm64 gets the empty range at the end of the first); extable holds one EX_TYPE_BPF entry per arena access."""

    address: int
    code: bytes
    extable: tuple[ExtableEntry, ...]
    insn_ranges: tuple[tuple[int, int], ...]
    subprogs: tuple[int, ...]  # entry addresses, the main program first
    subprog_insns: tuple[int, ...]  # the first instruction index of each subprogram
    frame_sizes: tuple[int, ...]  # each subprogram's `sub rsp`: its rounded stack depth (+8 for may_goto's counter)
    passes: int

    @property
    def end(self) -> int:
        return self.address + len(self.code)

    def insn_at(self, address: int) -> int | None:
        """The BPF instruction whose code holds `address`; None in a prologue or outside the image."""
        i = bisect.bisect_right(self._starts, address) - 1
        while i >= 0 and self.insn_ranges[i][0] == self.insn_ranges[i][1]:
            i -= 1
        if i >= 0 and self.insn_ranges[i][0] <= address < self.insn_ranges[i][1]:
            return i
        return None

    @property
    def _starts(self) -> list[int]:
        return [start for start, _ in self.insn_ranges]

    def __repr__(self) -> str:
        return (f"JitImage({self.address:#x}-{self.end:#x}, {len(self.code)} bytes, {len(self.insn_ranges)} insns, "
                f"{len(self.subprogs)} subprogs, {len(self.extable)} extable entries, {self.passes} passes)")


def _is_imm8(value: int) -> bool:
    return -128 <= value <= 127


def _is_imm8_jmp_offset(value: int) -> bool:
    """is_imm8_jmp_offset(): forward rel8 only up to 123, so that passes converge."""
    return -128 <= value <= 123


def _is_simm32(value: int) -> bool:
    return -0x8000_0000 <= value <= 0x7FFF_FFFF


def add_1mod(byte: int, reg: int) -> int:
    """add_1mod(): REX.B for r8..r15."""
    return byte | 1 if reg in _EREG else byte


def add_2mod(byte: int, r1: int, r2: int) -> int:
    """add_2mod(): REX.B for r1 (ModRM r/m), REX.R for r2 (ModRM reg)."""
    return byte | (1 if r1 in _EREG else 0) | (4 if r2 in _EREG else 0)


def add_3mod(byte: int, r1: int, r2: int, index: int) -> int:
    """add_3mod(): REX.B base, REX.X index, REX.R reg."""
    return byte | (1 if r1 in _EREG else 0) | (2 if index in _EREG else 0) | (4 if r2 in _EREG else 0)


def add_1reg(byte: int, reg: int) -> int:
    """add_1reg()."""
    return byte + _REG2HEX[reg]


def add_2reg(byte: int, dst: int, src: int) -> int:
    """add_2reg(): dst in ModRM r/m, src in ModRM reg."""
    return byte + _REG2HEX[dst] + (_REG2HEX[src] << 3)


def emit_nops(buf: bytearray, length: int) -> None:
    """emit_nops(): the longest x86_nops[] first (ASM_NOP_MAX = 8)."""
    while length > 0:
        n = min(length, 8)
        buf += _X86_NOPS[n]
        length -= n


def emit_prologue(buf: bytearray, stack_depth: int) -> None:
    """emit_prologue() without CFI: trampoline nop5, nop3 (no tail calls), frame, stack."""
    emit_nops(buf, X86_PATCH_SIZE)
    emit_nops(buf, 3)
    buf += b"\x55\x48\x89\xe5"  # push rbp; mov rbp, rsp
    if stack_depth:
        buf += b"\x48\x81\xec" + _s32(stack_depth)  # sub rsp, rounded_stack_depth


def push_callee_regs(buf: bytearray, used: tuple[bool, bool, bool, bool]) -> None:
    """push_callee_regs(): rbx, r13, r14, r15, those the program uses."""
    for flag, code in zip(used, (b"\x53", b"\x41\x55", b"\x41\x56", b"\x41\x57"), strict=True):
        if flag:
            buf += code


def pop_callee_regs(buf: bytearray, used: tuple[bool, bool, bool, bool]) -> None:
    """pop_callee_regs(): the reverse of push_callee_regs()."""
    for flag, code in zip(used[::-1], (b"\x41\x5f", b"\x41\x5e", b"\x41\x5d", b"\x5b"), strict=True):
        if flag:
            buf += code


def emit_mov_imm32(buf: bytearray, sign_propagate: bool, dst: int, imm32: int) -> None:
    """emit_mov_imm32(): mov r64, simm32 when negative and 64-bit, xor for 0, else mov r32, imm32."""
    imm32 &= 0xFFFF_FFFF
    if sign_propagate and imm32 & 0x8000_0000:
        buf += bytes((add_1mod(0x48, dst), 0xC7, add_1reg(0xC0, dst))) + _u32(imm32)
    elif imm32 == 0:
        if dst in _EREG:
            buf.append(add_2mod(0x40, dst, dst))
        buf += bytes((0x31, add_2reg(0xC0, dst, dst)))
    else:
        if dst in _EREG:
            buf.append(add_1mod(0x40, dst))
        buf.append(add_1reg(0xB8, dst))
        buf += _u32(imm32)


def emit_mov_imm64(buf: bytearray, dst: int, imm64: int) -> None:
    """emit_mov_imm64(): the shortest of mov r32 (zero-extends), mov r64 simm32, movabs."""
    imm64 &= 0xFFFF_FFFF_FFFF_FFFF
    signed = imm64 - (1 << 64) if imm64 >> 63 else imm64
    if imm64 <= 0xFFFF_FFFF:
        emit_mov_imm32(buf, False, dst, imm64)
    elif _is_simm32(signed):
        emit_mov_imm32(buf, True, dst, imm64)
    else:
        buf += bytes((add_1mod(0x48, dst), add_1reg(0xB8, dst))) + _u64(imm64)


def emit_mov(buf: bytearray, dst: int, src: int) -> None:
    """EMIT_mov(): mov dst, src (64-bit), nothing when they are the same register."""
    if dst != src:
        buf += bytes((add_2mod(0x48, dst, src), 0x89, add_2reg(0xC0, dst, src)))


def emit_mov_reg(buf: bytearray, is64: bool, dst: int, src: int) -> None:
    """emit_mov_reg(): a 32-bit mov always emits, so it zero-extends even onto itself."""
    if is64:
        emit_mov(buf, dst, src)
        return
    if dst in _EREG or src in _EREG:
        buf.append(add_2mod(0x40, dst, src))
    buf += bytes((0x89, add_2reg(0xC0, dst, src)))


def emit_movsx_reg(buf: bytearray, num_bits: int, is64: bool, dst: int, src: int) -> None:
    """emit_movsx_reg(): movs[b,w,l]q for ALU64, movs[b,w]l for ALU."""
    modrm = add_2reg(0xC0, src, dst)
    if is64:
        rex = add_2mod(0x48, src, dst)
        buf += {8: bytes((rex, 0x0F, 0xBE, modrm)), 16: bytes((rex, 0x0F, 0xBF, modrm)),
                32: bytes((rex, 0x63, modrm))}[num_bits]
    elif num_bits == 8:
        buf += bytes((add_2mod(0x40, src, dst), 0x0F, 0xBE, modrm))
    else:
        if dst in _EREG or src in _EREG:
            buf.append(add_2mod(0x40, src, dst))
        buf += bytes((0x0F, 0xBF, modrm))


def emit_insn_suffix(buf: bytearray, ptr: int, val: int, off: int) -> None:
    """emit_insn_suffix(): [ptr + disp8/disp32], always with a displacement (no r13/rbp special case)."""
    if _is_imm8(off):
        buf += bytes((add_2reg(0x40, ptr, val), off & 0xFF))
    else:
        buf.append(add_2reg(0x80, ptr, val))
        buf += _s32(off)


def emit_insn_suffix_sib(buf: bytearray, ptr: int, val: int, index: int, off: int) -> None:
    """emit_insn_suffix_SIB(): [ptr + index + disp8/disp32]."""
    sib = add_2reg(0, ptr, index)
    if _is_imm8(off):
        buf += bytes((add_2reg(0x44, BPF_REG_0, val), sib, off & 0xFF))
    else:
        buf += bytes((add_2reg(0x84, BPF_REG_0, val), sib))
        buf += _s32(off)


def maybe_emit_mod(buf: bytearray, dst: int, src: int, is64: bool) -> None:
    """maybe_emit_mod(): REX.W for 64-bit, a bare REX only when an ereg needs it."""
    if is64:
        buf.append(add_2mod(0x48, dst, src))
    elif dst in _EREG or src in _EREG:
        buf.append(add_2mod(0x40, dst, src))


def maybe_emit_1mod(buf: bytearray, reg: int, is64: bool) -> None:
    """maybe_emit_1mod()."""
    if is64:
        buf.append(add_1mod(0x48, reg))
    elif reg in _EREG:
        buf.append(add_1mod(0x40, reg))


def emit_ldx(buf: bytearray, size: int, dst: int, src: int, off: int) -> None:
    """emit_ldx(): movzx for B/H, mov r32 (zero-extends) for W, mov r64 for DW."""
    if size == BPF_B:
        buf += bytes((add_2mod(0x48, src, dst), 0x0F, 0xB6))
    elif size == BPF_H:
        buf += bytes((add_2mod(0x48, src, dst), 0x0F, 0xB7))
    elif size == BPF_W:
        if dst in _EREG or src in _EREG:
            buf.append(add_2mod(0x40, src, dst))
        buf.append(0x8B)
    else:
        buf += bytes((add_2mod(0x48, src, dst), 0x8B))
    emit_insn_suffix(buf, src, dst, off)


def emit_ldsx(buf: bytearray, size: int, dst: int, src: int, off: int) -> None:
    """emit_ldsx(): movsx/movsxd into 64 bits."""
    rex = add_2mod(0x48, src, dst)
    buf += {BPF_B: bytes((rex, 0x0F, 0xBE)), BPF_H: bytes((rex, 0x0F, 0xBF)), BPF_W: bytes((rex, 0x63))}[size]
    emit_insn_suffix(buf, src, dst, off)


def emit_ldx_index(buf: bytearray, size: int, dst: int, src: int, index: int, off: int) -> None:
    """emit_ldx_index(): the load of emit_ldx_r12(), [src + r12 + off]."""
    if size in (BPF_B, BPF_H):
        buf += bytes((add_3mod(0x40, src, dst, index), 0x0F, 0xB6 if size == BPF_B else 0xB7))
    else:
        buf += bytes((add_3mod(0x48 if size == BPF_DW else 0x40, src, dst, index), 0x8B))
    emit_insn_suffix_sib(buf, src, dst, index, off)


def emit_ldsx_index(buf: bytearray, size: int, dst: int, src: int, index: int, off: int) -> None:
    """emit_ldsx_index(): the sign-extending load of emit_ldsx_r12() for BPF_PROBE_MEM32SX."""
    rex = add_3mod(0x48, src, dst, index)
    buf += {BPF_B: bytes((rex, 0x0F, 0xBE)), BPF_H: bytes((rex, 0x0F, 0xBF)), BPF_W: bytes((rex, 0x63))}[size]
    emit_insn_suffix_sib(buf, src, dst, index, off)


def emit_stx(buf: bytearray, size: int, dst: int, src: int, off: int) -> None:
    """emit_stx(): mov [dst + off], src."""
    ereg = dst in _EREG or src in _EREG
    if size == BPF_B:
        if dst in _EREG or src in _EREG_8L:
            buf.append(add_2mod(0x40, dst, src))
        buf.append(0x88)
    elif size == BPF_H:
        buf.append(0x66)
        if ereg:
            buf.append(add_2mod(0x40, dst, src))
        buf.append(0x89)
    elif size == BPF_W:
        if ereg:
            buf.append(add_2mod(0x40, dst, src))
        buf.append(0x89)
    else:
        buf += bytes((add_2mod(0x48, dst, src), 0x89))
    emit_insn_suffix(buf, dst, src, off)


def emit_stx_index(buf: bytearray, size: int, dst: int, src: int, index: int, off: int) -> None:
    """emit_stx_index(): the store of emit_stx_r12(), [dst + r12 + off]."""
    rex = add_3mod(0x48 if size == BPF_DW else 0x40, dst, src, index)
    if size == BPF_H:
        buf.append(0x66)
    buf += bytes((rex, 0x88 if size == BPF_B else 0x89))
    emit_insn_suffix_sib(buf, dst, src, index, off)


def emit_st(buf: bytearray, size: int, dst: int, off: int, imm: int) -> None:
    """do_jit()'s BPF_ST | BPF_MEM case (label `st`): mov [dst + off], imm."""
    if size == BPF_DW:
        buf += bytes((add_1mod(0x48, dst), 0xC7))
    else:
        if size == BPF_H:
            buf.append(0x66)
        if dst in _EREG:
            buf.append(0x41)
        buf.append(0xC6 if size == BPF_B else 0xC7)
    if _is_imm8(off):
        buf += bytes((add_1reg(0x40, dst), off & 0xFF))
    else:
        buf.append(add_1reg(0x80, dst))
        buf += _s32(off)
    buf += _s32(imm)[:_BPF_SIZE_TO_X86_BYTES[size]]


def emit_st_index(buf: bytearray, size: int, dst: int, index: int, off: int, imm: int) -> None:
    """emit_st_index(): the store of emit_st_r12(), mov [dst + r12 + off], imm."""
    rex = add_3mod(0x48 if size == BPF_DW else 0x40, dst, 0, index)
    if size == BPF_H:
        buf.append(0x66)
    buf += bytes((rex, 0xC6 if size == BPF_B else 0xC7))
    emit_insn_suffix_sib(buf, dst, 0, index, off)
    buf += _s32(imm)[:_BPF_SIZE_TO_X86_BYTES[size]]


def _atomic_opcode(atomic_op: int) -> bytes:
    if atomic_op in (BPF_ADD, BPF_AND, BPF_OR, BPF_XOR):
        return bytes((_SIMPLE_ALU_OPCODES[atomic_op],))
    return {BPF_ADD | BPF_FETCH: b"\x0f\xc1", BPF_XCHG: b"\x87", BPF_CMPXCHG: b"\x0f\xb1"}[atomic_op]


def emit_atomic(buf: bytearray, atomic_op: int, dst: int, src: int, off: int, size: int) -> None:
    """emit_atomic(): lock add/and/or/xor, lock xadd, (lock) xchg, lock cmpxchg on [dst + off]."""
    buf.append(0xF0)
    maybe_emit_mod(buf, dst, src, size == BPF_DW)
    buf += _atomic_opcode(atomic_op)
    emit_insn_suffix(buf, dst, src, off)


def emit_atomic_index(buf: bytearray, atomic_op: int, size: int, dst: int, src: int, index: int, off: int) -> None:
    """emit_atomic_index(): emit_atomic() on [dst + r12 + off]."""
    buf.append(0xF0)
    buf.append(add_3mod(0x48 if size == BPF_DW else 0x40, dst, src, index))
    buf += _atomic_opcode(atomic_op)
    emit_insn_suffix_sib(buf, dst, src, index, off)


def emit_atomic_ld_st(buf: bytearray, atomic_op: int, dst: int, src: int, off: int, size: int) -> None:
    """emit_atomic_ld_st(): x86 loads are acquires and stores releases already, so plain mov."""
    if atomic_op == BPF_LOAD_ACQ:
        emit_ldx(buf, size, dst, src, off)
    else:
        emit_stx(buf, size, dst, src, off)


def emit_atomic_ld_st_index(buf: bytearray, atomic_op: int, size: int, dst: int, src: int, index: int,
                            off: int) -> None:
    """emit_atomic_ld_st_index(): emit_atomic_ld_st() on [reg + r12 + off]."""
    if atomic_op == BPF_LOAD_ACQ:
        emit_ldx_index(buf, size, dst, src, index, off)
    else:
        emit_stx_index(buf, size, dst, src, index, off)


def emit_atomic_fetch_loop(buf: bytearray, insn: Insn) -> None:
    """do_jit()'s AND/OR/XOR with FETCH: no single x86 instruction, so a CMPXCHG loop, R0 saved in AX."""
    is64 = insn.size == BPF_DW
    src = BPF_REG_AX if insn.src == BPF_REG_0 else insn.src
    dst = BPF_REG_AX if insn.dst == BPF_REG_0 else insn.dst
    emit_mov_reg(buf, True, BPF_REG_AX, BPF_REG_0)
    branch_target = len(buf)
    emit_ldx(buf, insn.size, BPF_REG_0, dst, insn.off)
    emit_mov_reg(buf, is64, AUX_REG, BPF_REG_0)
    maybe_emit_mod(buf, AUX_REG, src, is64)
    buf += bytes((_SIMPLE_ALU_OPCODES[insn.imm & 0xF0], add_2reg(0xC0, AUX_REG, src)))
    emit_atomic(buf, BPF_CMPXCHG, dst, AUX_REG, insn.off, insn.size)
    buf += bytes((X86_JNE, (branch_target - len(buf) - 2) & 0xFF))
    emit_mov_reg(buf, is64, src, BPF_REG_0)
    emit_mov_reg(buf, True, BPF_REG_0, BPF_REG_AX)


def _emit_div_body(buf: bytearray, insn: Insn, src: int) -> None:
    """do_jit()'s BPF_DIV/BPF_MOD case: rax/rdx saved around div/idiv, the divisor in r11 when it is rax, rdx or K."""
    is64, dst = insn.cls == BPF_ALU64, insn.dst
    if dst != BPF_REG_0:
        buf.append(0x50)  # push rax
    if dst != BPF_REG_3:
        buf.append(0x52)  # push rdx
    if insn.source == BPF_X:
        if src in (BPF_REG_0, BPF_REG_3):
            emit_mov(buf, AUX_REG, src)
            src = AUX_REG
    else:
        buf += b"\x49\xc7\xc3" + _s32(insn.imm)  # mov r11, imm32
        src = AUX_REG
    if dst != BPF_REG_0:
        emit_mov_reg(buf, is64, BPF_REG_0, dst)
    if insn.off == 0:
        buf += b"\x31\xd2"  # xor edx, edx
        maybe_emit_1mod(buf, src, is64)
        buf += bytes((0xF7, add_1reg(0xF0, src)))  # div src
    else:
        buf += b"\x48\x99" if is64 else b"\x99"  # cqo / cdq
        maybe_emit_1mod(buf, src, is64)
        buf += bytes((0xF7, add_1reg(0xF8, src)))  # idiv src
    if insn.op == BPF_MOD and dst != BPF_REG_3:
        emit_mov_reg(buf, is64, dst, BPF_REG_3)
    elif insn.op == BPF_DIV and dst != BPF_REG_0:
        emit_mov_reg(buf, is64, dst, BPF_REG_0)
    if dst != BPF_REG_3:
        buf.append(0x5A)  # pop rdx
    if dst != BPF_REG_0:
        buf.append(0x58)  # pop rax


def _div_by_zero(insn: Insn) -> bytearray:
    """The ISA's result for a zero divisor: DIV gives 0, MOD leaves dst (an ALU MOD still zero-extends it)."""
    out = bytearray()
    if insn.op == BPF_DIV:
        emit_mov_imm32(out, False, insn.dst, 0)
    elif insn.cls == BPF_ALU:
        emit_mov_reg(out, False, insn.dst, insn.dst)
    return out


def _div_by_minus_one(insn: Insn) -> bytearray:
    """The ISA's result for a signed divisor of -1, where idiv would trap on INT_MIN: SDIV negates, SMOD gives 0."""
    out = bytearray()
    if insn.op == BPF_DIV:
        maybe_emit_1mod(out, insn.dst, insn.cls == BPF_ALU64)
        out += bytes((0xF7, add_1reg(0xD8, insn.dst)))  # neg dst
    else:
        emit_mov_imm32(out, False, insn.dst, 0)
    return out


def emit_div(buf: bytearray, insn: Insn) -> None:
    """DIV/MOD with do_misc_fixups()'s guards for 0 and (signed) -1 divisors; a K divisor is decided here."""
    is64 = insn.cls == BPF_ALU64
    if insn.source == BPF_K:
        if insn.imm == 0:
            buf += _div_by_zero(insn)
        elif insn.off and insn.imm == -1:
            buf += _div_by_minus_one(insn)
        else:
            _emit_div_body(buf, insn, AUX_REG)
        return
    src = insn.src
    rest = bytearray()
    _emit_div_body(rest, insn, src)
    zero_test = bytearray()
    maybe_emit_mod(zero_test, src, src, is64)
    zero_test += bytes((0x85, add_2reg(0xC0, src, src)))  # test src, src
    guards = [(zero_test, _div_by_zero(insn))]
    if insn.off:
        minus_one_test = bytearray()
        maybe_emit_1mod(minus_one_test, src, is64)
        minus_one_test += bytes((0x83, add_1reg(0xF8, src), 0xFF))  # cmp src, -1
        guards.insert(0, (minus_one_test, _div_by_minus_one(insn)))
    for test, case in reversed(guards):
        if case:
            block = test + bytes((X86_JNE, len(case) + 2)) + case + bytes((0xEB, len(rest)))
        else:
            block = test + bytes((X86_JE, len(rest)))
        rest = block + rest
    buf += rest


def emit_shift_x(buf: bytearray, insn: Insn) -> None:
    """do_jit()'s shift-by-register case without BMI2: the count goes through CL, rcx saved (or dst via r11)."""
    dst, src = insn.dst, insn.src
    if src != BPF_REG_4:
        if dst == BPF_REG_4:
            emit_mov(buf, AUX_REG, dst)
            dst = AUX_REG
        else:
            buf.append(0x51)  # push rcx
        emit_mov(buf, BPF_REG_4, src)
    maybe_emit_1mod(buf, dst, insn.cls == BPF_ALU64)
    buf += bytes((0xD3, add_1reg(_SIMPLE_ALU_OPCODES[insn.op], dst)))
    if src != BPF_REG_4:
        if insn.dst == BPF_REG_4:
            emit_mov(buf, insn.dst, AUX_REG)
        else:
            buf.append(0x59)  # pop rcx


def emit_end(buf: bytearray, insn: Insn) -> None:
    """do_jit()'s BPF_END cases: TO_BE and ALU64 bswap swap (ror/bswap), TO_LE only truncates."""
    dst, ereg = insn.dst, insn.dst in _EREG
    movzwl = (b"\x45\x0f\xb7" if ereg else b"\x0f\xb7") + bytes((add_2reg(0xC0, dst, dst),))
    if insn.cls == BPF_ALU and insn.source == BPF_TO_LE:
        if insn.imm == 16:
            buf += movzwl
        elif insn.imm == 32:
            buf += (b"\x45" if ereg else b"") + bytes((0x89, add_2reg(0xC0, dst, dst)))
    elif insn.imm == 16:
        buf += (b"\x66\x41" if ereg else b"\x66") + bytes((0xC1, add_1reg(0xC8, dst), 8))  # ror ax, 8
        buf += movzwl
    elif insn.imm == 32:
        buf += (b"\x41\x0f" if ereg else b"\x0f") + bytes((add_1reg(0xC8, dst),))  # bswap eax
    else:
        buf += bytes((add_1mod(0x48, dst), 0x0F, add_1reg(0xC8, dst)))  # bswap rax


def emit_cast_user(buf: bytearray, dst: int, src: int, user_vm_start: int) -> None:
    """do_jit()'s insn_is_cast_user(): glue user_vm_start's upper half onto the low 32 bits, keeping NULL."""
    if dst != src:
        emit_mov_reg(buf, False, dst, src)
    maybe_emit_1mod(buf, dst, True)
    buf += bytes((0xC1, add_1reg(0xE0, dst), 32))  # shl dst, 32
    maybe_emit_1mod(buf, dst, True)
    if dst == BPF_REG_0:
        buf.append(0x0D)
    else:
        buf += bytes((0x81, add_1reg(0xC8, dst)))
    buf += _u32(user_vm_start >> 32)  # or dst, user_vm_start >> 32
    maybe_emit_1mod(buf, dst, True)
    buf += bytes((0xC1, add_1reg(0xC0, dst), 32))  # rol dst, 32
    buf += b"\x4d\x31\xdb"  # xor r11, r11
    maybe_emit_mod(buf, dst, dst, False)
    buf += bytes((0x85, add_2reg(0xC0, dst, dst)))  # test dst32, dst32
    maybe_emit_mod(buf, AUX_REG, dst, True)
    buf += bytes((0x0F, 0x44, add_2reg(0xC0, AUX_REG, dst)))  # cmove dst, r11


def emit_patch(buf: bytearray, func: int, ip: int, opcode: int) -> None:
    """emit_patch(): a rel32 call/jmp from ip to func; -ERANGE when it does not reach."""
    offset = func - (ip + X86_PATCH_SIZE)
    if not _is_simm32(offset):
        raise JitError(None, f"Target call {func:#x} is out of range of {ip:#x}")
    buf.append(opcode)
    buf += _s32(offset)


def emit_call(buf: bytearray, func: int, ip: int) -> None:
    """emit_call(): E8 rel32."""
    emit_patch(buf, func, ip, 0xE8)


def emit_return(buf: bytearray) -> None:
    """emit_return() without X86_FEATURE_RETHUNK or SLS: ret."""
    buf.append(0xC3)


@dataclass
class _Func:
    """A subprogram, as jit_subprogs() sees it: its own bpf_prog, frame, callee-saved set and epilogue."""

    lo: int
    hi: int
    regs_used: tuple[bool, bool, bool, bool]
    stack_depth: int
    may_goto_slot: int | None  # rbp-relative offset of the may_goto counter
    entry: int = 0  # image offset of the prologue, updated every pass
    cleanup: int = 0  # image offset of the epilogue (ctx->cleanup_addr)


def detect_reg_usage(insns: list[Insn]) -> tuple[bool, bool, bool, bool]:
    """detect_reg_usage(): which of R6..R9 (rbx, r13, r14, r15) the prologue must save."""
    regs = {r for insn in insns for r in (insn.dst, insn.src)}
    return (6 in regs, 7 in regs, 8 in regs, 9 in regs)


class _Jit:
    """One program through bpf_int_jit_compile()'s passes; `jit_pass` is one run of the kernel's do_jit()."""

    def __init__(self, insns: list[Insn], address: int, kern_vm_start: int | None, user_vm_start: int | None,
                 resolve: CallResolver | None, stack_depth: int | Sequence[int]):
        check(insns)
        self.insns, self.address = insns, address
        self.kern_vm_start, self.user_vm_start, self.resolve = kern_vm_start, user_vm_start, resolve
        self.second_slots = {i + 1 for i, insn in enumerate(insns) if insn.code == BPF_LD_IMM64}
        self.func_of = [0] * len(insns)
        self.funcs = self._subprogs(stack_depth)
        self.calls = {i: self._call_target(i) for i, insn in enumerate(insns)
                      if insn.cls == BPF_JMP and insn.op == BPF_CALL and insn.src != BPF_PSEUDO_CALL}
        self._check_jumps()
        n = len(insns)
        self.begin = [64 * (i + 1) for i in range(n)]
        self.end = [64 * (i + 2) for i in range(n)]
        for f in self.funcs:
            f.entry = self.begin[f.lo] - 64
            f.cleanup = 64 * (n + 1)
        self.padding = False
        self.accesses: list[tuple[int, ArenaAccess]] = []

    def _subprogs(self, stack_depth: int | Sequence[int]) -> list[_Func]:
        """check_subprogs(): a subprogram starts at 0 and at every bpf-to-bpf call or callback target."""
        if not self.insns:
            raise JitError(None, "the program has no instructions")
        starts = {0}
        for i, insn in enumerate(self.insns):
            if (insn.code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL) or (
                    insn.code == BPF_LD_IMM64 and insn.src == BPF_PSEUDO_FUNC):
                target = i + 1 + insn.imm
                if not 0 <= target < len(self.insns) or target in self.second_slots:
                    raise JitError(i, f"call to insn {target}, which is not an instruction of the program")
                starts.add(target)
        bounds = sorted(starts) + [len(self.insns)]
        depths = [stack_depth] * len(starts) if isinstance(stack_depth, int) else list(stack_depth)
        if len(depths) != len(starts):
            raise JitError(None, f"{len(depths)} stack depths given for {len(starts)} subprograms")
        funcs = []
        for k, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False)):
            body = self.insns[lo:hi]
            last = self.insns[hi - 1 - (hi - 1 in self.second_slots)]
            if last.code not in (BPF_JMP | BPF_EXIT, BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA):
                raise JitError(hi - 1, "last insn is not an exit or jmp")
            if not 0 <= depths[k] <= MAX_BPF_STACK:
                raise JitError(lo, f"stack depth {depths[k]} is not within 0..{MAX_BPF_STACK}")
            depth = (depths[k] + 7) & ~7
            slot = None
            if any(insn.code == BPF_JMP | BPF_JCOND for insn in body):
                depth += 8
                slot = -depth
            funcs.append(_Func(lo, hi, detect_reg_usage(body), depth, slot))
            self.func_of[lo:hi] = [k] * (hi - lo)
        return funcs

    def _call_target(self, i: int) -> int:
        insn = self.insns[i]
        if insn.source == BPF_X:
            raise JitError(i, "callx: Linux does not implement indirect calls")
        if insn.src == BPF_HELPER_CALL and insn.imm == BPF_FUNC_TAIL_CALL:
            raise JitError(i, "bpf_tail_call: tail calls are not supported by this JIT")
        what = "helper" if insn.src == BPF_HELPER_CALL else "kfunc with BTF id"
        func = self.resolve(insn.src, insn.imm) if self.resolve is not None else None
        if func is None:
            raise JitError(i, f"unknown {what} {insn.imm}")
        return func

    def _check_jumps(self) -> None:
        """check_cfg()'s "jump out of range": a jump stays inside its subprogram and lands on an instruction."""
        for i, insn in enumerate(self.insns):
            target = self._jump_target(i, insn)
            if target is None:
                continue
            f = self.funcs[self.func_of[i]]
            if not f.lo <= target < f.hi or target in self.second_slots:
                raise JitError(i, f"jump out of range from insn {i} to {target}")

    @staticmethod
    def _jump_target(i: int, insn: Insn) -> int | None:
        if insn.cls not in (BPF_JMP, BPF_JMP32) or insn.op in (BPF_CALL, BPF_EXIT, BPF_TAIL_CALL):
            return None
        return i + 1 + (insn.imm if insn.code == BPF_JMP32 | BPF_JA else insn.off)

    def jit_pass(self) -> bytearray:
        """do_jit(): one pass over every subprogram, updating begin/end (the kernel's addrs[]) in place."""
        image = bytearray()
        self.accesses = []
        insns = self.insns
        for f in self.funcs:
            f.entry = len(image)
            self._emit_prologue(image, f)
            seen_exit = False
            i = f.lo
            while i < f.hi:
                insn = insns[i]
                self.begin[i] = len(image)
                t = bytearray()
                if insn.code == BPF_JMP | BPF_EXIT:
                    if seen_exit:
                        self._emit_jmp(t, i, f.cleanup - self.end[i])
                    else:
                        seen_exit = True
                        f.cleanup = len(image)
                        pop_callee_regs(t, f.regs_used)
                        if self.kern_vm_start is not None:
                            t += b"\x41\x5c"  # pop r12
                        t.append(0xC9)  # leave
                        emit_return(t)
                else:
                    self._emit_insn(t, i, insn)
                image += t
                self.end[i] = len(image)
                if insn.code == BPF_LD_IMM64:
                    i += 1
                    self.begin[i] = self.end[i] = len(image)
                i += 1
        return image

    def _emit_prologue(self, image: bytearray, f: _Func) -> None:
        emit_prologue(image, f.stack_depth)
        if self.kern_vm_start is not None:
            image += b"\x41\x54"  # push r12
        push_callee_regs(image, f.regs_used)
        if self.kern_vm_start is not None:
            emit_mov_imm64(image, X86_REG_R12, self.kern_vm_start)
        if f.may_goto_slot is not None:
            emit_st(image, BPF_DW, BPF_REG_FP, f.may_goto_slot, BPF_MAX_LOOPS)

    def _pad(self, t: bytearray, i: int, short: int, allowed: tuple[int, ...], what: str) -> None:
        """jmp_padding: in a padded pass, nops before a jump of `short` bytes make up what it shrank by
        (INSN_SZ_DIFF against the previous pass), so the image can no longer shrink."""
        if self.padding:
            nops = (self.end[i] - self.begin[i]) - len(t) - short
            if nops not in allowed:
                raise JitError(i, f"unexpected {what} padding: {nops} bytes")
            emit_nops(t, nops)

    def _emit_cond_jmp(self, t: bytearray, i: int, jmp_cond: int, offset: int) -> None:
        """do_jit()'s emit_cond_jmp label: Jcc rel8 if it fits, else rel32."""
        if _is_imm8_jmp_offset(offset):
            self._pad(t, i, 2, (0, 4), "jmp_cond")
            t += bytes((jmp_cond, offset & 0xFF))
        else:
            t += bytes((0x0F, jmp_cond + 0x10)) + _s32(offset)

    def _emit_jmp(self, t: bytearray, i: int, offset: int) -> None:
        """do_jit()'s emit_jmp label: EB rel8 or E9 rel32."""
        if _is_imm8_jmp_offset(offset):
            self._pad(t, i, 2, (0, 3), "jump")
            t += bytes((0xEB, offset & 0xFF))
        else:
            t.append(0xE9)
            t += _s32(offset)

    def _jump_offset(self, i: int, delta: int) -> int:
        """addrs[i + off] - addrs[i]: from the end of this instruction to the start of the target."""
        return self.begin[i + 1 + delta] - self.end[i]

    def _emit_insn(self, t: bytearray, i: int, insn: Insn) -> None:
        cls = insn.cls
        if cls in (BPF_ALU, BPF_ALU64):
            self._emit_alu(t, i, insn)
        elif cls in (BPF_JMP, BPF_JMP32):
            self._emit_jmp_class(t, i, insn)
        elif insn.code == BPF_LD_IMM64:
            if insn.src == BPF_PSEUDO_FUNC:
                target = self.funcs[self.func_of[i + 1 + insn.imm]]
                emit_mov_imm64(t, insn.dst, self.address + target.entry)
            else:
                emit_mov_imm64(t, insn.dst, ld_imm64(insn, self.insns[i + 1]))
        elif cls == BPF_LD:
            raise JitError(i, f"{insn.name}: legacy packet loads are rewritten by the verifier before the JIT")
        else:
            self._emit_mem(t, i, insn)

    def _emit_alu(self, t: bytearray, i: int, insn: Insn) -> None:
        op, dst, src, is64 = insn.op, insn.dst, insn.src, insn.cls == BPF_ALU64
        if op in _ALU_K and insn.source == BPF_X:
            maybe_emit_mod(t, dst, src, is64)
            t += bytes((_SIMPLE_ALU_OPCODES[op], add_2reg(0xC0, dst, src)))
        elif op in _ALU_K:
            maybe_emit_1mod(t, dst, is64)
            b3, b2 = _ALU_K[op]
            if _is_imm8(insn.imm):
                t += bytes((0x83, add_1reg(b3, dst), insn.imm & 0xFF))
            elif dst == BPF_REG_0:
                t.append(b2)
                t += _s32(insn.imm)
            else:
                t += bytes((0x81, add_1reg(b3, dst)))
                t += _s32(insn.imm)
        elif op == BPF_MOV and insn.source == BPF_X:
            if is64 and insn.off == 1:
                if insn.imm != CAST_USER_IMM:
                    raise JitError(i, "addr_space_cast(cast_kern) reaches the JIT only after the verifier "
                                      "lowers it to a 32-bit mov")
                if self.user_vm_start is None:
                    raise JitError(i, "addr_space_cast insn can only be used in a program that has an arena")
                emit_cast_user(t, dst, src, self.user_vm_start)
            elif insn.off == 0:
                emit_mov_reg(t, is64, dst, src)
            else:
                emit_movsx_reg(t, insn.off, is64, dst, src)
        elif op == BPF_MOV:
            emit_mov_imm32(t, is64, dst, insn.imm)
        elif op == BPF_NEG:
            maybe_emit_1mod(t, dst, is64)
            t += bytes((0xF7, add_1reg(0xD8, dst)))
        elif op in (BPF_DIV, BPF_MOD):
            emit_div(t, insn)
        elif op == BPF_MUL and insn.source == BPF_K:
            maybe_emit_mod(t, dst, dst, is64)
            if _is_imm8(insn.imm):
                t += bytes((0x6B, add_2reg(0xC0, dst, dst), insn.imm & 0xFF))
            else:
                t += bytes((0x69, add_2reg(0xC0, dst, dst)))
                t += _s32(insn.imm)
        elif op == BPF_MUL:
            maybe_emit_mod(t, src, dst, is64)
            t += bytes((0x0F, 0xAF, add_2reg(0xC0, src, dst)))
        elif op == BPF_END:
            emit_end(t, insn)
        elif insn.source == BPF_K:
            maybe_emit_1mod(t, dst, is64)
            b3 = _SIMPLE_ALU_OPCODES[op]
            if insn.imm == 1:
                t += bytes((0xD1, add_1reg(b3, dst)))
            else:
                t += bytes((0xC1, add_1reg(b3, dst), insn.imm & 0xFF))
        else:
            emit_shift_x(t, insn)

    def _emit_jmp_class(self, t: bytearray, i: int, insn: Insn) -> None:
        op, dst, is64 = insn.op, insn.dst, insn.cls == BPF_JMP
        if op == BPF_CALL:
            self._emit_call(t, i, insn)
        elif op == BPF_JA:
            delta = insn.imm if insn.cls == BPF_JMP32 else insn.off
            offset = -2 if delta == -1 else self._jump_offset(i, delta)  # a JA to itself is always jmp -2
            if offset:
                self._emit_jmp(t, i, offset)
            else:
                self._pad(t, i, 0, (0, 2, 5), "nop jump")
        elif op == BPF_TAIL_CALL:
            raise JitError(i, "bpf_tail_call: tail calls are not supported by this JIT")
        elif op == BPF_JCOND:
            if insn.src != BPF_MAY_GOTO:
                raise JitError(i, f"unknown conditional pseudo jump (src {insn.src})")
            self._emit_may_goto(t, i, insn)
        else:
            if insn.source == BPF_X:
                maybe_emit_mod(t, dst, insn.src, is64)
                t += bytes((0x85 if op == BPF_JSET else 0x39, add_2reg(0xC0, dst, insn.src)))
            elif op == BPF_JSET:
                maybe_emit_1mod(t, dst, is64)
                t += bytes((0xF7, add_1reg(0xC0, dst)))
                t += _s32(insn.imm)
            elif insn.imm == 0:
                maybe_emit_mod(t, dst, dst, is64)
                t += bytes((0x85, add_2reg(0xC0, dst, dst)))
            else:
                maybe_emit_1mod(t, dst, is64)
                if _is_imm8(insn.imm):
                    t += bytes((0x83, add_1reg(0xF8, dst), insn.imm & 0xFF))
                else:
                    t += bytes((0x81, add_1reg(0xF8, dst)))
                    t += _s32(insn.imm)
            self._emit_cond_jmp(t, i, _JMP_COND[op], self._jump_offset(i, insn.off))

    def _emit_may_goto(self, t: bytearray, i: int, insn: Insn) -> None:
        """may_goto: if the frame's counter is 0, jump; else count down. sub 1 borrows exactly at 0 and adc puts the
        borrow back, so the counter stays 0 and CF says "spent" for the closing jb."""
        slot: int = self.funcs[self.func_of[i]].may_goto_slot  # type: ignore[assignment]  # a may_goto's function has one
        for ext, imm in ((5, 1), (2, 0)):  # sub qword [rbp + slot], 1; adc qword [rbp + slot], 0
            if _is_imm8(slot):
                t += bytes((0x48, 0x83, add_1reg(0x40 | ext << 3, BPF_REG_FP), slot & 0xFF, imm))
            else:
                t += bytes((0x48, 0x83, add_1reg(0x80 | ext << 3, BPF_REG_FP))) + _s32(slot) + bytes((imm,))
        self._emit_cond_jmp(t, i, X86_JB, self._jump_offset(i, insn.off))

    def _emit_call(self, t: bytearray, i: int, insn: Insn) -> None:
        ip = self.address + self.begin[i]
        if insn.src == BPF_PSEUDO_CALL:
            func = self.address + self.funcs[self.func_of[i + 1 + insn.imm]].entry
        else:
            func = self.calls[i]
        try:
            emit_call(t, func, ip)
        except JitError as e:
            raise JitError(i, e.message) from None

    def _emit_mem(self, t: bytearray, i: int, insn: Insn) -> None:
        cls, mode, size, dst, src, off = insn.cls, insn.mode, insn.size, insn.dst, insn.src, insn.off
        if cls == BPF_LDX and mode == BPF_MEM:
            emit_ldx(t, size, dst, src, off)
        elif cls == BPF_LDX and mode == BPF_MEMSX:
            emit_ldsx(t, size, dst, src, off)
        elif cls == BPF_ST and mode == BPF_MEM:
            emit_st(t, size, dst, off, insn.imm)
        elif cls == BPF_ST and mode == BPF_NOSPEC:
            t += b"\x0f\xae\xe8"  # lfence
        elif cls == BPF_STX and mode == BPF_MEM:
            emit_stx(t, size, dst, src, off)
        elif cls == BPF_STX and mode == BPF_ATOMIC:
            if insn.imm in (BPF_LOAD_ACQ, BPF_STORE_REL):
                emit_atomic_ld_st(t, insn.imm, dst, src, off, size)
            elif insn.imm in (BPF_AND | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH):
                emit_atomic_fetch_loop(t, insn)
            else:
                emit_atomic(t, insn.imm, dst, src, off, size)
                self._zext_cmpxchg(t, insn)
        else:
            self._emit_arena(t, i, insn)

    @staticmethod
    def _zext_cmpxchg(t: bytearray, insn: Insn) -> None:
        """The verifier's BPF_ZEXT_REG(R0) after a 32-bit cmpxchg: x86 leaves rax's upper half when it matches."""
        if insn.imm == BPF_CMPXCHG and insn.size == BPF_W:
            emit_mov_reg(t, False, BPF_REG_0, BPF_REG_0)

    def _emit_arena(self, t: bytearray, i: int, insn: Insn) -> None:
        """BPF_PROBE_MEM32/MEM32SX/PROBE_ATOMIC: the r12-indexed access, then its populate_extable entry."""
        cls, mode, size, dst, src, off = insn.cls, insn.mode, insn.size, insn.dst, insn.src, insn.off
        if self.kern_vm_start is None:
            raise JitError(i, f"{insn.name} needs the program's arena (kern_vm_start in r12)")
        addr_reg = src if cls == BPF_LDX else dst
        if max(addr_reg, dst) > 9:
            raise JitError(i, "verifier error: an arena access through r10")
        start = len(t)
        if cls == BPF_LDX:
            (emit_ldx_index if mode == BPF_PROBE_MEM32 else emit_ldsx_index)(t, size, dst, src, X86_REG_R12, off)
            kind = "load"
        elif cls == BPF_ST:
            emit_st_index(t, size, dst, X86_REG_R12, off, insn.imm)
            kind = "store"
        elif cls == BPF_STX and mode == BPF_PROBE_MEM32:
            emit_stx_index(t, size, dst, src, X86_REG_R12, off)
            kind = "store"
        elif insn.imm in (BPF_AND | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH):
            raise JitError(i, "AND/OR/XOR with FETCH on the arena: bpf_jit_supports_insn() is false on x86")
        else:
            if insn.imm in (BPF_LOAD_ACQ, BPF_STORE_REL):
                emit_atomic_ld_st_index(t, insn.imm, size, dst, src, X86_REG_R12, off)
            else:
                emit_atomic_index(t, insn.imm, size, dst, src, X86_REG_R12, off)
            kind = "atomic"  # as populate_extable writes every STX: DONT_CLEAR and dst, even for a load-acquire
        access = ArenaAccess(kind, len(t) - start, _X86_NAME[dst] if kind == "load" else None, _X86_NAME[addr_reg],
                             off)
        self.accesses.append((self.begin[i] + start, access))
        if kind == "atomic":
            self._zext_cmpxchg(t, insn)


def do_jit(insns: list[Insn], address: int, *, kern_vm_start: int | None = None, user_vm_start: int | None = None,
           resolve: CallResolver | None = None, stack_depth: int | Sequence[int] = MAX_BPF_STACK) -> JitImage:
    """JIT a verified program to load at `address`, as bpf_int_jit_compile() drives do_jit().

    Passes run until no instruction changes size; from PADDING_PASSES on, jumps that would shrink are padded with
    nops so the image converges, and MAX_PASSES without convergence is an error. The converged pass is the image:
    the kernel's extra writing pass would see the same addrs[] and emit the same bytes. `kern_vm_start` (the arena's
    kernel base, loaded into r12) is given when the program has an arena, `user_vm_start` when it uses cast_user.
    `stack_depth` is the verifier-computed depth of every frame, or one per subprogram in order.
    """
    jit = _Jit(insns, address, kern_vm_start, user_vm_start, resolve, stack_depth)
    for npass in range(1, MAX_PASSES + 1):
        old_end = list(jit.end)
        jit.padding = npass > PADDING_PASSES
        image = jit.jit_pass()
        if jit.end == old_end:
            break
    else:
        raise JitError(None, f"bpf_jit: the image did not converge in {MAX_PASSES} passes")
    extable = tuple(access.extable_entry(address + at) for at, access in jit.accesses)
    ranges = tuple((address + b, address + e) for b, e in zip(jit.begin, jit.end, strict=True))
    return JitImage(address, bytes(image), extable, ranges, tuple(address + f.entry for f in jit.funcs),
                    tuple(f.lo for f in jit.funcs), tuple(f.stack_depth for f in jit.funcs), npass)
