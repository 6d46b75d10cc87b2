"""A BPF object as libbpf's bpf_object__open() reads it: programs, maps, globals, externs, relocations.

Stages, in bpf_object_open()'s order: the ELF (elf.py), the programs of each executable section
(bpf_object__add_programs, their types from sec_defs.py), BTF and `.BTF.ext` (btf.py, btf_ext.py), externs
(bpf_object__collect_externs), DATASEC sizes and offsets from the ELF (btf_fixup_datasec), maps
from `.maps`, the internal `.data`/`.rodata`/`.bss`/`.kconfig` maps (maps.py) and the arena's
globals (bpf_object__init_maps), and the relocations of every program (bpf_object__collect_relos).
Nothing is rewritten: relocations are recorded, as libbpf records them at open time, for the
stages that apply them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from enum import Enum, IntEnum

from .btf import Btf, BtfError
from .btf_ext import BPF_INSN_SZ, BtfExt, LineInfo
from .btf_types import BTF_INT_BOOL, AnyEnum, Array, BtfKind, Datasec, Func, Int, Linkage, Var
from .elf import SHN_LORESERVE, SHN_UNDEF, BpfObjectError, ElfSection, ElfSymbol, OpenCtx, read_elf
from .maps import (
    BPF_MAP_TYPE_ARENA,
    KCONFIG_SEC,
    MAPS_SEC,
    BpfMap,
    MapKind,
    Variable,
    internal_maps,
    kconfig_map,
    section_variables,
    user_maps,
)
from .sec_defs import ProgType, find_sec_def

__all__ = ["BpfObjectError", "BpfObject", "BpfProgram", "ProgSection", "BpfMap", "MapKind", "Variable", "Extern",
           "ExternKind", "Relocation", "RelocKind", "RelocType"]

ARENA_SEC, KSYMS_SEC = ".addr_space.1", ".ksyms"
PAGE_SIZE = 4096

BPF_JMP_CALL = 0x85  # BPF_JMP | BPF_CALL
BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_CALL = 1


class RelocType(IntEnum):
    """ELF64_R_TYPE values of Documentation/bpf/llvm_reloc.rst; libbpf itself never looks at them."""

    R_BPF_NONE = 0
    R_BPF_64_64 = 1
    R_BPF_64_ABS64 = 2
    R_BPF_64_ABS32 = 3
    R_BPF_64_NODYLD32 = 4
    R_BPF_64_32 = 10


class RelocKind(Enum):
    """libbpf's enum reloc_type, chosen from the instruction and the symbol (bpf_program__record_reloc)."""

    LD64 = "map"  # ld_imm64 of a map from .maps
    CALL = "call"  # bpf-to-bpf call into .text
    DATA = "data"  # ld_imm64 of a global in .data/.rodata/.bss or the arena
    EXTERN_LD64 = "extern var"  # ld_imm64 of a ksym or kconfig extern
    EXTERN_CALL = "kfunc call"
    SUBPROG_ADDR = "subprog address"  # ld_imm64 of a function in .text (a callback)


class ExternKind(Enum):
    KSYM = KSYMS_SEC
    KCONFIG = KCONFIG_SEC


@dataclass(frozen=True)
class Relocation:
    """One relocation against a program section, as bpf_program__record_reloc() records it.

    `offset` is the r_offset, in bytes from the start of the section; a program's own index of
    the instruction is `insn_idx - program.sec_insn_off`. `sym_off` is libbpf's: the symbol's
    st_value (0 for a map, whose offset picked the map). `target` names the map, extern or
    section the instruction refers to.
    """

    offset: int
    type: int
    sym_name: str
    kind: RelocKind
    target: str
    sym_off: int

    @property
    def insn_idx(self) -> int:
        return self.offset // BPF_INSN_SZ

    def __repr__(self) -> str:
        rtype = RelocType(self.type).name if self.type in RelocType._value2member_map_ else str(self.type)
        return (f"<Relocation insn {self.insn_idx} {rtype} '{self.sym_name}': {self.kind.value}"
                f" '{self.target}'+{self.sym_off}>")


