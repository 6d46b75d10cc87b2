"""The x86-64 encoders of arch/x86/net/bpf_jit_comp.c: REX/ModRM helpers and the emit_*() functions.

Each function is the kernel function, or the do_jit() case, its docstring names, appending the same
bytes to `buf`; none knows about passes or instruction indices, which is what lets do_jit() (jit.py)
re-run them until the image converges.
"""

from __future__ import annotations

import struct

from .insn import (
    BPF_ADD,
    BPF_AND,
    BPF_ARSH,
    BPF_B,
    BPF_CMPXCHG,
    BPF_DW,
    BPF_FETCH,
    BPF_H,
    BPF_LOAD_ACQ,
    BPF_LSH,
    BPF_OR,
    BPF_REG_FP,
    BPF_RSH,
    BPF_SUB,
    BPF_W,
    BPF_XCHG,
    BPF_XOR,
    Insn,
)

X86_PATCH_SIZE = 5

# JIT-internal registers beyond BPF R0..R10 (MAX_BPF_JIT_REG = 12).
BPF_REG_AX, AUX_REG, X86_REG_R9, X86_REG_R12 = 11, 13, 14, 15
BPF_REG_0, BPF_REG_3, BPF_REG_4 = 0, 3, 4

# reg2hex[]: R0..R10 -> rax, rdi, rsi, rdx, rcx, r8, rbx, r13, r14, r15, rbp; AX r10, AUX r11, r9, r12.
_REG2HEX = (0, 7, 6, 2, 1, 0, 3, 5, 6, 7, 5, 2, 0, 3, 1, 4)
EREG = frozenset({5, 7, 8, 9, BPF_REG_AX, AUX_REG, X86_REG_R9, X86_REG_R12})  # is_ereg(): r8..r15
_EREG_8L = EREG | {1, 2, BPF_REG_FP}  # is_ereg_8l(): sil, dil, bpl need a REX byte too

SIMPLE_ALU_OPCODES = {BPF_ADD: 0x01, BPF_SUB: 0x29, BPF_AND: 0x21, BPF_OR: 0x09, BPF_XOR: 0x31, BPF_LSH: 0xE0,
                      BPF_RSH: 0xE8, BPF_ARSH: 0xF8}
X86_JB, X86_JAE, X86_JE, X86_JNE, X86_JBE, X86_JA = 0x72, 0x73, 0x74, 0x75, 0x76, 0x77
X86_JL, X86_JGE, X86_JLE, X86_JG = 0x7C, 0x7D, 0x7E, 0x7F
_X86_NOPS = (b"", b"\x90", b"\x66\x90", b"\x0f\x1f\x00", b"\x0f\x1f\x40\x00", b"\x0f\x1f\x44\x00\x00",
             b"\x66\x0f\x1f\x44\x00\x00", b"\x0f\x1f\x80\x00\x00\x00\x00", b"\x0f\x1f\x84\x00\x00\x00\x00\x00")
_BPF_SIZE_TO_X86_BYTES = {BPF_B: 1, BPF_H: 2, BPF_W: 4, BPF_DW: 4}  # DW stores a sign-extended imm32

s32 = struct.Struct("<i").pack
u32 = struct.Struct("<I").pack
_u64 = struct.Struct("<Q").pack


def is_imm8(value: int) -> bool:
    return -128 <= value <= 127


def is_imm8_jmp_offset(value: int) -> bool:
    """is_imm8_jmp_offset(): forward rel8 only up to 123, so that passes converge."""
    return -128 <= value <= 123


def _is_simm32(value: int) -> bool:
    return -0x8000_0000 <= value <= 0x7FFF_FFFF


def add_1mod(byte: int, reg: int) -> int:
    """add_1mod(): REX.B for r8..r15."""
    return byte | 1 if reg in EREG else byte


def add_2mod(byte: int, r1: int, r2: int) -> int:
    """add_2mod(): REX.B for r1 (ModRM r/m), REX.R for r2 (ModRM reg)."""
    return byte | (1 if r1 in EREG else 0) | (4 if r2 in EREG else 0)


def add_3mod(byte: int, r1: int, r2: int, index: int) -> int:
    """add_3mod(): REX.B base, REX.X index, REX.R reg."""
    return byte | (1 if r1 in EREG else 0) | (2 if index in EREG else 0) | (4 if r2 in EREG else 0)


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
        buf += b"\x48\x81\xec" + s32(stack_depth)  # sub rsp, rounded_stack_depth


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
        buf += bytes((add_1mod(0x48, dst), 0xC7, add_1reg(0xC0, dst))) + u32(imm32)
    elif imm32 == 0:
        if dst in EREG:
            buf.append(add_2mod(0x40, dst, dst))
        buf += bytes((0x31, add_2reg(0xC0, dst, dst)))
    else:
        if dst in EREG:
            buf.append(add_1mod(0x40, dst))
        buf.append(add_1reg(0xB8, dst))
        buf += u32(imm32)


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
    if dst in EREG or src in EREG:
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
        if dst in EREG or src in EREG:
            buf.append(add_2mod(0x40, src, dst))
        buf += bytes((0x0F, 0xBF, modrm))


