"""The program's shape before any typing: subprograms, jump targets, reachability (check_subprogs(), check_cfg()).

Back-edges are not errors: the kernel lets a program with CAP_BPF loop and proves termination by exploring
every iteration; this pass proves nothing about termination (the JIT's may_goto bounds what it must).
"""

from __future__ import annotations

from .insn import (
    BPF_CALL,
    BPF_EXIT,
    BPF_JA,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD_IMM64,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    Insn,
)
from .verifier_types import Reject


def second_slots(insns: list[Insn]) -> frozenset[int]:
    return frozenset(i + 1 for i, insn in enumerate(insns) if insn.code == BPF_LD_IMM64)


def call_target(i: int, insn: Insn) -> int | None:
    """The subprogram a bpf-to-bpf call or an ld_imm64 of BPF_PSEUDO_FUNC names."""
    if (insn.code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL) or (
            insn.code == BPF_LD_IMM64 and insn.src == BPF_PSEUDO_FUNC):
        return i + 1 + insn.imm
    return None


def jump_target(i: int, insn: Insn) -> int | None:
    if insn.cls not in (BPF_JMP, BPF_JMP32) or insn.op in (BPF_CALL, BPF_EXIT):
        return None
    return i + 1 + (insn.imm if insn.cls == BPF_JMP32 and insn.op == BPF_JA else insn.off)


def successors(i: int, insn: Insn) -> tuple[int, ...]:
    """Where control goes next inside the subprogram (a call returns to i + 1)."""
    if insn.code == BPF_JMP | BPF_EXIT:
        return ()
    target = jump_target(i, insn)
    step = 2 if insn.code == BPF_LD_IMM64 else 1
    if target is None:
        return (i + step,)
    if insn.op == BPF_JA:
        return (target,)
    return (i + 1, target)


def check_subprogs(insns: list[Insn]) -> tuple[int, ...]:
    """add_subprog() for every call and callback target, then each subprogram's jumps stay inside it and its last
    instruction is an exit or a jump. Returns the sorted subprogram starts."""
    seconds = second_slots(insns)
    starts = {0}
    for i, insn in enumerate(insns):
        target = call_target(i, insn)
        if target is not None:
            if not 0 <= target < len(insns) or target in seconds:
                raise Reject(i, "call to invalid destination")
            starts.add(target)
    bounds = sorted(starts)
    for lo, hi in zip(bounds, bounds[1:] + [len(insns)], strict=True):
        for i in range(lo, hi):
            target = jump_target(i, insns[i])
            if target is not None and not lo <= target < hi:
                raise Reject(i, f"jump out of range from insn {i} to {target}")
            if target in seconds:  # check_cfg() names the ld_imm64, not the jump
                raise Reject(target - 1, f"jump into the middle of ldimm64 insn {target - 1}")
        last = hi - 1 - (hi - 1 in seconds)
        if insns[last].code not in (BPF_JMP | BPF_EXIT, BPF_JMP | BPF_JA, BPF_JMP32 | BPF_JA):
            raise Reject(last, "last insn is not an exit or jmp")
    return tuple(bounds)


def check_reachable(insns: list[Insn]) -> None:
    """check_cfg()'s depth-first walk from insn 0, into every callee: an instruction it never reaches is an error."""
    seen = {0}
    todo = [0]
    while todo:
        i = todo.pop()
        nexts = list(successors(i, insns[i]))
        target = call_target(i, insns[i])
        if target is not None:
            nexts.append(target)
        for j in nexts:
            if j not in seen:
                seen.add(j)
                todo.append(j)
    seconds = second_slots(insns)
    for i in range(len(insns)):
        if i not in seen and i not in seconds:
            raise Reject(i, f"unreachable insn {i}")
