"""The eBPF instruction set: opcodes, the 8-byte slot, and decoding (include/uapi/linux/bpf.h, include/linux/filter.h).

A program is a list of slots, one `Insn` per slot: ld_imm64 keeps its second
slot (code 0, the upper immediate in `imm`) so that instruction indices, jump
offsets and call offsets count slots as the kernel does. Besides the UAPI
opcodes, `decode` accepts the verifier's internal forms that reach the JIT
(the arena probe modes, nospec, tail call), because the JIT's input is the
verified program.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ..errors import EmuError

# Classes (BPF_CLASS).
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_JMP32, BPF_ALU64 = range(8)

# Sizes (BPF_SIZE) and their widths in bytes.
BPF_W, BPF_H, BPF_B, BPF_DW = 0x00, 0x08, 0x10, 0x18
SIZE_BYTES = {BPF_W: 4, BPF_H: 2, BPF_B: 1, BPF_DW: 8}

# Modes (BPF_MODE), UAPI then filter.h's verifier-internal ones.
BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_MEMSX, BPF_ATOMIC = 0x00, 0x20, 0x40, 0x60, 0x80, 0xC0
BPF_PROBE_MEM32 = 0xA0  # LDX/ST/STX through PTR_TO_ARENA: [src + r12 + off]
BPF_PROBE_MEM32SX = 0xC0  # sign-extending LDX through PTR_TO_ARENA (shares 0xc0 with BPF_ATOMIC, which is STX only)
BPF_PROBE_ATOMIC = 0xE0  # STX atomic through PTR_TO_ARENA
BPF_NOSPEC = 0xC0  # BPF_ST | BPF_NOSPEC: a speculation barrier the verifier inserts

# Source operand (BPF_SRC).
BPF_K, BPF_X = 0x00, 0x08
BPF_TO_LE, BPF_TO_BE = BPF_K, BPF_X

# ALU operations (BPF_OP).
BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
                                                                          0x70)
BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0

# Jump operations (BPF_OP).
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE = (0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60,
                                                                           0x70)
BPF_CALL, BPF_EXIT, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE, BPF_JCOND = 0x80, 0x90, 0xA0, 0xB0, 0xC0, 0xD0, 0xE0
BPF_TAIL_CALL = 0xF0  # filter.h: what the verifier makes of a bpf_tail_call() helper call
BPF_MAY_GOTO = 0  # src_reg of BPF_JCOND (enum bpf_cond_pseudo_jmp)

# Atomic operations (imm of BPF_STX | BPF_ATOMIC).
BPF_FETCH = 0x01
BPF_XCHG = 0xE0 | BPF_FETCH
BPF_CMPXCHG = 0xF0 | BPF_FETCH
BPF_LOAD_ACQ, BPF_STORE_REL = 0x100, 0x110  # the only atomics of any size: dst = *(src + off), *(dst + off) = src
ATOMIC_OPS = frozenset({BPF_ADD, BPF_AND, BPF_OR, BPF_XOR, BPF_ADD | BPF_FETCH, BPF_AND | BPF_FETCH,
                        BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH, BPF_XCHG, BPF_CMPXCHG, BPF_LOAD_ACQ, BPF_STORE_REL})

# src_reg of a call and of ld_imm64.
BPF_HELPER_CALL, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL = 0, 1, 2
BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, BPF_PSEUDO_BTF_ID, BPF_PSEUDO_FUNC = 1, 2, 3, 4
BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE = 5, 6

BPF_ADDR_SPACE_CAST = 1  # off of an ALU64 MOV X that is an addr_space_cast
CAST_USER_IMM = 1 << 16  # insn_is_cast_user(): as(0) -> as(1)

BPF_REG_FP = 10
MAX_BPF_REG = 11
BPF_LD_IMM64 = BPF_LD | BPF_IMM | BPF_DW
BPF_FUNC_TAIL_CALL = 12

_CLASS_NAMES = ("LD", "LDX", "ST", "STX", "ALU", "JMP", "JMP32", "ALU64")
_ALU_NAMES = {BPF_ADD: "ADD", BPF_SUB: "SUB", BPF_MUL: "MUL", BPF_DIV: "DIV", BPF_OR: "OR", BPF_AND: "AND",
              BPF_LSH: "LSH", BPF_RSH: "RSH", BPF_NEG: "NEG", BPF_MOD: "MOD", BPF_XOR: "XOR", BPF_MOV: "MOV",
              BPF_ARSH: "ARSH", BPF_END: "END"}
_JMP_NAMES = {BPF_JA: "JA", BPF_JEQ: "JEQ", BPF_JGT: "JGT", BPF_JGE: "JGE", BPF_JSET: "JSET", BPF_JNE: "JNE",
              BPF_JSGT: "JSGT", BPF_JSGE: "JSGE", BPF_CALL: "CALL", BPF_EXIT: "EXIT", BPF_JLT: "JLT",
              BPF_JLE: "JLE", BPF_JSLT: "JSLT", BPF_JSLE: "JSLE", BPF_JCOND: "JCOND", BPF_TAIL_CALL: "TAIL_CALL"}
_SIZE_NAMES = {BPF_W: "W", BPF_H: "H", BPF_B: "B", BPF_DW: "DW"}
_MODE_NAMES = {BPF_IMM: "IMM", BPF_ABS: "ABS", BPF_IND: "IND", BPF_MEM: "MEM", BPF_MEMSX: "MEMSX",
               BPF_PROBE_MEM32: "PROBE_MEM32", BPF_PROBE_ATOMIC: "PROBE_ATOMIC"}


def _valid_opcodes() -> frozenset[int]:
    codes = {BPF_LD_IMM64}
    codes |= {BPF_LD | mode | size for mode in (BPF_ABS, BPF_IND) for size in (BPF_W, BPF_H, BPF_B)}
    for mode in (BPF_MEM, BPF_PROBE_MEM32):
        codes |= {cls | mode | size for cls in (BPF_LDX, BPF_ST, BPF_STX) for size in SIZE_BYTES}
    codes |= {BPF_LDX | mode | size for mode in (BPF_MEMSX, BPF_PROBE_MEM32SX) for size in (BPF_W, BPF_H, BPF_B)}
    codes |= {BPF_STX | mode | size for mode in (BPF_ATOMIC, BPF_PROBE_ATOMIC) for size in SIZE_BYTES}
    codes.add(BPF_ST | BPF_NOSPEC)
    for cls in (BPF_ALU, BPF_ALU64):
        codes |= {cls | op | src for op in _ALU_NAMES if op not in (BPF_NEG, BPF_END) for src in (BPF_K, BPF_X)}
        codes.add(cls | BPF_NEG)
    codes |= {BPF_ALU | BPF_END | BPF_TO_LE, BPF_ALU | BPF_END | BPF_TO_BE, BPF_ALU64 | BPF_END}
    conds = (BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT, BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE)
    for cls in (BPF_JMP, BPF_JMP32):
        codes |= {cls | op | src for op in conds for src in (BPF_K, BPF_X)}
        codes.add(cls | BPF_JA)
    codes |= {BPF_JMP | BPF_CALL, BPF_JMP | BPF_CALL | BPF_X, BPF_JMP | BPF_EXIT, BPF_JMP | BPF_JCOND,
              BPF_JMP | BPF_TAIL_CALL}
    return frozenset(codes)


VALID_OPCODES = _valid_opcodes()
# The src field of ld_imm64 and call is a kind, not a register.
_SRC_LIMIT = {BPF_LD_IMM64: BPF_PSEUDO_MAP_IDX_VALUE + 1, BPF_JMP | BPF_CALL: BPF_PSEUDO_KFUNC_CALL + 1}


class BpfInsnError(EmuError):
    """A malformed program: says which instruction and why."""

    def __init__(self, index: int, message: str):
        self.index, self.message = index, message
        super().__init__(f"insn {index}: {message}")


@dataclass(frozen=True, slots=True)
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    cls = property(lambda self: self.code & 0x07, doc="BPF_CLASS()")
    op = property(lambda self: self.code & 0xF0, doc="BPF_OP()")
    source = property(lambda self: self.code & 0x08, doc="BPF_SRC(): BPF_K or BPF_X")
    mode = property(lambda self: self.code & 0xE0, doc="BPF_MODE()")
    size = property(lambda self: self.code & 0x18, doc="BPF_SIZE()")

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, self.src << 4 | self.dst, self.off, self.imm)

    @property
    def name(self) -> str:
        """The opcode as the kernel's macros spell it, e.g. ALU64|MOV|X or LDX|PROBE_MEM32|W."""
        cls = _CLASS_NAMES[self.cls]
        if self.cls in (BPF_ALU, BPF_ALU64, BPF_JMP, BPF_JMP32):
            names = _ALU_NAMES if self.cls in (BPF_ALU, BPF_ALU64) else _JMP_NAMES
            return f"{cls}|{names.get(self.op, hex(self.op))}|{'X' if self.source else 'K'}"
        mode = _MODE_NAMES.get(self.mode, hex(self.mode))
        if self.mode == 0xC0:
            mode = {BPF_LDX: "PROBE_MEM32SX", BPF_ST: "NOSPEC"}.get(self.cls, "ATOMIC")
        return f"{cls}|{mode}|{_SIZE_NAMES[self.size]}"

    def __repr__(self) -> str:
        return f"Insn({self.code:#04x} {self.name}, dst=r{self.dst}, src=r{self.src}, off={self.off}, imm={self.imm})"