def emit_insn_suffix(buf: bytearray, ptr: int, val: int, off: int) -> None:
    """emit_insn_suffix(): [ptr + disp8/disp32], always with a displacement (no r13/rbp special case)."""
    if is_imm8(off):
        buf += bytes((add_2reg(0x40, ptr, val), off & 0xFF))
    else:
        buf.append(add_2reg(0x80, ptr, val))
        buf += s32(off)


def emit_insn_suffix_sib(buf: bytearray, ptr: int, val: int, index: int, off: int) -> None:
    """emit_insn_suffix_SIB(): [ptr + index + disp8/disp32]."""
    sib = add_2reg(0, ptr, index)
    if is_imm8(off):
        buf += bytes((add_2reg(0x44, BPF_REG_0, val), sib, off & 0xFF))
    else:
        buf += bytes((add_2reg(0x84, BPF_REG_0, val), sib))
        buf += s32(off)


def maybe_emit_mod(buf: bytearray, dst: int, src: int, is64: bool) -> None:
    """maybe_emit_mod(): REX.W for 64-bit, a bare REX only when an ereg needs it."""
    if is64:
        buf.append(add_2mod(0x48, dst, src))
    elif dst in EREG or src in EREG:
        buf.append(add_2mod(0x40, dst, src))


def maybe_emit_1mod(buf: bytearray, reg: int, is64: bool) -> None:
    """maybe_emit_1mod()."""
    if is64:
        buf.append(add_1mod(0x48, reg))
    elif reg in EREG:
        buf.append(add_1mod(0x40, reg))


def emit_ldx(buf: bytearray, size: int, dst: int, src: int, off: int) -> None:
    """emit_ldx(): movzx for B/H, mov r32 (zero-extends) for W, mov r64 for DW."""
    if size == BPF_B:
        buf += bytes((add_2mod(0x48, src, dst), 0x0F, 0xB6))
    elif size == BPF_H:
        buf += bytes((add_2mod(0x48, src, dst), 0x0F, 0xB7))
    elif size == BPF_W:
        if dst in EREG or src in EREG:
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
    ereg = dst in EREG or src in EREG
    if size == BPF_B:
        if dst in EREG or src in _EREG_8L:
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
        if dst in EREG:
            buf.append(0x41)
        buf.append(0xC6 if size == BPF_B else 0xC7)
    if is_imm8(off):
        buf += bytes((add_1reg(0x40, dst), off & 0xFF))
    else:
        buf.append(add_1reg(0x80, dst))
        buf += s32(off)
    buf += s32(imm)[:_BPF_SIZE_TO_X86_BYTES[size]]


def emit_st_index(buf: bytearray, size: int, dst: int, index: int, off: int, imm: int) -> None:
    """emit_st_index(): the store of emit_st_r12(), mov [dst + r12 + off], imm."""
    rex = add_3mod(0x48 if size == BPF_DW else 0x40, dst, 0, index)
    if size == BPF_H:
        buf.append(0x66)
    buf += bytes((rex, 0xC6 if size == BPF_B else 0xC7))
    emit_insn_suffix_sib(buf, dst, 0, index, off)
    buf += s32(imm)[:_BPF_SIZE_TO_X86_BYTES[size]]


def _atomic_opcode(atomic_op: int) -> bytes:
    if atomic_op in (BPF_ADD, BPF_AND, BPF_OR, BPF_XOR):
        return bytes((SIMPLE_ALU_OPCODES[atomic_op],))
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
    buf += bytes((SIMPLE_ALU_OPCODES[insn.imm & 0xF0], add_2reg(0xC0, AUX_REG, src)))
    emit_atomic(buf, BPF_CMPXCHG, dst, AUX_REG, insn.off, insn.size)
    buf += bytes((X86_JNE, (branch_target - len(buf) - 2) & 0xFF))
    emit_mov_reg(buf, is64, src, BPF_REG_0)
    emit_mov_reg(buf, True, BPF_REG_0, BPF_REG_AX)


def emit_patch(buf: bytearray, func: int, ip: int, opcode: int) -> bool:
    """emit_patch(): a rel32 call/jmp from ip to func; False, the kernel's -ERANGE, when it does not reach."""
    offset = func - (ip + X86_PATCH_SIZE)
    if not _is_simm32(offset):
        return False
    buf.append(opcode)
    buf += s32(offset)
    return True


def emit_call(buf: bytearray, func: int, ip: int) -> bool:
    """emit_call(): E8 rel32; False when the callee is out of its reach."""
    return emit_patch(buf, func, ip, 0xE8)


def emit_return(buf: bytearray) -> None:
    """emit_return() without X86_FEATURE_RETHUNK or SLS: ret."""
    buf.append(0xC3)

