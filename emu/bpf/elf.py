"""The ELF layer of a BPF object: sections, symbols and `.rel*` entries, read once through pyelftools.

Everything is read eagerly and checked the way libbpf's bpf_object__elf_init() and
bpf_object__elf_collect() check it, so the object reader above works on plain values and a
damaged file fails here, as one BpfObjectError line, rather than deep inside pyelftools.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from elftools.common.exceptions import ELFError
from elftools.construct.core import ConstructError
from elftools.elf.elffile import ELFFile
from elftools.elf.enums import ENUM_ST_SHNDX

from ..errors import EmuError

if TYPE_CHECKING:
    from .btf import Btf

SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHF_EXECINSTR = 0x4
ELF64_REL_SIZE = 16
ELF64_SYM_SIZE = 24


class BpfObjectError(EmuError):
    """A BPF ELF object that libbpf's bpf_object__open() would refuse. One line: a name read from a damaged
    object may hold control characters, which are escaped."""

    def __init__(self, message: str):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))


@dataclass(frozen=True)
class ElfSection:
    index: int
    name: str
    type: str  # pyelftools' name, e.g. SHT_PROGBITS, or the number when it has none
    flags: int
    size: int
    link: int
    info: int
    entsize: int
    data: bytes  # empty for SHT_NOBITS: a .bss is described by its size alone

    @property
    def executable(self) -> bool:
        return bool(self.flags & SHF_EXECINSTR)


@dataclass(frozen=True)
class ElfSymbol:
    index: int
    name: str
    value: int
    size: int
    type: str  # STT_*
    bind: str  # STB_*
    shndx: int  # a section index, SHN_UNDEF, or a reserved index (SHN_ABS, SHN_COMMON, ...)


@dataclass(frozen=True)
class ElfRel:
    """One Elf64_Rel: no addend, BPF relocations keep it in the instruction."""

    offset: int
    sym: int
    type: int


@dataclass(frozen=True)
class ElfImage:
    sections: tuple[ElfSection, ...]  # by index; [0] is the null section
    symbols: tuple[ElfSymbol, ...]
    rels: dict[int, tuple[ElfRel, ...]]  # code section index -> its SHT_REL entries, in file order

    def section(self, name: str) -> ElfSection | None:
        return next((s for s in self.sections if s.name == name), None)


def ignored(name: str, sh_type: str) -> bool:
    """ignore_elf_section(): string tables, .llvm_addrsig, DWARF, and relocations of DWARF and BTF."""
    if sh_type in ("SHT_STRTAB", "SHT_LLVM_ADDRSIG"):
        return True
    if name.startswith(".rel"):
        name = name[len(".rel"):]
        if name in (".BTF", ".BTF.ext"):
            return True
    return name.startswith(".debug_")


# what pyelftools raises on a damaged file: its own errors, construct's, and seeks or reads past any bound
_PARSE_ERRORS = (ELFError, ConstructError, OverflowError, ValueError, struct.error, UnicodeDecodeError, EOFError)


def is_bpf_object(path: str) -> bool:
    """An ELF file for EM_BPF (247): what clang -target bpf makes."""
    try:
        with open(path, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 247


def read_elf(data: bytes, where: str) -> ElfImage:
    """bpf_object__elf_init() + the first pass of bpf_object__elf_collect(): header, sections, symbols, relocs."""
    if data[:4] != b"\x7fELF":
        raise BpfObjectError(f"{where}: not an ELF file")
    try:
        return _read(ELFFile(io.BytesIO(data)), data, where)
    except BpfObjectError:
        raise
    except _PARSE_ERRORS as e:
        raise BpfObjectError(f"{where}: malformed ELF: {str(e).strip() or type(e).__name__}") from None


def _read(elf: ELFFile, file: bytes, where: str) -> ElfImage:
    hdr = elf.header
    if hdr.e_ident.EI_CLASS != "ELFCLASS64":
        raise BpfObjectError(f"{where}: {hdr.e_ident.EI_CLASS} object, BPF objects are ELFCLASS64")
    if hdr.e_ident.EI_DATA != "ELFDATA2LSB":
        raise BpfObjectError(f"{where}: big-endian BPF object: only little-endian (bpfel) is supported")
    if hdr.e_type != "ET_REL" or hdr.e_machine not in ("EM_BPF", "EM_NONE"):
        raise BpfObjectError(f"{where}: not a BPF object file (e_type {hdr.e_type}, e_machine {hdr.e_machine})")
    sections = []
    for i in range(elf.num_sections()):
        sec = elf.get_section(i)
        h = sec.header
        if h.sh_type == "SHT_NOBITS" or ignored(sec.name, h.sh_type):
            body = b""
        else:
            if h.sh_size and h.sh_offset + h.sh_size > len(file):
                raise BpfObjectError(f"{where}: section {i} '{sec.name}' ({h.sh_offset:#x}+{h.sh_size:#x})"
                                     f" runs past the end of the file ({len(file):#x})")
            body = file[h.sh_offset:h.sh_offset + h.sh_size]  # as stored, as libelf's elf_getdata() gives it
        sections.append(ElfSection(i, sec.name, h.sh_type, h.sh_flags, h.sh_size, h.sh_link, h.sh_info,
                                   h.sh_entsize, body))
    symtabs = [s for s in sections if s.type == "SHT_SYMTAB"]
    if not symtabs:
        raise BpfObjectError(f"{where}: no symbol table (stripped object file?)")
    if len(symtabs) > 1:
        raise BpfObjectError(f"{where}: multiple symbol tables")
    symtab = symtabs[0]
    if symtab.entsize != ELF64_SYM_SIZE:
        raise BpfObjectError(f"{where}: symbol table entry size {symtab.entsize}, expected {ELF64_SYM_SIZE}")
    if not 0 < symtab.link < len(sections) or sections[symtab.link].type != "SHT_STRTAB":
        raise BpfObjectError(f"{where}: symbol strings section {symtab.link} missing or invalid")
    symbols = tuple(_symbols(elf.get_section(symtab.index), len(sections), where))
    rels: dict[int, tuple[ElfRel, ...]] = {}
    for s in sections:
        if s.type != "SHT_REL" or ignored(s.name, s.type):
            continue
        if s.entsize != ELF64_REL_SIZE or not 0 < s.info < len(sections) or s.size % ELF64_REL_SIZE:
            raise BpfObjectError(f"{where}: relocation section {s.index} '{s.name}' is malformed"
                                 f" (size {s.size}, entry size {s.entsize}, target section {s.info})")
        if not sections[s.info].executable or sections[s.info].type != "SHT_PROGBITS":
            continue  # libbpf skips relocations of data, and fills .maps slots in at load time
        entries = []
        for k in range(s.size // ELF64_REL_SIZE):
            r_offset, r_info = struct.unpack_from("<QQ", s.data, k * ELF64_REL_SIZE)
            if r_info >> 32 >= len(symbols):
                raise BpfObjectError(f"{where}: '{s.name}' entry {k}: symbol {r_info >> 32} out of range"
                                     f" ({len(symbols)} symbols)")
            entries.append(ElfRel(r_offset, r_info >> 32, r_info & 0xFFFF_FFFF))
        rels[s.info] = rels.get(s.info, ()) + tuple(entries)
    return ElfImage(tuple(sections), symbols, rels)


def _symbols(symtab, nsections: int, where: str):
    for i, sym in enumerate(symtab.iter_symbols()):
        shndx = sym["st_shndx"]
        if isinstance(shndx, str):
            shndx = ENUM_ST_SHNDX[shndx]
        if SHN_UNDEF < shndx < SHN_LORESERVE and shndx >= nsections:
            raise BpfObjectError(f"{where}: symbol {i} '{sym.name}' in section {shndx}, the file has {nsections}")
        info = sym["st_info"]
        yield ElfSymbol(i, sym.name, sym["st_value"], sym["st_size"], str(info.type), str(info.bind), shndx)


class OpenCtx:
    """What the stages of bpf_object_open() share: the ELF, its BTF once parsed, the prefix of every error."""

    def __init__(self, elf: ElfImage, where: str):
        self.elf, self.where = elf, where
        self.btf: Btf | None = None

    def fail(self, msg: str) -> BpfObjectError:
        return BpfObjectError(f"{self.where}: {msg}")

    @property
    def required_btf(self) -> Btf:
        """The BTF, for the stages that run only once it is parsed (maps, externs, DATASEC fixups)."""
        if self.btf is None:
            raise self.fail("BTF is required, but is missing")
        return self.btf

    def sec_name(self, shndx: int) -> str:
        return self.elf.sections[shndx].name if 0 < shndx < len(self.elf.sections) else f"<section {shndx:#x}>"

    def sym_name(self, sym: ElfSymbol) -> str:
        return self.sec_name(sym.shndx) if sym.type == "STT_SECTION" else sym.name