def ld_imm64(lo: Insn, hi: Insn) -> int:
    """The 64-bit value of an ld_imm64 pair: (u32)imm | (u64)next_imm << 32."""
    return (lo.imm & 0xFFFF_FFFF) | (hi.imm & 0xFFFF_FFFF) << 32


def check(insns: list[Insn]) -> None:
    """The encoding rules a decoded or hand-built program must keep; raises BpfInsnError at the first broken one."""
    i = 0
    while i < len(insns):
        insn = insns[i]
        if insn.code not in VALID_OPCODES:
            raise BpfInsnError(i, f"unknown opcode {insn.code:#04x}")
        if not (-0x8000 <= insn.off <= 0x7FFF and -0x8000_0000 <= insn.imm <= 0x7FFF_FFFF):
            raise BpfInsnError(i, f"off {insn.off} or imm {insn.imm} does not fit its s16/s32 field")
        if not 0 <= insn.dst < MAX_BPF_REG:
            raise BpfInsnError(i, f"invalid register r{insn.dst}")
        if not 0 <= insn.src < _SRC_LIMIT.get(insn.code, MAX_BPF_REG):
            raise BpfInsnError(i, f"invalid source field {insn.src} for {insn.name}")
        _check_fields(i, insn)
        if insn.code == BPF_LD_IMM64:
            if i + 1 >= len(insns):
                raise BpfInsnError(i, "ld_imm64 is truncated: its second slot is missing")
            nxt = insns[i + 1]
            if (nxt.code, nxt.dst, nxt.src, nxt.off) != (0, 0, 0, 0):
                raise BpfInsnError(i + 1, "the second slot of ld_imm64 must have code, regs and off zero")
            i += 1
        i += 1


