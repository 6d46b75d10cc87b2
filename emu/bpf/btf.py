"""BTF, the BPF Type Format: the types in an object's `.BTF` and the func/line info in its `.BTF.ext`.

The layout is include/uapi/linux/btf.h's; what is checked, and in which order, follows libbpf's
readers (src/btf.c: btf__new() for `.BTF`, btf_ext__new() for `.BTF.ext`) plus the reference
checks the kernel's btf_check_all_metas() makes, so a malformed section is refused here with one
line that names the type or record at fault, before any helper can trip over it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from ..errors import EmuError

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HDR_MIN = 24  # struct btf_header up to str_len
BTF_EXT_HDR_MIN = 24  # struct btf_ext_header up to line_info_len; core_relo_off/len make it 32
MAX_RESOLVE_DEPTH = 32  # libbpf's and the kernel's bound on a modifier/typedef chain
PTR_SIZE = 8  # BPF is a 64-bit target (btf__set_pointer_size(btf, 8) for ELFCLASS64)
BPF_INSN_SZ = 8


class BtfError(EmuError):
    """Malformed BTF or `.BTF.ext`, or a type that cannot be used the way asked."""


class BtfKind(IntEnum):
    UNKN = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class Linkage(IntEnum):
    """BTF_FUNC_STATIC/GLOBAL/EXTERN and BTF_VAR_STATIC/GLOBAL_ALLOCATED/GLOBAL_EXTERN share values."""

    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


BTF_INT_SIGNED = 1 << 0
BTF_INT_CHAR = 1 << 1
BTF_INT_BOOL = 1 << 2


def _name(name: str) -> str:
    return f"'{name}'" if name else "'(anon)'"


@dataclass(frozen=True, repr=False)
class BtfType:
    """One type; its repr is the first line of `bpftool btf dump file X format raw`."""

    kind: ClassVar[BtfKind] = BtfKind.UNKN
    id: int
    name: str

    def __init_subclass__(cls, kind: BtfKind | None = None, **kwargs):
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind

    def _attrs(self) -> str:
        return ""

    def detail(self) -> tuple[str, ...]:
        """The lines bpftool prints under the type (members, params, enumerators, variables)."""
        return ()

    def __repr__(self) -> str:
        return f"[{self.id}] {self.kind.name} {_name(self.name)}{self._attrs()}"


@dataclass(frozen=True, repr=False)
class Void(BtfType):
    """Type 0, `void`: btf__type_by_id(btf, 0) is libbpf's static btf_void."""

    def __repr__(self) -> str:
        return "[0] void"


@dataclass(frozen=True, repr=False)
class Int(BtfType, kind=BtfKind.INT):
    size: int
    encoding: int
    bits_offset: int
    nr_bits: int

    @property
    def signed(self) -> bool:
        return bool(self.encoding & BTF_INT_SIGNED)

    def _attrs(self) -> str:
        enc = {0: "(none)", BTF_INT_SIGNED: "SIGNED", BTF_INT_CHAR: "CHAR", BTF_INT_BOOL: "BOOL"}
        return (f" size={self.size} bits_offset={self.bits_offset} nr_bits={self.nr_bits}"
                f" encoding={enc.get(self.encoding, '(unknown)')}")


@dataclass(frozen=True, repr=False)
class RefType(BtfType):
    """A type that only points at another one: PTR, TYPEDEF, the modifiers, TYPE_TAG."""

    type: int

    def _attrs(self) -> str:
        return f" type_id={self.type}"


class Ptr(RefType, kind=BtfKind.PTR):
    """`T *`."""


class Typedef(RefType, kind=BtfKind.TYPEDEF):
    """`typedef T name`."""


class Volatile(RefType, kind=BtfKind.VOLATILE):
    """`volatile T`."""


class Const(RefType, kind=BtfKind.CONST):
    """`const T`."""


class Restrict(RefType, kind=BtfKind.RESTRICT):
    """`T *restrict`."""


class TypeTag(RefType, kind=BtfKind.TYPE_TAG):
    """`T __attribute__((btf_type_tag(name)))`, e.g. `__user`."""


