"""An ELF symbol file for gdb: every loaded symbol, and a DWARF line table for every loaded line.

gdb attached to a real kernel's JIT sees nameless bytes. Here the machine knows
every name and line (assembly, kernel C, JITed programs), so `arena-emu debug
--gdb` writes them as an ELF file that gdb reads with `symbol-file`: sections at
the machine's addresses (no bytes: gdb reads memory from the target), a symbol
table with the names kallsyms prints (bpf_prog_<tag>_<name> for BPF), and one
DWARF 4 compilation unit whose line program covers every file.
"""

from __future__ import annotations

import bisect
import struct
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..kernel.kallsyms import Kallsyms
from ..kernel.lines import LineTable
from ..machine import Machine

SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_NOBITS = 1, 2, 3, 8
SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE = 0x2, 0x4, 0x1
STB_GLOBAL, STB_LOCAL, STT_FUNC, STT_OBJECT = 1, 0, 2, 1
EM_X86_64, ET_EXEC = 62, 2
DW_TAG_compile_unit, DW_CHILDREN_no = 0x11, 0
DW_AT_name, DW_AT_stmt_list, DW_AT_low_pc, DW_AT_high_pc, DW_AT_language = 0x03, 0x10, 0x11, 0x12, 0x13
DW_FORM_addr, DW_FORM_data8, DW_FORM_string, DW_FORM_sec_offset, DW_FORM_data2 = 0x01, 0x07, 0x08, 0x17, 0x05
DW_LANG_C99 = 0x0C
DW_LNS_copy, DW_LNS_advance_pc, DW_LNS_advance_line, DW_LNS_set_file = 1, 2, 3, 4
DW_LNE_end_sequence, DW_LNE_set_address = 1, 2
_FLAGS = {"text": SHF_ALLOC | SHF_EXECINSTR, "rodata": SHF_ALLOC, "data": SHF_ALLOC | SHF_WRITE,
          "bss": SHF_ALLOC | SHF_WRITE}


@dataclass(frozen=True)
class Region:
    name: str  # text, rodata, data, bss
    start: int
    end: int


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def line_program(lines: dict[int, tuple[str, int]], paths: dict[str, str],
                 starts: Sequence[int] = ()) -> tuple[bytes, list[str]]:
    """A DWARF 4 .debug_line unit: every (address, file, line), one sequence per run of rows no
    more than a page apart and within one function (`starts`, sorted: where functions begin, so
    a function's last row does not cover the next one's prologue, which has no row of its own),
    each file by its path on disk where known; returns the unit and its file names."""
    files = sorted({f for f, _ in lines.values()})
    index = {f: i + 1 for i, f in enumerate(files)}
    program = bytearray()
    addrs = sorted(lines)
    prev_addr: int | None = None
    prev_line = 1
    for n, addr in enumerate(addrs):
        file, line = lines[addr]
        boundary = _first_start_after(starts, prev_addr, addr) if prev_addr is not None else None
        if prev_addr is None or addr - prev_addr > 0x1000 or boundary is not None:
            if prev_addr is not None:
                end = boundary - prev_addr if boundary is not None else 1
                program += bytes([DW_LNS_advance_pc]) + _uleb(end) + bytes([0, 1, DW_LNE_end_sequence])
            program += bytes([0, 9, DW_LNE_set_address]) + struct.pack("<Q", addr)
            prev_line = 1
        else:
            program += bytes([DW_LNS_advance_pc]) + _uleb(addr - prev_addr)
        program += bytes([DW_LNS_set_file]) + _uleb(index[file])
        program += bytes([DW_LNS_advance_line]) + _sleb(line - prev_line) + bytes([DW_LNS_copy])
        prev_addr, prev_line = addr, line
        if n == len(addrs) - 1:
            program += bytes([DW_LNS_advance_pc]) + _uleb(1) + bytes([0, 1, DW_LNE_end_sequence])
    header = bytearray(struct.pack("<BBBbBB", 1, 1, 1, -5, 14, 13)) + bytes([0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1])
    header += b"\0"  # no include directories: names are as the machine knows them
    for f in files:
        header += paths.get(f, f).encode() + b"\0" + bytes([0, 0, 0])
    header += b"\0"
    body = struct.pack("<H", 4) + struct.pack("<I", len(header)) + header + program
    return struct.pack("<I", len(body)) + body, files


def _first_start_after(starts: Sequence[int], prev: int, addr: int) -> int | None:
    """The first function start in (prev, addr], if any."""
    i = bisect.bisect_right(starts, prev)
    return starts[i] if i < len(starts) and starts[i] <= addr else None


