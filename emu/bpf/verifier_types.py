"""The verifier's abstract values: register types and stack slots, and how they join where paths meet.

The kernel keeps one `struct bpf_reg_state` per register per explored path (include/linux/bpf_verifier.h) and
never joins paths. This pass keeps one state per instruction, so two paths meeting must be joined: equal types
stay, NOT_INIT on either side wins (one path would fail "!read_ok"), a scalar on either side wins (one path
would fail "invalid mem access 'scalar'"), and different pointer types become a MIXED set, which an access
accepts only if the kernel would accept every member in the same instruction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

BPF_REG_SIZE = 8
BPF_REG_FP = 10
MAX_BPF_STACK = 512


class Reject(Exception):
    """A rejection at one instruction with the kernel's message; bpf_check() turns it into its VerifierError."""

    def __init__(self, index: int, message: str):
        self.index, self.message = index, message
        super().__init__(f"insn {index}: {message}")


class Kind(Enum):
    """enum bpf_reg_type, the ones modelled; values are reg_type_str()'s names (kernel/bpf/log.c)."""

    NOT_INIT = "?"
    SCALAR = "scalar"
    CTX = "ctx"
    STACK = "fp"
    MAP_PTR = "map_ptr"
    MAP_VALUE = "map_value"
    MEM = "mem"
    PACKET = "pkt"
    PACKET_META = "pkt_meta"
    PACKET_END = "pkt_end"
    ARENA = "arena"
    FUNC = "func"
    MIXED = "mixed"


@dataclass(frozen=True)
class Reg:
    """One register's type. A STACK pointer knows its frame (the subprogram index) and its fixed offset from that
    frame's fp, None once a variable was added; MIXED holds the pointer types that met at a join."""

    kind: Kind
    off: int | None = None
    frame: int = 0
    members: frozenset[Reg] = field(default_factory=frozenset)
    map_type: int | None = None  # a MAP_PTR's map type, from its ld_imm64 (reg->map_ptr->map_type)

    @property
    def is_pointer(self) -> bool:
        return self.kind not in (Kind.NOT_INIT, Kind.SCALAR)

    def __repr__(self) -> str:
        if self.kind == Kind.STACK:
            where = "fp?" if self.off is None else f"fp{self.off:+d}"
            return f"{where}[frame {self.frame}]" if self.frame else where
        if self.kind == Kind.MIXED:
            return "{" + "|".join(sorted(map(repr, self.members))) + "}"
        return self.kind.value


NOT_INIT = Reg(Kind.NOT_INIT)
SCALAR = Reg(Kind.SCALAR)
ARENA = Reg(Kind.ARENA)


def read_reg(st: State, regno: int, i: int) -> Reg:
    """check_reg_arg(SRC_OP): a register read must have been written."""
    r = st.reg(regno)
    if r.kind == Kind.NOT_INIT:
        raise Reject(i, f"R{regno} !read_ok")
    return r


def write_check(regno: int, i: int) -> None:
    """check_reg_arg(DST_OP)."""
    if regno == BPF_REG_FP:
        raise Reject(i, "frame pointer is read only")


def join(a: Reg, b: Reg) -> Reg:
    """The type of a register where two paths meet (see the module docstring)."""
    if a == b:
        return a
    kinds = {a.kind, b.kind}
    if Kind.NOT_INIT in kinds:
        return NOT_INIT
    if Kind.SCALAR in kinds:
        return SCALAR
    merged: dict[tuple[Kind, int], Reg] = {}
    for r in (a.members or {a}) | (b.members or {b}):
        key = (r.kind, r.frame)
        old = merged.get(key)
        merged[key] = r if old is None or old == r else Reg(r.kind, None, r.frame)
    if len(merged) == 1:
        return next(iter(merged.values()))
    return Reg(Kind.MIXED, members=frozenset(merged.values()))


@dataclass(frozen=True)
class Slot:
    """One 8-byte stack slot (struct bpf_stack_state): a spilled register, or the bytes written with data (STACK_MISC,
    bit i for byte i from the slot's lowest address); bytes not in the mask were never written (STACK_INVALID)."""

    spill: Reg | None = None
    mask: int = 0

    def __repr__(self) -> str:
        return f"spill({self.spill!r})" if self.spill is not None else f"misc({self.mask:#04x})"


FULL_MASK = 0xFF


def _data_mask(s: Slot) -> int:
    """The bytes a slot holds as data on every path: a spilled scalar is data, a spilled pointer is not."""
    if s.spill is None:
        return s.mask
    return FULL_MASK if s.spill.kind == Kind.SCALAR else 0


def join_slot(a: Slot, b: Slot) -> Slot | None:
    if a == b:
        return a
    if a.spill is not None and b.spill is not None:
        return Slot(join(a.spill, b.spill), FULL_MASK)
    if a.spill is not None and b.spill is None and a.spill.is_pointer:
        mask = b.mask
    elif b.spill is not None and a.spill is None and b.spill.is_pointer:
        mask = a.mask
    else:
        mask = _data_mask(a) & _data_mask(b)
    return Slot(None, mask) if mask else None


@dataclass(frozen=True)
class State:
    """One frame's registers R0..R10 and its stack, by slot index (-1 is fp-8..fp-1), at one instruction."""

    regs: tuple[Reg, ...]
    stack: tuple[tuple[int, Slot], ...] = ()

    def reg(self, regno: int) -> Reg:
        return self.regs[regno]

    def with_reg(self, regno: int, reg: Reg) -> State:
        return State(self.regs[:regno] + (reg,) + self.regs[regno + 1:], self.stack)

    def slot(self, index: int) -> Slot | None:
        return dict(self.stack).get(index)

    def with_slot(self, index: int, slot: Slot | None) -> State:
        stack = dict(self.stack)
        if slot is None:
            stack.pop(index, None)
        else:
            stack[index] = slot
        return State(self.regs, tuple(sorted(stack.items())))

    def __repr__(self) -> str:
        regs = " ".join(f"R{i}={r!r}" for i, r in enumerate(self.regs) if r.kind != Kind.NOT_INIT)
        stack = " ".join(f"fp{i * BPF_REG_SIZE}={s!r}" for i, s in self.stack)
        return f"<State {regs}{' ' + stack if stack else ''}>"


def join_state(a: State, b: State) -> State:
    regs = tuple(join(x, y) for x, y in zip(a.regs, b.regs, strict=True))
    sb = dict(b.stack)
    stack = []
    for index, slot in a.stack:
        other = sb.get(index)
        joined = join_slot(slot, other) if other is not None else None
        if joined is not None:
            stack.append((index, joined))
    return State(regs, tuple(stack))
