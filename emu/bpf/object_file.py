"""A BPF object as libbpf's bpf_object__open() reads it: programs, maps, globals, externs, relocations.

Stages, in bpf_object_open()'s order: the ELF (elf.py), the programs of each executable section
(bpf_object__add_programs), BTF and `.BTF.ext` (bpf_object__init_btf), externs
(bpf_object__collect_externs), DATASEC sizes and offsets from the ELF (btf_fixup_datasec), maps
from `.maps` and the internal `.data`/`.rodata`/`.bss` maps with the arena's globals
(bpf_object__init_maps), and the relocations of every program (bpf_object__collect_relos).
Nothing is rewritten: relocations are recorded, as libbpf records them at open time, for the
stages that apply them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from enum import Enum, IntEnum

from .arena import BPF_F_MMAPABLE
from .btf import (
    BPF_INSN_SZ,
    BTF_INT_BOOL,
    AnyEnum,
    Array,
    Btf,
    BtfError,
    BtfExt,
    BtfKind,
    Datasec,
    Func,
    Int,
    LineInfo,
    Linkage,
    Member,
    Ptr,
    Struct,
    Var,
)
from .elf import SHN_LORESERVE, SHN_UNDEF, BpfObjectError, ElfImage, ElfSection, ElfSymbol, read_elf
from .sec_defs import ProgType, find_sec_def

__all__ = ["BpfObjectError", "BpfObject", "BpfProgram", "ProgSection", "BpfMap", "MapKind", "Variable", "Extern",
           "ExternKind", "Relocation", "RelocKind", "RelocType"]

BPF_OBJ_NAME_LEN = 16
BPF_F_RDONLY_PROG = 1 << 7
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_ARENA = 33
PAGE_SIZE = 4096

MAPS_SEC, ARENA_SEC, KSYMS_SEC, KCONFIG_SEC = ".maps", ".addr_space.1", ".ksyms", ".kconfig"

BPF_JMP_CALL = 0x85  # BPF_JMP | BPF_CALL
BPF_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
BPF_PSEUDO_CALL = 1

MAP_TYPE_NAMES = (
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array", "stack_trace",
    "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps", "hash_of_maps", "devmap",
    "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage",
    "queue", "stack", "sk_storage", "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage",
    "bloom_filter", "user_ringbuf", "cgrp_storage", "arena",
)  # enum bpf_map_type, in order


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


class MapKind(Enum):
    """libbpf's enum libbpf_map_type: where a map comes from."""

    USER = ".maps"
    DATA = ".data"
    RODATA = ".rodata"
    BSS = ".bss"
    KCONFIG = KCONFIG_SEC


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
class Variable:
    """A global in a data section, from its DATASEC entry with the offset the ELF symbol gives."""

    name: str
    offset: int
    size: int
    type_id: int
    linkage: Linkage


@dataclass(frozen=True)
class BpfMap:
    """A map as libbpf's struct bpf_map holds it before creation."""

    name: str
    kind: MapKind
    type: int
    key_size: int
    value_size: int
    max_entries: int
    map_flags: int = 0
    map_extra: int = 0
    numa_node: int = 0
    pinning: int = 0
    key_type_id: int = 0
    value_type_id: int = 0
    sec_name: str = MAPS_SEC
    sec_offset: int = 0
    real_name: str = ""  # the section name of an internal map, whose `name` is shortened for the kernel
    data: bytes | None = None  # initial value of .data/.rodata; None for .bss, zero-filled
    variables: tuple[Variable, ...] = ()
    inner: BpfMap | None = None  # the inner map of a map-in-map

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES[self.type] if self.type < len(MAP_TYPE_NAMES) else str(self.type)

    def __repr__(self) -> str:
        return (f"<BpfMap {self.name} {self.type_name} key {self.key_size} value {self.value_size}"
                f" max_entries {self.max_entries} flags {self.map_flags:#x}"
                + (f" map_extra {self.map_extra:#x}" if self.map_extra else "") + ">")


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