def _check_fields(i: int, insn: Insn) -> None:
    cls, op = insn.cls, insn.op
    if cls in (BPF_ALU, BPF_ALU64):
        if op == BPF_END and insn.imm not in (16, 32, 64):
            raise BpfInsnError(i, f"byte swap width must be 16, 32 or 64, not {insn.imm}")
        if op in (BPF_DIV, BPF_MOD) and insn.off not in (0, 1):
            raise BpfInsnError(i, f"div/mod off must be 0 (unsigned) or 1 (signed), not {insn.off}")
        if op == BPF_MOV and insn.off:
            widths = (8, 16, 32) if cls == BPF_ALU64 else (8, 16)
            cast = cls == BPF_ALU64 and insn.source and insn.off == BPF_ADDR_SPACE_CAST
            if cast and insn.imm not in (1, CAST_USER_IMM):
                raise BpfInsnError(i, "addr_space_cast insn can only convert between address space 1 and 0")
            if not (cast or (insn.source and insn.off in widths)):
                raise BpfInsnError(i, f"movsx off must be one of {widths}, not {insn.off}")
    elif cls == BPF_STX and insn.mode in (BPF_ATOMIC, BPF_PROBE_ATOMIC):
        if insn.imm not in ATOMIC_OPS:
            raise BpfInsnError(i, f"unknown atomic operation {insn.imm:#x}")
        if insn.size in (BPF_B, BPF_H) and insn.imm not in (BPF_LOAD_ACQ, BPF_STORE_REL):
            raise BpfInsnError(i, "1- and 2-byte RMW atomics are not supported")


def decode(data: bytes) -> list[Insn]:
    """Slots of a little-endian (bpfel) program; raises BpfInsnError for a truncated or malformed one."""
    if len(data) % 8:
        raise BpfInsnError(len(data) // 8, f"truncated: {len(data)} bytes is not a whole number of 8-byte slots")
    insns = []
    for code, regs, off, imm in struct.iter_unpack("<BBhi", data):
        insns.append(Insn(code, regs & 0x0F, regs >> 4, off, imm))
    check(insns)
    return insns
