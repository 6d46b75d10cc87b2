"""x86-64 relocatable objects (`gcc -c -mcmodel=kernel`), read and linked as load_module() does.

kernel/module/main.c lays a module's allocated sections out by kind (text,
read-only data, data, bss), resolves its symbols against the kernel's
(simplify_symbols()), and applies its relocations (apply_relocate_add(), in
emu/x86/module.py). Here the same happens beside the assembler's image: the
objects' sections go first, each region from the loader's cursor, and the
image they make joins the load like an assembled one, with its symbols,
its `__ex_table` and its DWARF lines.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from elftools.dwarf.callframe import FDE
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from ..asm.image import SECTIONS, Image, LinkedSection
from ..errors import EmuError
from ..x86.extable import ExtableEntry
from ..x86.module import R_X86_64_32, R_X86_64_64, R_X86_64_PC32, Reloc, RelocationError, apply_relocate_add
from ..x86.unwind_orc import OrcEntry, entries_from_cfi

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
EX_DATA_TYPE_MASK = 0xFF
DWARF_RBP_REG = 6
MASK64 = (1 << 64) - 1
_SKIPPED = (".eh_frame", ".note", ".llvm_addrsig")


class ObjectError(EmuError):
    """An object that cannot be loaded: each line names the file and what is wrong."""


@dataclass
class ObjSection:
    index: int
    name: str
    region: str  # text, rodata, data, bss; __ex_table lies in rodata and becomes exception entries
    data: bytearray
    align: int
    address: int = 0


@dataclass(frozen=True)
class ObjSymbol:
    name: str
    section: int | None  # None: undefined; -1: absolute
    value: int
    is_global: bool
    is_weak: bool
    kind: str  # STT_FUNC, STT_OBJECT, STT_NOTYPE, STT_SECTION, ...


@dataclass
class ObjectFile:
    path: str
    raw: bytes
    sections: dict[int, ObjSection]
    symbols: list[ObjSymbol]
    relocs: dict[int, list[tuple[Reloc, int]]]  # section index -> (relocation, symbol index)
    debug_relocs: dict[str, list[tuple[Reloc, int]]] = field(default_factory=dict)  # .debug_* name -> ...

    def defined_globals(self) -> dict[str, ObjSymbol]:
        """The globals with an address: absolute, or in a section that is loaded."""
        return {s.name: s for s in self.symbols if s.is_global and (s.section == -1 or s.section in self.sections)}

    def address_of(self, sym: ObjSymbol) -> int | None:
        if sym.section == -1:
            return sym.value
        section = self.sections.get(sym.section) if sym.section is not None else None
        return section.address + sym.value if section is not None else None


def is_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF"


def read_object(path: str, data: bytes) -> ObjectFile:
    """What load_module() takes from an ELF file: its allocated sections, symbols and relocations.
    Anything malformed is one ObjectError line; pyelftools' own exceptions never escape."""
    try:
        elf = ELFFile(io.BytesIO(data))
        header = elf.header
    except Exception as e:  # malformed input: pyelftools raises many kinds
        raise ObjectError(f"{path}: not a valid ELF file ({e})") from None
    if elf.elfclass != 64 or not elf.little_endian or header["e_machine"] != "EM_X86_64":
        raise ObjectError(f"{path}: not an x86-64 object (class {elf.elfclass}, machine {header['e_machine']})")
    if header["e_type"] != "ET_REL":
        raise ObjectError(f"{path}: not a relocatable object ({header['e_type']}); build it with -c")
    try:
        return _read(path, data, elf)
    except ObjectError:
        raise
    except Exception as e:  # malformed input past the header
        raise ObjectError(f"{path}: malformed ELF: {type(e).__name__}: {e}") from None


def _region(sec) -> str | None:
    flags, name = sec["sh_flags"], sec.name
    if not flags & SHF_ALLOC or name.startswith(_SKIPPED) or sec["sh_type"] in ("SHT_NOTE", "SHT_GROUP"):
        return None
    if name == "__ex_table":
        return "__ex_table"
    if sec["sh_type"] == "SHT_NOBITS":
        return "bss"
    return "text" if flags & SHF_EXECINSTR else "data" if flags & SHF_WRITE else "rodata"