class _Ctx:
    """The state bpf_object_open() threads through its stages, with its error prefix."""

    def __init__(self, elf: ElfImage, where: str):
        self.elf, self.where = elf, where
        self.btf: Btf | None = None

    def fail(self, msg: str) -> BpfObjectError:
        return BpfObjectError(f"{self.where}: {msg}")

    def sec_name(self, shndx: int) -> str:
        return self.elf.sections[shndx].name if 0 < shndx < len(self.elf.sections) else f"<section {shndx:#x}>"

    def sym_name(self, sym: ElfSymbol) -> str:
        return self.sec_name(sym.shndx) if sym.type == "STT_SECTION" else sym.name


def _open(data: bytes, name: str, where: str) -> BpfObject:
    ctx = _Ctx(read_elf(data, where), where)
    try:
        return _open_elf(ctx, name)
    except BtfError as e:  # BTF that parsed but cannot serve as libbpf uses it; the message names the file
        raise BpfObjectError(str(e)) from None


def _open_elf(ctx: _Ctx, name: str) -> BpfObject:
    elf, where = ctx.elf, ctx.where
    if elf.section("maps"):
        raise ctx.fail("legacy map definitions in 'maps' section are not supported by libbpf v1.0+")
    text = elf.section(".text")
    text_shndx = text.index if text else 0
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
    maps = _user_maps(ctx) + _internal_maps(ctx, name) + _kconfig_map(externs, name)
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
        arena_data=arena_data, arena_globals=_variables(ctx, arena_sec) if arena_sec else ())


def _programs(ctx: _Ctx, text_shndx: int) -> list[tuple[ElfSection, ElfSymbol]]:
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


def _externs(ctx: _Ctx) -> tuple[Extern, ...]:
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
        out.append(Extern(t.name, ExternKind.KCONFIG, False, weak, t.id, ctx.btf.skip_mods_and_typedefs(t.type).id,
                          sym.index, off, size))
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


def _fixup_datasecs(ctx: _Ctx) -> Btf:
    """btf_fixup_datasec(): clang may leave a DATASEC's size and offsets 0; the ELF section and symbols know."""
    btf = ctx.btf
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


def _map_field_int(ctx: _Ctx, map_name: str, m: Member) -> int:
    """get_map_field_int(): `__uint(name, N)` is `int (*name)[N]`, so N is the array's nelems."""
    t = ctx.btf.skip_mods_and_typedefs(m.type)
    if not isinstance(t, Ptr):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected PTR, got {t.kind.name}")
    arr = ctx.btf[t.type]
    if not isinstance(arr, Array):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected ARRAY, got {arr.kind.name}")
    return arr.nelems


def _map_field_long(ctx: _Ctx, map_name: str, m: Member) -> int:
    """get_map_field_long(): `__ulong(name, V)` is a one-value enum, or the `__uint` form."""
    t = ctx.btf.skip_mods_and_typedefs(m.type)
    if isinstance(t, Ptr):
        return _map_field_int(ctx, map_name, m)
    if not isinstance(t, AnyEnum):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected ENUM or ENUM64, got {t.kind.name}")
    if len(t.values) != 1:
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': invalid __ulong")
    return t.values[0].value & 0xFFFF_FFFF_FFFF_FFFF


_INT_ATTRS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size", "pinning")


def _parse_map_def(ctx: _Ctx, map_name: str, def_t: Struct, outer: bool) -> dict:
    """parse_btf_map_def() in strict mode: each member of the anonymous struct is one attribute."""
    d: dict = {"type": 0, "key_size": 0, "value_size": 0, "max_entries": 0, "map_flags": 0, "numa_node": 0,
               "pinning": 0, "map_extra": 0, "key_type_id": 0, "value_type_id": 0, "inner": None}

    def set_size(attr: str, sz: int) -> None:
        if d[attr] and d[attr] != sz:
            raise ctx.fail(f"map '{map_name}': conflicting {attr.replace('_', ' ')} {d[attr]} != {sz}")
        d[attr] = sz

    for i, m in enumerate(def_t.members):
        if m.name in _INT_ATTRS:
            v = _map_field_int(ctx, map_name, m)
            if m.name in ("key_size", "value_size"):
                set_size(m.name, v)
            else:
                d[m.name] = v
        elif m.name in ("key", "value"):
            t = ctx.btf[m.type]
            if not isinstance(t, Ptr):
                raise ctx.fail(f"map '{map_name}': {m.name} spec is not PTR: {t.kind.name}")
            set_size(f"{m.name}_size", ctx.btf.resolve_size(t.type))
            d[f"{m.name}_type_id"] = t.type
        elif m.name == "map_extra":
            d["map_extra"] = _map_field_long(ctx, map_name, m)
        elif m.name == "values":
            d["inner"] = _map_values(ctx, map_name, d, m, i == len(def_t.members) - 1, outer)
            set_size("value_size", 4)
        else:  # libbpf is strict unless opened with relaxed_maps
            raise ctx.fail(f"map '{map_name}': unknown field '{m.name}'")
    if d["type"] == 0:
        raise ctx.fail(f"map '{map_name}': map type isn't specified")
    if d["pinning"] not in (0, 1):
        raise ctx.fail(f"map '{map_name}': invalid pinning value {d['pinning']}")
    return d


