"""Loads, stores and atomics: check_mem_access(), check_stack_read()/check_stack_write() and check_atomic().

Which instructions go through PTR_TO_ARENA is decided here (`arena_access`, from each instruction's last, final
state); the kernel records it per instruction in insn_aux_data->ptr_type and convert_ctx_accesses() reads it back.
"""

from __future__ import annotations

from .arena import BPF_ARENA_USER_VM_START
from .insn import (
    BPF_ADDR_SPACE_CAST,
    BPF_ALU64,
    BPF_AND,
    BPF_ATOMIC,
    BPF_CMPXCHG,
    BPF_DW,
    BPF_FETCH,
    BPF_LDX,
    BPF_LOAD_ACQ,
    BPF_MEM,
    BPF_MEMSX,
    BPF_MOV,
    BPF_OR,
    BPF_ST,
    BPF_STORE_REL,
    BPF_STX,
    BPF_W,
    BPF_X,
    BPF_XCHG,
    BPF_XOR,
    SIZE_BYTES,
    Insn,
)
from .maps import BPF_MAP_TYPE_ARENA
from .sec_defs import ProgType
from .verifier_types import (
    BPF_REG_SIZE,
    FULL_MASK,
    MAX_BPF_STACK,
    SCALAR,
    Kind,
    Reg,
    Reject,
    Slot,
    State,
    read_reg,
    write_check,
)

_PLAIN = (BPF_LDX | BPF_MEM, BPF_LDX | BPF_MEMSX, BPF_ST | BPF_MEM, BPF_STX | BPF_MEM, BPF_STX | BPF_ATOMIC)
_NO_ATOMIC = (Kind.CTX, Kind.PACKET, Kind.PACKET_META)  # atomic_ptr_type_ok()
_ARENA_NO_FETCH = (BPF_AND | BPF_FETCH, BPF_OR | BPF_FETCH, BPF_XOR | BPF_FETCH)  # x86 bpf_jit_supports_insn()
_PLAIN_MEMORY = (Kind.CTX, Kind.MAP_VALUE, Kind.MEM, Kind.PACKET, Kind.PACKET_META)
# convert_ctx_accesses(): a context field the program reads (xdp_md, __sk_buff: UAPI offset) is a load
# from the kernel's struct (name, offset there, BPF size). xdp_buff's layout is the kernel's
# (xdp_convert_ctx_access()); the sk_buff is this project's own: its fields' kernel offsets depend
# on the configuration, and the conversion is what keeps a program from seeing them.
XDP_FIELDS = {0: ("data", 0, BPF_DW), 4: ("data_end", 8, BPF_DW), 8: ("data_meta", 16, BPF_DW)}
SKB_FIELDS = {0: ("len", 24, BPF_W), 76: ("data", 0, BPF_DW), 80: ("data_end", 8, BPF_DW),
              140: ("data_meta", 16, BPF_DW)}
CTX_CONVERT = {ProgType.XDP: ("xdp_md", XDP_FIELDS), ProgType.SCHED_CLS: ("__sk_buff", SKB_FIELDS),
               ProgType.SCHED_ACT: ("__sk_buff", SKB_FIELDS)}
# The ctx fields whose loads give packet pointers (xdp_md, __sk_buff): offset -> type.
_PACKET_FIELDS = {
    ProgType.XDP: {0: Kind.PACKET, 4: Kind.PACKET_END, 8: Kind.PACKET_META},
    ProgType.SCHED_CLS: {76: Kind.PACKET, 80: Kind.PACKET_END, 140: Kind.PACKET_META},
    ProgType.SCHED_ACT: {76: Kind.PACKET, 80: Kind.PACKET_END, 140: Kind.PACKET_META},
}


def is_cast(insn: Insn) -> bool:
    """insn_is_cast_user() or cast_kern: an ALU64 MOV X whose off is BPF_ADDR_SPACE_CAST."""
    return insn.code == BPF_ALU64 | BPF_MOV | BPF_X and insn.off == BPF_ADDR_SPACE_CAST


# struct bpf_arena's fields a program may read through its map pointer (bpf_arena_common.h's arena_base()): offset
# -> name, at the offsets the shipped header declares and the arena's struct bpf_map stand-in holds them
BPF_ARENA_FIELDS = {BPF_ARENA_USER_VM_START: "user_vm_start", BPF_ARENA_USER_VM_START + 8: "user_vm_end"}


