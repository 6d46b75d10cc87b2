"""Maps as libbpf knows them at open time: BTF-defined maps of `.maps` and the internal maps of data sections.

A `.maps` variable's type is an anonymous struct whose members each carry one attribute in their
type (`__uint(type, N)` is `int (*type)[N]`), read as parse_btf_map_def() reads them; `.data`,
`.rodata` and `.bss` each become a one-element ARRAY (bpf_object__init_global_data_maps()),
their globals listed from the section's DATASEC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .arena import BPF_F_MMAPABLE
from .btf_types import AnyEnum, Array, BtfKind, Datasec, Linkage, Member, Ptr, Struct, Var
from .elf import ElfSection, OpenCtx

BPF_OBJ_NAME_LEN = 16
BPF_F_RDONLY_PROG = 1 << 7
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_ARENA = 33

MAPS_SEC, KCONFIG_SEC = ".maps", ".kconfig"

MAP_TYPE_NAMES = (
    "unspec", "hash", "array", "prog_array", "perf_event_array", "percpu_hash", "percpu_array", "stack_trace",
    "cgroup_array", "lru_hash", "lru_percpu_hash", "lpm_trie", "array_of_maps", "hash_of_maps", "devmap",
    "sockmap", "cpumap", "xskmap", "sockhash", "cgroup_storage", "reuseport_sockarray", "percpu_cgroup_storage",
    "queue", "stack", "sk_storage", "devmap_hash", "struct_ops", "ringbuf", "inode_storage", "task_storage",
    "bloom_filter", "user_ringbuf", "cgrp_storage", "arena",
)  # enum bpf_map_type, in order


class MapKind(Enum):
    """libbpf's enum libbpf_map_type: where a map comes from."""

    USER = ".maps"
    DATA = ".data"
    RODATA = ".rodata"
    BSS = ".bss"
    KCONFIG = KCONFIG_SEC


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


def _map_field_int(ctx: OpenCtx, map_name: str, m: Member) -> int:
    """get_map_field_int(): `__uint(name, N)` is `int (*name)[N]`, so N is the array's nelems."""
    t = ctx.required_btf.skip_mods_and_typedefs(m.type)
    if not isinstance(t, Ptr):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected PTR, got {t.kind.name}")
    arr = ctx.required_btf[t.type]
    if not isinstance(arr, Array):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected ARRAY, got {arr.kind.name}")
    return arr.nelems


def _map_field_long(ctx: OpenCtx, map_name: str, m: Member) -> int:
    """get_map_field_long(): `__ulong(name, V)` is a one-value enum, or the `__uint` form."""
    t = ctx.required_btf.skip_mods_and_typedefs(m.type)
    if isinstance(t, Ptr):
        return _map_field_int(ctx, map_name, m)
    if not isinstance(t, AnyEnum):
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': expected ENUM or ENUM64, got {t.kind.name}")
    if len(t.values) != 1:
        raise ctx.fail(f"map '{map_name}': attr '{m.name}': invalid __ulong")
    return t.values[0].value & 0xFFFF_FFFF_FFFF_FFFF


_INT_ATTRS = ("type", "max_entries", "map_flags", "numa_node", "key_size", "value_size", "pinning")


def _parse_map_def(ctx: OpenCtx, map_name: str, def_t: Struct, outer: bool) -> dict:
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
            t = ctx.required_btf[m.type]
            if not isinstance(t, Ptr):
                raise ctx.fail(f"map '{map_name}': {m.name} spec is not PTR: {t.kind.name}")
            set_size(f"{m.name}_size", ctx.required_btf.resolve_size(t.type))
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


def _map_values(ctx: OpenCtx, map_name: str, d: dict, m: Member, last: bool, outer: bool) -> BpfMap | None:
    """`__array(values, T)`: the inner map of a map-in-map, or the program type of a prog array."""
    map_in_map = d["type"] in (BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_MAP_TYPE_HASH_OF_MAPS)
    if not outer:
        raise ctx.fail(f"map '{map_name}': multi-level inner maps not supported")
    if not last:
        raise ctx.fail(f"map '{map_name}': 'values' member should be last")
    if not map_in_map and d["type"] != BPF_MAP_TYPE_PROG_ARRAY:
        raise ctx.fail(f"map '{map_name}': should be map-in-map or prog-array")
    arr = ctx.required_btf[m.type]
    if not isinstance(arr, Array) or arr.nelems:
        raise ctx.fail(f"map '{map_name}': values spec is not a zero-sized array")
    ptr = ctx.required_btf.skip_mods_and_typedefs(arr.type)
    if not isinstance(ptr, Ptr):
        raise ctx.fail(f"map '{map_name}': values def is of unexpected kind {ptr.kind.name}")
    t = ctx.required_btf.skip_mods_and_typedefs(ptr.type)
    if not map_in_map:
        if t.kind != BtfKind.FUNC_PROTO:
            raise ctx.fail(f"map '{map_name}': prog-array value def is of unexpected kind {t.kind.name}")
        return None
    if not isinstance(t, Struct):
        raise ctx.fail(f"map '{map_name}': map-in-map inner def is of unexpected kind {t.kind.name}")
    inner = _parse_map_def(ctx, f"{map_name}.inner", t, outer=False)
    return BpfMap(f"{map_name}.inner", MapKind.USER, **{k: v for k, v in inner.items() if k != "inner"})