def _read(path: str, data: bytes, elf: ELFFile) -> ObjectFile:
    sections: dict[int, ObjSection] = {}
    for i, sec in enumerate(elf.iter_sections()):
        region = _region(sec)
        if region is None:
            continue
        size = sec["sh_size"]
        body = bytearray(size) if region == "bss" else bytearray(sec.data())
        if len(body) != size:
            raise ObjectError(f"{path}: section {sec.name} is cut short ({len(body)} of {size} bytes)")
        sections[i] = ObjSection(i, sec.name, region, body, max(1, sec["sh_addralign"]))
    symtab = elf.get_section_by_name(".symtab")
    if symtab is not None and not isinstance(symtab, SymbolTableSection):
        raise ObjectError(f"{path}: .symtab is {symtab['sh_type']}, not SHT_SYMTAB")
    symbols = []
    for sym in symtab.iter_symbols() if symtab is not None else []:
        shndx, bind = sym["st_shndx"], sym["st_info"]["bind"]
        section = None if shndx == "SHN_UNDEF" else -1 if shndx == "SHN_ABS" else shndx
        if shndx == "SHN_COMMON":
            raise ObjectError(f"{path}: common symbol '{sym.name}' not supported (build with -fno-common)")
        symbols.append(ObjSymbol(sym.name, section if not isinstance(section, str) else -1, sym["st_value"],
                                 bind in ("STB_GLOBAL", "STB_WEAK"), bind == "STB_WEAK", sym["st_info"]["type"]))
    relocs: dict[int, list[tuple[Reloc, int]]] = {}
    debug: dict[str, list[tuple[Reloc, int]]] = {}
    sec_names = [s.name for s in elf.iter_sections()]
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection):  # SHT_RELA or SHT_REL
            continue
        target = sec["sh_info"]
        if target >= len(sec_names):
            raise ObjectError(f"{path}: {sec.name} patches section {target}, which does not exist")
        placed, is_debug = target in sections, sec_names[target].startswith((".debug_", ".eh_frame"))
        if not placed and not is_debug:
            continue
        if sec["sh_type"] == "SHT_REL":
            raise ObjectError(f"{path}: {sec.name}: SHT_REL relocations not supported (x86-64 objects use RELA)")
        entries = []
        for r in sec.iter_relocations():
            index = r["r_info_sym"]
            if index >= len(symbols):
                raise ObjectError(f"{path}: {sec.name}+{r['r_offset']:#x}: symbol {index} does not exist")
            entries.append((Reloc(r["r_offset"], r["r_info_type"], symbols[index].name, r["r_addend"]), index))
        (relocs.setdefault(target, []) if placed else debug.setdefault(sec_names[target], [])).extend(entries)
    return ObjectFile(path, data, sections, symbols, relocs, debug)