def _map_ptr_access(i: int, regno: int, addr: Reg, off: int, size: int, value: Reg | None) -> Reg:
    """check_ptr_to_map_access(): reads of the map's kernel struct, by its BTF; only struct bpf_arena's two user
    addresses are modelled (the kernel allows any field btf_struct_access() finds)."""
    if addr.map_type != BPF_MAP_TYPE_ARENA:
        raise Reject(i, f"R{regno} map_ptr access is modelled only for an arena's struct bpf_arena")
    if off < 0:
        raise Reject(i, f"R{regno} is bpf_arena invalid negative access: off={off}")
    if value is not None:
        raise Reject(i, "only read from bpf_arena is supported")
    if size != BPF_REG_SIZE or off not in BPF_ARENA_FIELDS:
        raise Reject(i, f"R{regno} bpf_arena access at off={off} size={size} is not modelled: only the 8-byte "
                        f"{' and '.join(BPF_ARENA_FIELDS.values())} are")
    return SCALAR


class MemCheck:
    """The memory side of do_check(): per-subprogram stack depths and the instructions that access the arena."""

    def __init__(self, prog_type: ProgType | None, allow_uninit_stack: bool, nframes: int):
        self.prog_type, self.allow_uninit_stack = prog_type, allow_uninit_stack
        self.depth = [0] * nframes
        self.arena_access: set[int] = set()
        self.ctx_access: dict[int, tuple[int, int]] = {}  # a context field load -> (offset, size) in the kernel's

    def check(self, i: int, insn: Insn, st: State, frame: int) -> State:
        if insn.mode | insn.cls not in _PLAIN:
            raise Reject(i, f"unknown opcode {insn.code:02x}")
        size = SIZE_BYTES[insn.size]
        if insn.cls == BPF_LDX:
            addr = read_reg(st, insn.src, i)
            write_check(insn.dst, i)
            st, value = self._access(i, st, frame, insn.src, addr, insn.off, size, None)
            return st.with_reg(insn.dst, value)
        if insn.cls == BPF_ST:
            addr = read_reg(st, insn.dst, i)
            if addr.kind == Kind.CTX:  # check_st(): ctx fields are written from registers only
                raise Reject(i, f"BPF_ST stores into R{insn.dst} ctx is not allowed")
            st, _ = self._access(i, st, frame, insn.dst, addr, insn.off, size, SCALAR)
            return st
        src = read_reg(st, insn.src, i)
        if insn.mode == BPF_ATOMIC:
            return self._atomic(i, insn, st, frame, size)
        addr = read_reg(st, insn.dst, i)
        st, _ = self._access(i, st, frame, insn.dst, addr, insn.off, size, src)
        return st

    def write_stack(self, i: int, st: State, frame: int, regno: int, addr: Reg, size: int) -> State:
        """A helper's or kfunc's write of `size` bytes where a stack pointer argument points."""
        st, _ = self._stack(i, st, frame, regno, addr, 0, size, SCALAR)
        return st

    def _atomic(self, i: int, insn: Insn, st: State, frame: int, size: int) -> State:
        """check_atomic(): read-modify-write (value regs get the old value), load-acquire, store-release."""
        op = insn.imm
        addr_reg = insn.src if op == BPF_LOAD_ACQ else insn.dst
        addr = read_reg(st, addr_reg, i)
        if op == BPF_CMPXCHG:
            read_reg(st, 0, i)
        for member in addr.members or {addr}:
            if member.kind in _NO_ATOMIC or (member.kind == Kind.ARENA and op in _ARENA_NO_FETCH):
                raise Reject(i, f"BPF_ATOMIC stores into R{addr_reg} {member.kind.value} is not allowed")
        if op != BPF_STORE_REL:
            st, _ = self._access(i, st, frame, addr_reg, addr, insn.off, size, None)
        if op != BPF_LOAD_ACQ:
            st, _ = self._access(i, st, frame, addr_reg, addr, insn.off, size, SCALAR)
        if op == BPF_LOAD_ACQ:
            return st.with_reg(insn.dst, SCALAR)
        if op == BPF_CMPXCHG:
            return st.with_reg(0, SCALAR)
        if op & BPF_FETCH or op == BPF_XCHG:
            return st.with_reg(insn.src, SCALAR)
        return st

    def _access(self, i: int, st: State, frame: int, regno: int, addr: Reg, off: int, size: int,
                value: Reg | None) -> tuple[State, Reg]:
        """check_mem_access() of `size` bytes at addr + off: a read when value is None, else a write of value."""
        if addr.kind == Kind.MIXED:
            kinds = {m.kind for m in addr.members}
            if kinds & {Kind.ARENA, Kind.CTX}:
                raise Reject(i, "same insn cannot be used with different pointers")
            results = set()
            for member in sorted(addr.members, key=repr):
                st, got = self._access(i, st, frame, regno, member, off, size, value)
                results.add(got)
            return st, results.pop() if len(results) == 1 else SCALAR
        self.arena_access.discard(i)
        if addr.kind == Kind.ARENA:
            self.arena_access.add(i)
            return st, SCALAR
        if addr.kind == Kind.STACK:
            return self._stack(i, st, frame, regno, addr, off, size, value)
        if addr.kind == Kind.MAP_PTR:
            return st, _map_ptr_access(i, regno, addr, off, size, value)
        if addr.kind not in _PLAIN_MEMORY:
            raise Reject(i, f"R{regno} invalid mem access '{addr.kind.value}'")
        if addr.kind == Kind.CTX and self.prog_type in CTX_CONVERT:
            what, fields = CTX_CONVERT[self.prog_type]
            if value is not None or size != 4 or off not in fields:
                raise Reject(i, f"{what} access at off={off} size={size} is not modelled: only loads of "
                                f"{', '.join(n for n, _, _ in fields.values())} are")
            self.ctx_access[i] = fields[off][1:]
        if addr.kind == Kind.CTX and value is None and size == 4 and self.prog_type in _PACKET_FIELDS:
            kind = _PACKET_FIELDS[self.prog_type].get(off)
            if kind is not None:
                return st, Reg(kind)
        return st, SCALAR

    def _stack(self, i: int, st: State, frame: int, regno: int, addr: Reg, off: int, size: int,
               value: Reg | None) -> tuple[State, Reg]:
        """check_ptr_alignment(), check_stack_access_within_bounds(), then the slot's spill or fill."""
        if addr.off is None:
            self.depth[addr.frame] = MAX_BPF_STACK
            return st, SCALAR
        at = addr.off + off
        if at % size:
            raise Reject(i, f"misaligned stack access off (0x0; 0x0)+{addr.off}+{off} size {size}")
        if at < -MAX_BPF_STACK or at + size > 0:
            what = " read from" if value is None else " write to"
            raise Reject(i, f"invalid{what} stack R{regno} off={at} size={size}")
        self.depth[addr.frame] = max(self.depth[addr.frame], -at)
        if addr.frame != frame:
            return st, SCALAR
        index, byte = divmod(at, BPF_REG_SIZE)
        bytes_ = ((1 << size) - 1) << byte
        slot = st.slot(index)
        if value is not None:
            return st.with_slot(index, self._spill(i, slot, value, size, bytes_)), SCALAR
        if slot is not None and slot.spill is not None:
            if size == BPF_REG_SIZE:
                return st, slot.spill
            if slot.spill.kind != Kind.SCALAR:
                raise Reject(i, "invalid size of register fill")
            return st, SCALAR
        mask = slot.mask if slot is not None else 0
        missing = bytes_ & ~mask
        if missing and not self.allow_uninit_stack:
            first = (missing & -missing).bit_length() - 1 - byte
            raise Reject(i, f"invalid read from stack off {at}+{first} size {size}")
        return st, SCALAR

    @staticmethod
    def _spill(i: int, slot: Slot | None, value: Reg, size: int, bytes_: int) -> Slot:
        """check_stack_write_fixed_off(): 8 bytes save the register; fewer bytes of a pointer are refused."""
        if size == BPF_REG_SIZE:
            return Slot(value, FULL_MASK)
        if value.is_pointer:
            raise Reject(i, "invalid size of register spill")
        if slot is None:
            return Slot(None, bytes_)
        if slot.spill is not None:
            return Slot(None, (FULL_MASK if slot.spill.kind == Kind.SCALAR else 0) | bytes_)
        return Slot(None, slot.mask | bytes_)