@dataclass(frozen=True, repr=False)
class Array(BtfType, kind=BtfKind.ARRAY):
    type: int
    index_type: int
    nelems: int

    def _attrs(self) -> str:
        return f" type_id={self.type} index_type_id={self.index_type} nr_elems={self.nelems}"


@dataclass(frozen=True)
class Member:
    """A struct/union member; `bitfield_size` is 0 unless the member is a bitfield."""

    name: str
    type: int
    bit_offset: int
    bitfield_size: int = 0

    @property
    def byte_offset(self) -> int:
        return self.bit_offset // 8

    def __repr__(self) -> str:
        bf = f" bitfield_size={self.bitfield_size}" if self.bitfield_size else ""
        return f"{_name(self.name)} type_id={self.type} bits_offset={self.bit_offset}{bf}"


@dataclass(frozen=True, repr=False)
class Composite(BtfType):
    """STRUCT or UNION."""

    size: int
    members: tuple[Member, ...]

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise BtfError(f"{self!r} has no member '{name}'")

    def _attrs(self) -> str:
        return f" size={self.size} vlen={len(self.members)}"

    def detail(self) -> tuple[str, ...]:
        return tuple(repr(m) for m in self.members)


class Struct(Composite, kind=BtfKind.STRUCT):
    """`struct name {...}`."""


class Union(Composite, kind=BtfKind.UNION):
    """`union name {...}`."""


@dataclass(frozen=True)
class Enumerator:
    name: str
    value: int

    def __repr__(self) -> str:
        return f"{_name(self.name)} val={self.value}"


@dataclass(frozen=True, repr=False)
class AnyEnum(BtfType):
    """ENUM or ENUM64; kind_flag says the values are signed."""

    size: int
    signed: bool
    values: tuple[Enumerator, ...]

    def _attrs(self) -> str:
        enc = "SIGNED" if self.signed else "UNSIGNED"
        return f" encoding={enc} size={self.size} vlen={len(self.values)}"

    def detail(self) -> tuple[str, ...]:
        return tuple(repr(e) for e in self.values)


class Enum(AnyEnum, kind=BtfKind.ENUM):
    """32-bit enumerators."""


class Enum64(AnyEnum, kind=BtfKind.ENUM64):
    """64-bit enumerators (clang emits it for values past 32 bits)."""


@dataclass(frozen=True, repr=False)
class Fwd(BtfType, kind=BtfKind.FWD):
    union: bool

    def _attrs(self) -> str:
        return f" fwd_kind={'union' if self.union else 'struct'}"


@dataclass(frozen=True, repr=False)
class Func(BtfType, kind=BtfKind.FUNC):
    """A function: `type` is its FUNC_PROTO; linkage EXTERN marks a kfunc or other extern."""

    type: int
    linkage: Linkage

    def _attrs(self) -> str:
        return f" type_id={self.type} linkage={self.linkage.name.lower()}"


@dataclass(frozen=True)
class Param:
    name: str
    type: int

    def __repr__(self) -> str:
        return f"{_name(self.name)} type_id={self.type}"


@dataclass(frozen=True, repr=False)
class FuncProto(BtfType, kind=BtfKind.FUNC_PROTO):
    ret_type: int
    params: tuple[Param, ...]

    @property
    def variadic(self) -> bool:
        """A trailing `{name 0, type 0}` parameter is C's `...`."""
        return bool(self.params) and self.params[-1] == Param("", 0)

    def _attrs(self) -> str:
        return f" ret_type_id={self.ret_type} vlen={len(self.params)}"

    def detail(self) -> tuple[str, ...]:
        return tuple(repr(p) for p in self.params)


@dataclass(frozen=True, repr=False)
class Var(BtfType, kind=BtfKind.VAR):
    type: int
    linkage: Linkage

    def _attrs(self) -> str:
        link = {Linkage.GLOBAL: "global", Linkage.EXTERN: "extern"}.get(self.linkage, "static")
        return f" type_id={self.type}, linkage={link}"


@dataclass(frozen=True)
class VarSecinfo:
    """One variable of a DATASEC: its VAR (or extern FUNC) and where it lies in the section."""

    type: int
    offset: int
    size: int

    def __repr__(self) -> str:
        return f"type_id={self.type} offset={self.offset} size={self.size}"