def layout(objects: Sequence[ObjectFile], cursor: dict[str, int]) -> dict[str, int]:
    """Give every allocated section its address, region by region from `cursor`; returns where
    each region ends (where the assembler's image may start)."""
    out = dict(cursor)
    for obj in objects:
        for sec in obj.sections.values():
            region = "rodata" if sec.region == "__ex_table" else sec.region
            addr = -(-out[region] // sec.align) * sec.align
            sec.address = addr
            out[region] = addr + len(sec.data)
    return out


def link(objects: Sequence[ObjectFile], cursor: dict[str, int], resolve: Callable[[str], int | None]) -> Image:
    """Apply every relocation (a symbol no object defines comes from `resolve`), and build the
    image: the regions' bytes, the symbols for kallsyms, __ex_table's entries and DWARF lines."""
    errors: list[str] = []
    undefined: dict[str, list[str]] = {}
    globals_ = {name: (obj, s) for obj in objects for name, s in obj.defined_globals().items()}

    def value_of(obj: ObjectFile, index: int, where: str) -> int | None:
        sym = obj.symbols[index]
        if sym.section is not None:
            return obj.address_of(sym)
        if sym.name in globals_:
            other, s = globals_[sym.name]
            return other.address_of(s)
        found = resolve(sym.name)
        if found is None and not sym.is_weak:
            undefined.setdefault(sym.name, []).append(where)
        return found if found is not None else 0

    for obj in objects:
        for target, entries in obj.relocs.items():
            sec = obj.sections[target]
            for reloc, index in entries:
                where = f"{obj.path}: .rela{sec.name}+{reloc.offset:#x}"
                value = value_of(obj, index, where)
                if value is None:
                    errors.append(f"{obj.path}: .rela{sec.name}+{reloc.offset:#x}: '{reloc.symbol}' lies in a "
                                  "section that is not loaded")
                    continue
                try:
                    apply_relocate_add(sec.data, sec.address, reloc, value)
                except RelocationError as e:
                    against = f" against '{reloc.symbol}':" if e.overflow else ""
                    errors.append(f"{obj.path}: .rela{sec.name}+{reloc.offset:#x}: {reloc.type_name}{against} {e}")
    for name, wheres in sorted(undefined.items()):
        errors.append(f"undefined symbol '{name}' (referenced by {', '.join(wheres)})")
    if errors:
        raise ObjectError("\n".join(errors))
    return _image(objects, cursor)


def _image(objects: Sequence[ObjectFile], cursor: dict[str, int]) -> Image:
    regions = {name: LinkedSection(name, cursor[name], bytearray()) for name in SECTIONS}
    symbols, extable, lines, sources, paths, unwind = [], [], {}, {}, {}, []
    for obj in objects:
        for sec in obj.sections.values():
            region = regions["rodata" if sec.region == "__ex_table" else sec.region]
            pad = sec.address - region.start - len(region.data)
            region.data += (b"\xcc" if sec.region == "text" else b"\0") * pad + sec.data
            if sec.region == "__ex_table":
                extable += _ex_table(sec)
        for sym in obj.symbols:
            if sym.kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE") and sym.name and sym.section not in (None, -1) \
                    and sym.section in obj.sections and not sym.name.startswith(".L"):
                home = obj.sections[sym.section]
                section = "rodata" if home.region == "__ex_table" else home.region
                symbols.append((sym.name, home.address + sym.value, section, sym.is_global, obj.path))
        obj_lines, obj_sources, obj_paths = dwarf_lines(obj)
        lines.update(obj_lines)
        sources.update(obj_sources)
        paths.update(obj_paths)
        unwind += unwind_entries(obj)
    return Image(regions, symbols, extable, lines, sources=sources, source_paths=paths, unwind=unwind)


def _ex_table(sec: ObjSection) -> list[ExtableEntry]:
    """__ex_table: three s32 per entry, insn and fixup relative to their own field, then data
    (EX_DATA_TYPE_MASK holds the EX_TYPE_*)."""
    out = []
    for off in range(0, len(sec.data) - 11, 12):
        insn, fixup, data = (int.from_bytes(sec.data[off + i:off + i + 4], "little", signed=True) for i in (0, 4, 8))
        at = sec.address + off
        out.append(ExtableEntry((at + insn) & MASK64, (at + 4 + fixup) & MASK64,
                                data & EX_DATA_TYPE_MASK, data & 0xFFFF_FFFF))
    return out


def dwarf_lines(obj: ObjectFile) -> tuple[dict[int, tuple[str, int]], dict[str, str], dict[str, str]]:
    """The line table of the object's DWARF at the addresses its code was placed at (the debug
    sections are relocated in a copy of the file first, as a linker would), and each source
    file's text and path where it can be read."""
    if ".debug_line" not in obj.debug_relocs:
        return {}, {}, {}
    try:
        dwarf = ELFFile(io.BytesIO(_relocated_debug(obj))).get_dwarf_info(relocate_dwarf_sections=False)
        out: dict[int, tuple[str, int]] = {}
        paths: dict[str, str] = {}
        for cu in dwarf.iter_CUs():
            prog = dwarf.line_program_for_CU(cu)
            if prog is None:
                continue
            names = _file_names(prog, cu)
            for entry in prog.get_entries():
                st = entry.state
                if st is not None and not st.end_sequence and st.line:  # the last row at an address wins, as in gdb
                    shown, full = names.get(st.file, ("??", ""))
                    out[st.address] = (shown, st.line)
                    paths.setdefault(shown, full)
    except ObjectError:
        raise
    except Exception as e:  # malformed DWARF
        raise ObjectError(f"{obj.path}: .debug_line: malformed DWARF line info ({type(e).__name__}: {e})") from None
    texts = {shown: text for shown, full in paths.items() if (text := read_source(full)) is not None}
    return out, texts, {shown: paths[shown] for shown in texts}


def read_source(path: str) -> str | None:
    """A source file's text, when it is there to read (debug info names files as the compiler saw them)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def unwind_entries(obj: ObjectFile) -> list[OrcEntry]:
    """The object's call-frame information (.debug_frame, else .eh_frame) as unwind entries at
    the addresses its code was placed at."""
    if ".debug_frame" not in obj.debug_relocs and ".eh_frame" not in obj.debug_relocs:
        return []
    try:
        dwarf = ELFFile(io.BytesIO(_relocated_debug(obj))).get_dwarf_info(relocate_dwarf_sections=False)
        fdes = dwarf.CFI_entries() if dwarf.has_CFI() else dwarf.EH_CFI_entries() if dwarf.has_EH_CFI() else []
        rows = []
        for fde in fdes:
            if not isinstance(fde, FDE):
                continue
            # .eh_frame's pc-relative sdata4 decodes to a signed 32-bit value: kernel text lies in
            # the top 2 GiB, so its 64-bit address is that value sign-extended
            start = fde.header["initial_location"] & MASK64
            end = start + fde.header["address_range"]
            table = fde.get_decoded().table
            for i, row in enumerate(table):
                cfa, bp = row["cfa"], row.get(DWARF_RBP_REG)
                if cfa.expr is not None:
                    continue
                stop = table[i + 1]["pc"] & MASK64 if i + 1 < len(table) else end
                rows.append((row["pc"] & MASK64, stop, cfa.reg, cfa.offset,
                             bp.arg if bp is not None and bp.type == "OFFSET" else None))
    except ObjectError:
        raise
    except Exception as e:  # malformed CFI
        raise ObjectError(f"{obj.path}: malformed call-frame information ({type(e).__name__}: {e})") from None
    return entries_from_cfi(rows)


def _elf(obj: ObjectFile) -> ELFFile:
    return ELFFile(io.BytesIO(obj.raw))


def _relocated_debug(obj: ObjectFile) -> bytes:
    raw = bytearray(obj.raw)
    elf = _elf(obj)
    for name, entries in obj.debug_relocs.items():
        sec = elf.get_section_by_name(name)
        if sec is None:
            continue
        body = bytearray(sec.data())
        for reloc, index in entries:
            if reloc.type not in (R_X86_64_64, R_X86_64_32, R_X86_64_PC32):
                continue
            sym = obj.symbols[index]
            value = obj.address_of(sym) if sym.section in obj.sections or sym.section == -1 else 0
            try:
                apply_relocate_add(body, 0, reloc, value or 0)
            except RelocationError as e:
                raise ObjectError(f"{obj.path}: .rela{name}+{reloc.offset:#x}: {reloc.type_name}: {e}") from None
        raw[sec["sh_offset"]:sec["sh_offset"] + len(body)] = body
    return bytes(raw)


def _file_names(prog, cu) -> dict[int, tuple[str, str]]:
    """The line program's file table: each file as gdb names it (relative to the compilation
    directory when it lies there) and its full path (DWARF 5 numbers files from 0 and puts the
    compilation directory first; earlier versions number from 1)."""
    header = prog.header
    version = header["version"]
    top = cu.get_top_DIE().attributes
    comp_dir = _text(top["DW_AT_comp_dir"].value) if "DW_AT_comp_dir" in top else ""
    dirs = [_text(d) for d in header["include_directory"]]
    if version < 5:
        dirs = [comp_dir, *dirs]
    out = {}
    for i, f in enumerate(header["file_entry"]):
        name = _text(f.name)
        d = dirs[f.dir_index] if f.dir_index < len(dirs) else ""
        full = name if os.path.isabs(name) else os.path.join(d if os.path.isabs(d) else os.path.join(comp_dir, d), name)
        shown = name if f.dir_index == 0 or os.path.isabs(name) else os.path.join(d, name)
        out[i if version >= 5 else i + 1] = (shown, full)
    return out


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
