"""The `.BTF` reader, after libbpf's btf__new() and the btf__*() look-ups on what it parsed.

The layout is include/uapi/linux/btf.h's; what is checked, and in which order, follows libbpf's
reader (src/btf.c: btf__new(); btf_ext.py has btf_ext__new()) plus the reference
checks the kernel's btf_check_all_metas() makes, so a malformed section is refused here with one
line that names the type or record at fault, before any helper can trip over it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from .btf_types import (
    AnyEnum,
    Array,
    BtfError,
    BtfKind,
    BtfType,
    Composite,
    Const,
    Datasec,
    DeclTag,
    Enum,
    Enum64,
    Enumerator,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Linkage,
    Member,
    Param,
    Ptr,
    RefType,
    Restrict,
    Struct,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
    quoted_name,
)

BTF_MAGIC = 0xEB9F
BTF_VERSION = 1
BTF_HDR_MIN = 24  # struct btf_header up to str_len
MAX_RESOLVE_DEPTH = 32  # libbpf's and the kernel's bound on a modifier/typedef chain
PTR_SIZE = 8  # BPF is a 64-bit target (btf__set_pointer_size(btf, 8) for ELFCLASS64)

_KINDS = frozenset(BtfKind) - {BtfKind.UNKN}
MODIFIERS = (BtfKind.VOLATILE, BtfKind.CONST, BtfKind.RESTRICT, BtfKind.TYPE_TAG)  # libbpf's btf_is_mod()
_SIZED = (Int, Composite, AnyEnum, Datasec, Float)  # INT, STRUCT, UNION, ENUM, ENUM64, DATASEC, FLOAT
_REF_CLASSES = {c.kind: c for c in (Ptr, Typedef, Volatile, Const, Restrict, TypeTag)}


class BtfReader:
    """Little-endian reads from one region, each failing as a BtfError that says what was cut short."""

    def __init__(self, data: bytes, where: str):
        self.data, self.where = data, where

    def u32s(self, off: int, count: int, what: str) -> tuple[int, ...]:
        if off < 0 or off + 4 * count > len(self.data):
            raise BtfError(f"{self.where}: truncated {what}: needs {4 * count} bytes at {off:#x},"
                           f" section has {len(self.data):#x}")
        return struct.unpack_from(f"<{count}I", self.data, off)


def check_header(data: bytes, where: str, hdr_min: int, what: str, swapped_note: str) -> int:
    """The magic, version, flags and hdr_len that btf_header and btf_ext_header share; returns hdr_len.

    `what` prefixes the version and flags messages, `swapped_note` follows a byte-swapped magic's."""
    magic, version, flags, hdr_len = struct.unpack_from("<HBBI", data)
    if magic != BTF_MAGIC:
        raise BtfError(f"{where}: bad magic {magic:#06x}, expected {BTF_MAGIC:#06x}"
                       + (swapped_note if magic == 0x9FEB else ""))
    if version != BTF_VERSION:
        raise BtfError(f"{where}: unsupported {what}version {version}")
    if flags:
        raise BtfError(f"{where}: unsupported {what}flags {flags:#x}")
    if not hdr_min <= hdr_len <= len(data):
        raise BtfError(f"{where}: header length {hdr_len} outside {hdr_min}..{len(data)}")
    return hdr_len


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
        r = BtfReader(data, where)
        if len(data) < BTF_HDR_MIN:
            raise BtfError(f"{where}: {len(data)} bytes, too short for the {BTF_HDR_MIN}-byte BTF header")
        hdr_len = check_header(data, where, BTF_HDR_MIN, "BTF ", " (big-endian BTF is not supported)")
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
        types = [btf.types[0], *btf._parse_types(BtfReader(raw, where))]
        btf = cls(tuple(types), strs, where)
        btf._check()
        return btf

    def name_by_offset(self, off: int, what: str = "name", where: str | None = None) -> str:
        """btf__name_by_offset(); an offset outside the string section is an error, not None."""
        if not 0 <= off < len(self.strings):
            raise BtfError(f"{where or self.where}: {what} offset {off:#x} outside the string section"
                           f" ({len(self.strings):#x} bytes)")
        return self.strings[off:self.strings.index(0, off)].decode(errors="backslashreplace")

    def _parse_types(self, r: BtfReader) -> Iterator[BtfType]:
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

    def _parse_type(self, r: BtfReader, off: int, tid: int, kind: BtfKind, name: str, vlen: int, kflag: bool,
                    st: int) -> tuple[BtfType, int]:
        what = f"type [{tid}] {kind.name} {quoted_name(name)}"

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
            yield f"member {i} ({quoted_name(m.name)})", m.type
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
