"""The x86-64 BPF JIT's arena accesses and their exception table (arch/x86/net/bpf_jit_comp.c).

The JIT keeps kern_vm_start in r12 and emits every arena access as
`[src + r12 + off]`; each gets an EX_TYPE_BPF entry whose fixup word packs the
instruction length, the register to clear (or DONT_CLEAR for stores and
atomics), the register that held the address, and the arena flag, with the
s16 `off` in the data word. Here the entries are derived from the machine
code itself, by decoding every instruction of a BPF program with capstone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ..x86.decode import DecodedInsn
from ..x86.extable import EX_TYPE_BPF, ExtableEntry

DONT_CLEAR = 1
FIXUP_INSN_LEN_MASK = 0xFF
FIXUP_REG_SHIFT, FIXUP_ARENA_REG_SHIFT = 8, 16
FIXUP_ARENA_ACCESS = 1 << 31
DATA_ARENA_OFFSET_SHIFT = 16

ARENA_BASE_REG = "r12"  # X86_REG_R12: holds kern_vm_start in a program with an arena

# reg2pt_regs[]: offsetof(struct pt_regs, ...) of the x86 register of BPF R0..R9.
REG2PT_REGS = {"rax": 80, "rdi": 112, "rsi": 104, "rdx": 96, "rcx": 88, "r8": 72,
               "rbx": 40, "r13": 16, "r14": 8, "r15": 0}
PT_REGS_NAMES = {off: name for name, off in REG2PT_REGS.items()}

_SUBREGS: dict[str, str] = {}
for _r in ("ax", "bx", "cx", "dx", "si", "di"):
    _SUBREGS.update({"e" + _r: "r" + _r, _r: "r" + _r})
_SUBREGS.update({"al": "rax", "bl": "rbx", "cl": "rcx", "dl": "rdx", "sil": "rsi", "dil": "rdi"})
for _n in (8, 13, 14, 15):
    _SUBREGS.update({f"r{_n}d": f"r{_n}", f"r{_n}w": f"r{_n}", f"r{_n}b": f"r{_n}"})

_LOADS = frozenset({"mov", "movzx", "movsx", "movsxd"})
_ATOMICS = frozenset({"add", "and", "or", "xor", "xadd", "cmpxchg"})


class NotJitForm(ValueError):
    """An r12-indexed access the x86 JIT would never emit."""


@dataclass(frozen=True)
class ArenaAccess:
    kind: str  # "load", "store" or "atomic"
    insn_len: int
    dst: str | None  # the register a load writes; None for stores and atomics
    addr_reg: str  # the BPF register holding the 32-bit arena offset
    off: int  # the s16 displacement

    def extable_entry(self, address: int) -> ExtableEntry:
        """The entry the JIT's populate_extable step writes for this instruction."""
        reg = REG2PT_REGS[self.dst] if self.dst is not None else DONT_CLEAR
        fixup = (self.insn_len | reg << FIXUP_REG_SHIFT | REG2PT_REGS[self.addr_reg] << FIXUP_ARENA_REG_SHIFT
                 | FIXUP_ARENA_ACCESS)
        data = EX_TYPE_BPF | (self.off & 0xFFFF) << DATA_ARENA_OFFSET_SHIFT
        return ExtableEntry(address, fixup, EX_TYPE_BPF, data)


def _bpf_reg(name: str | None, what: str) -> str:
    full = _SUBREGS.get(name, name) if name else None
    if full is None or full not in REG2PT_REGS:
        raise NotJitForm(f"{what} {name or '(none)'} is not a BPF register (R0-R9 map to "
                         f"{', '.join(REG2PT_REGS)})")
    return full


def arena_access(insn: DecodedInsn) -> ArenaAccess | None:
    """Classify an instruction: None when it does not index by r12, else the arena access.

    Raises NotJitForm for an r12-indexed access the JIT has no form for.
    """
    mems = [(i, op.mem) for i, op in enumerate(insn.operands) if op.mem is not None]
    if not mems or mems[0][1].index != ARENA_BASE_REG:
        if any(m.base == ARENA_BASE_REG for _, m in mems):
            raise NotJitForm("r12 is the index of an arena access, [src + r12 + off], never its base")
        return None
    pos, m = mems[0]
    if m.scale != 1:
        raise NotJitForm(f"an arena access has scale 1, not {m.scale}")
    if not -0x8000 <= m.disp <= 0x7FFF:
        raise NotJitForm(f"offset {m.disp:#x} does not fit the s16 `off` of a BPF instruction")
    addr_reg = _bpf_reg(m.base, "the address register")
    base = insn.mnemonic.removeprefix("lock ")
    if insn.locked or base == "xchg":
        if base not in _ATOMICS | {"xchg"} or pos != 0:
            raise NotJitForm(f"'{insn.mnemonic}' is not an atomic the JIT emits on the arena")
        return ArenaAccess("atomic", insn.size, None, addr_reg, m.disp)
    if pos == 1 and base in _LOADS and insn.operands[0].kind == "reg":
        return ArenaAccess("load", insn.size, _bpf_reg(insn.operands[0].reg, "the destination"), addr_reg, m.disp)
    if pos == 0 and base == "mov":
        return ArenaAccess("store", insn.size, None, addr_reg, m.disp)
    raise NotJitForm(f"'{insn.mnemonic}' is not a load, store or atomic the JIT emits on the arena")


@dataclass(frozen=True)
class BpfFixup:
    """An EX_TYPE_BPF entry decoded as ex_handler_bpf() reads it."""

    insn_len: int
    reg: int  # pt_regs offset to clear, or DONT_CLEAR
    is_arena: bool
    arena_reg: int
    off: int

    @classmethod
    def decode(cls, entry: ExtableEntry) -> BpfFixup:
        off = (entry.data >> DATA_ARENA_OFFSET_SHIFT) & 0xFFFF
        return cls(entry.fixup & FIXUP_INSN_LEN_MASK, (entry.fixup >> FIXUP_REG_SHIFT) & 0xFF,
                   bool(entry.fixup & FIXUP_ARENA_ACCESS), (entry.fixup >> FIXUP_ARENA_REG_SHIFT) & 0xFF,
                   off - 0x10000 if off & 0x8000 else off)

    @property
    def is_write(self) -> bool:
        return self.reg == DONT_CLEAR


class BpfHandled(NamedTuple):
    """What ex_handler_bpf() did: where execution continues and which register it cleared.
    (A NamedTuple: made at every BPF fault, and a frozen dataclass costs three times as much.)"""

    resume_at: int
    cleared: str | None
    address: int | None  # the address it reported (kernel form: r[arena_reg] + off), None if not arena
    is_write: bool


_decoded: dict[tuple[int, int], BpfFixup] = {}  # (fixup, data) -> its decoding: a few per program


def ex_handler_bpf(entry: ExtableEntry, ip: int, pt_regs: Callable[[int], int],
                   report: Callable[[bool, int, int], None]) -> BpfHandled:
    """ex_handler_bpf(): report first (the address register may be the one cleared next),
    then clear the destination, then skip the faulting instruction."""
    fx = _decoded.get((entry.fixup, entry.data))
    if fx is None:
        fx = _decoded[(entry.fixup, entry.data)] = BpfFixup.decode(entry)
    addr = None
    if fx.is_arena:
        addr = (pt_regs(fx.arena_reg) + fx.off) & 0xFFFF_FFFF_FFFF_FFFF
        report(fx.is_write, addr, ip)
    cleared = None if fx.reg == DONT_CLEAR else PT_REGS_NAMES[fx.reg]
    return BpfHandled(ip + fx.insn_len, cleared, addr, fx.is_write)

