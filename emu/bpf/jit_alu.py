"""do_jit()'s BPF_ALU and BPF_ALU64 cases (arch/x86/net/bpf_jit_comp.c).

Apart from jit.py because they need nothing of the passes: DIV/MOD carry the guards do_misc_fixups()
would have patched in for 0 and -1 divisors, shifts by a register go through CL (no BMI2), BPF_END
swaps bytes, and cast_user rebuilds a user pointer from the arena's user_vm_start.
"""

from __future__ import annotations

from .insn import (
    BPF_ADD,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_DIV,
    BPF_END,
    BPF_K,
    BPF_MOD,
    BPF_MOV,
    BPF_MUL,
    BPF_NEG,
    BPF_OR,
    BPF_SUB,
    BPF_TO_LE,
    BPF_X,
    BPF_XOR,
    Insn,
)
from .jit_emit import (
    AUX_REG,
    BPF_REG_0,
    BPF_REG_3,
    BPF_REG_4,
    EREG,
    SIMPLE_ALU_OPCODES,
    X86_JE,
    X86_JNE,
    add_1mod,
    add_1reg,
    add_2reg,
    emit_mov,
    emit_mov_imm32,
    emit_mov_reg,
    emit_movsx_reg,
    is_imm8,
    maybe_emit_1mod,
    maybe_emit_mod,
    s32,
    u32,
)

_ALU_K = {BPF_ADD: (0xC0, 0x05), BPF_SUB: (0xE8, 0x2D), BPF_AND: (0xE0, 0x25), BPF_OR: (0xC8, 0x0D),
          BPF_XOR: (0xF0, 0x35)}  # (ModRM /n for 81/83, the short rax form)


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
        buf += b"\x49\xc7\xc3" + s32(insn.imm)  # mov r11, imm32
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
    buf += bytes((0xD3, add_1reg(SIMPLE_ALU_OPCODES[insn.op], dst)))
    if src != BPF_REG_4:
        if insn.dst == BPF_REG_4:
            emit_mov(buf, insn.dst, AUX_REG)
        else:
            buf.append(0x59)  # pop rcx


def emit_end(buf: bytearray, insn: Insn) -> None:
    """do_jit()'s BPF_END cases: TO_BE and ALU64 bswap swap (ror/bswap), TO_LE only truncates."""
    dst, ereg = insn.dst, insn.dst in EREG
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
    buf += u32(user_vm_start >> 32)  # or dst, user_vm_start >> 32
    maybe_emit_1mod(buf, dst, True)
    buf += bytes((0xC1, add_1reg(0xC0, dst), 32))  # rol dst, 32
    buf += b"\x4d\x31\xdb"  # xor r11, r11
    maybe_emit_mod(buf, dst, dst, False)
    buf += bytes((0x85, add_2reg(0xC0, dst, dst)))  # test dst32, dst32
    maybe_emit_mod(buf, AUX_REG, dst, True)
    buf += bytes((0x0F, 0x44, add_2reg(0xC0, AUX_REG, dst)))  # cmove dst, r11


def emit_alu(buf: bytearray, insn: Insn) -> None:
    """do_jit()'s BPF_ALU and BPF_ALU64 cases, all but addr_space_cast."""
    op, dst, src, is64 = insn.op, insn.dst, insn.src, insn.cls == BPF_ALU64
    if op in _ALU_K and insn.source == BPF_X:
        maybe_emit_mod(buf, dst, src, is64)
        buf += bytes((SIMPLE_ALU_OPCODES[op], add_2reg(0xC0, dst, src)))
    elif op in _ALU_K:
        maybe_emit_1mod(buf, dst, is64)
        b3, b2 = _ALU_K[op]
        if is_imm8(insn.imm):
            buf += bytes((0x83, add_1reg(b3, dst), insn.imm & 0xFF))
        elif dst == BPF_REG_0:
            buf.append(b2)
            buf += s32(insn.imm)
        else:
            buf += bytes((0x81, add_1reg(b3, dst)))
            buf += s32(insn.imm)
    elif op == BPF_MOV and insn.source == BPF_X:
        if insn.off == 0:
            emit_mov_reg(buf, is64, dst, src)
        else:
            emit_movsx_reg(buf, insn.off, is64, dst, src)
    elif op == BPF_MOV:
        emit_mov_imm32(buf, is64, dst, insn.imm)
    elif op == BPF_NEG:
        maybe_emit_1mod(buf, dst, is64)
        buf += bytes((0xF7, add_1reg(0xD8, dst)))
    elif op in (BPF_DIV, BPF_MOD):
        emit_div(buf, insn)
    elif op == BPF_MUL and insn.source == BPF_K:
        maybe_emit_mod(buf, dst, dst, is64)
        if is_imm8(insn.imm):
            buf += bytes((0x6B, add_2reg(0xC0, dst, dst), insn.imm & 0xFF))
        else:
            buf += bytes((0x69, add_2reg(0xC0, dst, dst)))
            buf += s32(insn.imm)
    elif op == BPF_MUL:
        maybe_emit_mod(buf, src, dst, is64)
        buf += bytes((0x0F, 0xAF, add_2reg(0xC0, src, dst)))
    elif op == BPF_END:
        emit_end(buf, insn)
    elif insn.source == BPF_K:
        maybe_emit_1mod(buf, dst, is64)
        b3 = SIMPLE_ALU_OPCODES[op]
        if insn.imm == 1:
            buf += bytes((0xD1, add_1reg(b3, dst)))
        else:
            buf += bytes((0xC1, add_1reg(b3, dst), insn.imm & 0xFF))
    else:
        emit_shift_x(buf, insn)
