"""ALU instructions on types: check_alu_op(), adjust_reg_min_max_vals() and adjust_ptr_min_max_vals().

Any ALU op on an arena pointer is allowed and keeps it an arena pointer; an ALU64 one is marked to run as its
32-bit op (aux->needs_zext), since an arena pointer is a 32-bit offset. Other pointers take only 64-bit += and -=
of a scalar; the kernel's messages name the rest.
"""

from __future__ import annotations

from .disasm import BPF_ALU_STRING
from .insn import (
    BPF_ADD,
    BPF_ALU64,
    BPF_AND,
    BPF_END,
    BPF_MOV,
    BPF_NEG,
    BPF_OR,
    BPF_SUB,
    BPF_X,
    BPF_XOR,
    Insn,
)
from .verifier_mem import is_cast
from .verifier_types import ARENA, SCALAR, Kind, Reg, Reject, State, read_reg, write_check


def check_alu(i: int, insn: Insn, st: State, has_arena: bool) -> tuple[State, bool]:
    """The state after one ALU instruction, and whether it is an ALU64 op on an arena pointer (needs_zext)."""
    op, dst, is64 = insn.op, insn.dst, insn.cls == BPF_ALU64
    src = read_reg(st, insn.src, i) if insn.source == BPF_X else SCALAR
    d = read_reg(st, dst, i) if op != BPF_MOV else SCALAR
    write_check(dst, i)
    if is_cast(insn):
        if not has_arena:
            raise Reject(i, "addr_space_cast insn can only be used in a program that has an associated arena")
        return st.with_reg(dst, ARENA if insn.imm == 1 else SCALAR), False
    if op == BPF_MOV:
        if insn.source == BPF_X and (src.kind == Kind.ARENA and not is64 or is64 and insn.off == 0):
            return st.with_reg(dst, src), False
        return st.with_reg(dst, SCALAR), False
    if op in (BPF_NEG, BPF_END):
        return st.with_reg(dst, SCALAR), False
    if d.kind == Kind.ARENA:
        return st, is64
    return st.with_reg(dst, pointer_alu(i, insn, d, src)), False


def pointer_alu(i: int, insn: Insn, d: Reg, s: Reg) -> Reg:
    """adjust_reg_min_max_vals() and adjust_ptr_min_max_vals() when dst is not an arena pointer."""
    op, regno, is64 = insn.op, insn.dst, insn.cls == BPF_ALU64
    opname = BPF_ALU_STRING[op]
    if d.is_pointer and s.is_pointer:
        if op == BPF_SUB:  # allow_ptr_leaks
            return SCALAR
        raise Reject(i, f"R{regno} pointer {opname} pointer prohibited")
    if not d.is_pointer and not s.is_pointer:
        return SCALAR
    ptr = d if d.is_pointer else s
    if not is64:
        if op == BPF_SUB:
            return SCALAR
        raise Reject(i, f"R{regno} 32-bit pointer arithmetic prohibited")
    for member in ptr.members or {ptr}:
        if member.kind in (Kind.MAP_PTR, Kind.PACKET_END, Kind.ARENA):
            raise Reject(i, f"R{regno} pointer arithmetic on {member.kind.value} prohibited")
    if op in (BPF_OR, BPF_AND, BPF_XOR):
        raise Reject(i, f"R{regno} bitwise operator {opname} on pointer prohibited")
    if op == BPF_SUB and not d.is_pointer:
        raise Reject(i, f"R{regno} tried to subtract pointer from scalar")
    if op not in (BPF_ADD, BPF_SUB):
        raise Reject(i, f"R{regno} pointer arithmetic with {opname} operator prohibited")
    delta = (insn.imm if op == BPF_ADD else -insn.imm) if insn.source != BPF_X else None
    return _moved(ptr, delta)


def _moved(ptr: Reg, delta: int | None) -> Reg:
    """A pointer plus a constant (delta) or a variable (None): only a stack pointer's offset is tracked."""
    if ptr.kind == Kind.MIXED:
        return Reg(Kind.MIXED, members=frozenset(_moved(m, delta) for m in ptr.members))
    if ptr.kind != Kind.STACK:
        return ptr
    off = None if delta is None or ptr.off is None else ptr.off + delta
    return Reg(Kind.STACK, off, ptr.frame)