def _map_values(ctx: _Ctx, map_name: str, d: dict, m: Member, last: bool, outer: bool) -> BpfMap | None:
    """`__array(values, T)`: the inner map of a map-in-map, or the program type of a prog array."""
    map_in_map = d["type"] in (BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS)
    if not outer:
        raise ctx.fail(f"map '{map_name}': multi-level inner maps not supported")
    if not last:
        raise ctx.fail(f"map '{map_name}': 'values' member should be last")
    if not map_in_map and d["type"] != BPF_MAP_TYPE_PROG_ARRAY:
        raise ctx.fail(f"map '{map_name}': should be map-in-map or prog-array")
    arr = ctx.btf[m.type]
    if not isinstance(arr, Array) or arr.nelems:
        raise ctx.fail(f"map '{map_name}': values spec is not a zero-sized array")
    ptr = ctx.btf.skip_mods_and_typedefs(arr.type)
    if not isinstance(ptr, Ptr):
        raise ctx.fail(f"map '{map_name}': values def is of unexpected kind {ptr.kind.name}")
    t = ctx.btf.skip_mods_and_typedefs(ptr.type)
    if not map_in_map:
        if t.kind != BtfKind.FUNC_PROTO:
            raise ctx.fail(f"map '{map_name}': prog-array value def is of unexpected kind {t.kind.name}")
        return None
    if not isinstance(t, Struct):
        raise ctx.fail(f"map '{map_name}': map-in-map inner def is of unexpected kind {t.kind.name}")
    inner = _parse_map_def(ctx, f"{map_name}.inner", t, outer=False)
    return BpfMap(f"{map_name}.inner", MapKind.USER, **{k: v for k, v in inner.items() if k != "inner"})


def _user_maps(ctx: _Ctx) -> tuple[BpfMap, ...]:
    """bpf_object__init_user_btf_maps(): one map per VAR of the `.maps` DATASEC."""
    sec = ctx.elf.section(MAPS_SEC)
    if sec is None:
        return ()
    datasec = ctx.btf.find(MAPS_SEC, BtfKind.DATASEC)
    if datasec is None:
        raise ctx.fail(f"DATASEC '{MAPS_SEC}' not found")
    maps = []
    for i, vi in enumerate(datasec.vars):
        var = ctx.btf[vi.type]
        if not var.name:
            raise ctx.fail(f"map #{i}: empty name")
        if vi.offset + vi.size > sec.size:
            raise ctx.fail(f"map '{var.name}' BTF data is corrupted")
        if not isinstance(var, Var):
            raise ctx.fail(f"map '{var.name}': unexpected var kind {var.kind.name}")
        if var.linkage != Linkage.GLOBAL:
            raise ctx.fail(f"map '{var.name}': unsupported map linkage {var.linkage.name.lower()}")
        def_t = ctx.btf.skip_mods_and_typedefs(var.type)
        if not isinstance(def_t, Struct):
            raise ctx.fail(f"map '{var.name}': unexpected def kind {def_t.kind.name}")
        if def_t.size > vi.size:
            raise ctx.fail(f"map '{var.name}': invalid def size")
        d = _parse_map_def(ctx, var.name, def_t, outer=True)
        maps.append(BpfMap(var.name, MapKind.USER, sec_offset=vi.offset, **d))
    arenas = [m for m in maps if m.type == BPF_MAP_TYPE_ARENA]
    if len(arenas) > 1:
        raise ctx.fail(f"map '{arenas[1].name}': only single ARENA map is supported"
                       f" (map '{arenas[0].name}' is also ARENA)")
    return tuple(maps)


