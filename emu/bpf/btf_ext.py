"""`.BTF.ext`, after libbpf's btf_ext__new(): per-section func_info, line_info and CO-RE records.

Apart from the `.BTF` reader because it only refers to types by id: every record is checked
against an already parsed Btf, as btf_ext_setup_info() checks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .btf import Btf, BtfReader, check_header
from .btf_types import BtfError, BtfKind, BtfType

BTF_EXT_HDR_MIN = 24  # struct btf_ext_header up to line_info_len; core_relo_off/len make it 32
BPF_INSN_SZ = 8


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
        hdr_len = check_header(data, where, BTF_EXT_HDR_MIN, "", "")
        if hdr_len == len(data):
            raise BtfError(f"{where}: no data after the header")
        r = BtfReader(data, where)
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


def _info_block(r: BtfReader, btf: Btf, hdr_len: int, off: int, length: int, min_words: int, desc: str,
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