def _debug_info(low: int, high: int) -> tuple[bytes, bytes]:
    """.debug_info and .debug_abbrev: one compile unit pointing at the line program."""
    abbrev = _uleb(1) + _uleb(DW_TAG_compile_unit) + bytes([DW_CHILDREN_no])
    for at, form in ((DW_AT_name, DW_FORM_string), (DW_AT_language, DW_FORM_data2),
                     (DW_AT_stmt_list, DW_FORM_sec_offset), (DW_AT_low_pc, DW_FORM_addr),
                     (DW_AT_high_pc, DW_FORM_data8)):
        abbrev += _uleb(at) + _uleb(form)
    abbrev += b"\0\0\0"
    die = _uleb(1) + b"arena-emu\0" + struct.pack("<HIQQ", DW_LANG_C99, 0, low, high - low) + b"\0"
    body = struct.pack("<HIB", 4, 0, 8) + die
    return struct.pack("<I", len(body)) + body, abbrev


def symbol_file(kallsyms: Kallsyms, lines: LineTable, regions: Iterable[Region]) -> bytes:
    """The ELF file's bytes."""
    regions = [r for r in regions if r.end > r.start]
    shstr = bytearray(b"\0")
    sections: list[tuple[int, int, int, int, int, bytes, int, int, int]] = []  # name, type, flags, addr, size...

    def name(text: str) -> int:
        shstr.extend(text.encode() + b"\0")
        return len(shstr) - len(text) - 1

    for r in regions:
        sections.append((name(f".{r.name}"), SHT_NOBITS, _FLAGS[r.name], r.start, r.end - r.start,
                         b"", 0, 0, 16))
    strtab = bytearray(b"\0")
    syms = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    for sym in sorted(kallsyms.symbols(), key=lambda s: (not s.is_global, s.address)):
        shndx = next((i + 1 for i, r in enumerate(regions) if r.start <= sym.address < r.end), None)
        loc = kallsyms.lookup(sym.address)
        if shndx is None or loc is None:
            continue
        strtab.extend((sym.display or sym.name).encode() + b"\0")
        kind = STT_FUNC if sym.section == "text" else STT_OBJECT
        syms.append(struct.pack("<IBBHQQ", len(strtab) - len((sym.display or sym.name).encode()) - 1,
                                (STB_GLOBAL if sym.is_global else STB_LOCAL) << 4 | kind, 0, shndx, sym.address,
                                loc.size))
    locals_ = 1 + sum(1 for s in syms[1:] if s[4] >> 4 == STB_LOCAL)
    syms = [syms[0], *[s for s in syms[1:] if s[4] >> 4 == STB_LOCAL], *[s for s in syms[1:] if s[4] >> 4 != STB_LOCAL]]
    texts = [r for r in regions if r.name == "text"]
    low, high = (min(r.start for r in texts), max(r.end for r in texts)) if texts else (0, 0)
    starts = sorted({sym.address for sym in kallsyms.symbols() if sym.section == "text"})
    debug_line, _ = line_program(lines.lines, lines.paths, starts)
    debug_info, debug_abbrev = _debug_info(low, high)
    strtab_index = len(sections) + 2
    sections.append((name(".symtab"), SHT_SYMTAB, 0, 0, 0, b"".join(syms), strtab_index, locals_, 8))
    sections.append((name(".strtab"), SHT_STRTAB, 0, 0, 0, bytes(strtab), 0, 0, 1))
    for sect, data in ((".debug_info", debug_info), (".debug_abbrev", debug_abbrev), (".debug_line", debug_line)):
        sections.append((name(sect), SHT_PROGBITS, 0, 0, 0, data, 0, 0, 1))
    shstrndx = len(sections) + 1
    sections.append((name(".shstrtab"), SHT_STRTAB, 0, 0, 0, b"", 0, 0, 1))
    out = bytearray(64)
    headers = [bytes(64)]
    for i, (nm, kind, flags, addr, size, data, link, info, align) in enumerate(sections):
        if i + 1 == shstrndx:
            data = bytes(shstr)
        offset = len(out)
        out += data
        entsize = 24 if kind == SHT_SYMTAB else 0
        headers.append(struct.pack("<IIQQQQIIQQ", nm, kind, flags, addr, offset, size if kind == SHT_NOBITS else
                                   len(data), link, info, align, entsize))
    out += b"\0" * (-len(out) % 8)
    shoff = len(out)
    out += b"".join(headers)
    out[:64] = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, bytes(7), ET_EXEC, EM_X86_64, 1,
                           0, 0, shoff, 0, 64, 0, 0, 64, len(headers), shstrndx)
    return bytes(out)


def write_symbol_file(m: Machine) -> Path:
    """The machine's symbol file, written where gdb can read it; returns its path."""
    path = Path(tempfile.mkdtemp(prefix="arena-emu-gdb-")) / "symbols.elf"
    path.write_bytes(symbol_file(m.kallsyms, m.line_table, [Region(*r) for r in m.loader.regions()]))
    return path