@dataclass(frozen=True, repr=False)
class Datasec(BtfType, kind=BtfKind.DATASEC):
    size: int
    vars: tuple[VarSecinfo, ...]

    def _attrs(self) -> str:
        return f" size={self.size} vlen={len(self.vars)}"

    def detail(self) -> tuple[str, ...]:
        return tuple(repr(v) for v in self.vars)


@dataclass(frozen=True, repr=False)
class Float(BtfType, kind=BtfKind.FLOAT):
    size: int

    def _attrs(self) -> str:
        return f" size={self.size}"


@dataclass(frozen=True, repr=False)
class DeclTag(BtfType, kind=BtfKind.DECL_TAG):
    """`__attribute__((btf_decl_tag(name)))` on `type`, or on its member/param `component_idx` (-1: itself)."""

    type: int
    component_idx: int

    def _attrs(self) -> str:
        return f" type_id={self.type} component_idx={self.component_idx}"


_KINDS = frozenset(BtfKind) - {BtfKind.UNKN}
MODIFIERS = (BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG)  # libbpf's btf_is_mod()
_SIZED = (Int, Composite, AnyEnum, Datasec, Float)  # INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT
_REF_CLASSES = {c.kind: c for c in (Ptr, Typedef, Volatile, Const, Restrict, TypeTag)}


class _Reader:
    """Little-endian reads from one region, each failing as a BtfError that says what was cut short."""

    def __init__(self, data: bytes, where: str):
        self.data, self.where = data, where

    def u32s(self, off: int, count: int, what: str) -> tuple[int, ...]:
        if off < 0 or off + 4 * count > len(self.data):
            raise BtfError(f"{self.where}: truncated {what}: needs {4 * count} bytes at {off:#x},"
                           f" section has {len(self.data):#x}")
        return struct.unpack_from(f"<{count}I", self.data, off)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x8000_0000 else v


