"""What BPF_OBJ_GET_INFO_BY_FD tells user space about a loaded program: bpf_prog_get_info_by_fd() of
kernel/bpf/syscall.c, what `bpftool prog dump` prints from.

xlated_prog_insns is the program as the JIT got it, in the form the kernel keeps after the JIT: calls to
helpers and kfuncs carry their target relative to __bpf_call_base (fixup_bpf_calls(), fixup_kfunc_call()),
bpf-to-bpf calls their pc-relative offset in `off` and the subprogram's index in `imm` (jit_subprogs()'s last
step), then bpf_insn_prepare_dump(): the arena probe forms turned back into plain loads, stores and atomics,
map pointers into `map[id:N]`. This machine's verifier does fewer rewrites than the kernel's (see verifier.py):
what its JIT emits inline instead (div/mod fixups, may_goto, inlined bpf_loop, map helpers that the kernel would
inline) stays one instruction here, and no dead code is removed, so indices are the object's.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from ..kernel.kallsyms import Kallsyms
from ..mm.layout import KERNEL_TEXT_START
from ..x86.extable import ExtableEntry
from .arraymap import ArrayMap
from .btf import Btf
from .btf_ext import LineInfo
from .core import BpfProg, BpfProgs
from .disasm import BpfInsnCbs, print_bpf_insn
from .insn import (
    BPF_ATOMIC,
    BPF_CALL,
    BPF_FUNC_TAIL_CALL,
    BPF_HELPER_CALL,
    BPF_JMP,
    BPF_LD_IMM64,
    BPF_LDX,
    BPF_MEM,
    BPF_MEMSX,
    BPF_PROBE_ATOMIC,
    BPF_PROBE_MEM32,
    BPF_PROBE_MEM32SX,
    BPF_PSEUDO_CALL,
    BPF_PSEUDO_FUNC,
    BPF_PSEUDO_KFUNC_CALL,
    BPF_PSEUDO_MAP_FD,
    BPF_PSEUDO_MAP_IDX_VALUE,
    BPF_PSEUDO_MAP_VALUE,
    BPF_ST,
    BPF_STX,
    BPF_TAIL_CALL,
    Insn,
    ld_imm64,
)
from .object_file import BpfObject
from .relocate import LinkedProg

# __bpf_call_base is no symbol of this machine: a call's imm is its target's distance from the start of kernel
# text instead (s32, as BPF_CALL_IMM() requires of the kernel's).
BPF_CALL_BASE = KERNEL_TEXT_START
_X86_CALL = 0xE8
# bpf_insn_prepare_dump() turns BPF_PROBE_MEM32 back into BPF_MEM; the two newer arena forms it leaves alone
# (a kernel's dump prints them as BUG_ldx_c1, BUG_fb): here they are turned back too, as the forms they stand for.
_PLAIN_MODE = {(BPF_LDX, BPF_PROBE_MEM32): BPF_MEM, (BPF_ST, BPF_PROBE_MEM32): BPF_MEM,
               (BPF_STX, BPF_PROBE_MEM32): BPF_MEM, (BPF_LDX, BPF_PROBE_MEM32SX): BPF_MEMSX,
               (BPF_STX, BPF_PROBE_ATOMIC): BPF_ATOMIC}


@dataclass(frozen=True)
class ProgLine:
    """A .BTF.ext line_info record placed in the loaded program: it starts at instruction `insn`."""

    insn: int
    info: LineInfo


@dataclass(frozen=True)
class BpfProgInfo:
    """struct bpf_prog_info's arrays for one program (all its functions), plus its exception table."""

    name: str
    tag: str
    xlated: tuple[Insn, ...]
    jited: bytes  # the whole image, the functions one after the other
    jited_ksyms: tuple[int, ...]  # each function's entry
    jited_ksym_names: tuple[str, ...]  # what kallsyms calls each: bpf_prog_<tag>_<name>
    jited_func_lens: tuple[int, ...]
    func_insns: tuple[int, ...]  # each function's first instruction
    func_info: tuple[int, ...]  # each function's BTF FUNC type id (empty without .BTF.ext)
    line_info: tuple[ProgLine, ...]
    jited_line_info: tuple[int, ...]  # bpf_prog_fill_jited_linfo(): where each line record's code starts
    btf: Btf | None
    extable: tuple[ExtableEntry, ...]

    def __repr__(self) -> str:
        return (f"BpfProgInfo({self.name}: {len(self.xlated)} insns, {len(self.jited)} bytes jited, "
                f"{len(self.jited_ksyms)} functions, {len(self.line_info)} line records)")

    def func_of(self, insn: int) -> int:
        """The index of the function holding instruction `insn`."""
        return max(k for k, start in enumerate(self.func_insns) if start <= insn)