@dataclass(frozen=True)
class BpfProgram:
    """One function of an executable section: an entry program, or a `.text` subprogram.

    As in bpf_object__init_prog(), a SEC("?name") program has `autoload` off and `sec_name`
    "name"; `sec_idx` is its ELF section. `prog_type` and `sleepable` come from the SEC() name
    (sec_defs.py); None for a subprogram or a section name libbpf does not know.
    """

    name: str
    sec_name: str
    sec_idx: int
    sec_insn_off: int  # in instructions from the start of the section
    insns: bytes
    subprog: bool
    is_global: bool
    autoload: bool
    prog_type: ProgType | None
    sleepable: bool
    relocs: tuple[Relocation, ...]

    @property
    def insn_cnt(self) -> int:
        return len(self.insns) // BPF_INSN_SZ

    def __repr__(self) -> str:
        where = "subprog" if self.subprog else f"SEC(\"{self.sec_name}\")"
        return f"<BpfProgram {self.name} {where} insns {self.sec_insn_off}..{self.sec_insn_off + self.insn_cnt}>"


@dataclass(frozen=True)
class ProgSection:
    """An executable section: its bytes, the programs in it, and all its relocations."""

    name: str
    index: int
    insns: bytes
    programs: tuple[BpfProgram, ...]
    relocs: tuple[Relocation, ...]

    def __repr__(self) -> str:
        return (f"<ProgSection {self.name} [{self.index}]: {len(self.insns) // BPF_INSN_SZ} insns,"
                f" {len(self.programs)} programs, {len(self.relocs)} relocations>")


@dataclass(frozen=True)
class Extern:
    """An extern of `.ksyms` (a kfunc or a kernel variable) or `.kconfig`, from an undefined ELF symbol."""

    name: str
    kind: ExternKind
    is_func: bool
    weak: bool
    btf_id: int  # the FUNC or VAR
    type_id: int  # a kfunc's FUNC_PROTO, a variable's type under modifiers and typedefs
    sym_index: int
    data_off: int = 0  # a .kconfig extern: its place in the .kconfig map
    size: int = 0

    @property
    def essent_name(self) -> str:
        """bpf_core_essential_name_len(): the name without a `___flavor` suffix, the one the kernel knows."""
        n = self.name
        for i in range(len(n) - 5, -1, -1):
            if n[i] != "_" and n[i + 1:i + 4] == "___" and n[i + 4] != "_":
                return n[:i + 1]
        return n


@dataclass(frozen=True, eq=False)
class BpfObject:
    """What bpf_object__open() knows about an object before anything is loaded."""

    name: str
    license: str
    kern_version: int
    btf: Btf | None
    btf_ext: BtfExt | None
    sections: dict[str, ProgSection]  # by ELF section name
    programs: tuple[BpfProgram, ...]  # by section index, then offset, as libbpf sorts them (cmp_progs)
    maps: tuple[BpfMap, ...]
    externs: tuple[Extern, ...]
    arena_data: bytes  # initial contents of the arena globals in .addr_space.1
    arena_globals: tuple[Variable, ...]

    def __repr__(self) -> str:
        return (f"<BpfObject {self.name}: {len(self.entry_programs)} programs,"
                f" {len(self.programs) - len(self.entry_programs)} subprograms, {len(self.maps)} maps,"
                f" {len(self.externs)} externs>")

    @classmethod
    def open(cls, path: str | os.PathLike, name: str | None = None) -> BpfObject:
        """bpf_object__open_file(): the object name is the file name up to its first dot."""
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BpfObjectError(f"{path}: {e.strerror}") from None
        return cls.from_bytes(data, name or os.path.basename(path).split(".")[0], where=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "bpf_object", where: str | None = None) -> BpfObject:
        """bpf_object__open_mem()."""
        return _open(bytes(data), name, where or name)

    def program(self, name: str) -> BpfProgram:
        """bpf_object__find_program_by_name(): entry programs only."""
        for p in self.programs:
            if p.name == name and not p.subprog:
                return p
        raise KeyError(name)

    def map(self, name: str) -> BpfMap:
        """bpf_object__find_map_by_name(): by kernel name, or by real name for internal maps."""
        for m in self.maps:
            if name in (m.name, m.real_name):
                return m
        raise KeyError(name)

    def source_line(self, prog: BpfProgram, insn_idx: int) -> LineInfo | None:
        """The C line of a program's instruction `insn_idx` (counted from the program's start), from .BTF.ext."""
        if self.btf_ext is None or not 0 <= insn_idx < prog.insn_cnt:
            return None
        sec = next(s for s in self.sections.values() if s.index == prog.sec_idx)
        li = self.btf_ext.line_at(sec.name, (prog.sec_insn_off + insn_idx) * BPF_INSN_SZ)
        return li if li is not None and li.insn_idx >= prog.sec_insn_off else None

    @property
    def entry_programs(self) -> tuple[BpfProgram, ...]:
        return tuple(p for p in self.programs if not p.subprog)

    @property
    def arena_map(self) -> BpfMap | None:
        return next((m for m in self.maps if m.type == BPF_MAP_TYPE_ARENA), None)

    @property
    def kfuncs(self) -> tuple[Extern, ...]:
        return tuple(e for e in self.externs if e.is_func)