def user_maps(ctx: OpenCtx) -> tuple[BpfMap, ...]:
    """bpf_object__init_user_btf_maps(): one map per VAR of the `.maps` DATASEC."""
    sec = ctx.elf.section(MAPS_SEC)
    if sec is None:
        return ()
    datasec = ctx.required_btf.find(MAPS_SEC, BtfKind.DATASEC)
    if not isinstance(datasec, Datasec):
        raise ctx.fail(f"DATASEC '{MAPS_SEC}' not found")
    maps = []
    for i, vi in enumerate(datasec.vars):
        var = ctx.required_btf[vi.type]
        if not var.name:
            raise ctx.fail(f"map #{i}: empty name")
        if vi.offset + vi.size > sec.size:
            raise ctx.fail(f"map '{var.name}' BTF data is corrupted")
        if not isinstance(var, Var):
            raise ctx.fail(f"map '{var.name}': unexpected var kind {var.kind.name}")
        if var.linkage != Linkage.GLOBAL:
            raise ctx.fail(f"map '{var.name}': unsupported map linkage {var.linkage.name.lower()}")
        def_t = ctx.required_btf.skip_mods_and_typedefs(var.type)
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


def internal_maps(ctx: OpenCtx, obj_name: str) -> tuple[BpfMap, ...]:
    """bpf_object__init_global_data_maps(): a one-element ARRAY per non-empty data section."""
    maps = []
    for sec in ctx.elf.sections:
        kind = _data_kind(sec)
        if kind is None or not sec.size:
            continue
        datasec = ctx.btf.find(sec.name, BtfKind.DATASEC) if ctx.btf else None
        variables = section_variables(ctx, sec)
        flags = BPF_F_RDONLY_PROG if kind == MapKind.RODATA else 0
        if any(v.linkage != Linkage.STATIC for v in variables) and datasec is not None:
            flags |= BPF_F_MMAPABLE  # map_is_mmapable(): a non-static variable the skeleton exposes
        maps.append(BpfMap(internal_map_name(obj_name, sec.name), kind, BPF_MAP_TYPE_ARRAY, 4, sec.size, 1, flags,
                           value_type_id=datasec.id if datasec else 0, sec_name=sec.name, real_name=sec.name,
                           data=None if kind == MapKind.BSS else sec.data, variables=variables))
    return tuple(maps)


def kconfig_map(variables: tuple[Variable, ...], obj_name: str) -> tuple[BpfMap, ...]:
    """bpf_object__init_kconfig_map(): one read-only ARRAY holding the .kconfig externs, filled in at load."""
    if not variables:
        return ()
    size = variables[-1].offset + variables[-1].size
    return (BpfMap(internal_map_name(obj_name, KCONFIG_SEC), MapKind.KCONFIG, BPF_MAP_TYPE_ARRAY, 4, size, 1,
                   BPF_F_RDONLY_PROG | BPF_F_MMAPABLE, sec_name=KCONFIG_SEC, real_name=KCONFIG_SEC,
                   variables=variables),)


def section_variables(ctx: OpenCtx, sec: ElfSection) -> tuple[Variable, ...]:
    """The globals of a data section: its DATASEC when there is BTF, else its STT_OBJECT symbols."""
    datasec = ctx.btf.find(sec.name, BtfKind.DATASEC) if ctx.btf else None
    if isinstance(datasec, Datasec):
        out = []
        for vi in datasec.vars:
            var = ctx.required_btf[vi.type]
            assert isinstance(var, Var)  # _fixup_datasecs() refused any other
            out.append(Variable(var.name, vi.offset, vi.size, var.type, var.linkage))
        return tuple(out)
    syms = sorted((s for s in ctx.elf.symbols if s.shndx == sec.index and s.type == "STT_OBJECT"),
                  key=lambda s: s.value)
    return tuple(Variable(s.name, s.value, s.size, 0, Linkage.STATIC if s.bind == "STB_LOCAL" else Linkage.GLOBAL)
                 for s in syms)