@dataclass(frozen=True, eq=False)
class Btf:
    """A parsed `.BTF`: `types[id]`, id 0 being void, and the string section they name."""

    types: tuple[BtfType, ...]
    strings: bytes
    where: str = ".BTF"  # what every error message starts with: the file and section

    @classmethod
    def parse(cls, data: bytes, where: str = ".BTF") -> Btf:
        """btf__new(): header, string section, then every type, each checked against the others."""
        data = bytes(data)
        r = _Reader(data, where)
        if len(data) < BTF_HDR_MIN:
            raise BtfError(f"{where}: {len(data)} bytes, too short for the {BTF_HDR_MIN}-byte BTF header")
        magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
        if magic != BTF_MAGIC:
            raise BtfError(f"{where}: bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
                           + (" (big-endian BTF is not supported)" if magic == 0x9FEB else ""))
        if version != BTF_VERSION:
            raise BtfError(f"{where}: unsupported BTF version {version}")
        if flags:
            raise BtfError(f"{where}: unsupported BTF flags {flags:#x}")
        if not BTF_HDR_MIN <= hdr_len <= len(data):
            raise BtfError(f"{where}: header length {hdr_len} outside {BTF_HDR_MIN}..{len(data)}")
        type_off, type_len, str_off, str_len = r.u32s(8, 4, "header")
        meta_left = len(data) - hdr_len
        if str_off + str_len > meta_left:
            raise BtfError(f"{where}: string section {str_off:#x}+{str_len:#x} beyond the data"
                           f" ({meta_left:#x} bytes after the header)")
        if type_off + type_len > str_off:
            raise BtfError(f"{where}: type section {type_off:#x}+{type_len:#x} overlaps the strings at {str_off:#x}")
        if type_off % 4:
            raise BtfError(f"{where}: type section at {type_off:#x} is not 4-byte aligned")
        strs = data[hdr_len + str_off:hdr_len + str_off + str_len]
        if not strs or strs[0] != 0 or strs[-1] != 0:
            raise BtfError(f"{where}: string section must start and end with NUL (btf_parse_str_sec)")
        btf = cls((Void(0, ""),), strs, where)
        raw = data[hdr_len + type_off:hdr_len + type_off + type_len]
        types = [btf.types[0], *btf._parse_types(_Reader(raw, where))]
        btf = cls(tuple(types), strs, where)
        btf._check()
        return btf

    def name_by_offset(self, off: int, what: str = "name", where: str | None = None) -> str:
        """btf__name_by_offset(); an offset outside the string section is an error, not None."""
        if not 0 <= off < len(self.strings):
            raise BtfError(f"{where or self.where}: {what} offset {off:#x} outside the string section"
                           f" ({len(self.strings):#x} bytes)")
        return self.strings[off:self.strings.index(0, off)].decode(errors="backslashreplace")

    def _parse_types(self, r: _Reader) -> Iterator[BtfType]:
        """btf_parse_type_sec(): walk `struct btf_type` records until the section ends exactly."""
        off, tid = 0, 1
        while off + 12 <= len(r.data):
            name_off, info, size_or_type = r.u32s(off, 3, f"type [{tid}]")
            # BTF_INFO_KIND/VLEN with the 2026 UAPI's widths; older headers use fewer bits and need the rest 0
            kind_no, vlen, kflag = (info >> 24) & 0x7F, info & 0xFFFFFF, bool(info >> 31)
            if kind_no not in _KINDS:
                raise BtfError(f"{r.where}: type [{tid}] at {off:#x}: unsupported BTF kind {kind_no}")
            kind = BtfKind(kind_no)
            name = self.name_by_offset(name_off, f"type [{tid}] {kind.name} name")
            t, off = self._parse_type(r, off + 12, tid, kind, name, vlen, kflag, size_or_type)
            yield t
            tid += 1
        if off != len(r.data):
            raise BtfError(f"{r.where}: {len(r.data) - off} stray bytes after type [{tid - 1}] at {off:#x}")

    def _parse_type(self, r: _Reader, off: int, tid: int, kind: BtfKind, name: str, vlen: int, kflag: bool,
                    st: int) -> tuple[BtfType, int]:
        what = f"type [{tid}] {kind.name} {_name(name)}"

        def records(n: int) -> list[tuple[int, ...]]:
            flat = r.u32s(off, n * vlen, what)
            return [flat[i:i + n] for i in range(0, len(flat), n)]

        def str_at(o: int, i: int) -> str:
            return self.name_by_offset(o, f"{what} item {i} name")

        if kind == BtfKind.INT:
            (v,) = r.u32s(off, 1, what)
            return Int(tid, name, st, (v >> 24) & 0x0F, (v >> 16) & 0xFF, v & 0xFF), off + 4
        if kind in _REF_CLASSES:
            return _REF_CLASSES[kind](tid, name, st), off
        if kind == BtfKind.ARRAY:
            return Array(tid, name, *r.u32s(off, 3, what)), off + 12
        if kind in (BtfKind.STRUCT, BtfKind.UNION):
            cls = Struct if kind == BtfKind.STRUCT else Union
            members = tuple(
                Member(str_at(n, i), t, o & 0xFFFFFF, o >> 24) if kflag else Member(str_at(n, i), t, o)
                for i, (n, t, o) in enumerate(records(3)))
            return cls(tid, name, st, members), off + 12 * vlen
        if kind == BtfKind.ENUM:
            conv = _s32 if kflag else int
            values = tuple(Enumerator(str_at(n, i), conv(v)) for i, (n, v) in enumerate(records(2)))
            return Enum(tid, name, st, kflag, values), off + 8 * vlen
        if kind == BtfKind.ENUM64:
            def v64(lo: int, hi: int) -> int:
                v = hi << 32 | lo
                return v - (1 << 64) if kflag and v >> 63 else v
            values = tuple(Enumerator(str_at(n, i), v64(lo, hi)) for i, (n, lo, hi) in enumerate(records(3)))
            return Enum64(tid, name, st, kflag, values), off + 12 * vlen
        if kind == BtfKind.FWD:
            return Fwd(tid, name, kflag), off
        if kind == BtfKind.FUNC:
            if vlen > Linkage.EXTERN:
                raise BtfError(f"{r.where}: {what}: invalid linkage {vlen}")
            return Func(tid, name, st, Linkage(vlen)), off
        if kind == BtfKind.FUNC_PROTO:
            params = tuple(Param(str_at(n, i), t) for i, (n, t) in enumerate(records(2)))
            return FuncProto(tid, name, st, params), off + 8 * vlen
        if kind == BtfKind.VAR:
            (link,) = r.u32s(off, 1, what)
            if link > Linkage.EXTERN:
                raise BtfError(f"{r.where}: {what}: invalid linkage {link}")
            return Var(tid, name, st, Linkage(link)), off + 4
        if kind == BtfKind.DATASEC:
            return Datasec(tid, name, st, tuple(VarSecinfo(*v) for v in records(3))), off + 12 * vlen
        if kind == BtfKind.FLOAT:
            return Float(tid, name, st), off
        (idx,) = r.u32s(off, 1, what)
        return DeclTag(tid, name, st, _s32(idx)), off + 4

    def _check(self) -> None:
        """The kernel's btf_check_all_metas(), in part: every type id in range, no loop, nothing inside itself."""
        n = len(self.types)
        for t in self.types[1:]:
            for what, ref in _refs(t):
                if not 0 <= ref < n:
                    raise BtfError(f"{self.where}: {t!r}: {what} type id {ref} out of range (last type is [{n - 1}])")
        for edges, what in ((_ref_edges, "loop in type chain"), (_value_edges, "a type contains itself")):
            loop = self._find_loop(edges)
            if loop:
                raise BtfError(f"{self.where}: {what} " + " -> ".join(f"[{i}]" for i in loop))

    def _find_loop(self, edges) -> list[int] | None:
        """A cycle in the graph `edges` draws between types, by an iterative depth-first walk."""
        state = [0] * len(self.types)  # 0 unseen, 1 on the current path, 2 done
        for root in range(1, len(self.types)):
            if state[root]:
                continue
            state[root], path, stack = 1, [root], [iter(edges(self.types[root]))]
            while stack:
                nxt = next(stack[-1], None)
                if nxt is None:
                    state[path.pop()] = 2
                    stack.pop()
                elif state[nxt] == 1:
                    return path[path.index(nxt):] + [nxt]
                elif state[nxt] == 0:
                    state[nxt] = 1
                    path.append(nxt)
                    stack.append(iter(edges(self.types[nxt])))
        return None

    def __getitem__(self, type_id: int) -> BtfType:
        """btf__type_by_id(), with an out-of-range id an error."""
        if not 0 <= type_id < len(self.types):
            raise BtfError(f"{self.where}: type id {type_id} out of range (last type is [{len(self.types) - 1}])")
        return self.types[type_id]

    def __len__(self) -> int:
        """btf__type_cnt(): the number of types, void included."""
        return len(self.types)

    def __iter__(self) -> Iterator[BtfType]:
        return iter(self.types[1:])

    def __repr__(self) -> str:
        return f"<Btf {len(self.types) - 1} types, {len(self.strings)} bytes of strings>"

    def find(self, name: str, kind: BtfKind | None = None) -> BtfType | None:
        """btf__find_by_name_kind() (btf__find_by_name() without a kind): the first match, or None."""
        for t in self.types[1:]:
            if t.name == name and (kind is None or t.kind == kind):
                return t
        return None

    def _follow(self, type_id: int, skip: tuple[BtfKind, ...]) -> BtfType:
        t = self[type_id]
        for _ in range(MAX_RESOLVE_DEPTH):
            if t.kind not in skip:
                return t
            t = self[t.type]  # type: ignore[attr-defined]  # each kind in `skip` is a RefType's or VAR
        raise BtfError(f"{self.where}: type chain from [{type_id}] is deeper than {MAX_RESOLVE_DEPTH}")

    def skip_mods_and_typedefs(self, type_id: int) -> BtfType:
        """skip_mods_and_typedefs() in libbpf.c: the type under const/volatile/restrict/type tags and typedefs."""
        return self._follow(type_id, (*MODIFIERS, BtfKind.TYPEDEF))

    def resolve_type(self, type_id: int) -> BtfType:
        """btf__resolve_type(): like skip_mods_and_typedefs() but through VARs too, and never void."""
        t = self._follow(type_id, (*MODIFIERS, BtfKind.TYPEDEF, BtfKind.VAR))
        if t.kind in (BtfKind.UNKN, BtfKind.FWD):
            raise BtfError(f"{self.where}: type [{type_id}] resolves to {t!r}, which has no definition")
        return t

    def resolve_size(self, type_id: int) -> int:
        """btf__resolve_size(): bytes of a type, arrays multiplied out, through modifiers, typedefs, VARs."""
        nelems, tid = 1, type_id
        for _ in range(MAX_RESOLVE_DEPTH):
            t = self[tid]
            if isinstance(t, _SIZED):
                size = t.size
                break
            if t.kind == BtfKind.PTR:
                size = PTR_SIZE
                break
            if isinstance(t, Array):
                nelems *= t.nelems
                tid = t.type
            elif isinstance(t, (RefType, Var, DeclTag)):
                tid = t.type
            else:
                raise BtfError(f"{self.where}: type [{type_id}]: {t!r} has no size")
        else:
            raise BtfError(f"{self.where}: type chain from [{type_id}] is deeper than {MAX_RESOLVE_DEPTH}")
        if nelems * size > 0xFFFF_FFFF:
            raise BtfError(f"{self.where}: type [{type_id}]: size {nelems} * {size} does not fit in 32 bits")
        return nelems * size

    def align_of(self, type_id: int, depth: int = 0) -> int:
        """btf__align_of(): the alignment C gives a type on a 64-bit target."""
        t = self.skip_mods_and_typedefs(type_id)
        while isinstance(t, Array) and depth <= MAX_RESOLVE_DEPTH:
            t, depth = self.skip_mods_and_typedefs(t.type), depth + 1
        if depth > MAX_RESOLVE_DEPTH:
            raise BtfError(f"{self.where}: type [{type_id}] nests deeper than {MAX_RESOLVE_DEPTH}")
        if isinstance(t, (Int, AnyEnum, Float)):
            return min(PTR_SIZE, t.size)
        if t.kind == BtfKind.PTR:
            return PTR_SIZE
        if isinstance(t, Composite):
            return max((self.align_of(m.type, depth + 1) for m in t.members), default=1)
        raise BtfError(f"{self.where}: type [{type_id}]: {t!r} has no alignment")

    def fields(self, type_id: int) -> tuple[Member, ...]:
        """Members of a struct/union with offsets from its start, anonymous members flattened as C sees them."""
        t = self.skip_mods_and_typedefs(type_id)
        if not isinstance(t, Composite):
            raise BtfError(f"{self.where}: type [{type_id}] is {t!r}, not a struct or union")
        return tuple(self._fields(t, 0, 0))

    def _fields(self, t: Composite, base: int, depth: int) -> Iterator[Member]:
        if depth > MAX_RESOLVE_DEPTH:
            raise BtfError(f"{self.where}: anonymous members nested deeper than {MAX_RESOLVE_DEPTH} in {t!r}")
        for m in t.members:
            inner = self.skip_mods_and_typedefs(m.type)
            if not m.name and isinstance(inner, Composite):
                yield from self._fields(inner, base + m.bit_offset, depth + 1)
            else:
                yield Member(m.name, m.type, base + m.bit_offset, m.bitfield_size)

    def type_name(self, type_id: int) -> str:
        """A C spelling of a type for messages: `struct node *`, `const int[4]`, `int (*)(void *)`."""
        return self._c_name(type_id, "", 0).strip()

    def _c_name(self, type_id: int, inner: str, depth: int) -> str:
        if depth > MAX_RESOLVE_DEPTH:
            raise BtfError(f"{self.where}: type chain from [{type_id}] is deeper than {MAX_RESOLVE_DEPTH}")
        t = self[type_id]
        if isinstance(t, Ptr):
            pointee = self[t.type]
            wrap = pointee.kind in (BtfKind.ARRAY, BtfKind.FUNC_PROTO)
            return self._c_name(t.type, f"(*{inner})" if wrap else f"*{inner}", depth + 1)
        if isinstance(t, Array):
            return self._c_name(t.type, f"{inner}[{t.nelems}]", depth + 1)
        if isinstance(t, (Volatile, Const, Restrict)):
            return f"{t.kind.name.lower()} {self._c_name(t.type, inner, depth + 1)}"
        if isinstance(t, TypeTag):
            return self._c_name(t.type, f"__tag({t.name}) {inner}".rstrip(), depth + 1)
        if isinstance(t, FuncProto):
            args = ", ".join("..." if p == Param("", 0) else self._c_name(p.type, "", depth + 1).strip()
                             for p in t.params) or "void"
            return self._c_name(t.ret_type, f"{inner}({args})", depth + 1)
        if isinstance(t, (Func, Var, DeclTag)):
            return self._c_name(t.type, inner or t.name, depth + 1)
        if isinstance(t, Composite | AnyEnum | Fwd):
            keyword = "union" if t.kind == BtfKind.UNION or getattr(t, "union", False) else (
                "enum" if isinstance(t, AnyEnum) else "struct")
            spelled = f"{keyword} {t.name or '{...}'}"
        else:
            spelled = t.name or "void"
        return f"{spelled} {inner}" if inner else spelled

    def dump(self) -> str:
        """Every type as `bpftool btf dump file X format raw` prints it."""
        lines = []
        for t in self.types[1:]:
            lines.append(repr(t))
            lines.extend(f"\t{d}" for d in t.detail())
        return "\n".join(lines)


