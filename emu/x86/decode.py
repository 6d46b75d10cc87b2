"""Instruction decoding with capstone: text for reports, operand addresses for traps.

Operand addresses matter where the CPU does not say which address an
instruction touched: a #GP (the kernel's "probably for non-canonical address",
get_kernel_gp_address()), and a PTE naming memory beyond guest RAM, which
Unicorn reports by physical address only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from capstone import CS_AC_READ, CS_AC_WRITE, CS_ARCH_X86, CS_MODE_64, CS_OPT_SYNTAX_ATT, Cs, CsError
from capstone.x86 import X86_OP_IMM, X86_OP_MEM, X86_OP_REG, X86_PREFIX_LOCK

_att = Cs(CS_ARCH_X86, CS_MODE_64)
_att.syntax = CS_OPT_SYNTAX_ATT
_detail = Cs(CS_ARCH_X86, CS_MODE_64)
_detail.detail = True

_SUBREGS = {"e" + r: "r" + r for r in ("ax", "bx", "cx", "dx", "si", "di", "sp", "bp")}
_SUBREGS.update({f"r{i}d": f"r{i}" for i in range(8, 16)})


@dataclass(frozen=True)
class Insn:
    address: int
    size: int
    mnemonic: str
    op_str: str
    raw: bytes

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    @property
    def string_op(self) -> bool:
        """A `rep`-prefixed string instruction: it restarts with its partial progress."""
        return self.mnemonic.startswith("rep")


def disasm(code: bytes, address: int, count: int = 0) -> list[Insn]:
    """AT&T text, as the kernel's objdump -d prints it."""
    out = []
    try:
        for addr, size, mnemonic, op_str in _att.disasm_lite(code, address, count):
            out.append(Insn(addr, size, mnemonic, op_str, code[addr - address:addr - address + size]))
    except CsError:
        pass
    return out


def disasm_one(code: bytes, address: int) -> Insn | None:
    insns = disasm(code, address, 1)
    return insns[0] if insns else None


@dataclass(frozen=True)
class MemOperand:
    base: str | None
    index: str | None
    scale: int
    disp: int


@dataclass(frozen=True)
class Operand:
    """One operand in Intel order (destination first)."""

    kind: str  # "reg", "mem" or "imm"
    size: int
    reg: str | None = None
    mem: MemOperand | None = None


@dataclass(frozen=True)
class DecodedInsn:
    mnemonic: str
    size: int
    locked: bool
    operands: tuple[Operand, ...]


def decode_operands(code: bytes, address: int) -> DecodedInsn | None:
    """The instruction's operands as capstone's detail mode sees them, for the JIT's extable."""
    try:
        insn = next(_detail.disasm(code, address, 1))
    except (StopIteration, CsError):
        return None
    ops = []
    for op in insn.operands:
        if op.type == X86_OP_REG:
            ops.append(Operand("reg", op.size, reg=insn.reg_name(op.reg)))
        elif op.type == X86_OP_MEM:
            m = op.mem
            ops.append(Operand("mem", op.size, mem=MemOperand(
                insn.reg_name(m.base) if m.base else None, insn.reg_name(m.index) if m.index else None,
                m.scale, m.disp)))
        elif op.type == X86_OP_IMM:
            ops.append(Operand("imm", op.size))
    return DecodedInsn(insn.mnemonic, insn.size, insn.prefix[0] == X86_PREFIX_LOCK, tuple(ops))


def memory_operand_addresses(code: bytes, address: int, reg: Callable[[str], int]) -> list[int]:
    """Effective addresses of the explicit memory operands of the instruction at `address`."""
    try:
        insn = next(_detail.disasm(code, address, 1))
    except (StopIteration, CsError):
        return []
    out = []
    for op in insn.operands:
        if op.type != X86_OP_MEM:
            continue
        ea = op.mem.disp
        if op.mem.base:
            name = insn.reg_name(op.mem.base)
            ea += address + insn.size if name == "rip" else _read(reg, name)
        if op.mem.index:
            ea += _read(reg, insn.reg_name(op.mem.index)) * op.mem.scale
        if op.mem.segment:
            seg = insn.reg_name(op.mem.segment)
            if seg in ("fs", "gs"):
                ea += reg(f"{seg}_base")
        out.append(ea & 0xFFFF_FFFF_FFFF_FFFF)
    return out


@dataclass(frozen=True)
class MemRef:
    """A memory operand's addressing, to compute its effective address later."""

    base: str | None
    index: str | None
    scale: int
    disp: int
    segment: str | None
    size: int
    next_ip: int  # for RIP-relative operands


def read_modify_write_operands(code: bytes, address: int) -> tuple[MemRef, ...]:
    """The memory operands the instruction both reads and writes (a read-modify-write)."""
    try:
        insn = next(_detail.disasm(code, address, 1))
    except (StopIteration, CsError):
        return ()
    rmw = CS_AC_READ | CS_AC_WRITE
    return tuple(
        MemRef(insn.reg_name(op.mem.base) if op.mem.base else None,
               insn.reg_name(op.mem.index) if op.mem.index else None, op.mem.scale, op.mem.disp,
               insn.reg_name(op.mem.segment) if op.mem.segment else None, op.size, address + insn.size)
        for op in insn.operands if op.type == X86_OP_MEM and op.access & rmw == rmw)


def effective_address(m: MemRef, reg: Callable[[str], int]) -> int:
    ea = m.disp
    if m.base:
        ea += m.next_ip if m.base == "rip" else _read(reg, m.base)
    if m.index:
        ea += _read(reg, m.index) * m.scale
    if m.segment in ("fs", "gs"):
        ea += reg(f"{m.segment}_base")
    return ea & 0xFFFF_FFFF_FFFF_FFFF


def _read(reg: Callable[[str], int], name: str) -> int:
    if name in _SUBREGS:
        return reg(_SUBREGS[name]) & 0xFFFF_FFFF
    return reg(name)
