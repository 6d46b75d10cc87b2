"""eBPF instructions in the kernel's text, after kernel/bpf/disasm.c's print_bpf_insn().

The text is what the verifier log and `bpftool prog dump xlated` print: `(79) r1 = *(u64 *)(r10 -8)`,
`(25) if r1 > 0x5 goto pc+3`, `(85) call bpf_map_lookup_elem#12345`. How calls and 64-bit immediates are
named is the caller's (struct bpf_insn_cbs: bpftool names them after kallsyms and map ids); without
callbacks they print as disasm.c prints them alone. The verifier's internal arena forms have no text in
disasm.c (bpf_insn_prepare_dump() turns them back before user space sees them), so they print as
`BUG_ldx_a1`, exactly as the kernel would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .helpers import HELPERS
from .insn import (
    BPF_ABS,
    BPF_ADD,
    BPF_ADDR_SPACE_CAST,
    BPF_ALU,
    BPF_ALU64,
    BPF_AND,
    BPF_ATOMIC,
    BPF_CALL,
    BPF_CMPXCHG,
    BPF_DIV,
    BPF_DW,
    BPF_END,
    BPF_EXIT,
    BPF_FETCH,
    BPF_IMM,
    BPF_IND,
    BPF_JA,
    BPF_JCOND,
    BPF_JMP,
    BPF_JMP32,
    BPF_LD,
    BPF_LDX,
    BPF_LOAD_ACQ,
    BPF_MAY_GOTO,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOD,
    BPF_MOV,
    BPF_NEG,
    BPF_NOSPEC,
    BPF_OR,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_ST,
    BPF_STORE_REL,
    BPF_STX,
    BPF_TO_BE,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    Insn,
    ld_imm64,
)

_CLASS = ("ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64")  # bpf_class_string[]
BPF_ALU_STRING = {op << 4: text for op, text in enumerate((  # bpf_alu_string[], by BPF_OP()
    "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian"))}
_ALU_SIGN = {BPF_DIV: "s/=", BPF_MOD: "s%="}  # bpf_alu_sign_string[]
_MOVSX = {8: "(s8)", 16: "(s16)", 32: "(s32)"}  # bpf_movsx_string[]
_ATOMIC_ALU = {BPF_ADD: "add", BPF_AND: "and", BPF_OR: "or", BPF_XOR: "xor"}  # bpf_atomic_alu_string[]
_LDST = {0x00: "u32", 0x08: "u16", 0x10: "u8", 0x18: "u64"}  # bpf_ldst_string[]
_LDSX = {0x00: "s32", 0x08: "s16", 0x10: "s8"}  # bpf_ldsx_string[]
_JMP = {0x0: "jmp", 0x1: "==", 0x2: ">", 0xA: "<", 0x3: ">=", 0xB: "<=", 0x4: "&", 0x5: "!=", 0x6: "s>",
        0xC: "s<", 0x7: "s>=", 0xD: "s<=", 0x8: "call", 0x9: "exit"}  # bpf_jmp_string[]


@dataclass(frozen=True)
class BpfInsnCbs:
    """struct bpf_insn_cbs: `cb_call(insn)` names a call's target (None: disasm.c's fallback), `cb_imm(insn,
    next_slot, full_imm)` spells an ld_imm64's value (default: `0x...`)."""

    cb_call: Callable[[Insn], str | None] | None = None
    cb_imm: Callable[[Insn, Insn, int], str] | None = None


def func_id_name(helper_id: int) -> str | None:
    """func_id_str[]: `bpf_<name>` of a helper id, for the helpers this project implements."""
    helper = HELPERS.get(helper_id)
    return helper.name if helper is not None else None


def _func_get_name(cbs: BpfInsnCbs, insn: Insn) -> str:
    """__func_get_name(): a helper by id, else the callback's name, else disasm.c's fallback."""
    if not insn.src and func_id_name(insn.imm) is not None:
        return func_id_name(insn.imm) or ""
    if cbs.cb_call is not None:
        name = cbs.cb_call(insn)
        if name is not None:
            return name
    if insn.src == BPF_PSEUDO_CALL:
        return f"{insn.imm:+d}"
    return "kernel-function" if insn.src == BPF_PSEUDO_KFUNC_CALL else "unknown"


def print_bpf_insn(insns: Sequence[Insn], i: int, cbs: BpfInsnCbs | None = None) -> str:
    """print_bpf_insn() of insns[i] (an ld_imm64 reads its second slot), without the newline."""
    cbs = cbs or BpfInsnCbs()
    insn = insns[i]
    code, cls = insn.code, insn.cls
    if cls in (BPF_ALU, BPF_ALU64):
        return _alu(insn)
    if cls == BPF_STX:
        return _stx(insn)
    if cls == BPF_ST:
        if insn.mode == BPF_MEM:
            return f"({code:02x}) *({_LDST[insn.size]} *)(r{insn.dst} {insn.off:+d}) = {insn.imm}"
        if insn.mode == BPF_NOSPEC:
            return f"({code:02x}) nospec"
        return f"BUG_st_{code:02x}"
    if cls == BPF_LDX:
        if insn.mode not in (BPF_MEM, BPF_MEMSX):
            return f"BUG_ldx_{code:02x}"
        size = (_LDST if insn.mode == BPF_MEM else _LDSX).get(insn.size, "")
        return f"({code:02x}) r{insn.dst} = *({size} *)(r{insn.src} {insn.off:+d})"
    if cls == BPF_LD:
        if insn.mode == BPF_ABS:
            return f"({code:02x}) r0 = *({_LDST[insn.size]} *)skb[{insn.imm}]"
        if insn.mode == BPF_IND:
            return f"({code:02x}) r0 = *({_LDST[insn.size]} *)skb[r{insn.src} + {insn.imm}]"
        if insn.mode == BPF_IMM and insn.size == BPF_DW and i + 1 < len(insns):
            full = ld_imm64(insn, insns[i + 1])
            text = cbs.cb_imm(insn, insns[i + 1], full) if cbs.cb_imm is not None else f"{full:#x}"
            return f"({code:02x}) r{insn.dst} = {text}"
        return f"BUG_ld_{code:02x}"
    return _jmp(cbs, insn)