def _open(data: bytes, name: str, where: str) -> BpfObject:
    ctx = OpenCtx(read_elf(data, where), where)
    try:
        return _open_elf(ctx, name)
    except BtfError as e:  # BTF that parsed but cannot serve as libbpf uses it; the message names the file
        raise BpfObjectError(str(e)) from None


def _open_elf(ctx: OpenCtx, name: str) -> BpfObject:
    elf, where = ctx.elf, ctx.where
    if elf.section("maps"):
        raise ctx.fail("legacy map definitions in 'maps' section are not supported by libbpf v1.0+")
    text = elf.section(".text")
    text_shndx = text.index if text and text.size and text.executable else 0  # an empty .text is ignored
    progs = _programs(ctx, text_shndx)
    btf_sec, ext_sec = elf.section(".BTF"), elf.section(".BTF.ext")
    for sec in (btf_sec, ext_sec):
        if sec and sec.type != "SHT_PROGBITS":
            raise ctx.fail(f"section '{sec.name}' is {sec.type}, expected SHT_PROGBITS")
    if btf_sec:
        ctx.btf = Btf.parse(btf_sec.data, f"{where}: .BTF")
    elif elf.section(MAPS_SEC):
        raise ctx.fail("BTF is required for the maps in .maps, but is missing")
    btf_ext = BtfExt.parse(ext_sec.data, ctx.btf, f"{where}: .BTF.ext") if ext_sec and ctx.btf else None
    externs = _externs(ctx)
    ctx.btf = _fixup_datasecs(ctx) if ctx.btf else None
    kcfg = tuple(Variable(e.name, e.data_off, e.size, e.type_id, Linkage.GLOBAL) for e in externs
                 if e.kind == ExternKind.KCONFIG)
    maps = user_maps(ctx) + internal_maps(ctx, name) + kconfig_map(kcfg, name)
    arena_sec = elf.section(ARENA_SEC)
    arena_data = arena_sec.data if arena_sec else b""
    arena = next((m for m in maps if m.type == BPF_MAP_TYPE_ARENA), None)
    if arena_sec and arena_sec.size:
        if arena is None:
            raise ctx.fail(f"sec '{ARENA_SEC}': to use global __arena variables the ARENA map should be"
                           " explicitly declared in SEC(\".maps\")")
        if -(-len(arena_data) // PAGE_SIZE) * PAGE_SIZE > arena.max_entries * PAGE_SIZE:
            raise ctx.fail(f"sec '{ARENA_SEC}': declared ARENA map size ({arena.max_entries * PAGE_SIZE}) is too"
                           f" small to hold global __arena variables of size {len(arena_data)}")
    sections, programs = _collect_relos(ctx, progs, maps, externs, text_shndx)
    license_sec, version_sec = elf.section("license"), elf.section("version")
    return BpfObject(
        name=name,
        license=license_sec.data.split(b"\0")[0].decode("latin-1") if license_sec else "",
        kern_version=int.from_bytes(version_sec.data[:4], "little") if version_sec else 0,
        btf=ctx.btf, btf_ext=btf_ext, sections=sections, programs=programs, maps=maps, externs=externs,
        arena_data=arena_data, arena_globals=section_variables(ctx, arena_sec) if arena_sec else ())


def _programs(ctx: OpenCtx, text_shndx: int) -> list[tuple[ElfSection, ElfSymbol]]:
    """bpf_object__add_programs(): each STT_FUNC symbol of an executable PROGBITS section is a program."""
    found = []
    for sec in ctx.elf.sections:
        if sec.type != "SHT_PROGBITS" or not sec.executable or not sec.size:
            continue
        if sec.size % BPF_INSN_SZ:
            raise ctx.fail(f"sec '{sec.name}': size {sec.size} is not a multiple of {BPF_INSN_SZ}")
        for sym in ctx.elf.symbols:
            if sym.shndx != sec.index or sym.type != "STT_FUNC":
                continue
            if sym.value + sym.size > sec.size:
                raise ctx.fail(f"sec '{sec.name}': program at offset {sym.value} crosses section boundary")
            if sym.value % BPF_INSN_SZ or sym.size % BPF_INSN_SZ:
                raise ctx.fail(f"sec '{sec.name}': corrupted program '{sym.name}', offset {sym.value},"
                               f" size {sym.size}")
            if sec.index != text_shndx and sym.bind == "STB_LOCAL":
                raise ctx.fail(f"sec '{sec.name}': program '{sym.name}' is static and not supported")
            found.append((sec, sym))
    found.sort(key=lambda p: (p[0].index, p[1].value))
    return found


def _externs(ctx: OpenCtx) -> tuple[Extern, ...]:
    """bpf_object__collect_externs(): undefined global NOTYPE symbols, typed by their BTF VAR or FUNC."""
    ksyms, kconfig = [], []
    for sym in ctx.elf.symbols:
        if sym.shndx != SHN_UNDEF or sym.bind not in ("STB_GLOBAL", "STB_WEAK") or sym.type != "STT_NOTYPE":
            continue
        if not sym.name:
            continue
        btf = ctx.btf
        if btf is None:
            raise ctx.fail(f"failed to find BTF for extern '{sym.name}': the object has no .BTF")
        t = next((t for t in btf if isinstance(t, (Var, Func)) and t.name == sym.name), None)
        if t is None:
            raise ctx.fail(f"failed to find BTF for extern '{sym.name}'")
        if t.linkage != Linkage.EXTERN:
            raise ctx.fail(f"BTF for extern '{sym.name}' is {t!r}, not extern")
        sec = next((d for d in btf if isinstance(d, Datasec) and any(v.type == t.id for v in d.vars)), None)
        if sec is None:
            raise ctx.fail(f"failed to find BTF for extern '{sym.name}' [{t.id}] section")
        weak = sym.bind == "STB_WEAK"
        if sec.name == KSYMS_SEC:
            type_id = t.type if isinstance(t, Func) else btf.skip_mods_and_typedefs(t.type).id
            ksyms.append(Extern(t.name, ExternKind.KSYM, isinstance(t, Func), weak, t.id, type_id, sym.index))
        elif sec.name == KCONFIG_SEC:
            if isinstance(t, Func):
                raise ctx.fail(f"extern function {t.name} is unsupported under {KCONFIG_SEC} section")
            if not _kcfg_type_ok(btf, t.type):
                raise ctx.fail(f"extern (kcfg) '{t.name}': type is unsupported")
            kconfig.append((btf.align_of(t.type), btf.resolve_size(t.type), t, weak, sym))
        else:
            raise ctx.fail(f"unrecognized extern section '{sec.name}'")
    out, off = [], 0
    for align, size, t, weak, sym in sorted(kconfig, key=lambda k: (-k[0], k[1], k[2].name)):  # cmp_externs()
        off = -(-off // align) * align  # roundup(off, align), as the .kconfig map lays them out
        type_id = ctx.required_btf.skip_mods_and_typedefs(t.type).id
        out.append(Extern(t.name, ExternKind.KCONFIG, False, weak, t.id, type_id, sym.index, off, size))
        off += size
    return tuple(out + sorted(ksyms, key=lambda e: e.name))


def _kcfg_type_ok(btf: Btf, type_id: int) -> bool:
    """find_kcfg_type() != KCFG_UNKNOWN: bool, char, a 1/2/4/8-byte integer, libbpf_tristate, a char array."""
    t = btf.skip_mods_and_typedefs(type_id)
    if isinstance(t, Int):
        return t.size == 1 if t.encoding & BTF_INT_BOOL else t.size in (1, 2, 4, 8)
    if isinstance(t, AnyEnum):
        return t.name == "libbpf_tristate" and (t.size == 4 or t.kind == BtfKind.ENUM64)
    if isinstance(t, Array) and t.nelems:
        elem = btf.skip_mods_and_typedefs(t.type)
        return isinstance(elem, Int) and elem.size == 1 and not elem.encoding & BTF_INT_BOOL
    return False


def _fixup_datasecs(ctx: OpenCtx) -> Btf:
    """btf_fixup_datasec(): clang may leave a DATASEC's size and offsets 0; the ELF section and symbols know."""
    btf = ctx.required_btf
    types = list(btf.types)
    for t in btf:
        if not isinstance(t, Datasec) or t.name in (KSYMS_SEC, KCONFIG_SEC):
            continue
        sec = ctx.elf.section(t.name)
        size = t.size
        if not size:
            if sec is None or not sec.size:
                raise ctx.fail(f"sec '{t.name}': failed to determine size from ELF")
            size = sec.size
        infos = []
        for vi in t.vars:
            var = btf[vi.type]
            if not isinstance(var, Var):
                raise ctx.fail(f"sec '{t.name}': unexpected non-VAR type found: {var!r}")
            offset = vi.offset
            if var.linkage != Linkage.EXTERN and sec is not None:
                sym = next((s for s in ctx.elf.symbols if s.name == var.name and s.shndx == sec.index
                            and s.type == "STT_OBJECT"), None)
                if sym is None and var.linkage == Linkage.GLOBAL:
                    raise ctx.fail(f"sec '{t.name}': failed to find ELF symbol for VAR '{var.name}'")
                offset = sym.value if sym else offset
            infos.append(replace(vi, offset=offset))
        types[t.id] = replace(t, size=size, vars=tuple(sorted(infos, key=lambda v: v.offset)))
    return replace(btf, types=tuple(types))


def _collect_relos(ctx: OpenCtx, progs: list[tuple[ElfSection, ElfSymbol]], maps: tuple[BpfMap, ...],
                   externs: tuple[Extern, ...], text_shndx: int) -> tuple[dict[str, ProgSection], tuple]:
    """bpf_object__collect_prog_relos(): every relocation of an executable section, classified."""
    by_sec: dict[int, list[Relocation]] = {}
    for sec_idx, rels in ctx.elf.rels.items():
        sec = ctx.elf.sections[sec_idx]
        out = by_sec.setdefault(sec_idx, [])
        for k, rel in enumerate(rels):
            if rel.offset % BPF_INSN_SZ or rel.offset + BPF_INSN_SZ > sec.size:
                raise ctx.fail(f"sec '{sec.name}': invalid offset {rel.offset:#x} for relo #{k}")
            out.append(_record_reloc(ctx, sec, rel, maps, externs, text_shndx))
    sections: dict[str, ProgSection] = {}
    programs = []
    for sec, sym in progs:
        start, end = sym.value, sym.value + sym.size
        relocs = tuple(r for r in by_sec.get(sec.index, ()) if start <= r.offset < end)
        subprog = sec.index == text_shndx
        sec_name = sec.name.removeprefix("?")
        sec_def = None if subprog else find_sec_def(sec_name)
        programs.append(BpfProgram(sym.name, sec_name, sec.index, start // BPF_INSN_SZ, sec.data[start:end], subprog,
                                   sym.bind != "STB_LOCAL", not sec.name.startswith("?"),
                                   sec_def.prog_type if sec_def else None, bool(sec_def and sec_def.sleepable),
                                   relocs))
    for sec in ctx.elf.sections:
        mine = tuple(p for p in programs if p.sec_idx == sec.index)
        if mine:
            sections[sec.name] = ProgSection(sec.name, sec.index, sec.data, mine, tuple(by_sec.get(sec.index, ())))
    return sections, tuple(programs)


def _record_reloc(ctx: OpenCtx, sec: ElfSection, rel, maps: tuple[BpfMap, ...], externs: tuple[Extern, ...],
                  text_shndx: int) -> Relocation:
    """bpf_program__record_reloc(): the kind comes from the instruction and the symbol, not the ELF type."""
    sym = ctx.elf.symbols[rel.sym]
    name = ctx.sym_name(sym)
    insn_idx = rel.offset // BPF_INSN_SZ
    code, regs = sec.data[rel.offset], sec.data[rel.offset + 1]
    imm = int.from_bytes(sec.data[rel.offset + 4:rel.offset + 8], "little", signed=True)
    where = f"sec '{sec.name}': insn #{insn_idx}"
    if code not in (BPF_JMP_CALL, BPF_LD_IMM64):
        raise ctx.fail(f"{where}: invalid relo against '{name}' for insns[{insn_idx}].code {code:#x}")
    if code == BPF_LD_IMM64 and rel.offset + 2 * BPF_INSN_SZ > sec.size:
        raise ctx.fail(f"{where}: ld_imm64 against '{name}' cut short by the section end")

    def reloc(kind: RelocKind, target: str, sym_off: int) -> Relocation:
        return Relocation(rel.offset, rel.type, name, kind, target, sym_off)

    ext = next((e for e in externs if e.sym_index == sym.index), None)
    if sym.shndx == SHN_UNDEF and ext is not None:
        return reloc(RelocKind.EXTERN_CALL if code == BPF_JMP_CALL else RelocKind.EXTERN_LD64, ext.name, 0)
    if code == BPF_JMP_CALL:
        if regs >> 4 != BPF_PSEUDO_CALL:
            raise ctx.fail(f"{where}: incorrect bpf_call opcode")
        if not sym.shndx or sym.shndx != text_shndx:
            raise ctx.fail(f"{where}: bad call relo against '{name}' in section '{ctx.sec_name(sym.shndx)}'")
        if sym.value % BPF_INSN_SZ:
            raise ctx.fail(f"{where}: bad call relo against '{name}' at offset {sym.value}")
        return reloc(RelocKind.CALL, ".text", sym.value)
    if not sym.shndx or sym.shndx >= SHN_LORESERVE:
        raise ctx.fail(f"{where}: invalid relo against '{name}' in special section {sym.shndx:#x};"
                       " forgot to initialize global var?..")
    if sym.shndx == text_shndx and (sym.type == "STT_SECTION" and sym.bind == "STB_LOCAL"
                                    or sym.type == "STT_FUNC" and sym.bind in ("STB_GLOBAL", "STB_WEAK")):
        if sym.value % BPF_INSN_SZ or imm % BPF_INSN_SZ:
            raise ctx.fail(f"{where}: bad subprog addr relo against '{name}' at offset {sym.value}+{imm}")
        return reloc(RelocKind.SUBPROG_ADDR, ".text", sym.value)
    target = ctx.elf.sections[sym.shndx]
    if target.name == ARENA_SEC:
        arena = next((m for m in maps if m.type == BPF_MAP_TYPE_ARENA), None)
        if arena is None:
            raise ctx.fail(f"{where}: bad arena data relocation, no arena maps defined")
        return reloc(RelocKind.DATA, arena.name, sym.value)
    if target.name == MAPS_SEC:
        m = next((m for m in maps if m.kind == MapKind.USER and m.sec_offset == sym.value), None)
        if m is None:
            raise ctx.fail(f"{where}: map relo failed to find map for section '{MAPS_SEC}', off {sym.value}")
        return reloc(RelocKind.LD64, m.name, 0)
    m = next((m for m in maps if m.kind != MapKind.USER and m.sec_name == target.name), None)
    if m is None:
        raise ctx.fail(f"{where}: bad data relo against section '{target.name}'")
    return reloc(RelocKind.DATA, m.name, sym.value)