def bpf_prog_get_info(progs: list[BpfProg], maps: Mapping[int, object], obj: BpfObject | None = None,
                      linked: LinkedProg | None = None) -> BpfProgInfo:
    """bpf_prog_get_info_by_fd() of a JITed program: `progs` its main program and subprograms, `maps` every map
    by map pointer in creation order (ids count from 1 in that order, as idr_alloc_cyclic() hands them out);
    `obj` and `linked`, when it came from a BPF object, give its BTF func_info and line_info."""
    main = progs[0].main_prog
    image = main.jited
    if image is None:
        raise ValueError(f"{main.name} was not JITed from bytecode")
    funcs = sorted((p for p in progs if p.jited is image), key=lambda p: p.start)
    starts = image.subprog_insns
    insns = list(main.insns)
    for i, insn in enumerate(main.insns):
        insns[i] = _as_kept(insn, i, image.code, image.address, image.insn_ranges, starts)
    _second_slot_of_func(insns, starts)
    xlated = bpf_insn_prepare_dump(insns, map_ids(maps))
    lines = _line_records(obj, linked)
    firsts = {next((k for k, ln in enumerate(lines) if ln.insn == s), None) for s in starts}
    jited_linfo = tuple(image.subprogs[starts.index(ln.insn)] if k in firsts else image.insn_ranges[ln.insn][0]
                        for k, ln in enumerate(lines))
    return BpfProgInfo(main.name, main.tag, tuple(xlated), image.code, tuple(p.start for p in funcs),
                       tuple(p.ksym for p in funcs), tuple(p.end - p.start for p in funcs), starts,
                       _func_info(obj, linked, starts), lines, jited_linfo, obj.btf if obj is not None else None,
                       image.extable)


def _as_kept(insn: Insn, i: int, code: bytes, address: int, ranges, starts: tuple[int, ...]) -> Insn:
    """An instruction as the kernel keeps it after fixup_bpf_calls() and jit_subprogs()."""
    if insn.code == BPF_JMP | BPF_CALL and insn.src == BPF_PSEUDO_CALL:
        return replace(insn, off=insn.imm, imm=starts.index(i + 1 + insn.imm))
    if insn.code == BPF_JMP | BPF_CALL and insn.src in (BPF_HELPER_CALL, BPF_PSEUDO_KFUNC_CALL):
        begin, end = ranges[i]
        at = end - 5 - address
        if end - begin >= 5 and code[at] == _X86_CALL:  # emit_call(): E8 rel32 ends what the call became
            target = end + int.from_bytes(code[at + 1:at + 5], "little", signed=True)
            return replace(insn, imm=target - BPF_CALL_BASE)
    return insn


def _second_slot_of_func(insns: list[Insn], starts: tuple[int, ...]) -> None:
    """jit_subprogs(): an ld_imm64 of a function keeps its offset, its second slot the subprogram's index."""
    for i, insn in enumerate(insns):
        if insn.code == BPF_LD_IMM64 and insn.src == BPF_PSEUDO_FUNC and i + 1 < len(insns):
            insns[i + 1] = replace(insns[i + 1], imm=starts.index(i + 1 + insn.imm))


def map_ids(maps: Mapping[int, object]) -> Callable[[int], tuple[int, int, int] | None]:
    """bpf_map_from_imm(): (BPF_PSEUDO_MAP_FD, id, 0) for a map pointer, (BPF_PSEUDO_MAP_VALUE, id, off) for an
    address in a single-element array's value (array_map_direct_value_meta()); an arena has no direct value
    meta, so its globals' addresses stay numbers."""
    def lookup(value: int) -> tuple[int, int, int] | None:
        for map_id, (ptr, m) in enumerate(maps.items(), 1):
            if value == ptr:
                return BPF_PSEUDO_MAP_FD, map_id, 0
            if isinstance(m, ArrayMap) and m.max_entries == 1 and m.value <= value < m.value + m.elem_size:
                return BPF_PSEUDO_MAP_VALUE, map_id, value - m.value
        return None
    return lookup


def bpf_insn_prepare_dump(insns: list[Insn], map_from_imm: Callable[[int], tuple[int, int, int] | None]) -> list[Insn]:
    """bpf_insn_prepare_dump(): tail calls as the helper call, arena forms as plain ones, map addresses as ids."""
    out = list(insns)
    for i, insn in enumerate(insns):
        if insn.code == BPF_JMP | BPF_TAIL_CALL:
            out[i] = Insn(BPF_JMP | BPF_CALL, imm=BPF_FUNC_TAIL_CALL)
        elif (insn.cls, insn.mode) in _PLAIN_MODE:
            out[i] = replace(insn, code=insn.cls | insn.size | _PLAIN_MODE[insn.cls, insn.mode])
        elif insn.code == BPF_LD_IMM64 and insn.src == 0 and i + 1 < len(insns):
            found = map_from_imm(ld_imm64(insn, insns[i + 1]))
            if found is not None:
                kind, map_id, off = found
                out[i] = replace(insn, src=kind, imm=map_id)
                out[i + 1] = replace(insns[i + 1], imm=off)
    return out


