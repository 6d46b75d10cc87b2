"""A program's final instructions, as libbpf's bpf_object__relocate() makes them before BPF_PROG_LOAD.

bpf_object__reloc_code() copies the entry program and appends each `.text`
subprogram it calls (once, in the order they are first called), fixing every
call's and callback address's immediate to the relative instruction offset;
then each ld_imm64 of a map, a global or an extern gets its pseudo source
(BPF_PSEUDO_MAP_FD, MAP_VALUE, BTF_ID) and, where libbpf would put a map fd, the
address resolve_pseudo_ldimm64() will write: a map's `struct bpf_map *`, a
global's value address (an arena global's user address, as
arena_map_direct_value_addr() returns user_vm_start). What each ld_imm64 is
stays beside it, for the verifier. A kfunc call's immediate becomes an id the
JIT resolves, as the kernel's BTF id would be.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import EmuError
from .btf_ext import BPF_INSN_SZ
from .insn import (
    BPF_PSEUDO_BTF_ID,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_VALUE,
)
from .object_file import BpfObject, BpfProgram, RelocKind

_SLOT = struct.Struct("<BBhi")


class RelocError(EmuError):
    """A relocation libbpf would refuse: names the program, the instruction and what it is."""


@dataclass(frozen=True)
class LdImm:
    """What an ld_imm64 loads, for the verifier: a map pointer, a map value (a global), a kernel
    symbol, or a function (a callback)."""

    kind: str  # "map", "map_value", "ksym", "func"
    map_name: str = ""
    map_type: int = 0


@dataclass(frozen=True)
class MapRef:
    """A created map as relocation needs it: its struct bpf_map address and its value's address
    (map_direct_value_addr(); the user address for an arena)."""

    map_ptr: int
    value_addr: int
    type: int


@dataclass(frozen=True)
class LinkedProg:
    name: str
    insns: bytes
    origin: tuple[tuple[str, int], ...]  # each final instruction's section and index there (for line info)
    subprogs: tuple[int, ...]  # first instruction of each function, the entry program's 0 first
    names: tuple[str, ...]  # each function's name, in that order
    ldimm: dict[int, LdImm]
    kfuncs: dict[int, str]  # a kfunc call's immediate -> the kfunc's name

    def __repr__(self) -> str:
        return (f"<LinkedProg {self.name}: {len(self.insns) // BPF_INSN_SZ} insns, {len(self.subprogs)} functions, "
                f"{len(self.ldimm)} ld_imm64, {len(self.kfuncs)} kfunc calls>")


def bpf_object__relocate(obj: BpfObject, prog: BpfProgram, maps: Callable[[str], MapRef],
                         kfunc_id: Callable[[str], int], ksym: Callable[[str], int | None]) -> LinkedProg:
    """The entry program `prog` with its subprograms appended and every relocation applied."""
    order: list[BpfProgram] = [prog]
    starts: dict[int, int] = {}  # by id(): function names need not be unique in a damaged object
    slots: list[list] = []
    origin: list[tuple[str, int]] = []
    for p in order:  # grows as callees are found: each appended once, in the order first called
        starts[id(p)] = len(slots)
        slots += [list(_SLOT.unpack_from(p.insns, i * BPF_INSN_SZ)) for i in range(p.insn_cnt)]
        section = next(sec.name for sec in obj.sections.values() if sec.index == p.sec_idx)
        origin += [(section, p.sec_insn_off + i) for i in range(p.insn_cnt)]
        for _, callee, _ in _calls(obj, p):
            if callee not in order:
                order.append(callee)
    ldimm: dict[int, LdImm] = {}
    kfuncs: dict[int, str] = {}
    for p in order:
        base = starts[id(p)]
        for local, callee, is_call in _calls(obj, p):
            i = base + local
            slots[i][1] = (slots[i][1] & 0x0F) | (BPF_PSEUDO_CALL if is_call else BPF_PSEUDO_FUNC) << 4
            slots[i][3] = starts[id(callee)] - (i + 1)
            if not is_call:
                ldimm[i] = LdImm("func")
        for r in p.relocs:
            i = base + r.insn_idx - p.sec_insn_off
            where = f"prog {prog.name}: insn {i}"
            if r.kind == RelocKind.EXTERN_CALL:
                slots[i][1] = (slots[i][1] & 0x0F) | BPF_PSEUDO_KFUNC_CALL << 4
                slots[i][3] = kfunc_id(r.target)
                kfuncs[slots[i][3]] = r.target
            elif r.kind in (RelocKind.LD64, RelocKind.DATA):
                _need_ld_imm64(slots, i, where, r.sym_name)
                ref = maps(r.target)
                if r.kind == RelocKind.LD64:
                    _set_imm64(slots, i, ref.map_ptr, BPF_PSEUDO_MAP_FD)
                    ldimm[i] = LdImm("map", r.target, ref.type)
                else:
                    _set_imm64(slots, i, ref.value_addr + r.sym_off + _imm64(slots, i), BPF_PSEUDO_MAP_VALUE)
                    ldimm[i] = LdImm("map_value", r.target, ref.type)
            elif r.kind == RelocKind.EXTERN_LD64:
                _need_ld_imm64(slots, i, where, r.sym_name)
                address = ksym(r.target)
                if address is None:
                    raise RelocError(f"{where}: extern '{r.target}' is not a kernel symbol here")
                _set_imm64(slots, i, address, BPF_PSEUDO_BTF_ID)
                ldimm[i] = LdImm("ksym", r.target)
    code = b"".join(_SLOT.pack(*s) for s in slots)
    return LinkedProg(prog.name, code, tuple(origin), tuple(starts.values()), tuple(p.name for p in order), ldimm,
                      kfuncs)


def _calls(obj: BpfObject, p: BpfProgram) -> list[tuple[int, BpfProgram, bool]]:
    """(instruction of `p`, the function it calls or takes the address of, whether a call): by its
    relocation, the function at sym_off / 8 + imm + 1 of .text for a call, sym_off / 8 + imm / 8 for an
    address, or, for a call with no relocation (a static function of the same section), at the call's
    own index + imm + 1 (bpf_object__reloc_code)."""
    out = []
    relocated = {r.insn_idx - p.sec_insn_off for r in p.relocs}  # a kfunc call is a src-1 call until relocated
    for r in p.relocs:
        if r.kind not in (RelocKind.CALL, RelocKind.SUBPROG_ADDR):
            continue
        local = r.insn_idx - p.sec_insn_off
        imm = _SLOT.unpack_from(p.insns, local * BPF_INSN_SZ)[3]
        # a call's imm counts instructions from the next one; a function's address, bytes into the section
        at = r.sym_off // BPF_INSN_SZ + (imm + 1 if r.kind == RelocKind.CALL else imm // BPF_INSN_SZ)
        out.append((local, _function_at(obj, p, local, ".text", at), r.kind == RelocKind.CALL))
    for local in range(p.insn_cnt):
        code, regs, _, imm = _SLOT.unpack_from(p.insns, local * BPF_INSN_SZ)
        if code == 0x85 and regs >> 4 == BPF_PSEUDO_CALL and local not in relocated:
            section = ".text" if p.subprog else p.sec_name
            out.append((local, _function_at(obj, p, local, section, p.sec_insn_off + local + imm + 1), True))
    return out


def _function_at(obj: BpfObject, p: BpfProgram, local: int, section: str, at: int) -> BpfProgram:
    found = next((f for f in obj.programs if (".text" if f.subprog else f.sec_name) == section
                  and f.sec_insn_off == at), None)
    if found is None:
        raise RelocError(f"prog {p.name}: insn {local}: no function of {section} starts at instruction {at}")
    return found


def _need_ld_imm64(slots: list[list], i: int, where: str, name: str) -> None:
    if slots[i][0] != 0x18 or i + 1 >= len(slots):
        raise RelocError(f"{where}: relocation '{name}' on an instruction that is not ld_imm64")


def _imm64(slots: list[list], i: int) -> int:
    return (slots[i][3] & 0xFFFF_FFFF) | (slots[i + 1][3] & 0xFFFF_FFFF) << 32


def _set_imm64(slots: list[list], i: int, value: int, src: int) -> None:
    """The address the verifier's convert_pseudo_ld_imm64() will leave as a plain constant."""
    value &= (1 << 64) - 1
    slots[i][1] = (slots[i][1] & 0x0F) | src << 4
    lo, hi = value & 0xFFFF_FFFF, value >> 32
    slots[i][3] = lo - (1 << 32) if lo >> 31 else lo
    slots[i + 1][3] = hi - (1 << 32) if hi >> 31 else hi