def _refs(t: BtfType) -> Iterator[tuple[str, int]]:
    """Every type id a type mentions, with what it is for in an error message."""
    if isinstance(t, (RefType, Func, Var, DeclTag)):
        yield "referenced", t.type
    elif isinstance(t, Array):
        yield "element", t.type
        yield "index", t.index_type
    elif isinstance(t, Composite):
        for i, m in enumerate(t.members):
            yield f"member {i} ({_name(m.name)})", m.type
    elif isinstance(t, FuncProto):
        yield "return", t.ret_type
        for i, p in enumerate(t.params):
            yield f"param {i}", p.type
    elif isinstance(t, Datasec):
        for i, v in enumerate(t.vars):
            yield f"variable {i}", v.type


def _ref_edges(t: BtfType) -> tuple[int, ...]:
    """References that must end without a loop: only a struct, union or function prototype ends one."""
    return (t.type,) if isinstance(t, (RefType, Var, DeclTag, Func, Array)) else ()


def _value_edges(t: BtfType) -> tuple[int, ...]:
    """What a type holds by value: a struct holding itself, not through a pointer, has no size."""
    if isinstance(t, Composite):
        return tuple(m.type for m in t.members)
    return (t.type,) if isinstance(t, (RefType, Var, Array)) and t.kind != BtfKind.PTR else ()


