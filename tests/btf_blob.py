"""A tiny BTF writer for tests: raw `.BTF` bytes with any kind, well-formed or deliberately not."""

from __future__ import annotations

import struct

from emu.bpf.btf import BTF_MAGIC
from emu.bpf.btf_types import BtfKind


class BtfBlob:
    def __init__(self):
        self.strs = bytearray(b"\0")
        self.types = bytearray()
        self.count = 0

    def s(self, text: str) -> int:
        if not text:
            return 0
        off = len(self.strs)
        self.strs += text.encode() + b"\0"
        return off

    def add(self, kind: BtfKind, name: str = "", vlen: int = 0, size_or_type: int = 0, extra: bytes = b"",
            kflag: bool = False) -> int:
        """Append one type; returns its id."""
        info = kflag << 31 | kind << 24 | vlen
        self.types += struct.pack("<III", self.s(name), info, size_or_type) + extra
        self.count += 1
        return self.count

    def int(self, name: str, size: int, signed: bool = False) -> int:
        return self.add(BtfKind.INT, name, 0, size, struct.pack("<I", (1 if signed else 0) << 24 | size * 8))

    def records(self, *rows: tuple) -> bytes:
        """Member/param/enum/secinfo rows, with str names turned into string offsets."""
        return b"".join(struct.pack(f"<{len(r)}I", *(self.s(x) if isinstance(x, str) else x & 0xFFFFFFFF
                                                     for x in r)) for r in rows)

    def bytes(self, hdr_len: int = 24, magic: int = BTF_MAGIC) -> bytes:
        hdr = struct.pack("<HBBIIIII", magic, 1, 0, hdr_len, 0, len(self.types), len(self.types), len(self.strs))
        return hdr + bytes(hdr_len - 24) + bytes(self.types) + bytes(self.strs)


def every_kind() -> BtfBlob:
    """One well-formed BTF with every kind in it."""
    b = BtfBlob()
    i = b.int("int", 4, signed=True)  # 1
    u = b.int("unsigned int", 4)  # 2
    p = b.add(BtfKind.PTR, size_or_type=0)  # 3: void *
    arr = b.add(BtfKind.ARRAY, extra=struct.pack("<III", i, u, 4))  # 4: int[4]
    st = b.add(BtfKind.STRUCT, "pair", 3, 24, b.records(("a", i, 0), ("flags", u, 3 << 24 | 32),
                                                        ("v", arr, 64)), kflag=True)  # 5
    b.add(BtfKind.UNION, "u", 2, 4, b.records(("x", i, 0), ("y", u, 0)))  # 6
    b.add(BtfKind.ENUM, "e", 2, 4, b.records(("NEG", -1), ("ONE", 1)), kflag=True)  # 7
    b.add(BtfKind.FWD, "later", kflag=True)  # 8
    td = b.add(BtfKind.TYPEDEF, "pair_t", size_or_type=st)  # 9
    vol = b.add(BtfKind.VOLATILE, size_or_type=td)  # 10
    cst = b.add(BtfKind.CONST, size_or_type=vol)  # 11
    b.add(BtfKind.RESTRICT, size_or_type=p)  # 12
    proto = b.add(BtfKind.FUNC_PROTO, vlen=2, size_or_type=i, extra=b.records(("fmt", p), (0, 0)))  # 13
    fn = b.add(BtfKind.FUNC, "printk", 1, proto)  # 14
    var = b.add(BtfKind.VAR, "g", 0, cst, struct.pack("<I", 1))  # 15
    b.add(BtfKind.DATASEC, ".data", 1, 24, b.records((var, 0, 24)))  # 16
    b.add(BtfKind.FLOAT, "double", size_or_type=8)  # 17
    b.add(BtfKind.DECL_TAG, "arg:arena", 0, fn, struct.pack("<i", 0))  # 18
    b.add(BtfKind.TYPE_TAG, "user", size_or_type=i)  # 19
    b.add(BtfKind.ENUM64, "big", 1, 8, b.records(("HUGE", 0, 1 << 12)))  # 20
    return b