def _alu(insn: Insn) -> str:
    code, op, w = insn.code, insn.op, "w" if insn.cls == BPF_ALU else "r"
    if op == BPF_END:
        if insn.cls == BPF_ALU64:
            return f"({code:02x}) r{insn.dst} = bswap{insn.imm} r{insn.dst}"
        end = "be" if insn.source == BPF_TO_BE else "le"
        return f"({code:02x}) r{insn.dst} = {end}{insn.imm} r{insn.dst}"
    if op == BPF_NEG:
        return f"({code:02x}) {w}{insn.dst} = -{w}{insn.dst}"
    if code == BPF_ALU64 | BPF_MOV | BPF_X and insn.off == BPF_ADDR_SPACE_CAST:
        imm = insn.imm & 0xFFFF_FFFF
        return f"({code:02x}) r{insn.dst} = addr_space_cast(r{insn.src}, {imm >> 16}, {imm & 0xFFFF})"
    sign = op in (BPF_DIV, BPF_MOD) and insn.off == 1
    opname = _ALU_SIGN[op] if sign else BPF_ALU_STRING[op]
    if insn.source == BPF_X:
        movsx = _MOVSX.get(insn.off, "") if op == BPF_MOV else ""
        return f"({code:02x}) {w}{insn.dst} {opname} {movsx}{w}{insn.src}"
    return f"({code:02x}) {w}{insn.dst} {opname} {insn.imm}"


def _stx(insn: Insn) -> str:
    code, size, imm = insn.code, _LDST[insn.size], insn.imm
    at = f"({size} *)(r{insn.dst} {insn.off:+d})"
    if insn.mode == BPF_MEM:
        return f"({code:02x}) *{at} = r{insn.src}"
    if insn.mode != BPF_ATOMIC:
        return f"BUG_{code:02x}"
    bits = "64" if insn.size == BPF_DW else ""
    if imm in _ATOMIC_ALU:
        return f"({code:02x}) lock *{at} {BPF_ALU_STRING[imm]} r{insn.src}"
    if imm & ~BPF_FETCH in _ATOMIC_ALU and imm & BPF_FETCH:
        return f"({code:02x}) r{insn.src} = atomic{bits}_fetch_{_ATOMIC_ALU[imm & ~BPF_FETCH]}({at}, r{insn.src})"
    if imm == BPF_CMPXCHG:
        return f"({code:02x}) r0 = atomic{bits}_cmpxchg({at}, r0, r{insn.src})"
    if imm == BPF_XCHG:
        return f"({code:02x}) r{insn.src} = atomic{bits}_xchg({at}, r{insn.src})"
    if imm == BPF_LOAD_ACQ:
        return f"({code:02x}) r{insn.dst} = load_acquire(({size} *)(r{insn.src} {insn.off:+d}))"
    if imm == BPF_STORE_REL:
        return f"({code:02x}) store_release({at}, r{insn.src})"
    return f"BUG_{code:02x}"


def _jmp(cbs: BpfInsnCbs, insn: Insn) -> str:
    code, op, w = insn.code, insn.op, "w" if insn.cls == BPF_JMP32 else "r"
    if op == BPF_CALL:
        if insn.src == BPF_PSEUDO_CALL:
            return f"({code:02x}) call pc{_func_get_name(cbs, insn)}"
        return f"({code:02x}) call {_func_get_name(cbs, insn)}#{insn.imm}"
    if code == BPF_JMP | BPF_JA:
        return f"({code:02x}) goto pc{insn.off:+d}"
    if code == BPF_JMP | BPF_JCOND and insn.src == BPF_MAY_GOTO:
        return f"({code:02x}) may_goto pc{insn.off:+d}"
    if code == BPF_JMP32 | BPF_JA:
        return f"({code:02x}) gotol pc{insn.imm:+d}"
    if code == BPF_JMP | BPF_EXIT:
        return f"({code:02x}) exit"
    if op >> 4 not in _JMP or insn.cls not in (BPF_JMP, BPF_JMP32):
        return f"({code:02x}) {_CLASS[insn.cls]}"
    if insn.source == BPF_X:
        return f"({code:02x}) if {w}{insn.dst} {_JMP[op >> 4]} {w}{insn.src} goto pc{insn.off:+d}"
    return f"({code:02x}) if {w}{insn.dst} {_JMP[op >> 4]} {insn.imm & 0xFFFF_FFFF:#x} goto pc{insn.off:+d}"