@dataclass(frozen=True)
class FuncInfo:
    """bpf_func_info: the FUNC type of the function starting at `insn_off` (bytes from the section start)."""

    insn_off: int
    type_id: int
    name: str

    @property
    def insn_idx(self) -> int:
        return self.insn_off // BPF_INSN_SZ


@dataclass(frozen=True)
class LineInfo:
    """bpf_line_info: the C line an instruction came from; `line` is the source text itself."""

    insn_off: int
    file_name: str
    line: str
    line_num: int
    line_col: int

    @property
    def insn_idx(self) -> int:
        return self.insn_off // BPF_INSN_SZ

    def __str__(self) -> str:
        return f"{self.file_name}:{self.line_num}:{self.line_col}: {self.line.strip()}"


@dataclass(frozen=True)
class CoreRelo:
    """bpf_core_relo: a CO-RE relocation (the access string is `0:1:2`-style member indices)."""

    insn_off: int
    type_id: int
    access_str: str
    kind: int


@dataclass(frozen=True, eq=False)
class BtfExt:
    """A parsed `.BTF.ext`: per ELF section name, its func_info, line_info and CO-RE records."""

    func_info: dict[str, tuple[FuncInfo, ...]]
    line_info: dict[str, tuple[LineInfo, ...]]
    core_relos: dict[str, tuple[CoreRelo, ...]]

    @classmethod
    def parse(cls, data: bytes, btf: Btf, where: str = ".BTF.ext") -> BtfExt:
        """btf_ext__new(): the header, then each info block as btf_ext_setup_info() checks it."""
        data = bytes(data)
        if len(data) < 8:
            raise BtfError(f"{where}: {len(data)} bytes, too short for a header")
        magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
        if magic != BTF_MAGIC:
            raise BtfError(f"{where}: bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}")
        if version != BTF_VERSION:
            raise BtfError(f"{where}: unsupported version {version}")
        if flags:
            raise BtfError(f"{where}: unsupported flags {flags:#x}")
        if not BTF_EXT_HDR_MIN <= hdr_len <= len(data):
            raise BtfError(f"{where}: header length {hdr_len} outside {BTF_EXT_HDR_MIN}..{len(data)}")
        if hdr_len == len(data):
            raise BtfError(f"{where}: no data after the header")
        r = _Reader(data, where)
        fi_off, fi_len, li_off, li_len = r.u32s(8, 4, "header")
        co_off, co_len = r.u32s(24, 2, "header") if hdr_len >= 32 else (0, 0)

        def type_of(i: tuple[int, ...], desc: str) -> BtfType:
            if i[1] >= len(btf.types):
                raise BtfError(f"{where}: {desc} at insn_off {i[0]:#x}: type id {i[1]} out of range"
                               f" (last type is [{len(btf.types) - 1}])")
            return btf.types[i[1]]

        def func(i: tuple[int, ...]) -> FuncInfo:
            t = type_of(i, "func_info")
            if t.kind != BtfKind.FUNC:
                raise BtfError(f"{where}: func_info at insn_off {i[0]:#x} names {t!r}, not a FUNC")
            return FuncInfo(i[0], i[1], t.name)

        def line(i: tuple[int, ...]) -> LineInfo:
            return LineInfo(i[0], btf.name_by_offset(i[1], "line_info file name", where),
                            btf.name_by_offset(i[2], "line_info line", where), i[3] >> 10, i[3] & 0x3FF)

        def core(i: tuple[int, ...]) -> CoreRelo:
            t = type_of(i, "core_relo")
            return CoreRelo(i[0], t.id, btf.name_by_offset(i[2], "core_relo access string", where), i[3])

        return cls(_info_block(r, btf, hdr_len, fi_off, fi_len, 2, "func_info", func),
                   _info_block(r, btf, hdr_len, li_off, li_len, 4, "line_info", line),
                   _info_block(r, btf, hdr_len, co_off, co_len, 4, "core_relo", core))

    def line_at(self, sec_name: str, insn_off: int) -> LineInfo | None:
        """The line_info covering the instruction at byte `insn_off` of a section: the last one at or before it."""
        best = None
        for li in self.line_info.get(sec_name, ()):
            if li.insn_off <= insn_off and (best is None or li.insn_off >= best.insn_off):
                best = li
        return best