def _line_records(obj: BpfObject | None, linked: LinkedProg | None) -> tuple[ProgLine, ...]:
    """The object's line_info records of the linked program's instructions, by instruction, as libbpf hands
    them to BPF_PROG_LOAD (the subprograms' appended, their insn_off moved with them)."""
    if obj is None or linked is None or obj.btf_ext is None:
        return ()
    by_start: dict[tuple[str, int], list[LineInfo]] = {}
    for section, infos in obj.btf_ext.line_info.items():
        for li in infos:
            by_start.setdefault((section, li.insn_idx), []).append(li)
    return tuple(ProgLine(i, li) for i, origin in enumerate(linked.origin) for li in by_start.get(origin, ()))


def _func_info(obj: BpfObject | None, linked: LinkedProg | None, starts: tuple[int, ...]) -> tuple[int, ...]:
    """Each function's FUNC type id from the object's func_info; empty when any is missing."""
    if obj is None or linked is None or obj.btf_ext is None:
        return ()
    by_start = {(section, fi.insn_idx): fi.type_id for section, infos in obj.btf_ext.func_info.items()
                for fi in infos}
    ids = [by_start.get(linked.origin[s]) for s in starts if s < len(linked.origin)]
    return tuple(i for i in ids if i is not None) if None not in ids and len(ids) == len(starts) else ()


def xlated_cbs(info: BpfProgInfo, symbol_at: Callable[[int], str | None]) -> BpfInsnCbs:
    """The names bpftool's xlated_dumper.c gives (print_call(), print_imm()): a helper or kfunc by the kallsyms
    name at __bpf_call_base + imm, a bpf-to-bpf call `+off#bpf_prog_<tag>_<name>`, maps by id."""
    def print_call(insn: Insn) -> str:
        if insn.src == BPF_PSEUDO_CALL:
            address = info.jited_ksyms[insn.imm] if 0 <= insn.imm < len(info.jited_ksyms) else 0
            name = symbol_at(address)
            return f"{insn.off:+d}#{name}" if name else f"{insn.off:+d}#{address:#x}"
        address = (BPF_CALL_BASE + insn.imm) & (1 << 64) - 1
        return symbol_at(address) or f"{address:#x}"

    def print_imm(insn: Insn, nxt: Insn, full: int) -> str:
        if insn.src == BPF_PSEUDO_MAP_FD:
            return f"map[id:{insn.imm}]"
        if insn.src == BPF_PSEUDO_MAP_VALUE:
            return f"map[id:{insn.imm}][0]+{nxt.imm}"
        if insn.src == BPF_PSEUDO_MAP_IDX_VALUE:
            return f"map[idx:{insn.imm}]+{nxt.imm}"
        if insn.src == BPF_PSEUDO_FUNC:
            return f"subprog[{insn.imm:+d}]"
        return f"{full:#x}"

    return BpfInsnCbs(print_call, print_imm)


def kernel_syms_search(kallsyms: Kallsyms) -> Callable[[int], str | None]:
    """bpftool's kernel_syms_search(): the kallsyms name that starts exactly at an address."""
    def name(address: int) -> str | None:
        loc = kallsyms.lookup(address)
        if loc is None or loc.offset:
            return None
        return loc.symbol.display or loc.symbol.name
    return name


_INFOS: weakref.WeakKeyDictionary[BpfProg, BpfProgInfo] = weakref.WeakKeyDictionary()


def bpf_insn_text(progs: BpfProgs, maps: Mapping[int, object], kallsyms: Kallsyms, ip: int) -> str | None:
    """`INDEX: TEXT` of the BPF instruction whose JIT code holds `ip`, as `bpftool prog dump xlated` prints it;
    None outside a program JITed from bytecode, or in a prologue. A program's info is derived once and each
    address's text once: what a loaded program's text says does not change."""
    prog = progs.bpf_prog_ksym_find(ip)
    if prog is None or prog.jited is None:
        return None
    texts = prog.insn_texts
    if ip not in texts:
        main = prog.main_prog
        index = prog.jited.insn_at(ip)
        info = _INFOS.get(main)
        if info is None:
            info = _INFOS[main] = bpf_prog_get_info([p for p in progs if p.main_prog is main], maps)
        texts[ip] = None if index is None else \
            f"{index}: {print_bpf_insn(info.xlated, index, xlated_cbs(info, kernel_syms_search(kallsyms)))}"
    return texts[ip]