def internal_map_name(obj_name: str, real_name: str) -> str:
    """internal_map_name(): as much of the object name as fits before the section name, in 15 characters."""
    sfx_len = min(max(7, len(real_name)), BPF_OBJ_NAME_LEN - 1)
    pfx_len = 0 if "." in real_name[1:] else min(BPF_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    return re.sub(r"[^A-Za-z0-9_.]", "_", obj_name[:pfx_len] + real_name[:sfx_len])


def _data_kind(sec: ElfSection) -> MapKind | None:
    """The section kinds of bpf_object__elf_collect(): `.data*`, `.rodata*` PROGBITS, `.bss*` NOBITS."""
    for kind, sh_type in ((MapKind.DATA, "SHT_PROGBITS"), (MapKind.RODATA, "SHT_PROGBITS"),
                          (MapKind.BSS, "SHT_NOBITS")):
        prefix = kind.value
        if sec.type == sh_type and (sec.name == prefix or sec.name.startswith(prefix + ".")) and not sec.executable:
            return kind
    return None


def _internal_maps(ctx: _Ctx, obj_name: str) -> tuple[BpfMap, ...]:
    """bpf_object__init_global_data_maps(): a one-element ARRAY per non-empty data section."""
    maps = []
    for sec in ctx.elf.sections:
        kind = _data_kind(sec)
        if kind is None or not sec.size:
            continue
        datasec = ctx.btf.find(sec.name, BtfKind.DATASEC) if ctx.btf else None
        variables = _variables(ctx, sec)
        flags = BPF_F_RDONLY_PROG if kind == MapKind.RODATA else 0
        if any(v.linkage != Linkage.STATIC for v in variables) and datasec is not None:
            flags |= BPF_F_MMAPABLE  # map_is_mmapable(): a non-static variable the skeleton exposes
        maps.append(BpfMap(internal_map_name(obj_name, sec.name), kind, BPF_MAP_TYPE_ARRAY, 4, sec.size, 1, flags,
                           value_type_id=datasec.id if datasec else 0, sec_name=sec.name, real_name=sec.name,
                           data=None if kind == MapKind.BSS else sec.data, variables=variables))
    return tuple(maps)


def _kconfig_map(externs: tuple[Extern, ...], obj_name: str) -> tuple[BpfMap, ...]:
    """bpf_object__init_kconfig_map(): one read-only ARRAY holding every .kconfig extern, filled in at load."""
    kcfg = [e for e in externs if e.kind == ExternKind.KCONFIG]
    if not kcfg:
        return ()
    size = kcfg[-1].data_off + kcfg[-1].size
    variables = tuple(Variable(e.name, e.data_off, e.size, e.type_id, Linkage.GLOBAL) for e in kcfg)
    return (BpfMap(internal_map_name(obj_name, KCONFIG_SEC), MapKind.KCONFIG, BPF_MAP_TYPE_ARRAY, 4, size, 1,
                   BPF_F_RDONLY_PROG | BPF_F_MMAPABLE, sec_name=KCONFIG_SEC, real_name=KCONFIG_SEC,
                   variables=variables),)


def _variables(ctx: _Ctx, sec: ElfSection) -> tuple[Variable, ...]:
    """The globals of a data section: its DATASEC when there is BTF, else its STT_OBJECT symbols."""
    datasec = ctx.btf.find(sec.name, BtfKind.DATASEC) if ctx.btf else None
    if datasec is not None:
        out = []
        for vi in datasec.vars:
            var = ctx.btf[vi.type]
            out.append(Variable(var.name, vi.offset, vi.size, var.type, var.linkage))
        return tuple(out)
    syms = sorted((s for s in ctx.elf.symbols if s.shndx == sec.index and s.type == "STT_OBJECT"),
                  key=lambda s: s.value)
    return tuple(Variable(s.name, s.value, s.size, 0, Linkage.STATIC if s.bind == "STB_LOCAL" else Linkage.GLOBAL)
                 for s in syms)


def _collect_relos(ctx: _Ctx, progs: list[tuple[ElfSection, ElfSymbol]], maps: tuple[BpfMap, ...],
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


def _record_reloc(ctx: _Ctx, sec: ElfSection, rel, maps: tuple[BpfMap, ...], externs: tuple[Extern, ...],
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