def _info_block(r: _Reader, btf: Btf, hdr_len: int, off: int, length: int, min_words: int, desc: str,
                make) -> dict:
    """btf_ext_setup_info(): u32 rec_size, then {sec_name_off, num_info} + num_info records, to the end."""
    out: dict = {}
    if not length:
        return out
    if off % 4:
        raise BtfError(f"{r.where}: {desc} at {off:#x} is not 4-byte aligned")
    start = hdr_len + off
    if start + length > len(r.data):
        raise BtfError(f"{r.where}: {desc} ({off:#x}+{length:#x}) runs past the section end")
    if length < 4:
        raise BtfError(f"{r.where}: {desc} has no record size")
    (rec_size,) = r.u32s(start, 1, f"{desc} record size")
    if rec_size < 4 * min_words or rec_size % 4:
        raise BtfError(f"{r.where}: {desc} record size {rec_size} invalid (at least {4 * min_words}, a multiple of 4)")
    pos, end = start + 4, start + length
    if pos == end:
        raise BtfError(f"{r.where}: {desc} has no records")
    while pos < end:
        if end - pos < 8:
            raise BtfError(f"{r.where}: {desc} section header at {pos:#x} truncated")
        name_off, num = r.u32s(pos, 2, f"{desc} section header")
        sec = btf.name_by_offset(name_off, f"{desc} section name", r.where)
        if num == 0 or 8 + num * rec_size > end - pos:
            raise BtfError(f"{r.where}: {desc} for '{sec}': {num} records of {rec_size} bytes do not fit")
        pos += 8
        recs = []
        for _ in range(num):
            recs.append(make(r.u32s(pos, min_words, desc)))
            pos += rec_size
        out[sec] = out.get(sec, ()) + tuple(recs)
    return out
