"""The BTF type records of include/uapi/linux/btf.h, as the value objects libbpf's btf.c hands out.

Apart from the reader (btf.py) so that maps, objects and tests can name a kind or build a type
without the parser; each type prints as `bpftool btf dump file X format raw` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

from ..errors import EmuError


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


def quoted_name(name: str) -> str:
    """A name as bpftool quotes it, '(anon)' for none."""
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
        return f"[{self.id}] {self.kind.name} {quoted_name(self.name)}{self._attrs()}"


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
        return f"{quoted_name(self.name)} type_id={self.type} bits_offset={self.bit_offset}{bf}"


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
        return f"{quoted_name(self.name)} val={self.value}"


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
        return f"{quoted_name(self.name)} type_id={self.type}"


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
